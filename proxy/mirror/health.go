package mirror

import (
	"context"
	"errors"
	"fmt"
	"io"
	"net/http"
	"strconv"
	"sync/atomic"
	"time"
)

// How an upstream is doing, as far as the requests it was sent tell: the Retry-After of
// its last 429, and whether it is in a back-off after a network failure.
type health struct {
	retryAfter atomic.Int64 // seconds, from the last 429
	downUntil  atomic.Int64 // unix nanoseconds; 0: up
}

// defaultRetryAfter is what a client is told to wait when a 429 upstream did not say.
const defaultRetryAfter = 30

// saw records what a response says about the upstream's health.
func (h *health) saw(resp *http.Response) {
	if resp.StatusCode != http.StatusTooManyRequests {
		return
	}
	secs := int64(0)
	if v := resp.Header.Get("Retry-After"); v != "" {
		if n, err := strconv.ParseInt(v, 10, 64); err == nil && n > 0 {
			secs = n
		} else if t, err := http.ParseTime(v); err == nil {
			secs = int64(time.Until(t).Seconds()) + 1
		}
	}
	h.retryAfter.Store(secs)
}

// retryAfterSecs is how long a client should wait before asking again for what a
// rate-limited upstream refused.
func (h *health) retryAfterSecs() int {
	if s := h.retryAfter.Load(); s > 0 {
		return int(s)
	}
	return defaultRetryAfter
}

// markDown starts a back-off: the upstream is not asked again until now+d.
func (h *health) markDown(now time.Time, d time.Duration) {
	if d > 0 {
		h.downUntil.Store(now.Add(d).UnixNano())
	}
}

// down reports whether the upstream is in a back-off at now.
func (h *health) down(now time.Time) bool {
	u := h.downUntil.Load()
	return u != 0 && now.UnixNano() < u
}

// markUp ends a back-off early: the upstream answered.
func (h *health) markUp() { h.downUntil.Store(0) }

// idleReader aborts a transfer (through abort, which cancels the request) when a read
// waited d for a byte: a body is never bounded as a whole, only by the upstream's
// silences. Time spent not reading (a slow client or store holding the buffers) does
// not count.
type idleReader struct {
	r     io.Reader
	d     time.Duration
	t     *time.Timer
	fired atomic.Bool
}

func newIdleReader(r io.Reader, d time.Duration, abort func()) *idleReader {
	ir := &idleReader{r: r, d: d}
	ir.t = time.AfterFunc(d, func() { ir.fired.Store(true); abort() })
	ir.t.Stop()
	return ir
}

func (ir *idleReader) Read(p []byte) (int, error) {
	ir.t.Reset(ir.d)
	n, err := ir.r.Read(p)
	ir.t.Stop()
	if err != nil && err != io.EOF && ir.fired.Load() {
		err = fmt.Errorf("no bytes for %s (upstream_idle_timeout): %w", ir.d, err)
	}
	return n, err
}

func (ir *idleReader) stop() { ir.t.Stop() }

// noteResult starts a back-off of up after a network failure or timeout (no HTTP answer
// at all), and ends one when it answered.
func (m *Mirror) noteResult(up *upstream, err error) {
	switch {
	case err == nil || upstreamStatus(err) != 0:
		up.health.markUp()
	case errors.Is(err, context.Canceled):
		// The server is closing: says nothing about the upstream.
	case networkFailure(err):
		m.log.Warn("upstream unreachable, backing off", "upstream", up.name, "for", m.cfg.UpstreamBackoff, "err", err)
		up.health.markDown(m.now(), m.cfg.UpstreamBackoff)
	}
}

// networkFailure is an upstream error that is no answer from it: refused, reset, timed
// out. A refusal of ours (a limit) is not.
func networkFailure(err error) bool {
	var le *limitError
	return upstreamStatus(err) == 0 && !errors.As(err, &le)
}

// limitError is this proxy's own refusal of what an upstream sent: content over a
// configured limit. It is an answer, not the upstream's trouble: nothing stands in.
type limitError struct{ msg string }

func (e *limitError) Error() string { return e.msg }

// limitManifest makes a manifest response fail once it is larger than max bytes, before
// it is read whole: at once when Content-Length says so, else when the byte past max is
// read.
func limitManifest(resp *http.Response, max int64) error {
	tooBig := func(size string) error {
		return &limitError{fmt.Sprintf("manifest %s%s is over limits.manifest_bytes (%d bytes)", resp.Request.URL.Path, size, max)}
	}
	if resp.ContentLength > max {
		resp.Body.Close()
		return tooBig(fmt.Sprintf(" of %d bytes", resp.ContentLength))
	}
	resp.Body = &limitedBody{ReadCloser: resp.Body, left: max, err: tooBig("")}
	return nil
}

type limitedBody struct {
	io.ReadCloser
	left int64
	err  error
}

func (b *limitedBody) Read(p []byte) (int, error) {
	if b.left < 0 {
		return 0, b.err
	}
	if int64(len(p)) > b.left+1 {
		p = p[:b.left+1]
	}
	n, err := b.ReadCloser.Read(p)
	if b.left -= int64(n); b.left < 0 {
		return 0, b.err
	}
	return n, err
}
