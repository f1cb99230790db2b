package dynamo_test

import (
	"errors"
	"fmt"
	"net/http"
	"os"
	"os/exec"
	"strconv"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/aws/aws-sdk-go-v2/aws"
	awshttp "github.com/aws/aws-sdk-go-v2/aws/transport/http"
	"github.com/aws/aws-sdk-go-v2/service/dynamodb"
	"github.com/aws/aws-sdk-go-v2/service/dynamodb/types"
	digest "github.com/opencontainers/go-digest"

	"github.com/airlock-registry/airlock/localdev/harness"
	"github.com/airlock-registry/airlock/shared/storage"
	"github.com/airlock-registry/airlock/shared/storage/dynamo"
	"github.com/airlock-registry/airlock/shared/storage/storagetest"
)

// TestMain runs the tests against the emulator chosen by AIRLOCK_TEST_DYNAMO.
// DynamoDB Local cannot bind loopback only, so for it the whole test binary
// re-runs itself inside a private network namespace (unshare -n, root):
// one JVM start for every test instead of one per test.
func TestMain(m *testing.M) {
	if harness.DynamoBackend() == "ddblocal" && !harness.InPrivateNetns() {
		os.Exit(rerunInNetns())
	}
	code := m.Run()
	harness.StopAll()
	os.Exit(code)
}

// rerunInNetns runs this test binary with the same arguments inside a new
// network namespace with loopback up, and returns its exit code.
func rerunInNetns() int {
	root, err := harness.Root()
	if err != nil {
		fmt.Fprintln(os.Stderr, err)
		return 1
	}
	args := append([]string{"-n", "sh", "-c", `ip link set lo up && exec "$@"`, "sh"}, os.Args...)
	cmd := exec.Command("unshare", args...)
	cmd.Env = append(os.Environ(), "AIRLOCK_ROOT="+root)
	cmd.Stdout, cmd.Stderr = os.Stdout, os.Stderr
	fmt.Fprintln(os.Stderr, "dynamo tests: AIRLOCK_TEST_DYNAMO=ddblocal, re-running inside unshare -n")
	if err := cmd.Run(); err != nil {
		var exit *exec.ExitError
		if errors.As(err, &exit) {
			return exit.ExitCode()
		}
		fmt.Fprintf(os.Stderr, "unshare -n (needs root and util-linux): %v\n", err)
		return 1
	}
	return 0
}

// TestMetadata runs the storage conformance suite against a fresh table per subtest.
func TestMetadata(t *testing.T) {
	storagetest.TestMetadata(t, func(t *testing.T) storage.Metadata {
		db, table := testDynamo(t)
		return dynamo.New(db, table)
	})
}

// createMu serialises harness.TestDynamo: it parses template.yaml with
// goformation, whose package-level tag registry is not safe for concurrent
// use (go test -race reports it), and the subtests run in parallel.
var createMu sync.Mutex

// testDynamo is harness.TestDynamo, one table creation at a time.
func testDynamo(t *testing.T) (*dynamodb.Client, string) {
	createMu.Lock()
	defer createMu.Unlock()
	return harness.TestDynamo(t)
}

// countingClient counts the HTTP requests (DynamoDB API calls) it sends.
type countingClient struct {
	inner aws.HTTPClient
	n     atomic.Int64
}

func (c *countingClient) Do(r *http.Request) (*http.Response, error) {
	c.n.Add(1)
	return c.inner.Do(r)
}

// calls returns how many API calls fn made.
func (c *countingClient) calls(t *testing.T, what string, fn func() error) int64 {
	t.Helper()
	before := c.n.Load()
	if err := fn(); err != nil {
		t.Fatalf("%s: %v", what, err)
	}
	return c.n.Load() - before
}

