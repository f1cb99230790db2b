// Package lambda_test runs the api function's real binary (functions/api,
// built for the host with -tags lambda.norpc) under the AWS Lambda runtime
// interface emulator and drives it with API Gateway HTTP API v2 events and
// Lambda function URL events (template.yaml's two front doors; the same
// payload 2.0), over dynalite and versitygw (what `sam local` runs; README,
// Lambda: SAM local). The other functions run the same way when a test
// needs them (functionBootstrap, startNamed): proxyfetch as the verifier an
// api function hands direct uploads to (handoff_test.go), purge with its
// reports and embedded metrics (purge_test.go).
package lambda_test

import (
	"bufio"
	"bytes"
	"context"
	"encoding/base64"
	"encoding/json"
	"fmt"
	"io"
	"net"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"strings"
	"sync"
	"sync/atomic"
	"syscall"
	"testing"
	"time"

	"github.com/airlock-registry/airlock/localdev/harness"
	"github.com/airlock-registry/airlock/shared/storage/s3store"
)

// rieModule is the emulator, pinned as in the Makefile's GO_TOOLS.
const rieModule = "github.com/aws/aws-lambda-runtime-interface-emulator/cmd/aws-lambda-rie@v0.0.0-20261030222936-bef5c4ba774d"

// suite is what TestMain sets up once: the emulators and the running function.
var suite struct {
	root, dir     string
	rie           string
	bootstrap     string
	bootstrapSize int64
	dynamo, s3    *harness.Proc
	fn            *function
}

func TestMain(m *testing.M) {
	code, err := run(m)
	if err != nil {
		fmt.Fprintln(os.Stderr, "tests/lambda:", err)
		code = 1
	}
	os.Exit(code)
}

func run(m *testing.M) (int, error) {
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Minute)
	defer cancel()
	root, err := harness.Root()
	if err != nil {
		return 0, err
	}
	dir, err := os.MkdirTemp("", "airlock-lambda-")
	if err != nil {
		return 0, err
	}
	defer os.RemoveAll(dir)
	suite.root, suite.dir = root, dir
	if err := harness.EnsureTools(ctx); err != nil {
		return 0, err
	}
	rie, err := ensureRIE(ctx, root)
	suite.rie = rie
	if err != nil {
		return 0, err
	}
	if suite.bootstrap, err = buildBootstrap(ctx, root, dir); err != nil {
		return 0, err
	}
	if suite.dynamo, err = harness.StartDynalite(ctx, ""); err != nil {
		return 0, err
	}
	defer suite.dynamo.Stop()
	if suite.s3, err = harness.StartVersitygw(ctx, filepath.Join(dir, "s3")); err != nil {
		return 0, err
	}
	defer suite.s3.Stop()
	db, err := harness.DynamoClient(ctx, suite.dynamo.Endpoint)
	if err != nil {
		return 0, err
	}
	if err := harness.CreateTable(ctx, db, harness.Table); err != nil {
		return 0, err
	}
	s3c, err := s3store.NewClient(ctx, s3store.Options{Endpoint: suite.s3.Endpoint, Region: harness.Region,
		AccessKey: harness.AccessKey, SecretKey: harness.SecretKey})
	if err != nil {
		return 0, err
	}
	if err := harness.CreateBucket(ctx, s3c, harness.Bucket); err != nil {
		return 0, err
	}
	if suite.fn, err = startFunction(ctx, rie, suite.bootstrap, nil); err != nil {
		return 0, err
	}
	defer suite.fn.stop()
	return m.Run(), nil
}

// ensureRIE returns bin/aws-lambda-rie, installing the pinned version when missing.
func ensureRIE(ctx context.Context, root string) (string, error) {
	bin := filepath.Join(root, "bin", "aws-lambda-rie")
	if _, err := os.Stat(bin); err == nil {
		return bin, nil
	}
	cmd := exec.CommandContext(ctx, "go", "install", rieModule)
	cmd.Env = append(os.Environ(), "GOBIN="+filepath.Join(root, "bin"), "CGO_ENABLED=0")
	if out, err := cmd.CombinedOutput(); err != nil {
		return "", fmt.Errorf("go install %s: %v\n%s", rieModule, err, out)
	}
	return bin, nil
}

// buildBootstrap builds functions/api for the host as dir/task/bootstrap,
// with the flags of `make build` but the host's GOARCH and without
// -trimpath (which only changes file names in the binary, and would miss the
// build cache every other package's test compiled: a cold build costs a minute).
func buildBootstrap(ctx context.Context, root, dir string) (string, error) {
	out, err := buildFunction(ctx, root, filepath.Join(dir, "task"), "api")
	if err != nil {
		return "", err
	}
	fi, err := os.Stat(out)
	if err != nil {
		return "", err
	}
	suite.bootstrapSize = fi.Size()
	return out, nil
}

