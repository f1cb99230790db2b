//go:build e2e

package e2e

import (
	"context"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"
)

// Pinned tools, installed with `GOBIN=<root>/bin go install PKG@VERSION` when
// <root>/bin/<name> is missing. Keep in step with the Makefile's e2e-tools block.
var goTools = map[string]string{
	"crane":       "github.com/google/go-containerregistry/cmd/crane@v0.22.1",
	"regctl":      "github.com/regclient/regclient/cmd/regctl@v0.11.7",
	"oras":        "oras.land/oras/cmd/oras@v1.3.6",
	"conformance": "github.com/opencontainers/distribution-spec/conformance@v0.0.0-20260831232431-97274622c111",
}

var (
	rootDir     string // repository root (dir with go.mod)
	binDir      string // <root>/bin
	localdevBin string // <root>/bin/localdev, built once by TestMain

	toolMu sync.Mutex
)

func TestMain(m *testing.M) {
	code, err := setup()
	if err != nil {
		fmt.Fprintf(os.Stderr, "e2e setup: %v\n", err)
		os.Exit(1)
	}
	if code >= 0 {
		os.Exit(code)
	}
	os.Exit(m.Run())
}

// setup finds the repository root and builds localdev into <root>/bin.
func setup() (int, error) {
	wd, err := os.Getwd()
	if err != nil {
		return 0, err
	}
	for d := wd; ; d = filepath.Dir(d) {
		if _, err := os.Stat(filepath.Join(d, "go.mod")); err == nil {
			rootDir = d
			break
		}
		if filepath.Dir(d) == d {
			return 0, fmt.Errorf("no go.mod above %s", wd)
		}
	}
	binDir = filepath.Join(rootDir, "bin")
	if err := os.MkdirAll(binDir, 0o755); err != nil {
		return 0, err
	}
	if p := os.Getenv("AIRLOCK_E2E_LOCALDEV"); p != "" { // a prebuilt binary
		localdevBin = p
		fmt.Printf("e2e: using %s (AIRLOCK_E2E_LOCALDEV)\n", p)
		return -1, nil
	}
	localdevBin = filepath.Join(binDir, "localdev")
	start := time.Now()
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Minute)
	defer cancel()
	cmd := exec.CommandContext(ctx, "go", "build", "-o", localdevBin, "./localdev")
	cmd.Dir = rootDir
	if out, err := cmd.CombinedOutput(); err != nil {
		return 0, fmt.Errorf("go build ./localdev: %w\n%s", err, out)
	}
	fmt.Printf("e2e: built %s in %s\n", localdevBin, time.Since(start).Round(time.Millisecond))
	return -1, nil
}

// tool returns the path of a pinned Go tool in <root>/bin, installing it first
// when missing.
func tool(t testing.TB, name string) string {
	t.Helper()
	toolMu.Lock()
	defer toolMu.Unlock()
	p := filepath.Join(binDir, name)
	if _, err := os.Stat(p); err == nil {
		return p
	}
	pkg, ok := goTools[name]
	if !ok {
		t.Fatalf("unknown tool %q", name)
	}
	start := time.Now()
	cmd := exec.Command("go", "install", pkg)
	cmd.Env = append(os.Environ(), "GOBIN="+binDir)
	cmd.Dir = rootDir
	if out, err := cmd.CombinedOutput(); err != nil {
		t.Fatalf("go install %s: %v\n%s", pkg, err, out)
	}
	t.Logf("installed %s in %s", pkg, time.Since(start).Round(time.Millisecond))
	return p
}

// run runs a command with a timeout, logs its command line, duration and
// (on failure) its output, and returns the combined output.
func run(t testing.TB, timeout time.Duration, env []string, name string, args ...string) (string, error) {
	t.Helper()
	return runIn(t, "", timeout, env, name, args...)
}

// runIn is run with the working directory dir ("" for the current one).
func runIn(t testing.TB, dir string, timeout time.Duration, env []string, name string, args ...string) (string, error) {
	t.Helper()
	out, d, err := execIn(dir, timeout, env, name, args...)
	if err != nil {
		t.Logf("$ %s %s (%s) FAILED: %v\n%s", filepath.Base(name), strings.Join(args, " "), d, err, tail(out, 100))
	} else {
		t.Logf("$ %s %s (%s)", filepath.Base(name), strings.Join(args, " "), d)
	}
	return out, err
}

// execIn runs a command and returns its combined output and duration,
// logging nothing.
func execIn(dir string, timeout time.Duration, env []string, name string, args ...string) (string, time.Duration, error) {
	ctx, cancel := context.WithTimeout(context.Background(), timeout)
	defer cancel()
	cmd := exec.CommandContext(ctx, name, args...)
	cmd.Env = append(os.Environ(), env...)
	cmd.Dir = dir
	cmd.WaitDelay = 5 * time.Second
	start := time.Now()
	out, err := cmd.CombinedOutput()
	d := time.Since(start).Round(time.Millisecond)
	if ctx.Err() != nil {
		err = fmt.Errorf("timed out after %s: %w", timeout, err)
	}
	return string(out), d, err
}

// mustRun is run that fails the test on error.
func mustRun(t testing.TB, timeout time.Duration, env []string, name string, args ...string) string {
	t.Helper()
	out, err := run(t, timeout, env, name, args...)
	if err != nil {
		t.Fatalf("%s failed: %v", filepath.Base(name), err)
	}
	return out
}