// TestCallCounts pins the hot paths to the number of DynamoDB calls the
// design promises (README, Architecture: Request flows): one read per blob
// HEAD, tag or manifest lookup, one conditional update per upload acquire or
// commit.
func TestCallCounts(t *testing.T) {
	db, table := testDynamo(t)
	counter := &countingClient{inner: awshttp.NewBuildableClient()}
	db = dynamodb.New(db.Options(), func(o *dynamodb.Options) {
		o.HTTPClient = counter
		o.RetryMaxAttempts = 1
	})
	s := dynamo.New(db, table)
	ctx := t.Context()
	img := storage.Image{Repo: "local", Name: "app"}
	d := digest.FromString("layer")
	m := storage.Manifest{Digest: digest.FromString("m"), MediaType: "application/vnd.oci.image.manifest.v1+json", Size: 1, Body: []byte("{}")}
	u := storage.Upload{ID: "u", Image: img, ExpiresAt: time.Now().Add(time.Hour)}
	var listed storage.TagItem // set by the ListImage case, used by DeleteTagIf

	cases := []struct {
		what string
		want int64
		fn   func() error
	}{
		{"PutBlob", 1, func() error { _, err := s.PutBlob(ctx, storage.Blob{Digest: d, Size: 5}); return err }},
		{"PutBlob lost race (record exists: touch it, ALL_NEW)", 2, func() error { _, err := s.PutBlob(ctx, storage.Blob{Digest: d, Size: 5}); return err }},
		{"LinkBlob (touch the record, write the link)", 2, func() error { return s.LinkBlob(ctx, img, storage.Blob{Digest: d, Size: 5}) }},
		{"StatBlob", 1, func() error { _, err := s.StatBlob(ctx, img, d); return err }},
		{"PutManifest", 2, func() error { return s.PutManifest(ctx, img, m) }}, // manifest + catalog
		{"GetManifest", 1, func() error { _, err := s.GetManifest(ctx, img, m.Digest); return err }},
		{"PutTag", 1, func() error { return s.PutTag(ctx, img, "t", m.Digest, storage.TagCreateOnly) }},
		{"ResolveTag", 1, func() error { _, err := s.ResolveTag(ctx, img, "t"); return err }},
		{"ListTags", 1, func() error { _, err := s.ListTags(ctx, img, "", 10); return err }},
		{"TouchLink", 1, func() error { _, err := s.TouchLink(ctx, img, d); return err }},
		{"TouchManifest", 1, func() error { return s.TouchManifest(ctx, img, m.Digest) }},
		{"MarkPulled", 1, func() error { return s.MarkPulled(ctx, img, m.Digest) }},
		{"ListImage", 1, func() error {
			items, err := s.ListImage(ctx, img)
			if err == nil && len(items.Tags) > 0 {
				listed = items.Tags[0]
			}
			return err
		}},
		{"Scan page", 1, func() error { _, _, err := s.Scan(ctx, "", 0); return err }},
		{"DeleteTagIf", 1, func() error { return s.DeleteTagIf(ctx, img, listed) }},
		{"CreateUpload (session + index entry, in parallel)", 2, func() error { return s.CreateUpload(ctx, u) }},
		{"AcquireUpload", 1, func() error {
			held, err := s.AcquireUpload(ctx, u.ID, 0, "l", time.Now().Add(time.Minute))
			u = held
			return err
		}},
		{"CommitUpload", 1, func() error { u.Offset = 3; return s.CommitUpload(ctx, u) }},
		{"GetUpload", 1, func() error { _, err := s.GetUpload(ctx, u.ID); return err }},
		{"CommitUploadAt", 1, func() error { next := u; next.Lease, next.Offset = "", 4; return s.CommitUploadAt(ctx, next, 3) }},
	}
	for _, c := range cases {
		if got := counter.calls(t, c.what, c.fn); got != c.want {
			t.Errorf("%s made %d DynamoDB calls, want %d", c.what, got, c.want)
		}
	}
}

