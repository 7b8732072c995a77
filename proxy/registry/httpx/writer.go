package httpx

import (
	"context"
	"crypto/rand"
	"encoding/hex"
	"io"
	"net/http"
	"regexp"
	"sync"
)

// ChunkSize is the unit blobs move in: from the upstream to the store and the client,
// and from the store to the client.
const ChunkSize = 1 << 20

// Chunks hands out ChunkSize buffers.
var Chunks = sync.Pool{New: func() any { b := make([]byte, ChunkSize); return &b }}

// ResponseWriter remembers whether headers went out and how many bytes followed.
type ResponseWriter struct {
	http.ResponseWriter
	code  int
	wrote bool
	n     int64
}

// NewResponseWriter wraps w.
func NewResponseWriter(w http.ResponseWriter) *ResponseWriter {
	return &ResponseWriter{ResponseWriter: w}
}

// WriteHeader implements http.ResponseWriter.
func (w *ResponseWriter) WriteHeader(code int) {
	if !w.wrote {
		w.code, w.wrote = code, true
	}
	w.ResponseWriter.WriteHeader(code)
}

// Write implements http.ResponseWriter.
func (w *ResponseWriter) Write(b []byte) (int, error) {
	if !w.wrote {
		w.code, w.wrote = http.StatusOK, true
	}
	n, err := w.ResponseWriter.Write(b)
	w.n += int64(n)
	return n, err
}

// Status is the status sent (200 when nothing was written yet).
func (w *ResponseWriter) Status() int {
	if !w.wrote {
		return http.StatusOK
	}
	return w.code
}

// Wrote reports whether headers went out: from then on an error can only cut the
// connection, never become a second status.
func (w *ResponseWriter) Wrote() bool { return w.wrote }

// Bytes is how many body bytes were written.
func (w *ResponseWriter) Bytes() int64 { return w.n }

// Unwrap lets http.ResponseController reach the underlying writer.
func (w *ResponseWriter) Unwrap() http.ResponseWriter { return w.ResponseWriter }

// ReadFrom copies blob bodies in large chunks: net/http's own copy uses 32 KiB writes,
// a syscall each, which dominates serving a cached layer.
func (w *ResponseWriter) ReadFrom(r io.Reader) (int64, error) {
	if !w.wrote {
		w.code, w.wrote = http.StatusOK, true
	}
	buf := Chunks.Get().(*[]byte)
	defer Chunks.Put(buf)
	n, err := io.CopyBuffer(writerOnly{w.ResponseWriter}, r, *buf)
	w.n += n
	return n, err
}

// writerOnly hides a writer's ReadFrom so io.CopyBuffer uses the buffer it is given.
type writerOnly struct{ io.Writer }

type ctxKey int

const requestIDKey ctxKey = 0

// reRequestID is what a client's X-Request-Id may be to be kept (and logged and echoed).
var reRequestID = regexp.MustCompile(`^[A-Za-z0-9._:-]{1,64}$`)

// WithRequestID returns r's context carrying the request id: the client's X-Request-Id
// when it is short and plain, else a new random one.
func WithRequestID(r *http.Request) (context.Context, string) {
	id := r.Header.Get("X-Request-Id")
	if !reRequestID.MatchString(id) {
		var b [8]byte
		_, _ = rand.Read(b[:])
		id = hex.EncodeToString(b[:])
	}
	return context.WithValue(r.Context(), requestIDKey, id), id
}

// RequestID is the id of the request ctx belongs to, or "".
func RequestID(ctx context.Context) string {
	id, _ := ctx.Value(requestIDKey).(string)
	return id
}
