//go:build bench

package bench

import (
	"bytes"
	"context"
	"fmt"
	"io"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/airlock-registry/airlock/localdev/harness"
	"github.com/airlock-registry/airlock/shared/awscount"
	"github.com/airlock-registry/airlock/shared/config"
	"github.com/airlock-registry/airlock/shared/registry"
	"github.com/airlock-registry/airlock/shared/repo"
	"github.com/airlock-registry/airlock/shared/storage/dynamo"
	"github.com/airlock-registry/airlock/shared/storage/s3store"
)

// proxyYAML is the registry configuration of the proxy benchmark: the
// hosted default "local", the proxy "hub" of the issue (metadataMaxAge 6h,
// fill budget 60s, retry) and "hub1s", the same proxy with metadataMaxAge 1s
// (the pull after metadataMaxAge). Arguments: hub's remote, hub1s's remote.
const proxyYAML = `default: local
repositories:
  - {name: local, kind: hosted}
  - name: hub
    kind: proxy
    remote: %s
    metadataMaxAge: 6h
    fill: {budget: 60s, onTimeout: retry}
  - name: hub1s
    kind: proxy
    remote: %s
    metadataMaxAge: 1s
    fill: {budget: 60s, onTimeout: retry}
`

// startDistributionProxy runs the distribution registry as a pull-through
// cache of remote (proxy.remoteurl) on filesystem storage under dir.
func startDistributionProxy(t *testing.T, bin, dir, remote string) *proc {
	t.Helper()
	if err := os.MkdirAll(dir, 0o755); err != nil {
		t.Fatal(err)
	}
	port := freePort(t)
	cfg := fmt.Sprintf(`version: 0.1
log:
  level: warn
  accesslog:
    disabled: true
storage:
  filesystem:
    rootdirectory: %s
  delete:
    enabled: true
  maintenance:
    uploadpurging:
      enabled: false
http:
  addr: 127.0.0.1:%d
proxy:
  remoteurl: %s
`, filepath.Join(dir, "storage"), port, remote)
	path := filepath.Join(dir, "distribution-proxy.yml")
	if err := os.WriteFile(path, []byte(cfg), 0o644); err != nil {
		t.Fatal(err)
	}
	return startProc(t, "distribution proxy", fmt.Sprintf("http://127.0.0.1:%d", port),
		filepath.Join(dir, "distribution-proxy.log"), []string{"OTEL_TRACES_EXPORTER=none"}, bin, "serve", path)
}

// buildLocaldev builds the localdev command of the main module into dir.
func buildLocaldev(t *testing.T, root, dir string) string {
	t.Helper()
	bin := filepath.Join(dir, "bin", "localdev")
	start := time.Now()
	cmd := exec.Command("go", "build", "-o", bin, "./localdev")
	cmd.Dir = root
	if out, err := cmd.CombinedOutput(); err != nil {
		t.Fatalf("go build ./localdev: %v\n%s", err, out)
	}
	t.Logf("go build ./localdev: %s", time.Since(start).Round(time.Millisecond))
	return bin
}

// readyWatch passes localdev's stdout to a log and sends the URL of its
// "airlock ready on http://ADDR" line.
type readyWatch struct {
	w   io.Writer
	buf []byte
	ch  chan string
}

func (r *readyWatch) Write(p []byte) (int, error) {
	_, _ = r.w.Write(p)
	r.buf = append(r.buf, p...)
	for {
		i := bytes.IndexByte(r.buf, '\n')
		if i < 0 {
			return len(p), nil
		}
		line := string(r.buf[:i])
		r.buf = r.buf[i+1:]
		if _, u, ok := strings.Cut(line, "ready on "); ok && r.ch != nil {
			r.ch <- strings.Fields(u)[0]
			r.ch = nil
		}
	}
}

// localdevProc is a running localdev; stop ends it with SIGTERM (it then
// stops its emulators), SIGKILL after 20 s.
type localdevProc struct {
	*proc
	stop func()
}

