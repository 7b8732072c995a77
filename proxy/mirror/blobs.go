package mirror

import (
	"context"
	"errors"
	"fmt"
	"io"
	"net/http"
	"strconv"
	"sync"
	"sync/atomic"
	"time"

	"github.com/google/go-containerregistry/pkg/v1/remote/transport"
	"github.com/opencontainers/go-digest"

	"github.com/goldproxy/goldproxy/proxy/registry/httpx"
	"github.com/goldproxy/goldproxy/storage"
)

// blobFetch is one upstream fetch of a blob that concurrent requests wait on.
type blobFetch struct {
	done chan struct{}
	repo string
	err  error
}

// ServeBlob answers GET/HEAD of blob dgst of rt: from the store (with Range), or fetched
// once and streamed while it is stored.
func (m *Mirror) ServeBlob(w http.ResponseWriter, r *http.Request, rt *Route, dgst digest.Digest) error {
	ctx := r.Context()
	if err := storage.CheckRanges(r.Header.Get("Range")); err != nil {
		return httpx.RangeInvalid("%v", err)
	}
	defer m.leases.Hold(dgst)() // gc never deletes a blob a request is using
	if _, err := m.store.StatBlob(ctx, dgst); err == nil {
		m.metrics.cache.WithLabelValues("blob", "hit").Inc()
		if err := m.ensureLinked(ctx, rt, dgst); err != nil {
			return err
		}
		return m.serveStoredBlob(w, r, dgst)
	} else if !errors.Is(err, storage.ErrNotFound) {
		return err
	}
	m.metrics.cache.WithLabelValues("blob", "miss").Inc()
	if r.Method == http.MethodHead {
		return m.headUpstreamBlob(w, r, rt, dgst)
	}
	return m.fetchBlob(w, r, rt, dgst)
}

func (m *Mirror) serveStoredBlob(w http.ResponseWriter, r *http.Request, dgst digest.Digest) error {
	w.Header().Set("Content-Type", "application/octet-stream")
	w.Header().Set("Docker-Content-Digest", dgst.String())
	if err := m.store.ServeBlob(r.Context(), w, r, dgst); err != nil {
		if errors.Is(err, storage.ErrNotFound) {
			return httpx.BlobUnknown("blob %s is not known", dgst)
		}
		if errors.Is(err, storage.ErrTooManyRanges) {
			return httpx.RangeInvalid("%v", err)
		}
		return err
	}
	return nil
}

// ensureLinked makes sure a stored blob may be served under rt's repository: content
// fetched for one repository is served under another only once that repository's
// upstream confirmed it has it, so credentials scoped to one repository never leak
// another's content.
func (m *Mirror) ensureLinked(ctx context.Context, rt *Route, dgst digest.Digest) error {
	if m.store.Linked(rt.Key, dgst) {
		return nil
	}
	uctx, cancel := m.detach(ctx)
	defer cancel()
	resp, err := m.upstreamBlob(uctx, rt, dgst, http.MethodHead)
	if err != nil {
		return err
	}
	resp.Body.Close()
	return m.store.Link(rt.Key, dgst)
}

func (m *Mirror) headUpstreamBlob(w http.ResponseWriter, r *http.Request, rt *Route, dgst digest.Digest) error {
	uctx, cancel := m.detach(r.Context())
	defer cancel()
	resp, err := m.upstreamBlob(uctx, rt, dgst, http.MethodHead)
	if err != nil {
		return err
	}
	resp.Body.Close()
	w.Header().Set("Content-Type", "application/octet-stream")
	w.Header().Set("Docker-Content-Digest", dgst.String())
	if resp.ContentLength >= 0 {
		w.Header().Set("Content-Length", strconv.FormatInt(resp.ContentLength, 10))
	}
	w.WriteHeader(http.StatusOK)
	return nil
}

// upstreamBlob sends one request for a blob to rt's upstream and checks the answer.
func (m *Mirror) upstreamBlob(ctx context.Context, rt *Route, dgst digest.Digest, method string) (*http.Response, error) {
	tr, err := rt.up.blobTransport(ctx, rt.Repo)
	if err != nil {
		return nil, upstreamErr(err, rt, dgst.String())
	}
	req, err := http.NewRequestWithContext(ctx, method, rt.up.blobURL(rt.Repo, dgst.String()), nil)
	if err != nil {
		return nil, err
	}
	resp, err := (&http.Client{Transport: tr}).Do(req)
	if err != nil {
		return nil, httpx.Upstream("upstream %s: blob %s: %v", rt.up.name, dgst, err)
	}
	if err := transport.CheckError(resp, http.StatusOK); err != nil {
		resp.Body.Close()
		if upstreamStatus(err) == http.StatusNotFound {
			return nil, httpx.BlobUnknown("blob %s of %s is not known upstream", dgst, rt.Key)
		}
		return nil, upstreamErr(err, rt, dgst.String())
	}
	return resp, nil
}

