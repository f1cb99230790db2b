package main

import "testing"

func TestMaxBody(t *testing.T) {
	for _, tc := range []struct {
		env  string
		want int64
		ok   bool
	}{
		{"", defaultMaxBody, true},
		{"1048576", 1 << 20, true},
		{"4706379", 4706379, true},
		{"4706380", 0, false}, // over the invoke payload: never reaches the function
		{"0", 0, false},
		{"-1", 0, false},
		{"6MB", 0, false},
	} {
		t.Setenv("AIRLOCK_MAX_BODY", tc.env)
		got, err := maxBody()
		if (err == nil) != tc.ok || got != tc.want {
			t.Errorf("AIRLOCK_MAX_BODY=%q: got %d, %v; want %d (ok %v)", tc.env, got, err, tc.want, tc.ok)
		}
	}
	// The published figure (README): base64 of it plus 16 KiB fits 6 MiB + 100 bytes.
	if defaultMaxBody != 4706379 || (defaultMaxBody+2)/3*4+envelopeAllowance > lambdaPayloadLimit {
		t.Errorf("defaultMaxBody = %d", defaultMaxBody)
	}
}
