package main

import (
	"testing"

	"github.com/airlock-registry/airlock/shared/registry"
)

func TestVerifyInline(t *testing.T) {
	for _, tc := range []struct {
		env, door string
		verifier  bool
		want      int64
		ok        bool
	}{
		{"", frontDoorHTTPAPI, false, registry.DefaultVerifyInline, true},
		{"", frontDoorFunctionURL, false, verifyInlineFunctionURL, true},
		{"-1", frontDoorHTTPAPI, true, -1, true},
		{"1048576", frontDoorFunctionURL, true, 1 << 20, true},
		{"-1", frontDoorHTTPAPI, false, 0, false}, // nothing to hand off to
		{"0", frontDoorHTTPAPI, true, 0, false},
		{"-2", frontDoorHTTPAPI, true, 0, false},
		{"200MiB", frontDoorHTTPAPI, true, 0, false},
	} {
		t.Setenv("AIRLOCK_VERIFY_INLINE", tc.env)
		got, err := verifyInline(tc.door, tc.verifier)
		if (err == nil) != tc.ok || got != tc.want {
			t.Errorf("AIRLOCK_VERIFY_INLINE=%q (%s, verifier %v): got %d, %v; want %d (ok %v)", tc.env, tc.door, tc.verifier, got, err, tc.want, tc.ok)
		}
	}
}
