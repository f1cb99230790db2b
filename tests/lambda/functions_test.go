package lambda_test

import (
	"context"
	"path/filepath"
	"sync"
	"testing"
)

// built holds the bootstraps of the other functions (proxyfetch, purge),
// built on first use so that only the tests running them pay the link.
var built struct {
	mu   sync.Mutex
	bins map[string]string
}

// functionBootstrap builds functions/<name> once per test binary, as
// suite.dir/<name>/bootstrap (buildFunction).
func functionBootstrap(t *testing.T, name string) string {
	t.Helper()
	built.mu.Lock()
	defer built.mu.Unlock()
	if b, ok := built.bins[name]; ok {
		return b
	}
	b, err := buildFunction(context.Background(), suite.root, filepath.Join(suite.dir, name), name)
	if err != nil {
		t.Fatal(err)
	}
	if built.bins == nil {
		built.bins = map[string]string{}
	}
	built.bins[name] = b
	return b
}

// startNamed runs functions/<name> under its own emulator with the
// functions' environment (functionEnv) plus extraEnv (later values win),
// stopped when t ends.
func startNamed(t *testing.T, name string, extraEnv ...string) *function {
	t.Helper()
	bootstrap := suite.bootstrap
	if name != "api" {
		bootstrap = functionBootstrap(t, name)
	}
	fn, err := startFunction(context.Background(), suite.rie, bootstrap, extraEnv)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(fn.stop)
	return fn
}
