package main

import "testing"

func TestFrontDoor(t *testing.T) {
	for _, tc := range []struct {
		env, want string
		ok        bool
	}{
		{"", "HttpApi", true},
		{"HttpApi", "HttpApi", true},
		{"FunctionUrl", "FunctionUrl", true},
		{"functionurl", "", false},
		{"CloudFront", "", false},
	} {
		t.Setenv("AIRLOCK_FRONT_DOOR", tc.env)
		got, err := frontDoor()
		if (err == nil) != tc.ok || got != tc.want {
			t.Errorf("AIRLOCK_FRONT_DOOR=%q: got %q, %v; want %q (ok %v)", tc.env, got, err, tc.want, tc.ok)
		}
	}
}
