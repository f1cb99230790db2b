// Package harness starts and stops the local emulators of the AWS APIs Airlock
// uses (dynalite or DynamoDB Local for DynamoDB, versitygw or MinIO for S3),
// all listening on 127.0.0.1, and creates the table and bucket that
// template.yaml defines. Tests use TestDynamo and TestS3; localdev (make run)
// uses the Start functions directly. The contract is API.md in this directory.
package harness

import (
	"context"
	"errors"
	"fmt"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"sync"
	"syscall"
	"time"
)

// Credentials, region and default names every emulator is started with.
const (
	// AccessKey is the access key id of every emulator.
	AccessKey = "airlock"
	// SecretKey is the secret access key of every emulator.
	SecretKey = "airlock-secret-key"
	// Region is the region clients sign for.
	Region = "us-east-1"
	// Table is the default DynamoDB table name (localdev).
	Table = "airlock"
	// Bucket is the default S3 bucket name (localdev).
	Bucket = "airlock"
)

// startTimeout bounds how long an emulator may take to answer its first
// request. DynamoDB Local (a JVM) takes ~8 s on a busy 2-core machine.
const startTimeout = 90 * time.Second

// Root returns the repository root: the directory holding go.mod, searched
// from the working directory upwards. AIRLOCK_ROOT overrides the search (for
// test binaries run outside the source tree).
func Root() (string, error) {
	if r := os.Getenv("AIRLOCK_ROOT"); r != "" {
		return filepath.Abs(r)
	}
	dir, err := os.Getwd()
	if err != nil {
		return "", fmt.Errorf("harness root: %w", err)
	}
	for {
		if _, err := os.Stat(filepath.Join(dir, "go.mod")); err == nil {
			return dir, nil
		}
		parent := filepath.Dir(dir)
		if parent == dir {
			return "", errors.New("harness root: no go.mod above the working directory (set AIRLOCK_ROOT)")
		}
		dir = parent
	}
}

// Proc is one running emulator: a child process in its own process group.
type Proc struct {
	// Endpoint is the base URL clients use, http://127.0.0.1:PORT.
	Endpoint string
	// Name says which emulator runs (dynalite, ddblocal, versitygw, minio).
	Name string
	// LogPath is the file receiving the emulator's stdout and stderr.
	LogPath string

	cmd      *exec.Cmd
	log      *os.File
	done     chan struct{}
	waitErr  error
	stopOnce sync.Once
	stopErr  error
}

// Stop kills the emulator's process group (SIGTERM, then SIGKILL after 5 s)
// and waits for it. Calling Stop again returns the first result.
func (p *Proc) Stop() error {
	if p == nil {
		return nil
	}
	p.stopOnce.Do(func() {
		pgid := p.cmd.Process.Pid
		_ = syscall.Kill(-pgid, syscall.SIGTERM)
		select {
		case <-p.done:
		case <-time.After(5 * time.Second):
			_ = syscall.Kill(-pgid, syscall.SIGKILL)
			<-p.done
		}
		// Children of the leader (e.g. a JVM's helpers) may outlive it.
		_ = syscall.Kill(-pgid, syscall.SIGKILL)
		_ = p.log.Close()
		var exit *exec.ExitError
		if p.waitErr != nil && !errors.As(p.waitErr, &exit) {
			p.stopErr = fmt.Errorf("stop %s: %w", p.Name, p.waitErr)
		}
	})
	return p.stopErr
}

// Exited reports whether the process has ended (crashed or stopped).
func (p *Proc) Exited() bool {
	select {
	case <-p.done:
		return true
	default:
		return false
	}
}

// Done is closed when the process has ended (crashed or stopped).
func (p *Proc) Done() <-chan struct{} { return p.done }

// logTail returns the last bytes of the emulator's log, for error messages.
func (p *Proc) logTail() string {
	b, err := os.ReadFile(p.LogPath)
	if err != nil {
		return ""
	}
	const max = 2000
	if len(b) > max {
		b = b[len(b)-max:]
	}
	return strings.TrimSpace(string(b))
}

// freePort asks the kernel for a free port on 127.0.0.1. Another process may
// take it before the emulator binds it; start retries on that.
func freePort() (int, error) {
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		return 0, fmt.Errorf("free port: %w", err)
	}
	defer l.Close()
	return l.Addr().(*net.TCPAddr).Port, nil
}

// spec describes how to start one emulator on a given port.
type spec struct {
	name    string
	logPath string
	// args returns the command line for port.
	args func(port int) []string
	env  []string
	dir  string
	// ready is called until it succeeds (a signed API call: an HTTP answer
	// alone is not enough, MinIO answers 503 while it initialises).
	ready func(ctx context.Context, endpoint string) error
}