// buildFunction builds functions/<name> as dir/bootstrap, as buildBootstrap does.
func buildFunction(ctx context.Context, root, dir, name string) (string, error) {
	out := filepath.Join(dir, "bootstrap")
	cmd := exec.CommandContext(ctx, "go", "build", "-tags", "lambda.norpc", "-ldflags=-s -w", "-o", out, "./functions/"+name)
	cmd.Dir = root
	cmd.Env = append(os.Environ(), "CGO_ENABLED=0")
	if b, err := cmd.CombinedOutput(); err != nil {
		return "", fmt.Errorf("build functions/%s: %v\n%s", name, err, b)
	}
	return out, nil
}

// function is one running emulator with the bootstrap inside.
type function struct {
	door frontDoor // what its events look like (httpAPI unless started with another)
	// invokes counts the invokes sent (each ends with a REPORT line).
	invokes atomic.Int64
	cmd     *exec.Cmd
	url     string // the RIE invoke URL
	out     *syncBuffer
	done    chan struct{}
	client  *http.Client
}

// syncBuffer collects the emulator's output (RIE lines and the function's logs).
type syncBuffer struct {
	mu sync.Mutex
	b  bytes.Buffer
}

func (s *syncBuffer) Write(p []byte) (int, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.b.Write(p)
}

func (s *syncBuffer) String() string {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.b.String()
}

func freePort() (int, error) {
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		return 0, err
	}
	defer l.Close()
	return l.Addr().(*net.TCPAddr).Port, nil
}

// functionEnv is the environment the template gives ApiFunction, pointed at
// the local emulators (as localdev/sam-env.json does for sam local).
func functionEnv(extra []string) []string {
	env := []string{
		"PATH=" + os.Getenv("PATH"),
		"AWS_ACCESS_KEY_ID=" + harness.AccessKey,
		"AWS_SECRET_ACCESS_KEY=" + harness.SecretKey,
		"AWS_REGION=" + harness.Region,
		"AWS_EC2_METADATA_DISABLED=true",
		"AWS_LAMBDA_FUNCTION_NAME=ApiFunction",
		"AWS_LAMBDA_FUNCTION_MEMORY_SIZE=1024",
		"AWS_LAMBDA_FUNCTION_TIMEOUT=29",
		"AIRLOCK_DYNAMODB_ENDPOINT=" + suite.dynamo.Endpoint,
		"AIRLOCK_S3_ENDPOINT=" + suite.s3.Endpoint,
		"AIRLOCK_TABLE=" + harness.Table,
		"AIRLOCK_BUCKET=" + harness.Bucket,
		"AIRLOCK_CONFIG=file:" + filepath.Join(suite.root, "infra", "airlock.yaml"),
		"AIRLOCK_ADMIN_PASSWORD=" + adminPassword,
		"LOG_LEVEL=warn",
	}
	return append(env, extra...)
}

// startFunction runs the emulator with bootstrap on free 127.0.0.1 ports and
// waits until it accepts connections. Init happens at the first invoke.
func startFunction(ctx context.Context, rie, bootstrap string, extraEnv []string) (*function, error) {
	for attempt := 0; ; attempt++ {
		fn, err := startFunctionOnce(ctx, rie, bootstrap, extraEnv)
		if err == nil || attempt == 2 {
			return fn, err
		}
	}
}

