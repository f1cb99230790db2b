package main

import (
	"bytes"
	"errors"
	"flag"
	"strings"
	"testing"
)

// TestRunErrors: the command line and environment errors stop the ingress
// before it touches a store, each naming what to set.
func TestRunErrors(t *testing.T) {
	var out bytes.Buffer
	if err := run([]string{"-version"}, &out); err != nil || !strings.HasPrefix(out.String(), "airlock-ingress ") {
		t.Errorf("-version: %v %q", err, out.String())
	}
	if err := run([]string{"-h"}, &out); !errors.Is(err, flag.ErrHelp) {
		t.Errorf("-h: %v, want flag.ErrHelp (exit 0)", err)
	}
	if err := run([]string{"-bogus"}, &out); err == nil || errors.Is(err, flag.ErrHelp) {
		t.Errorf("-bogus: %v, want an error", err)
	}
	if err := run([]string{"serve"}, &out); err == nil || !strings.Contains(err.Error(), "unexpected arguments") {
		t.Errorf("an argument: %v", err)
	}
	full := map[string]string{"AIRLOCK_TABLE": "t", "AIRLOCK_BUCKET": "b", "AIRLOCK_CONFIG": "repositories: [{name: local, kind: hosted}]\n"}
	for _, unset := range []string{"AIRLOCK_TABLE", "AIRLOCK_BUCKET", "AIRLOCK_CONFIG"} {
		for k, v := range full {
			if k == unset {
				v = ""
			}
			t.Setenv(k, v)
		}
		err := run(nil, &out)
		if err == nil || !strings.Contains(err.Error(), unset+" is not set") || !strings.Contains(err.Error(), "the api function's environment") {
			t.Errorf("without %s: %v, want it named with the way out", unset, err)
		}
	}
}
