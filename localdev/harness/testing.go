package harness

import (
	"context"
	"crypto/rand"
	"encoding/hex"
	"fmt"
	"os"
	"os/exec"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/aws/aws-sdk-go-v2/aws"
	"github.com/aws/aws-sdk-go-v2/service/dynamodb"
	"github.com/aws/aws-sdk-go-v2/service/s3"
)

// Environment variables choosing the backends of TestDynamo and TestS3.
const (
	// EnvDynamo selects the DynamoDB emulator: "dynalite" (default) or "ddblocal".
	EnvDynamo = "AIRLOCK_TEST_DYNAMO"
	// EnvS3 selects the S3 emulator: "versitygw" (default) or "minio".
	EnvS3 = "AIRLOCK_TEST_S3"
)

// shared holds the emulators started once per test binary.
var shared struct {
	mu      sync.Mutex
	procs   map[string]*Proc
	dirs    []string
	counter atomic.Int64
}

// DynamoBackend returns the DynamoDB emulator tests use ($AIRLOCK_TEST_DYNAMO).
func DynamoBackend() string {
	if b := os.Getenv(EnvDynamo); b != "" {
		return b
	}
	return "dynalite"
}

// S3Backend returns the S3 emulator tests use ($AIRLOCK_TEST_S3).
func S3Backend() string {
	if b := os.Getenv(EnvS3); b != "" {
		return b
	}
	return "versitygw"
}

// sharedProc starts (once per binary) the emulator named backend.
func sharedProc(t testing.TB, backend string) *Proc {
	t.Helper()
	shared.mu.Lock()
	defer shared.mu.Unlock()
	if p := shared.procs[backend]; p != nil && !p.Exited() {
		return p
	}
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Minute)
	defer cancel()
	var start func(context.Context, string) (*Proc, error)
	ensure := EnsureTools
	switch backend {
	case "dynalite":
		start = StartDynalite
	case "ddblocal":
		start = StartDynamoDBLocal
	case "versitygw":
		start = StartVersitygw
	case "minio":
		start = StartMinIO
		ensure = EnsureMinIO
	default:
		t.Fatalf("harness: unknown backend %q (%s=dynalite|ddblocal, %s=versitygw|minio)", backend, EnvDynamo, EnvS3)
	}
	if err := ensure(ctx); err != nil {
		t.Fatalf("harness: install tools for %s: %v", backend, err)
	}
	dir, err := os.MkdirTemp("", "airlock-test-"+backend+"-")
	if err != nil {
		t.Fatalf("harness: %v", err)
	}
	shared.dirs = append(shared.dirs, dir)
	dataDir := dir + "/data"
	if backend == "dynalite" || backend == "ddblocal" {
		dataDir = "" // in memory: faster, and every test uses its own table
	}
	p, err := start(ctx, dataDir)
	if err != nil {
		t.Fatalf("harness: start %s: %v", backend, err)
	}
	if shared.procs == nil {
		shared.procs = map[string]*Proc{}
	}
	shared.procs[backend] = p
	return p
}

// uniqueName returns prefix-<n>-<random hex>, valid as a table and bucket name.
func uniqueName(prefix string) string {
	var b [4]byte
	_, _ = rand.Read(b[:])
	return fmt.Sprintf("%s-%d-%s", prefix, shared.counter.Add(1), hex.EncodeToString(b[:]))
}

// TestDynamo returns a client of the shared DynamoDB emulator (started on
// first use) and the name of a fresh table created from template.yaml,
// deleted when the test ends.
func TestDynamo(t testing.TB) (*dynamodb.Client, string) {
	t.Helper()
	p := sharedProc(t, DynamoBackend())
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
	defer cancel()
	db, err := DynamoClient(ctx, p.Endpoint)
	if err != nil {
		t.Fatalf("harness: %v", err)
	}
	table := uniqueName("airlock-test")
	if err := CreateTable(ctx, db, table); err != nil {
		t.Fatalf("harness: %v", err)
	}
	t.Cleanup(func() {
		ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
		defer cancel()
		_, _ = db.DeleteTable(ctx, &dynamodb.DeleteTableInput{TableName: aws.String(table)})
	})
	return db, table
}

