// Package httpx holds the HTTP pieces every goldproxy handler shares: the one renderer
// of OCI error envelopes, the response writer that knows whether headers went out, and
// request ids. It knows nothing of registries, upstreams or policies, and never decides
// what a client may see: it only says it the one way the distribution spec allows.
package httpx

import (
	"encoding/json"
	"errors"
	"fmt"
	"net/http"
	"strconv"
	"strings"
)

// Error is an error a registry client sees: an HTTP status and an OCI error code.
// It is rendered in exactly one place, WriteError.
type Error struct {
	Status  int
	Code    string
	Message string
	Detail  any
	// RetryAfter, when set, becomes a Retry-After header (seconds).
	RetryAfter int
	// Header are extra response headers (WWW-Authenticate).
	Header map[string]string
	// Reason, when set, replaces the status line's reason phrase of a HEAD answer:
	// clients that resolve with HEAD (containerd, CRI, ctr) print only the status line.
	Reason string
}

func (e *Error) Error() string { return fmt.Sprintf("%s: %s", e.Code, e.Message) }

// ManifestUnknown is the ManifestUnknown error.
func ManifestUnknown(format string, a ...any) *Error {
	return &Error{Status: http.StatusNotFound, Code: "MANIFEST_UNKNOWN", Message: fmt.Sprintf(format, a...)}
}

// BlobUnknown is the BlobUnknown error.
func BlobUnknown(format string, a ...any) *Error {
	return &Error{Status: http.StatusNotFound, Code: "BLOB_UNKNOWN", Message: fmt.Sprintf(format, a...)}
}

// NameUnknown is the NameUnknown error.
func NameUnknown(format string, a ...any) *Error {
	return &Error{Status: http.StatusNotFound, Code: "NAME_UNKNOWN", Message: fmt.Sprintf(format, a...)}
}

// Denied is the Denied error.
func Denied(format string, a ...any) *Error {
	return &Error{Status: http.StatusForbidden, Code: "DENIED", Message: fmt.Sprintf(format, a...)}
}

// Unsupported is the Unsupported error.
func Unsupported(format string, a ...any) *Error {
	return &Error{Status: http.StatusMethodNotAllowed, Code: "UNSUPPORTED", Message: fmt.Sprintf(format, a...)}
}

// DigestInvalid is the DigestInvalid error.
func DigestInvalid(format string, a ...any) *Error {
	return &Error{Status: http.StatusBadRequest, Code: "DIGEST_INVALID", Message: fmt.Sprintf(format, a...)}
}

// NameInvalid is the NameInvalid error.
func NameInvalid(format string, a ...any) *Error {
	return &Error{Status: http.StatusBadRequest, Code: "NAME_INVALID", Message: fmt.Sprintf(format, a...)}
}

// RangeInvalid is the RangeInvalid error.
func RangeInvalid(format string, a ...any) *Error {
	return &Error{Status: http.StatusRequestedRangeNotSatisfiable, Code: "RANGE_INVALID", Message: fmt.Sprintf(format, a...)}
}

// TooManyRequests is the TooManyRequests error.
func TooManyRequests(format string, a ...any) *Error {
	return &Error{Status: http.StatusTooManyRequests, Code: "TOOMANYREQUESTS", Message: fmt.Sprintf(format, a...)}
}

// Upstream is a failure to get content from an upstream when nothing cached can stand in.
func Upstream(format string, a ...any) *Error {
	return &Error{Status: http.StatusBadGateway, Code: "UNKNOWN", Message: fmt.Sprintf(format, a...)}
}

// Internal is the Internal error.
func Internal(format string, a ...any) *Error {
	return &Error{Status: http.StatusInternalServerError, Code: "UNKNOWN", Message: fmt.Sprintf(format, a...)}
}

type errorEnvelope struct {
	Errors []errorEntry `json:"errors"`
}

type errorEntry struct {
	Code    string `json:"code"`
	Message string `json:"message"`
	Detail  any    `json:"detail,omitempty"`
}

// WriteError renders any error as the OCI error envelope. Errors that are not an
// *Error are internal and are not described to the client beyond their text.
func WriteError(w http.ResponseWriter, r *http.Request, err error) {
	var re *Error
	if !errors.As(err, &re) {
		re = Internal("%v", err)
	}
	h := w.Header()
	h.Set("Content-Type", "application/json")
	h.Del("Content-Length")
	h.Del("Docker-Content-Digest")
	for k, v := range re.Header {
		h.Set(k, v)
	}
	if re.RetryAfter > 0 {
		h.Set("Retry-After", strconv.Itoa(re.RetryAfter))
	}
	if r.Method == http.MethodHead && re.Reason != "" && writeStatusLine(w, r, re.Status, re.Reason) {
		return
	}
	w.WriteHeader(re.Status)
	if r.Method == http.MethodHead {
		return
	}
	_ = json.NewEncoder(w).Encode(errorEnvelope{Errors: []errorEntry{{Code: re.Code, Message: re.Message, Detail: re.Detail}}})
}

// writeStatusLine answers an HTTP/1.x HEAD itself, with reason as the status line's
// reason phrase and the headers already set; it reports false when it cannot (HTTP/2,
// or the connection cannot be taken over), and the caller answers as usual.
func writeStatusLine(w http.ResponseWriter, r *http.Request, status int, reason string) bool {
	if r.ProtoMajor != 1 {
		return false
	}
	conn, buf, err := http.NewResponseController(w).Hijack()
	if err != nil {
		return false
	}
	defer conn.Close()
	var b strings.Builder
	fmt.Fprintf(&b, "HTTP/1.1 %d %s\r\n", status, phrase(reason))
	h := w.Header().Clone()
	h.Set("Content-Length", "0")
	h.Set("Connection", "close")
	_ = h.Write(&b)
	b.WriteString("\r\n")
	_, _ = buf.WriteString(b.String())
	_ = buf.Flush()
	return true
}

// phrase makes s a reason phrase: printable ASCII on one line, bounded.
func phrase(s string) string {
	out := make([]byte, 0, len(s))
	for i := 0; i < len(s) && len(out) < 300; i++ {
		c := s[i]
		switch {
		case c == '\t' || (c >= 0x20 && c < 0x7f):
			out = append(out, c)
		case c >= 0x80 && (i == 0 || s[i-1] < 0x80):
			out = append(out, '?')
		}
	}
	return string(out)
}
