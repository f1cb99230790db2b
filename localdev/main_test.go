package main

import (
	"bufio"
	"context"
	"io"
	"net"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/aws/aws-sdk-go-v2/aws"
	"github.com/aws/aws-sdk-go-v2/service/dynamodb"
	"github.com/aws/aws-sdk-go-v2/service/s3"

	"github.com/airlock-registry/airlock/localdev/harness"
)

// buildLocaldev builds this command into a temporary directory.
func buildLocaldev(t *testing.T) string {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Minute)
	defer cancel()
	if err := harness.EnsureTools(ctx); err != nil {
		t.Fatal(err)
	}
	bin := filepath.Join(t.TempDir(), "localdev")
	out, err := exec.CommandContext(ctx, "go", "build", "-o", bin, ".").CombinedOutput()
	if err != nil {
		t.Fatalf("go build: %v\n%s", err, out)
	}
	return bin
}

// started is a running localdev process.
type started struct {
	cmd       *exec.Cmd
	readyLine string
	stderr    *strings.Builder
	errDone   chan struct{}
}

// startLocaldev runs bin with args and waits for its ready line on stdout.
func startLocaldev(t *testing.T, bin string, args ...string) *started {
	t.Helper()
	cmd := exec.Command(bin, args...)
	stdout, err := cmd.StdoutPipe()
	if err != nil {
		t.Fatal(err)
	}
	stderrPipe, err := cmd.StderrPipe()
	if err != nil {
		t.Fatal(err)
	}
	s := &started{cmd: cmd, stderr: &strings.Builder{}, errDone: make(chan struct{})}
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = cmd.Process.Kill(); _ = cmd.Wait() })
	go func() { _, _ = io.Copy(s.stderr, stderrPipe); close(s.errDone) }()
	lines := make(chan string)
	go func() {
		sc := bufio.NewScanner(stdout)
		for sc.Scan() {
			lines <- sc.Text()
		}
		close(lines)
	}()
	select {
	case l, ok := <-lines:
		if !ok {
			<-s.errDone
			t.Fatalf("localdev exited before ready; stderr:\n%s", s.stderr)
		}
		s.readyLine = l
	case <-time.After(3 * time.Minute):
		t.Fatal("no ready line within 3 minutes")
	}
	go func() {
		for l := range lines {
			t.Errorf("unexpected second stdout line: %q", l)
		}
	}()
	return s
}

// stop sends SIGTERM and checks a clean exit.
func (s *started) stop(t *testing.T) {
	t.Helper()
	if err := s.cmd.Process.Signal(syscall.SIGTERM); err != nil {
		t.Fatal(err)
	}
	done := make(chan error, 1)
	go func() { done <- s.cmd.Wait() }()
	select {
	case err := <-done:
		if err != nil {
			t.Fatalf("exit after SIGTERM: %v", err)
		}
	case <-time.After(30 * time.Second):
		t.Fatal("still running 30 s after SIGTERM")
	}
	<-s.errDone
}

var endpointRE = regexp.MustCompile(`endpoint=(http://127\.0\.0\.1:\d+)`)

// The registry answers on the printed URL; SIGTERM stops it and both emulators.
func TestServeAndStop(t *testing.T) {
	bin := buildLocaldev(t)
	data := t.TempDir()
	s := startLocaldev(t, bin, "-addr", "127.0.0.1:0", "-data", data)
	m := regexp.MustCompile(`^airlock ready on (http://127\.0\.0\.1:\d+) \(auth off: .*\)$`).FindStringSubmatch(s.readyLine)
	if m == nil {
		t.Fatalf("ready line %q", s.readyLine)
	}
	resp, err := http.Get(m[1] + "/v2/")
	if err != nil {
		t.Fatal(err)
	}
	resp.Body.Close()
	if resp.StatusCode != http.StatusOK || resp.Header.Get("Docker-Distribution-API-Version") != "registry/2.0" {
		t.Fatalf("GET /v2/: %d %v", resp.StatusCode, resp.Header)
	}
	s.stop(t)

	eps := endpointRE.FindAllStringSubmatch(s.stderr.String(), -1)
	if len(eps) != 2 {
		t.Fatalf("want 2 emulator endpoints in the log, got %v:\n%s", eps, s.stderr)
	}
	for _, ep := range append(eps, m) {
		host := strings.TrimPrefix(ep[1], "http://")
		if c, err := net.DialTimeout("tcp", host, time.Second); err == nil {
			c.Close()
			t.Errorf("%s still accepts connections after SIGTERM", host)
		}
	}
	for _, name := range []string{"dynalite", "versitygw"} {
		if _, err := os.Stat(filepath.Join(data, name)); err != nil {
			t.Errorf("data of %s: %v", name, err)
		}
	}
}

// -emulators-only prints the endpoints; the table and bucket exist.
func TestEmulatorsOnly(t *testing.T) {
	bin := buildLocaldev(t)
	s := startLocaldev(t, bin, "-emulators-only", "-data", t.TempDir())
	if !strings.HasPrefix(s.readyLine, "emulators ready: ") {
		t.Fatalf("ready line %q", s.readyLine)
	}
	env := map[string]string{}
	for _, kv := range strings.Fields(strings.TrimPrefix(s.readyLine, "emulators ready: ")) {
		k, v, _ := strings.Cut(kv, "=")
		env[k] = v
	}
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	db, err := harness.DynamoClient(ctx, env["AIRLOCK_DYNAMODB_ENDPOINT"])
	if err != nil {
		t.Fatal(err)
	}
	if _, err := db.DescribeTable(ctx, &dynamodb.DescribeTableInput{TableName: aws.String(env["AIRLOCK_TABLE"])}); err != nil {
		t.Errorf("table %q: %v", env["AIRLOCK_TABLE"], err)
	}
	if _, err := harness.S3Client(env["AIRLOCK_S3_ENDPOINT"]).HeadBucket(ctx, &s3.HeadBucketInput{Bucket: aws.String(env["AIRLOCK_BUCKET"])}); err != nil {
		t.Errorf("bucket %q: %v", env["AIRLOCK_BUCKET"], err)
	}
	s.stop(t)
}

