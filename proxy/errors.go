package proxy

import (
	"encoding/json"
	"fmt"
	"net/http"
	"strconv"
)

// regError is an error a registry client sees: an HTTP status and an OCI error code.
// It is rendered in exactly one place, writeError.
type regError struct {
	Status  int
	Code    string
	Message string
	Detail  any
	// RetryAfter, when set, becomes a Retry-After header (seconds).
	RetryAfter int
	// Header are extra response headers (WWW-Authenticate).
	Header map[string]string
}

func (e *regError) Error() string { return fmt.Sprintf("%s: %s", e.Code, e.Message) }

func errManifestUnknown(format string, a ...any) *regError {
	return &regError{Status: http.StatusNotFound, Code: "MANIFEST_UNKNOWN", Message: fmt.Sprintf(format, a...)}
}

func errBlobUnknown(format string, a ...any) *regError {
	return &regError{Status: http.StatusNotFound, Code: "BLOB_UNKNOWN", Message: fmt.Sprintf(format, a...)}
}

func errNameUnknown(format string, a ...any) *regError {
	return &regError{Status: http.StatusNotFound, Code: "NAME_UNKNOWN", Message: fmt.Sprintf(format, a...)}
}

func errDenied(format string, a ...any) *regError {
	return &regError{Status: http.StatusForbidden, Code: "DENIED", Message: fmt.Sprintf(format, a...)}
}

func errUnsupported(format string, a ...any) *regError {
	return &regError{Status: http.StatusMethodNotAllowed, Code: "UNSUPPORTED", Message: fmt.Sprintf(format, a...)}
}

func errDigestInvalid(format string, a ...any) *regError {
	return &regError{Status: http.StatusBadRequest, Code: "DIGEST_INVALID", Message: fmt.Sprintf(format, a...)}
}

func errNameInvalid(format string, a ...any) *regError {
	return &regError{Status: http.StatusBadRequest, Code: "NAME_INVALID", Message: fmt.Sprintf(format, a...)}
}

func errRangeInvalid(format string, a ...any) *regError {
	return &regError{Status: http.StatusRequestedRangeNotSatisfiable, Code: "RANGE_INVALID", Message: fmt.Sprintf(format, a...)}
}

func errTooManyRequests(format string, a ...any) *regError {
	return &regError{Status: http.StatusTooManyRequests, Code: "TOOMANYREQUESTS", Message: fmt.Sprintf(format, a...)}
}

// errUpstream is a failure to get content from an upstream when nothing cached can stand in.
func errUpstream(format string, a ...any) *regError {
	return &regError{Status: http.StatusBadGateway, Code: "UNKNOWN", Message: fmt.Sprintf(format, a...)}
}

func errInternal(format string, a ...any) *regError {
	return &regError{Status: http.StatusInternalServerError, Code: "UNKNOWN", Message: fmt.Sprintf(format, a...)}
}

type errorEnvelope struct {
	Errors []errorEntry `json:"errors"`
}

type errorEntry struct {
	Code    string `json:"code"`
	Message string `json:"message"`
	Detail  any    `json:"detail,omitempty"`
}

// writeError renders any error as the OCI error envelope. Errors that are not a
// *regError are internal and are not described to the client beyond their text.
func writeError(w http.ResponseWriter, r *http.Request, err error) {
	re, ok := err.(*regError)
	if !ok {
		re = errInternal("%v", err)
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
	w.WriteHeader(re.Status)
	if r.Method == http.MethodHead {
		return
	}
	_ = json.NewEncoder(w).Encode(errorEnvelope{Errors: []errorEntry{{Code: re.Code, Message: re.Message, Detail: re.Detail}}})
}
