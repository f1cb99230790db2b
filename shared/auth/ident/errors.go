package ident

import (
	"context"
	"errors"
	"fmt"

	"github.com/airlock-registry/airlock/shared/storage"
)

// storeErr wraps the error of a store call that carried no secret: the
// stores' error texts name the group and key (user names, token ids), and
// quote the Value only of conditional writes, which never hold a secret
// where storeErr is used.
func storeErr(op string, err error) error {
	return fmt.Errorf("ident: %s: %w", op, err)
}

// sealedError is the error of a store write whose Value held a secret (a
// password hash, a token hash): the store's own text may quote the Value
// (and a conflict's text the stored one), so it is dropped; only its kind
// remains in the message. errors.Is still sees through it (storage
// sentinels, context errors); errors.As and Unwrap do not, so nothing can
// print the text by accident.
type sealedError struct {
	msg   string
	cause error
}

func (e *sealedError) Error() string { return e.msg }

// Is reports whether the sealed cause is target.
func (e *sealedError) Is(target error) bool { return errors.Is(e.cause, target) }

// sealed returns err as a sealedError: "ident: <op>: storage error (<kind>)",
// kind being the storage sentinel, the context error or the AWS error code.
func sealed(op string, err error) error {
	kind := "unknown"
	var coded interface{ ErrorCode() string }
	switch {
	case errors.Is(err, storage.ErrConflict):
		kind = "condition failed"
	case errors.Is(err, storage.ErrNotFound):
		kind = "not found"
	case errors.Is(err, context.Canceled):
		kind = "context canceled"
	case errors.Is(err, context.DeadlineExceeded):
		kind = "context deadline exceeded"
	case errors.As(err, &coded):
		kind = sanitizeCode(coded.ErrorCode())
	}
	return &sealedError{msg: "ident: " + op + ": storage error (" + kind + ")", cause: err}
}

// sanitizeCode keeps an error code to letters, digits and ".:_-" (AWS codes
// are like "ProvisionedThroughputExceededException"), at most 64 bytes.
func sanitizeCode(c string) string {
	b := make([]byte, 0, min(len(c), 64))
	for i := 0; i < len(c) && len(b) < 64; i++ {
		x := c[i]
		if x >= 'a' && x <= 'z' || x >= 'A' && x <= 'Z' || x >= '0' && x <= '9' || x == '.' || x == ':' || x == '_' || x == '-' {
			b = append(b, x)
		}
	}
	if len(b) == 0 {
		return "unknown"
	}
	return string(b)
}
