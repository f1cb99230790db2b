//go:build e2e

package e2e

import (
	"bufio"
	"fmt"
	"io"
	"net"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"
)

// registryOpts configures one localdev instance.
type registryOpts struct {
	// MaxBody is passed as -max-body when > 0 (bytes).
	MaxBody int64
	// Config is the YAML config; defaultConfig when empty.
	Config string
	// Env is added to localdev's environment (KEY=value), e.g. the admin
	// password of auth.adminPasswordEnv.
	Env []string
	// Args are more localdev flags (e.g. -ingress-addr).
	Args []string
}

// defaultConfig has one hosted repository "local" that is also the default.
const defaultConfig = `default: local
repositories:
  - name: local
    kind: hosted
    policy: allow
`

// registry is a running localdev process.
type registry struct {
	Host string // 127.0.0.1:PORT
	URL  string // http://127.0.0.1:PORT
	cmd  *exec.Cmd
	log  *lockedBuffer
	done chan struct{}
}

// lockedBuffer collects a process's output for the test log.
type lockedBuffer struct {
	mu sync.Mutex
	b  strings.Builder
}

func (l *lockedBuffer) WriteLine(s string) {
	l.mu.Lock()
	defer l.mu.Unlock()
	l.b.WriteString(s)
	l.b.WriteByte('\n')
}

func (l *lockedBuffer) String() string {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.b.String()
}

// freePort returns a TCP port on 127.0.0.1 that was free a moment ago.
func freePort(t testing.TB) int {
	t.Helper()
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatalf("listen: %v", err)
	}
	defer l.Close()
	return l.Addr().(*net.TCPAddr).Port
}

// backendFlags picks the emulators from AIRLOCK_TEST_DYNAMO / AIRLOCK_TEST_S3
// (defaults dynalite / versitygw), as the storage tests do.
func backendFlags() []string {
	dyn := os.Getenv("AIRLOCK_TEST_DYNAMO")
	if dyn == "" {
		dyn = "dynalite"
	}
	s3 := os.Getenv("AIRLOCK_TEST_S3")
	if s3 == "" {
		s3 = "versitygw"
	}
	return []string{"-dynamo", dyn, "-s3", s3}
}

// startRegistry starts bin/localdev on a random free port with a fresh data
// dir, waits for its "ready" line and registers its stop with t.Cleanup.
func startRegistry(t testing.TB, o registryOpts) *registry {
	t.Helper()
	dir := t.TempDir()
	cfg := o.Config
	if cfg == "" {
		cfg = defaultConfig
	}
	cfgPath := filepath.Join(dir, "airlock.yaml")
	if err := os.WriteFile(cfgPath, []byte(cfg), 0o644); err != nil {
		t.Fatal(err)
	}
	dataDir := filepath.Join(dir, "data")
	if err := os.MkdirAll(dataDir, 0o755); err != nil {
		t.Fatal(err)
	}
	var lastErr error
	for attempt := 0; attempt < 3; attempt++ { // a port taken in between is retried
		host := "127.0.0.1:" + strconv.Itoa(freePort(t))
		args := []string{"-addr", host, "-data", dataDir, "-config", cfgPath}
		if o.MaxBody > 0 {
			args = append(args, "-max-body", strconv.FormatInt(o.MaxBody, 10))
		}
		args = append(args, backendFlags()...)
		args = append(args, o.Args...)
		r, err := launch(t, host, args, o.Env)
		if err == nil {
			t.Cleanup(func() { r.stop(t) })
			return r
		}
		lastErr = err
	}
	t.Fatalf("start localdev: %v", lastErr)
	return nil
}

