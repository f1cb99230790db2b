//go:build bench

package bench

import (
	"bytes"
	"context"
	"fmt"
	"os"
	"path/filepath"
	"runtime"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/airlock-registry/airlock/localdev/harness"
)

// TestBench runs the whole benchmark and prints one table (also written to
// <root>/.localdev/bench/bench-<time>.txt).
func TestBench(t *testing.T) {
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Minute)
	defer cancel()
	root, err := harness.Root()
	if err != nil {
		t.Fatal(err)
	}
	setup := time.Now()
	if err := harness.EnsureTools(ctx); err != nil {
		t.Fatal(err)
	}
	t.Logf("harness.EnsureTools: %s (waits for other installs holding bin/.tools.lock)", time.Since(setup).Round(time.Millisecond))
	// Emulator data in a temporary directory (gigabytes, removed at the end).
	data := t.TempDir()
	ddb, err := harness.StartDynalite(ctx, filepath.Join(data, "dynalite"))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = ddb.Stop() })
	s3p, err := harness.StartVersitygw(ctx, filepath.Join(data, "s3"))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = s3p.Stop() })

	rep := &report{}
	started := time.Now()
	loadStart := loadavg()
	defer func() {
		var buf bytes.Buffer
		fmt.Fprintf(&buf, "Airlock benchmark %s (%d CPUs; dynalite %s, versitygw %s)\n",
			started.Format(time.RFC3339), runtime.NumCPU(), ddb.Endpoint, s3p.Endpoint)
		fmt.Fprintf(&buf, "load average (1/5/15 min) at start %s, at end %s; other processes share these CPUs, so times are indicative\n", loadStart, loadavg())
		rep.write(&buf)
		fmt.Fprintf(&buf, "\ntotal %s\n", time.Since(started).Round(time.Second))
		dir := filepath.Join(root, ".localdev", "bench")
		path := filepath.Join(dir, "bench-"+started.Format("20060102-150405")+".txt")
		if err := os.MkdirAll(dir, 0o755); err == nil {
			if err := os.WriteFile(path, buf.Bytes(), 0o644); err == nil {
				fmt.Fprintf(&buf, "written to %s\n", path)
			}
		}
		fmt.Print(buf.String())
	}()

	// AIRLOCK_BENCH_ONLY=proxy,calls (development) runs only those parts.
	run := func(name string, f func(t *testing.T)) {
		if only := os.Getenv("AIRLOCK_BENCH_ONLY"); only != "" && !slices.Contains(strings.Split(only, ","), name) {
			return
		}
		t.Run(name, f)
	}
	run("calls", func(t *testing.T) { benchCalls(t, rep, ddb.Endpoint, s3p.Endpoint) })
	run("compare", func(t *testing.T) {
		benchCompare(t, rep, ensureDistribution(t, root), data, ddb.Endpoint, s3p.Endpoint)
	})
	run("proxy", func(t *testing.T) {
		benchProxy(t, rep, root, ensureDistribution(t, root), data, ddb.Endpoint, s3p.Endpoint)
	})
	run("auth", func(t *testing.T) { benchAuth(t, rep, ddb.Endpoint, s3p.Endpoint) })
	run("frontdoor", func(t *testing.T) { benchFrontDoor(t, rep, ddb.Endpoint, s3p.Endpoint) })
	run("cli", func(t *testing.T) { benchCLI(t, rep, root, data, ddb.Endpoint, s3p.Endpoint) })
	run("purge", func(t *testing.T) { benchPurge(t, rep, ddb.Endpoint, s3p.Endpoint) })
}

// loadavg returns the first three fields of /proc/loadavg.
func loadavg() string {
	b, err := os.ReadFile("/proc/loadavg")
	if err != nil {
		return "?"
	}
	f := strings.Fields(string(b))
	if len(f) < 3 {
		return "?"
	}
	return strings.Join(f[:3], " ")
}
