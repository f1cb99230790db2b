//go:build bench

package bench

import (
	"bufio"
	"context"
	"fmt"
	"io"
	"net"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/airlock-registry/airlock/localdev/harness"
)

// DistributionPkg is the pinned CNCF distribution registry, installed into
// <root>/bin/registry when missing.
const DistributionPkg = "github.com/distribution/distribution/v3/cmd/registry@v3.1.2"

// proc is a server the benchmark started as its own process.
type proc struct {
	name string
	url  string // http://127.0.0.1:PORT
	cmd  *exec.Cmd
	log  string
}

// stop kills the process group and waits.
func (p *proc) stop() {
	if p == nil || p.cmd.Process == nil {
		return
	}
	_ = syscall.Kill(-p.cmd.Process.Pid, syscall.SIGKILL)
	_ = p.cmd.Wait()
}

// pid is the process id, for /proc.
func (p *proc) pid() int { return p.cmd.Process.Pid }

// startProc runs argv in its own process group with output to logPath. When
// addrFromStdout is set, the process prints "listening http://ADDR" as its
// first stdout line; otherwise url is known in advance. It waits until
// url+"/v2/" answers.
func startProc(t *testing.T, name, url, logPath string, env []string, argv ...string) *proc {
	t.Helper()
	logf, err := os.Create(logPath)
	if err != nil {
		t.Fatal(err)
	}
	cmd := exec.Command(argv[0], argv[1:]...)
	cmd.Env = append(os.Environ(), env...)
	cmd.Stderr = logf
	cmd.SysProcAttr = &syscall.SysProcAttr{Setpgid: true, Pdeathsig: syscall.SIGKILL}
	var stdout io.ReadCloser
	if url == "" {
		if stdout, err = cmd.StdoutPipe(); err != nil {
			t.Fatal(err)
		}
	} else {
		cmd.Stdout = logf
	}
	if err := cmd.Start(); err != nil {
		t.Fatalf("start %s: %v", name, err)
	}
	p := &proc{name: name, url: url, cmd: cmd, log: logPath}
	t.Cleanup(func() { p.stop(); logf.Close() })
	if url == "" {
		line, err := bufio.NewReader(stdout).ReadString('\n')
		if err != nil {
			t.Fatalf("%s: no address printed (%v); log %s:\n%s", name, err, logPath, tail(logPath))
		}
		p.url = strings.TrimPrefix(strings.TrimSpace(line), "listening ")
		go func() { _, _ = io.Copy(logf, stdout) }()
	}
	deadline := time.Now().Add(60 * time.Second)
	for {
		resp, err := http.Get(p.url + "/v2/")
		if err == nil {
			resp.Body.Close()
			if resp.StatusCode == http.StatusOK {
				return p
			}
		}
		if time.Now().After(deadline) {
			t.Fatalf("%s not answering on %s/v2/ (%v); log %s:\n%s", name, p.url, err, logPath, tail(logPath))
		}
		time.Sleep(100 * time.Millisecond)
	}
}

// tail returns the end of a log file.
func tail(path string) string {
	b, _ := os.ReadFile(path)
	if len(b) > 3000 {
		b = b[len(b)-3000:]
	}
	return string(b)
}

// ensureDistribution returns <root>/bin/registry, installing the pinned
// version when it is missing.
func ensureDistribution(t *testing.T, root string) string {
	t.Helper()
	bin := filepath.Join(root, "bin", "registry")
	if _, err := os.Stat(bin); err == nil {
		return bin
	}
	start := time.Now()
	cmd := exec.Command("go", "install", DistributionPkg)
	cmd.Env = append(os.Environ(), "GOBIN="+filepath.Join(root, "bin"))
	cmd.Dir = root
	if out, err := cmd.CombinedOutput(); err != nil {
		t.Fatalf("go install %s: %v\n%s", DistributionPkg, err, out)
	}
	t.Logf("installed %s in %s", DistributionPkg, time.Since(start).Round(time.Second))
	return bin
}

// startDistribution runs the distribution registry with its s3 driver on
// bucket of the S3 server at s3URL, redirects on (blob GETs answered by 307 to
// presigned URLs, like Airlock).
func startDistribution(t *testing.T, bin, dir, s3URL, bucket string) *proc {
	t.Helper()
	port := freePort(t)
	cfg := fmt.Sprintf(`version: 0.1
log:
  level: warn
  accesslog:
    disabled: true
storage:
  s3:
    accesskey: %s
    secretkey: %s
    region: %s
    regionendpoint: %s
    forcepathstyle: true
    secure: false
    bucket: %s
  redirect:
    disable: false
  delete:
    enabled: true
  maintenance:
    uploadpurging:
      enabled: false
http:
  addr: 127.0.0.1:%d
`, harness.AccessKey, harness.SecretKey, harness.Region, s3URL, bucket, port)
	path := filepath.Join(dir, "distribution.yml")
	if err := os.WriteFile(path, []byte(cfg), 0o644); err != nil {
		t.Fatal(err)
	}
	return startProc(t, "distribution", fmt.Sprintf("http://127.0.0.1:%d", port),
		filepath.Join(dir, "distribution.log"), []string{"OTEL_TRACES_EXPORTER=none"}, bin, "serve", path)
}

// startAirlock runs this test binary as an Airlock server (serveMain) on the
// given emulators, table and bucket.
func startAirlock(t *testing.T, dir, dynamoURL, table, s3URL, bucket string) *proc {
	t.Helper()
	self, err := os.Executable()
	if err != nil {
		t.Fatal(err)
	}
	env := []string{
		serveEnv + "=1",
		"AIRLOCK_BENCH_DYNAMO=" + dynamoURL, "AIRLOCK_BENCH_TABLE=" + table,
		"AIRLOCK_BENCH_S3=" + s3URL, "AIRLOCK_BENCH_BUCKET=" + bucket,
	}
	return startProc(t, "airlock", "", filepath.Join(dir, "airlock.log"), env, self)
}

// freePort asks the kernel for a free port on 127.0.0.1.
func freePort(t *testing.T) int {
	t.Helper()
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer l.Close()
	return l.Addr().(*net.TCPAddr).Port
}

// memory is a process's resident memory, from /proc/<pid>/status.
type memory struct{ hwm, rss int64 }

// readMemory returns VmHWM (peak RSS since start or the last reset) and VmRSS.
func readMemory(pid int) (memory, error) {
	b, err := os.ReadFile(fmt.Sprintf("/proc/%d/status", pid))
	if err != nil {
		return memory{}, err
	}
	var m memory
	for _, line := range strings.Split(string(b), "\n") {
		f := strings.Fields(line)
		if len(f) < 2 {
			continue
		}
		kb, _ := strconv.ParseInt(f[1], 10, 64)
		switch f[0] {
		case "VmHWM:":
			m.hwm = kb << 10
		case "VmRSS:":
			m.rss = kb << 10
		}
	}
	return m, nil
}

// resetPeak resets VmHWM to the current RSS (Linux: "5" into clear_refs).
func resetPeak(pid int) error {
	return os.WriteFile(fmt.Sprintf("/proc/%d/clear_refs", pid), []byte("5"), 0)
}

// withTimeout is a context for one measured operation.
func withTimeout(d time.Duration) (context.Context, context.CancelFunc) {
	return context.WithTimeout(context.Background(), d)
}