// fetchBlob serves a missing blob: a plain GET gets it streamed while it is ingested, a
// ranged one is answered from the store once the blob is in.
func (m *Mirror) fetchBlob(w http.ResponseWriter, r *http.Request, rt *Route, dgst digest.Digest) error {
	var client http.ResponseWriter
	if r.Header.Get("Range") == "" {
		client = w
	}
	streamed, err := m.sharedFetch(r.Context(), rt, dgst, client, nil)
	if err != nil || streamed {
		return err
	}
	return m.serveStoredBlob(w, r, dgst)
}

// ensureBlob makes sure a blob of rt's repository is in the store.
func (m *Mirror) ensureBlob(ctx context.Context, rt *Route, dgst digest.Digest, tap func([]byte) bool) error {
	defer m.leases.Hold(dgst)()
	if _, err := m.store.StatBlob(ctx, dgst); err == nil {
		return m.ensureLinked(ctx, rt, dgst)
	}
	_, err := m.sharedFetch(ctx, rt, dgst, nil, tap)
	return err
}

// sharedFetch ingests a blob with one upstream fetch however many ask at once. The first
// caller fetches, streaming to client when it has one; the others wait for that fetch
// and find the blob in the store. streamed reports whether client got the response.
func (m *Mirror) sharedFetch(ctx context.Context, rt *Route, dgst digest.Digest, client http.ResponseWriter, tap func([]byte) bool) (streamed bool, err error) {
	m.mu.Lock()
	if f, ok := m.inflight[dgst]; ok {
		m.mu.Unlock()
		select {
		case <-f.done:
		case <-ctx.Done():
			return false, ctx.Err()
		}
		if f.err != nil {
			return false, f.err
		}
		if f.repo != rt.Key {
			return false, m.ensureLinked(ctx, rt, dgst)
		}
		return false, nil
	}
	// A fetch that finished between the caller's store miss and now has committed the
	// blob before leaving inflight: look again before fetching a second time.
	if _, err := m.store.StatBlob(ctx, dgst); err == nil {
		m.mu.Unlock()
		return false, m.ensureLinked(ctx, rt, dgst)
	}
	f := &blobFetch{done: make(chan struct{}), repo: rt.Key}
	m.inflight[dgst] = f
	m.mu.Unlock()

	// The fetch outlives a caller that goes away (others may be waiting on it), not Close.
	bctx, done := m.life.Background(ctx)
	streamed, err = m.ingestBlob(bctx, rt, dgst, client, tap)
	done()
	f.err = err
	m.mu.Lock()
	delete(m.inflight, dgst)
	m.mu.Unlock()
	close(f.done)
	return streamed, err
}