// With an auth section: the admin password is generated once into
// <data>/admin.password (0600; the same on a restart), -users seeds users,
// the ready line says auth is on, and logins work.
func TestAuthBootstrap(t *testing.T) {
	bin := buildLocaldev(t)
	dir := t.TempDir()
	cfg := filepath.Join(dir, "airlock.yaml")
	users := filepath.Join(dir, "users.yaml")
	if err := os.WriteFile(cfg, []byte("default: local\nrepositories:\n- {name: local, kind: hosted}\nauth:\n  roles:\n  - {name: dev, privileges: [{repositories: ['*'], actions: [read]}]}\n"), 0o644); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(users, []byte("users:\n- {name: carol, passwordEnv: CAROL_PW, roles: [dev]}\n"), 0o644); err != nil {
		t.Fatal(err)
	}
	t.Setenv("CAROL_PW", "carol-password-123")
	data := filepath.Join(dir, "data")
	s := startLocaldev(t, bin, "-addr", "127.0.0.1:0", "-data", data, "-config", cfg, "-users", users)
	m := regexp.MustCompile(`^airlock ready on (http://127\.0\.0\.1:\d+) \(auth on: .*admin\.password; admin created\)$`).FindStringSubmatch(s.readyLine)
	if m == nil {
		t.Fatalf("ready line %q", s.readyLine)
	}
	fi, err := os.Stat(filepath.Join(data, "admin.password"))
	if err != nil || fi.Mode().Perm() != 0o600 {
		t.Fatalf("admin.password: %v %v", fi, err)
	}
	pw, _ := os.ReadFile(filepath.Join(data, "admin.password"))
	if !strings.Contains(s.stderr.String(), strings.TrimSpace(string(pw))) {
		t.Error("the generated password was not printed once")
	}
	login := func(user, pass string) int {
		req, _ := http.NewRequest(http.MethodGet, m[1]+"/v2/token?service=x", nil)
		req.SetBasicAuth(user, pass)
		res, err := http.DefaultClient.Do(req)
		if err != nil {
			t.Fatal(err)
		}
		res.Body.Close()
		return res.StatusCode
	}
	if c := login("admin", strings.TrimSpace(string(pw))); c != http.StatusOK {
		t.Errorf("admin login: %d", c)
	}
	if c := login("carol", "carol-password-123"); c != http.StatusOK {
		t.Errorf("seeded user login: %d", c)
	}
	if res, err := http.Get(m[1] + "/v2/"); err != nil || res.StatusCode != http.StatusUnauthorized {
		t.Errorf("/v2/ without a token: %v %v", res, err)
	}
	// localdev refresh: the admin API wants an admin's credentials.
	addr := strings.TrimPrefix(m[1], "http://")
	var out, errs strings.Builder
	if rc := refreshCmd([]string{"-addr", addr, "-u", "admin-without-colon", "local/app:1"}, &out, &errs); rc != 2 || !strings.Contains(errs.String(), "-u wants user:password") {
		t.Errorf("refresh -u without a colon: exit %d, stderr %q", rc, errs.String())
	}
	errs.Reset()
	if rc := refreshCmd([]string{"-addr", addr, "local/app:1"}, &out, &errs); rc != 1 || !strings.Contains(errs.String(), "-u admin:<password>") {
		t.Errorf("refresh without credentials: exit %d, stdout %q, stderr %q", rc, out.String(), errs.String())
	}
	out.Reset()
	errs.Reset()
	if rc := refreshCmd([]string{"-addr", addr, "-u", "carol:carol-password-123", "local/app:1"}, &out, &errs); rc != 1 || !strings.Contains(out.String(), "DENIED") {
		t.Errorf("refresh as a user without the admin role: exit %d, stdout %q, stderr %q", rc, out.String(), errs.String())
	}
	out.Reset()
	errs.Reset()
	rc := refreshCmd([]string{"-addr", addr, "-u", "admin:" + strings.TrimSpace(string(pw)), "local/app:1"}, &out, &errs)
	t.Logf("refresh of a hosted repository as admin: exit %d, %s", rc, out.String())
	if rc != 1 || strings.Contains(out.String(), "UNAUTHORIZED") || strings.Contains(out.String(), "DENIED") || !strings.Contains(out.String(), "proxy") {
		t.Errorf("refresh as admin: exit %d, stdout %q, stderr %q (want past auth: local is not a proxy)", rc, out.String(), errs.String())
	}
	s.stop(t)
	// A restart keeps the password and the users.
	s = startLocaldev(t, bin, "-addr", "127.0.0.1:0", "-data", data, "-config", cfg, "-users", users)
	if !strings.HasSuffix(s.readyLine, "admin exists)") {
		t.Errorf("ready line after a restart: %q", s.readyLine)
	}
	pw2, _ := os.ReadFile(filepath.Join(data, "admin.password"))
	if string(pw2) != string(pw) {
		t.Error("the admin password changed on a restart")
	}
	s.stop(t)
}
