package main

import (
	"fmt"
	"os"
	"strconv"

	"github.com/airlock-registry/airlock/shared/registry"
)

// verifyInlineFunctionURL is the inline verification limit behind a
// function URL: about 1 GiB hashes within its 15 minutes.
const verifyInlineFunctionURL = 1 << 30

// verifyInline reads AIRLOCK_VERIFY_INLINE: the largest direct-to-S3 upload
// (bytes) the completing request verifies itself; larger ones are handed
// to the verifier (the proxyfetch function). Unset or empty: the front
// door's default (registry.DefaultVerifyInline behind the HTTP API,
// verifyInlineFunctionURL behind a function URL); -1: every direct upload
// is handed off (tests/lambda sets it to run the hand-off with small
// blobs). A limit that hands blobs off needs a verifier to hand them to
// (haveVerifier: AIRLOCK_PROXYFETCH_FUNCTION is set): a goroutine of a
// Lambda function is frozen once its response is sent.
func verifyInline(door string, haveVerifier bool) (int64, error) {
	v := os.Getenv("AIRLOCK_VERIFY_INLINE")
	if v == "" {
		if door == frontDoorFunctionURL {
			return verifyInlineFunctionURL, nil
		}
		return registry.DefaultVerifyInline, nil
	}
	n, err := strconv.ParseInt(v, 10, 64)
	if err != nil || n == 0 || n < -1 {
		return 0, fmt.Errorf("AIRLOCK_VERIFY_INLINE=%q: want a byte count (the largest direct upload verified in the request) or -1 (hand every one to the verifier)", v)
	}
	if !haveVerifier {
		return 0, fmt.Errorf("AIRLOCK_VERIFY_INLINE=%q hands direct uploads to the verifier, but AIRLOCK_PROXYFETCH_FUNCTION (the verifier function) is unset: set it, or unset AIRLOCK_VERIFY_INLINE", v)
	}
	return n, nil
}