// start runs s on a free port and waits until it answers HTTP. A process
// that dies early (port taken between freePort and bind) is retried.
func start(ctx context.Context, s spec) (*Proc, error) {
	var lastErr error
	for attempt := 0; attempt < 3; attempt++ {
		port, err := freePort()
		if err != nil {
			return nil, err
		}
		p, err := startOn(ctx, s, port)
		if err == nil {
			return p, nil
		}
		lastErr = err
		if p == nil || ctx.Err() != nil || !p.Exited() {
			break
		}
	}
	return nil, lastErr
}

func startOn(ctx context.Context, s spec, port int) (*Proc, error) {
	if err := os.MkdirAll(filepath.Dir(s.logPath), 0o755); err != nil {
		return nil, fmt.Errorf("start %s: %w", s.name, err)
	}
	logf, err := os.OpenFile(s.logPath, os.O_CREATE|os.O_WRONLY|os.O_APPEND, 0o644)
	if err != nil {
		return nil, fmt.Errorf("start %s: %w", s.name, err)
	}
	argv := s.args(port)
	cmd := exec.Command(argv[0], argv[1:]...)
	cmd.Dir = s.dir
	cmd.Env = append(os.Environ(), s.env...)
	cmd.Stdout = logf
	cmd.Stderr = logf
	// Own process group so Stop kills helpers too; SIGKILL when the parent
	// thread dies so a crashed test binary leaves no emulator behind.
	cmd.SysProcAttr = &syscall.SysProcAttr{Setpgid: true, Pdeathsig: syscall.SIGKILL}
	fmt.Fprintf(logf, "--- %s: %s\n", time.Now().Format(time.RFC3339), strings.Join(argv, " "))
	if err := cmd.Start(); err != nil {
		logf.Close()
		return nil, fmt.Errorf("start %s (%s): %w", s.name, argv[0], err)
	}
	p := &Proc{
		Endpoint: fmt.Sprintf("http://127.0.0.1:%d", port),
		Name:     s.name,
		LogPath:  s.logPath,
		cmd:      cmd,
		log:      logf,
		done:     make(chan struct{}),
	}
	go func() {
		p.waitErr = cmd.Wait()
		close(p.done)
	}()
	if err := waitReady(ctx, p, s); err != nil {
		_ = p.Stop()
		return p, err
	}
	return p, nil
}

// waitReady polls the emulator until it answers, it exits, or time runs out.
func waitReady(ctx context.Context, p *Proc, s spec) error {
	ctx, cancel := context.WithTimeout(ctx, startTimeout)
	defer cancel()
	var lastErr error
	for {
		callCtx, callCancel := context.WithTimeout(ctx, 5*time.Second)
		lastErr = s.ready(callCtx, p.Endpoint)
		callCancel()
		if lastErr == nil {
			return nil
		}
		select {
		case <-p.done:
			return fmt.Errorf("start %s: exited before answering (%v); log %s:\n%s", s.name, p.waitErr, p.LogPath, p.logTail())
		case <-ctx.Done():
			return fmt.Errorf("start %s: not answering on %s: %w (last: %v); log %s:\n%s", s.name, p.Endpoint, ctx.Err(), lastErr, p.LogPath, p.logTail())
		case <-time.After(100 * time.Millisecond):
		}
	}
}

// logPathFor returns where an emulator with data under dataDir logs:
// next to the data directory (never inside it: versitygw serves every
// directory entry as a bucket).
func logPathFor(dataDir, name string) (string, error) {
	if dataDir == "" {
		d, err := os.MkdirTemp("", "airlock-"+name+"-log-")
		if err != nil {
			return "", fmt.Errorf("start %s: %w", name, err)
		}
		return filepath.Join(d, name+".log"), nil
	}
	abs, err := filepath.Abs(dataDir)
	if err != nil {
		return "", fmt.Errorf("start %s: %w", name, err)
	}
	return abs + ".log", nil
}

// InPrivateNetns reports whether this process runs in a network namespace
// whose only interface is the loopback (as after `unshare -n`), where a
// server listening on every address is still reachable from nowhere else.
func InPrivateNetns() bool {
	ifs, err := net.Interfaces()
	if err != nil || len(ifs) == 0 {
		return false
	}
	for _, i := range ifs {
		if i.Flags&net.FlagLoopback == 0 {
			return false
		}
	}
	return true
}
