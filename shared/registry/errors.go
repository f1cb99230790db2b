package registry

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"log/slog"
	"net/http"
	"strconv"
	"strings"
	"time"
	"unicode/utf8"

	"github.com/airlock-registry/airlock/shared/repo"
)

// Code is an error code of the distribution spec
// (https://github.com/opencontainers/distribution-spec/blob/main/spec.md#error-codes).
type Code string

// The spec's error codes, plus UNKNOWN for internal failures (as distribution does).
const (
	CodeBlobUnknown         Code = "BLOB_UNKNOWN"
	CodeBlobUploadInvalid   Code = "BLOB_UPLOAD_INVALID"
	CodeBlobUploadUnknown   Code = "BLOB_UPLOAD_UNKNOWN"
	CodeDigestInvalid       Code = "DIGEST_INVALID"
	CodeManifestBlobUnknown Code = "MANIFEST_BLOB_UNKNOWN"
	CodeManifestInvalid     Code = "MANIFEST_INVALID"
	CodeManifestUnknown     Code = "MANIFEST_UNKNOWN"
	CodeNameInvalid         Code = "NAME_INVALID"
	CodeNameUnknown         Code = "NAME_UNKNOWN"
	CodeSizeInvalid         Code = "SIZE_INVALID"
	CodeUnauthorized        Code = "UNAUTHORIZED"
	CodeDenied              Code = "DENIED"
	CodeUnsupported         Code = "UNSUPPORTED"
	CodeTooManyRequests     Code = "TOOMANYREQUESTS"
	// CodeUnavailable is distribution's code for 503 Service Unavailable
	// (a proxy's upstream is unreachable, or a cache fill is in progress).
	CodeUnavailable Code = "UNAVAILABLE"
	CodeUnknown     Code = "UNKNOWN"
)

// Error is an error a handler returns to be written as the OCI error envelope.
type Error struct {
	Status  int
	Code    Code
	Message string
	Detail  any
	// Header holds extra response headers (Range on a 416, Retry-After, ...).
	Header http.Header
}

func (e *Error) Error() string { return fmt.Sprintf("%d %s: %s", e.Status, e.Code, e.Message) }

func apiErr(status int, code Code, format string, args ...any) *Error {
	return &Error{Status: status, Code: code, Message: fmt.Sprintf(format, args...)}
}

// notAllowed is the 405 for method on where: its Allow header (RFC 9110,
// 15.5.6) and its message list the methods that are allowed.
func notAllowed(method, where string, allow ...string) *Error {
	a := strings.Join(allow, ", ")
	e := apiErr(http.StatusMethodNotAllowed, CodeUnsupported, "method %s not allowed on %s (%s)", method, where, a)
	e.Header = http.Header{"Allow": {a}}
	return e
}

// notFoundMsg is the message of a repository's *NotFoundError among errs, if it has one.
func notFoundMsg(errs []error) string {
	for _, err := range errs {
		var nf *repo.NotFoundError
		if errors.As(err, &nf) && nf.Msg != "" {
			return nf.Msg
		}
	}
	return ""
}

// fromRepo maps the errors of package repo to API errors: the one place
// where a repository's refusal or its upstream's trouble becomes a status and
// code. "Not found" is translated by each handler (manifest, blob or name).
func fromRepo(err error) *Error {
	var (
		denied  *repo.DeniedError
		unavail *repo.UnavailableError
		limited *repo.RateLimitedError
		bad     *repo.BadUpstreamError
		nf      *repo.NotFoundError
	)
	switch {
	case errors.As(err, &denied):
		return apiErr(http.StatusForbidden, CodeDenied, "%s", denied.Msg)
	case errors.As(err, &unavail):
		status := http.StatusServiceUnavailable
		if unavail.Timeout {
			status = http.StatusGatewayTimeout
		}
		e := apiErr(status, CodeUnavailable, "%s", unavail.Msg)
		if unavail.RetryAfter > 0 {
			e.Header = http.Header{"Retry-After": {strconv.Itoa(int(max(unavail.RetryAfter.Round(time.Second), time.Second) / time.Second))}}
		}
		return e
	case errors.As(err, &limited):
		e := apiErr(http.StatusTooManyRequests, CodeTooManyRequests, "%s", limited.Msg)
		if limited.RetryAfter != "" {
			e.Header = http.Header{"Retry-After": {limited.RetryAfter}}
		}
		return e
	case errors.As(err, &bad):
		return apiErr(http.StatusBadGateway, CodeUnknown, "%s", bad.Msg)
	case errors.As(err, &nf):
		return apiErr(http.StatusNotFound, CodeNameUnknown, "%s", nf.Error())
	}
	return nil
}

// writeError is the one place that writes the {"errors":[...]} envelope.
func writeError(w http.ResponseWriter, r *http.Request, log *slog.Logger, err error) {
	var e *Error
	if !errors.As(err, &e) {
		e = fromRepo(err)
	}
	if e == nil && errors.Is(err, context.Canceled) && r.Context().Err() != nil {
		// The client went away: nobody reads this answer; not a server error.
		log.DebugContext(r.Context(), "request cancelled by the client", "method", r.Method, "path", r.URL.Path)
		e = &Error{Status: 499, Code: CodeUnknown, Message: "request cancelled"}
	}
	if e == nil {
		log.ErrorContext(r.Context(), "request failed", "method", r.Method, "path", r.URL.Path, "err", err)
		e = &Error{Status: http.StatusInternalServerError, Code: CodeUnknown, Message: "internal error"}
	}
	for k, vs := range e.Header {
		for _, v := range vs {
			w.Header().Add(k, v)
		}
	}
	type item struct {
		Code    Code   `json:"code"`
		Message string `json:"message"`
		Detail  any    `json:"detail,omitempty"`
	}
	body, _ := json.Marshal(struct {
		Errors []item `json:"errors"`
	}{[]item{{e.Code, e.Message, e.Detail}}})
	w.Header().Set("Content-Type", "application/json")
	w.Header().Set("Content-Length", strconv.Itoa(len(body)))
	w.WriteHeader(e.Status)
	if r.Method != http.MethodHead {
		_, _ = w.Write(body)
	}
}

// echoMax is how many bytes of a client's value an error message repeats.
const echoMax = 64

// echo returns s as an error message repeats it: whole when it is at most
// echoMax bytes, else its first echoMax bytes (cut at a rune boundary) and
// "…".
func echo(s string) string {
	if len(s) <= echoMax {
		return s
	}
	n := echoMax
	for n > 0 && !utf8.RuneStart(s[n]) {
		n--
	}
	return s[:n] + "…"
}