// ingestBlob copies a blob from the upstream into the store, verifying it against its
// digest, and streams it to client (when not nil) as it goes. The last chunk is held back
// until the digest is verified, so a client never receives a complete wrong blob: on a
// mismatch or a broken upstream the error is returned after headers were sent, and the
// connection is cut. streamed reports whether the response went to the client. tap, when
// not nil, is handed each chunk once it is written to the store, until it returns false.
func (m *Mirror) ingestBlob(ctx context.Context, rt *Route, dgst digest.Digest, client http.ResponseWriter, tap func([]byte) bool) (streamed bool, err error) {
	// The wait for headers is bounded by the transport (upstream_timeout); the body
	// streams for as long as it takes, but not through a silence longer than
	// upstream_idle_timeout.
	bctx, cancel := context.WithCancel(ctx)
	defer cancel()
	resp, err := m.upstreamBlob(bctx, rt, dgst, http.MethodGet)
	if err != nil {
		return false, err
	}
	defer resp.Body.Close()
	body := newIdleReader(resp.Body, m.cfg.UpstreamIdleTimeout, cancel)
	defer body.stop()
	bw, err := m.store.CreateBlob(ctx)
	if err != nil {
		return false, err
	}
	finished := false // Commit, successful or not, cleans up after itself
	defer func() {
		if !finished {
			_ = bw.Cancel(ctx)
		}
	}()
	if client != nil {
		h := client.Header()
		h.Set("Content-Type", "application/octet-stream")
		h.Set("Docker-Content-Digest", dgst.String())
		if resp.ContentLength >= 0 {
			h.Set("Content-Length", strconv.FormatInt(resp.ContentLength, 10))
		}
		client.WriteHeader(http.StatusOK)
	}
	clientOK := client != nil
	var rc *http.ResponseController
	if client != nil {
		rc = http.NewResponseController(client)
		defer func() { _ = rc.SetWriteDeadline(time.Time{}) }() // the connection may serve more requests
	}
	send := func(b []byte) {
		if clientOK {
			// A client that stops reading is dropped after client_write_timeout: the
			// store, and every request waiting on this fetch, never wait on it longer.
			_ = rc.SetWriteDeadline(time.Now().Add(m.cfg.ClientWriteTimeout))
			if _, err := client.Write(b); err != nil {
				clientOK = false // the client left or stalled; the store still gets the blob
				m.log.Warn("client dropped from a shared blob fetch", "digest", dgst, "err", err)
			}
		}
	}
	// The copy is a small pipeline so reading the upstream, the store's hashing and writing,
	// and (with a client) our own verification and the send run side by side: a reader
	// fills buffers, the store and the client side each consume every chunk. Our verifier
	// decides before the last chunk goes out; the store checks again at Commit, whose
	// fsync the client does not wait for. Without a client the store's check is the only
	// one: nothing is hashed twice.
	verifier := dgst.Verifier()
	consumers := int32(1)
	if client != nil {
		consumers = 2
	}
	const nbuf = 4
	free := make(chan *[]byte, nbuf)
	for range nbuf {
		b := httpx.Chunks.Get().(*[]byte)
		defer httpx.Chunks.Put(b)
		free <- b
	}
	type chunk struct {
		buf  *[]byte
		n    int
		refs atomic.Int32
	}
	release := func(c *chunk) {
		if c.refs.Add(-1) == 0 {
			free <- c.buf
		}
	}
	storeCh, sendCh := make(chan *chunk, nbuf), make(chan *chunk, nbuf)
	var storeErr error
	var last *chunk
	var wg sync.WaitGroup
	wg.Add(int(consumers))
	go func() {
		defer wg.Done()
		for c := range storeCh {
			if storeErr == nil {
				_, storeErr = bw.Write((*c.buf)[:c.n])
			}
			if tap != nil && storeErr == nil && !tap((*c.buf)[:c.n]) {
				tap = nil
			}
			release(c)
		}
	}()
	if client != nil {
		go func() {
			defer wg.Done()
			for c := range sendCh {
				_, _ = verifier.Write((*c.buf)[:c.n])
				if last != nil {
					send((*last.buf)[:last.n])
					release(last)
				}
				last = c
			}
		}()
	}
	var read int64
	var rerr error
	for {
		buf := <-free
		n, err := io.ReadFull(body, *buf)
		if n > 0 {
			read += int64(n)
			c := &chunk{buf: buf, n: n}
			c.refs.Store(consumers)
			storeCh <- c
			if client != nil {
				sendCh <- c
			}
		} else {
			free <- buf
		}
		if err == io.EOF || err == io.ErrUnexpectedEOF && (resp.ContentLength < 0 || read == resp.ContentLength) {
			break
		}
		if err != nil {
			rerr = err
			break
		}
	}
	close(storeCh)
	close(sendCh)
	wg.Wait()
	if rerr != nil {
		m.log.Error("upstream blob transfer failed", "repository", rt.Key, "digest", dgst, "err", rerr)
		return false, httpx.Upstream("upstream %s: blob %s: transfer failed after %d bytes: %v; nothing was stored", rt.up.name, dgst, read, rerr)
	}
	if storeErr != nil {
		return false, fmt.Errorf("store blob %s: %w", dgst, storeErr)
	}
	var pending []byte
	if last != nil {
		pending = (*last.buf)[:last.n]
	}
	if client != nil && !verifier.Verified() || (resp.ContentLength >= 0 && read != resp.ContentLength) {
		m.log.Error("upstream blob does not match its digest", "repository", rt.Key, "digest", dgst, "bytes", read)
		return false, httpx.Upstream("upstream %s sent content for blob %s that does not match its digest; nothing was stored", rt.up.name, dgst)
	}
	send(pending)
	finished = true
	if err := bw.Commit(ctx, dgst, resp.ContentLength); err != nil {
		if client == nil && errors.Is(err, storage.ErrDigestMismatch) {
			m.log.Error("upstream blob does not match its digest", "repository", rt.Key, "digest", dgst, "bytes", read)
			return false, httpx.Upstream("upstream %s sent content for blob %s that does not match its digest; nothing was stored", rt.up.name, dgst)
		}
		// With a client, it got verified bytes; only the store missed them.
		return client != nil, err
	}
	if err := m.store.Link(rt.Key, dgst); err != nil {
		return client != nil, err
	}
	return client != nil, nil
}