func startFunctionOnce(ctx context.Context, rie, bootstrap string, extraEnv []string) (*function, error) {
	invokePort, err := freePort()
	if err != nil {
		return nil, err
	}
	apiPort, err := freePort()
	if err != nil {
		return nil, err
	}
	fn := &function{door: httpAPI, out: &syncBuffer{}, done: make(chan struct{}),
		url:    fmt.Sprintf("http://127.0.0.1:%d/2015-03-31/functions/function/invocations", invokePort),
		client: &http.Client{Timeout: 60 * time.Second}}
	fn.cmd = exec.Command(rie,
		"--runtime-interface-emulator-address", fmt.Sprintf("127.0.0.1:%d", invokePort),
		"--runtime-api-address", fmt.Sprintf("127.0.0.1:%d", apiPort),
		"--log-level", "warn",
		bootstrap)
	fn.cmd.Dir = filepath.Dir(bootstrap)
	fn.cmd.Env = functionEnv(extraEnv)
	fn.cmd.Stdout, fn.cmd.Stderr = fn.out, fn.out
	// Own process group (the function is the emulator's child); SIGKILL if
	// the test binary dies.
	fn.cmd.SysProcAttr = &syscall.SysProcAttr{Setpgid: true, Pdeathsig: syscall.SIGKILL}
	if err := fn.cmd.Start(); err != nil {
		return nil, fmt.Errorf("start %s: %w", rie, err)
	}
	go func() { _ = fn.cmd.Wait(); close(fn.done) }()
	deadline := time.Now().Add(15 * time.Second)
	for {
		c, err := net.DialTimeout("tcp", fmt.Sprintf("127.0.0.1:%d", invokePort), time.Second)
		if err == nil {
			c.Close()
			return fn, nil
		}
		select {
		case <-fn.done:
			return nil, fmt.Errorf("aws-lambda-rie exited at start:\n%s", fn.out)
		case <-ctx.Done():
			fn.stop()
			return nil, ctx.Err()
		case <-time.After(20 * time.Millisecond):
		}
		if time.Now().After(deadline) {
			fn.stop()
			return nil, fmt.Errorf("aws-lambda-rie did not listen within 15 s:\n%s", fn.out)
		}
	}
}

// stop kills the emulator and the function (its process group).
func (fn *function) stop() {
	_ = syscall.Kill(-fn.cmd.Process.Pid, syscall.SIGKILL)
	<-fn.done
}

// reportRe matches the emulator's REPORT line of an invoke.
var reportRe = regexp.MustCompile(`REPORT RequestId: \S+\s+(?:Init Duration: ([0-9.]+) ms\s+)?Duration: ([0-9.]+) ms`)

// initDuration returns the Init Duration of the emulator's REPORT lines ("" if none yet).
func (fn *function) initDuration() string {
	sc := bufio.NewScanner(strings.NewReader(fn.out.String()))
	for sc.Scan() {
		if m := reportRe.FindStringSubmatch(sc.Text()); m != nil && m[1] != "" {
			return m[1] + " ms"
		}
	}
	return ""
}

// response is the function's answer: an API Gateway v2 response, or a
// Lambda function error when the event could not be handled.
type response struct {
	StatusCode      int               `json:"statusCode"`
	Headers         map[string]string `json:"headers"`
	Body            string            `json:"body"`
	IsBase64Encoded bool              `json:"isBase64Encoded"`
	Cookies         []string          `json:"cookies"`
	ErrorMessage    string            `json:"errorMessage"`
	ErrorType       string            `json:"errorType"`
	// invokeStatus is the emulator's HTTP status; raw its body.
	invokeStatus int
	raw          []byte
}

// header returns a response header, case-insensitively (API Gateway lower-cases them).
func (r response) header(name string) string {
	for k, v := range r.Headers {
		if strings.EqualFold(k, name) {
			return v
		}
	}
	return ""
}

// body returns the decoded body.
func (r response) body() []byte {
	if r.IsBase64Encoded {
		b, _ := base64.StdEncoding.DecodeString(r.Body)
		return b
	}
	return []byte(r.Body)
}

func (r response) String() string {
	if r.StatusCode == 0 {
		s := string(r.raw)
		if len(s) > 300 {
			s = s[:300] + "..."
		}
		return fmt.Sprintf("no API Gateway response (invoke HTTP %d): %s", r.invokeStatus, s)
	}
	b := r.body()
	if len(b) > 300 {
		b = append(b[:300:300], "..."...)
	}
	return fmt.Sprintf("%d %v %s", r.StatusCode, r.Headers, b)
}

// invoke POSTs an event to the emulator (with the admin's bearer token,
// withToken) and decodes the answer.
func (fn *function) invoke(t testing.TB, event []byte) response {
	t.Helper()
	return fn.invokeRaw(t, withToken(t, fn, event))
}

// invokeRaw POSTs an event as it is.
func (fn *function) invokeRaw(t testing.TB, event []byte) response {
	t.Helper()
	fn.invokes.Add(1)
	res, err := fn.client.Post(fn.url, "application/json", bytes.NewReader(event))
	if err != nil {
		t.Fatalf("invoke: %v\nemulator output:\n%s", err, tail(fn.out.String(), 3000))
	}
	defer res.Body.Close()
	raw, err := io.ReadAll(res.Body)
	if err != nil {
		t.Fatalf("invoke: read: %v", err)
	}
	r := response{invokeStatus: res.StatusCode, raw: raw}
	_ = json.Unmarshal(raw, &r)
	return r
}

func tail(s string, n int) string {
	if len(s) > n {
		return "..." + s[len(s)-n:]
	}
	return s
}