func launch(t testing.TB, host string, args, env []string) (*registry, error) {
	cmd := exec.Command(localdevBin, args...)
	cmd.Dir = rootDir
	if len(env) > 0 {
		cmd.Env = append(os.Environ(), env...)
	}
	// Own group (emulators are stopped with it); SIGTERM if this test binary dies.
	cmd.SysProcAttr = &syscall.SysProcAttr{Setpgid: true, Pdeathsig: syscall.SIGTERM}
	cmd.WaitDelay = 2 * time.Second // a child holding the pipe cannot block Wait
	pr, pw := io.Pipe()
	cmd.Stdout = pw
	cmd.Stderr = pw
	start := time.Now()
	if err := cmd.Start(); err != nil {
		return nil, err
	}
	r := &registry{Host: host, URL: "http://" + host, cmd: cmd, log: &lockedBuffer{}, done: make(chan struct{})}
	ready := make(chan struct{})
	go func() {
		sc := bufio.NewScanner(pr)
		sc.Buffer(make([]byte, 64*1024), 1024*1024)
		once := sync.Once{}
		for sc.Scan() {
			line := sc.Text()
			r.log.WriteLine(line)
			if strings.Contains(line, "ready") {
				once.Do(func() { close(ready) })
			}
		}
		_, _ = io.Copy(io.Discard, pr)
	}()
	go func() {
		_ = cmd.Wait()
		_ = pw.Close()
		close(r.done)
	}()
	select {
	case <-ready:
	case <-r.done:
		return nil, fmt.Errorf("localdev %s exited before ready (%v):\n%s", strings.Join(args, " "), cmd.ProcessState, r.log.String())
	case <-time.After(3 * time.Minute):
		r.kill()
		return nil, fmt.Errorf("localdev not ready after 3m:\n%s", r.log.String())
	}
	// The ready line says it serves; check /v2/ answers before handing it out
	// (200, or with auth on the 401 Bearer challenge).
	deadline := time.Now().Add(30 * time.Second)
	for {
		resp, err := http.Get(r.URL + "/v2/")
		if err == nil {
			resp.Body.Close()
			if resp.StatusCode == http.StatusOK ||
				resp.StatusCode == http.StatusUnauthorized && strings.HasPrefix(resp.Header.Get("Www-Authenticate"), "Bearer ") {
				break
			}
			err = fmt.Errorf("GET /v2/: %s", resp.Status)
		}
		if time.Now().After(deadline) {
			r.kill()
			return nil, fmt.Errorf("localdev ready but %v:\n%s", err, r.log.String())
		}
		time.Sleep(100 * time.Millisecond)
	}
	t.Logf("localdev %s ready in %s", r.URL, time.Since(start).Round(time.Millisecond))
	return r, nil
}

// kill sends SIGKILL to the process group.
func (r *registry) kill() {
	_ = syscall.Kill(-r.cmd.Process.Pid, syscall.SIGKILL)
	<-r.done
}

// stop sends SIGTERM to localdev's process group, then SIGKILL after 10 s, and
// puts its log into the test log when the test failed.
func (r *registry) stop(t testing.TB) {
	pid := r.cmd.Process.Pid
	start := time.Now()
	defer func() { t.Logf("localdev %s stopped in %s", r.URL, time.Since(start).Round(time.Millisecond)) }()
	_ = syscall.Kill(-pid, syscall.SIGTERM)
	select {
	case <-r.done:
	case <-time.After(10 * time.Second):
		t.Logf("localdev %s ignored SIGTERM for 10s; killing", r.URL)
	}
	// Children (emulators) that outlived localdev are in the same group.
	_ = syscall.Kill(-pid, syscall.SIGKILL)
	<-r.done
	if t.Failed() {
		t.Logf("localdev %s log:\n%s", r.URL, tail(r.log.String(), 200))
	}
}

// tail returns the last n lines of s.
func tail(s string, n int) string {
	lines := strings.Split(strings.TrimRight(s, "\n"), "\n")
	if len(lines) > n {
		lines = append([]string{fmt.Sprintf("... (%d lines cut)", len(lines)-n)}, lines[len(lines)-n:]...)
	}
	return strings.Join(lines, "\n")
}
