package repo

import (
	"errors"
	"fmt"
	"time"

	"github.com/airlock-registry/airlock/shared/storage"
)

// The errors a Repository returns. The registry maps each to one API answer
// (in one place); a repository never writes HTTP itself.

// NotFoundError is content a repository does not have. It wraps
// storage.ErrNotFound, so errors.Is(err, storage.ErrNotFound) holds; Msg,
// when set, says more than "unknown" (e.g. "not found upstream").
type NotFoundError struct{ Msg string }

func (e *NotFoundError) Error() string {
	if e.Msg == "" {
		return "not found"
	}
	return e.Msg
}

func (e *NotFoundError) Unwrap() error { return storage.ErrNotFound }

// DeniedError is an operation the repository refuses (a push to a proxy, a
// write to a read-only repository, a redeploy under the policy).
type DeniedError struct{ Msg string }

func (e *DeniedError) Error() string { return e.Msg }

func denied(format string, args ...any) error { return &DeniedError{Msg: fmt.Sprintf(format, args...)} }

// UnavailableError is content that cannot be served now: the upstream is
// down, blocked after repeated failures, or a cache fill is still running.
// RetryAfter, when set, is when to try again.
type UnavailableError struct {
	Msg        string
	RetryAfter time.Duration
	// Timeout is true when the upstream did not answer in time (504).
	Timeout bool
}

func (e *UnavailableError) Error() string { return e.Msg }

// RateLimitedError is the upstream's 429, passed on with its Retry-After.
type RateLimitedError struct {
	Msg        string
	RetryAfter string
}

func (e *RateLimitedError) Error() string { return e.Msg }

// BadUpstreamError is an upstream answer that cannot be used (bytes that do
// not match their digest, an invalid manifest): nothing was stored.
type BadUpstreamError struct{ Msg string }

func (e *BadUpstreamError) Error() string { return e.Msg }

// RedirectError means "fetch the content at URL instead" (a proxy's
// onTimeout: redirect).
type RedirectError struct{ URL string }

func (e *RedirectError) Error() string { return "redirect to " + e.URL }

// notFound reports whether err means "not there".
func notFound(err error) bool { return errors.Is(err, storage.ErrNotFound) }