// startLocaldev runs localdev (its own dynalite and versitygw under
// dir/data) with the configuration cfgYAML on a free port.
func startLocaldev(t *testing.T, bin, dir, cfgYAML string) *localdevProc {
	t.Helper()
	if err := os.MkdirAll(dir, 0o755); err != nil {
		t.Fatal(err)
	}
	cfgPath := filepath.Join(dir, "airlock.yaml")
	if err := os.WriteFile(cfgPath, []byte(cfgYAML), 0o644); err != nil {
		t.Fatal(err)
	}
	logPath := filepath.Join(dir, "localdev.log")
	logf, err := os.Create(logPath)
	if err != nil {
		t.Fatal(err)
	}
	cmd := exec.Command(bin, "-addr", "127.0.0.1:0", "-data", filepath.Join(dir, "data"), "-config", cfgPath, "-log-level", "warn")
	ready := make(chan string, 1)
	cmd.Stdout = &readyWatch{w: logf, ch: ready}
	cmd.Stderr = logf
	cmd.SysProcAttr = &syscall.SysProcAttr{Setpgid: true, Pdeathsig: syscall.SIGKILL}
	started := time.Now()
	if err := cmd.Start(); err != nil {
		t.Fatalf("start localdev: %v", err)
	}
	done := make(chan struct{})
	go func() { _ = cmd.Wait(); close(done) }()
	var once sync.Once
	lp := &localdevProc{proc: &proc{name: "localdev", cmd: cmd, log: logPath}}
	lp.stop = func() {
		once.Do(func() {
			_ = cmd.Process.Signal(syscall.SIGTERM)
			select {
			case <-done:
			case <-time.After(20 * time.Second):
				_ = syscall.Kill(-cmd.Process.Pid, syscall.SIGKILL)
				<-done
			}
			logf.Close()
		})
	}
	t.Cleanup(lp.stop)
	select {
	case lp.url = <-ready:
	case <-done:
		t.Fatalf("localdev exited before it was ready; log %s:\n%s", logPath, tail(logPath))
	case <-time.After(3 * time.Minute):
		t.Fatalf("localdev not ready after 3 minutes; log %s:\n%s", logPath, tail(logPath))
	}
	for deadline := time.Now().Add(time.Minute); ; {
		resp, err := http.Get(lp.url + "/v2/")
		if err == nil {
			resp.Body.Close()
			if resp.StatusCode == http.StatusOK {
				break
			}
		}
		if time.Now().After(deadline) {
			t.Fatalf("localdev not answering on %s/v2/ (%v); log %s:\n%s", lp.url, err, logPath, tail(logPath))
		}
		time.Sleep(100 * time.Millisecond)
	}
	t.Logf("localdev ready on %s in %s", lp.url, time.Since(started).Round(time.Millisecond))
	return lp
}

// newProxyAirlock builds an in-process registry with proxyYAML (both
// proxies on remote) on its own table and bucket, its AWS clients counting
// in c; fills past the budget run in a goroutine, as in localdev.
func newProxyAirlock(ctx context.Context, dynamoURL, s3URL, remote string, c *awscount.Counter) (*registry.Registry, error) {
	const table, bucket = "bench-proxy", "airlock-proxy"
	db, s3c, err := awsClients(ctx, dynamoURL, s3URL, c)
	if err != nil {
		return nil, err
	}
	if err := harness.CreateTable(ctx, db, table); err != nil {
		return nil, err
	}
	if err := harness.CreateBucket(ctx, s3c, bucket); err != nil {
		return nil, err
	}
	cfg, err := config.Parse(fmt.Appendf(nil, proxyYAML, remote, remote))
	if err != nil {
		return nil, err
	}
	var rg *registry.Registry
	handoff := func(_ context.Context, job repo.FillJob) error {
		go func() {
			fctx, cancel := context.WithTimeout(context.Background(), 15*time.Minute)
			defer cancel()
			_ = rg.Repositories().RunFill(fctx, job)
		}()
		return nil
	}
	rg, err = registry.New(registry.Deps{
		Meta: dynamo.New(db, table), Blobs: s3store.New(s3c, bucket), Config: cfg,
		Proxy: repo.ProxyOptions{Handoff: handoff},
	})
	return rg, err
}