// TestS3 returns the endpoint of the shared S3 emulator (started on first
// use) and the name of a fresh bucket, emptied and deleted when the test
// ends. Build clients with s3store.NewClient and the harness credentials.
func TestS3(t testing.TB) (string, string) {
	t.Helper()
	p := sharedProc(t, S3Backend())
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
	defer cancel()
	c := S3Client(p.Endpoint)
	bucket := uniqueName("airlock-test")
	if err := CreateBucket(ctx, c, bucket); err != nil {
		t.Fatalf("harness: %v", err)
	}
	t.Cleanup(func() {
		ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
		defer cancel()
		emptyBucket(ctx, c, bucket)
		_, _ = c.DeleteBucket(ctx, &s3.DeleteBucketInput{Bucket: aws.String(bucket)})
	})
	return p.Endpoint, bucket
}

// emptyBucket removes every object and pending multipart upload (best effort).
func emptyBucket(ctx context.Context, c *s3.Client, bucket string) {
	mp, err := c.ListMultipartUploads(ctx, &s3.ListMultipartUploadsInput{Bucket: aws.String(bucket)})
	if err == nil {
		for _, u := range mp.Uploads {
			_, _ = c.AbortMultipartUpload(ctx, &s3.AbortMultipartUploadInput{Bucket: aws.String(bucket), Key: u.Key, UploadId: u.UploadId})
		}
	}
	pages := s3.NewListObjectsV2Paginator(c, &s3.ListObjectsV2Input{Bucket: aws.String(bucket)})
	for pages.HasMorePages() {
		page, err := pages.NextPage(ctx)
		if err != nil {
			return
		}
		for _, o := range page.Contents {
			_, _ = c.DeleteObject(ctx, &s3.DeleteObjectInput{Bucket: aws.String(bucket), Key: o.Key})
		}
	}
}

// StopAll stops the emulators the test helpers started and removes their
// data. Call it from TestMain after m.Run().
func StopAll() {
	shared.mu.Lock()
	defer shared.mu.Unlock()
	for name, p := range shared.procs {
		if err := p.Stop(); err != nil {
			fmt.Fprintf(os.Stderr, "harness: %v\n", err)
		}
		delete(shared.procs, name)
	}
	for _, d := range shared.dirs {
		_ = os.RemoveAll(d)
	}
	shared.dirs = nil
}

// RunInNetns re-runs the current test binary, restricted to the test named
// by t, inside a new private network namespace (`unshare -n`, loopback up)
// with env added, and fails t when that run fails. Use it for DynamoDB Local,
// which cannot bind loopback only. It returns false when already inside a
// private namespace (the caller then runs the test body itself); it skips
// with a reason when unshare is impossible here (not root, no unshare).
func RunInNetns(t *testing.T, env ...string) bool {
	t.Helper()
	if InPrivateNetns() {
		return false
	}
	if os.Geteuid() != 0 {
		t.Skip("harness: creating a network namespace needs root (unshare -n); run `make test-netns` as root")
	}
	if _, err := exec.LookPath("unshare"); err != nil {
		t.Skip("harness: unshare not installed (util-linux); cannot create a private network namespace")
	}
	root, err := Root()
	if err != nil {
		t.Fatal(err)
	}
	args := []string{"-n", "sh", "-c", `ip link set lo up && exec "$@"`, "sh",
		os.Args[0], "-test.run", "^" + strings.ReplaceAll(t.Name(), "/", "$/^") + "$", "-test.v", "-test.count=1"}
	cmd := exec.Command("unshare", args...)
	cmd.Env = append(append(os.Environ(), "AIRLOCK_ROOT="+root), env...)
	out, err := cmd.CombinedOutput()
	t.Logf("inside unshare -n:\n%s", out)
	if err != nil {
		t.Fatalf("run in private network namespace: %v", err)
	}
	if !strings.Contains(string(out), "--- PASS: "+t.Name()) {
		t.Fatalf("run in private network namespace: %s did not pass", t.Name())
	}
	return true
}