// TestItemShapes checks what other tools rely on in the stored items: the
// TTL attribute of upload sessions is a Number of epoch seconds (DynamoDB TTL
// ignores any other type), and a released lease leaves no lease holder and
// leaseUntil 0 (always present: conditions compare it without an OR).
func TestItemShapes(t *testing.T) {
	db, table := testDynamo(t)
	s := dynamo.New(db, table)
	ctx := t.Context()
	exp := time.Now().Add(time.Hour).Truncate(time.Second)
	u := storage.Upload{ID: "shape", Image: storage.Image{Repo: "local", Name: "app"}, ExpiresAt: exp}
	if err := s.CreateUpload(ctx, u); err != nil {
		t.Fatal(err)
	}
	held, err := s.AcquireUpload(ctx, u.ID, 0, "l", time.Now().Add(time.Minute))
	if err != nil {
		t.Fatal(err)
	}
	if err := s.CommitUpload(ctx, held); err != nil {
		t.Fatal(err)
	}
	res, err := db.GetItem(ctx, &dynamodb.GetItemInput{
		TableName:      aws.String(table),
		Key:            map[string]types.AttributeValue{"pk": &types.AttributeValueMemberS{Value: "UPLOAD#shape"}, "sk": &types.AttributeValueMemberS{Value: "UPLOAD"}},
		ConsistentRead: aws.Bool(true),
	})
	if err != nil {
		t.Fatal(err)
	}
	n, ok := res.Item["expiresAt"].(*types.AttributeValueMemberN)
	if !ok {
		t.Fatalf("expiresAt = %#v, want a Number", res.Item["expiresAt"])
	}
	if want := strconv.FormatInt(exp.Unix(), 10); n.Value != want {
		t.Fatalf("expiresAt = %s, want %s", n.Value, want)
	}
	if v, ok := res.Item["lease"]; ok {
		t.Errorf("after CommitUpload the item still has lease = %#v", v)
	}
	if v, ok := res.Item["leaseUntil"].(*types.AttributeValueMemberN); !ok || v.Value != "0" {
		t.Errorf("after CommitUpload leaseUntil = %#v, want the Number 0", res.Item["leaseUntil"])
	}
}

// BenchmarkHotPaths measures the calls on the pull and push paths against
// the emulator (go test -run '^$' -bench . ./shared/storage/dynamo/).
func BenchmarkHotPaths(b *testing.B) {
	createMu.Lock()
	db, table := harness.TestDynamo(b)
	createMu.Unlock()
	s := dynamo.New(db, table)
	ctx := b.Context()
	img := storage.Image{Repo: "local", Name: "app"}
	d := digest.FromString("layer")
	m := storage.Manifest{Digest: digest.FromString("m"), MediaType: "application/vnd.oci.image.manifest.v1+json", Size: 2, Body: []byte("{}")}
	if _, err := s.PutBlob(ctx, storage.Blob{Digest: d, Size: 5}); err != nil {
		b.Fatal(err)
	}
	if err := s.LinkBlob(ctx, img, storage.Blob{Digest: d, Size: 5}); err != nil {
		b.Fatal(err)
	}
	if err := s.PutManifest(ctx, img, m); err != nil {
		b.Fatal(err)
	}
	if err := s.PutTag(ctx, img, "latest", m.Digest, storage.TagOverwrite); err != nil {
		b.Fatal(err)
	}
	b.Run("StatBlob", func(b *testing.B) {
		for b.Loop() {
			if _, err := s.StatBlob(ctx, img, d); err != nil {
				b.Fatal(err)
			}
		}
	})
	b.Run("ResolveTag+GetManifest", func(b *testing.B) {
		for b.Loop() {
			dd, err := s.ResolveTag(ctx, img, "latest")
			if err == nil {
				_, err = s.GetManifest(ctx, img, dd)
			}
			if err != nil {
				b.Fatal(err)
			}
		}
	})
	b.Run("AcquireCommit", func(b *testing.B) {
		u := storage.Upload{ID: "bench", Image: img, ExpiresAt: time.Now().Add(time.Hour)}
		if err := s.CreateUpload(ctx, u); err != nil {
			b.Fatal(err)
		}
		for b.Loop() {
			held, err := s.AcquireUpload(ctx, u.ID, u.Offset, "l", time.Now().Add(time.Minute))
			if err != nil {
				b.Fatal(err)
			}
			held.Offset++
			if err := s.CommitUpload(ctx, held); err != nil {
				b.Fatal(err)
			}
			u = held
		}
	})
}
