package s3store_test

import (
	"bytes"
	"context"
	"crypto/rand"
	"fmt"
	"os"
	"testing"

	"github.com/aws/aws-sdk-go-v2/service/s3"
	digest "github.com/opencontainers/go-digest"

	"github.com/airlock-registry/airlock/localdev/harness"
	"github.com/airlock-registry/airlock/shared/awscount"
	"github.com/airlock-registry/airlock/shared/storage"
	"github.com/airlock-registry/airlock/shared/storage/s3store"
	"github.com/airlock-registry/airlock/shared/storage/storagetest"
)

func TestMain(m *testing.M) {
	code := m.Run()
	harness.StopAll()
	os.Exit(code)
}

// countedStore is a Store whose client's requests are counted
// (storagetest.RequestCounter); UploadLeftovers comes from the Store.
type countedStore struct {
	*s3store.Store
	c *awscount.Counter
}

func (s countedStore) Requests() map[string]int       { return s.c.Snapshot() }
func (s countedStore) RequestBytes() map[string]int64 { return s.c.Bytes() }
func (s countedStore) ResetRequests()                 { s.c.Reset() }

// newClient returns a client of a fresh bucket on the test S3 emulator,
// counting its requests in c.
func newClient(t testing.TB, c *awscount.Counter) (*s3.Client, string) {
	t.Helper()
	endpoint, bucket := harness.TestS3(t)
	client, err := s3store.NewClient(context.Background(), s3store.Options{
		Endpoint: endpoint, Region: harness.Region, AccessKey: harness.AccessKey, SecretKey: harness.SecretKey,
	})
	if err != nil {
		t.Fatalf("NewClient: %v", err)
	}
	return s3.New(client.Options(), func(o *s3.Options) { o.APIOptions = append(o.APIOptions, c.APIOption()) }), bucket
}

func TestBlobs(t *testing.T) {
	t.Logf("S3 emulator: %s", harness.S3Backend())
	storagetest.TestBlobs(t, func(t *testing.T) storage.Blobs {
		c := &awscount.Counter{}
		client, bucket := newClient(t, c)
		return countedStore{s3store.New(client, bucket), c}
	})
}

// TestBlobsMinPartSize runs the suite with parts of storage.MinPartSize, the
// edge where a part is made exactly when staged + new bytes reach it, and
// three part uploads in flight per Append (more parts, more concurrency).
func TestBlobsMinPartSize(t *testing.T) {
	storagetest.TestBlobs(t, func(t *testing.T) storage.Blobs {
		c := &awscount.Counter{}
		client, bucket := newClient(t, c)
		s := s3store.New(client, bucket, s3store.WithPartSize(1), s3store.WithInflight(3))
		if s.PartSize() != storage.MinPartSize {
			t.Fatalf("WithPartSize(1): part size %d, want %d", s.PartSize(), storage.MinPartSize)
		}
		return countedStore{s, c}
	})
}

func TestNewClientOptions(t *testing.T) {
	if _, err := s3store.NewClient(context.Background(), s3store.Options{AccessKey: "k"}); err == nil {
		t.Errorf("NewClient with an access key and no secret: no error")
	}
	c, err := s3store.NewClient(context.Background(), s3store.Options{Endpoint: "http://127.0.0.1:1", AccessKey: "k", SecretKey: "s"})
	if err != nil {
		t.Fatalf("NewClient: %v", err)
	}
	o := c.Options()
	if !o.UsePathStyle || o.Region == "" || o.BaseEndpoint == nil || *o.BaseEndpoint != "http://127.0.0.1:1" {
		t.Errorf("client with an endpoint: path style %v, region %q, endpoint %v", o.UsePathStyle, o.Region, o.BaseEndpoint)
	}
}

// BenchmarkPush pushes 3 blobs of 20 MiB (the push tests/bench measures), streamed in
// one Append each or in chunks of 256 KiB / 4 MiB, Append through Complete.
//
//	go test -run '^$' -bench Push -benchtime 3x ./shared/storage/s3store
func BenchmarkPush(b *testing.B) {
	const blobSize, blobs = 20 << 20, 3
	data := make([][]byte, blobs)
	for i := range data {
		data[i] = make([]byte, blobSize)
		if _, err := rand.Read(data[i]); err != nil {
			b.Fatal(err)
		}
	}
	for _, bc := range []struct {
		name  string
		chunk int
	}{{"streamed", blobSize}, {"chunks4MiB", 4 << 20}, {"chunks256KiB", 256 << 10}} {
		b.Run(bc.name, func(b *testing.B) {
			c := &awscount.Counter{}
			client, bucket := newClient(b, c)
			s := s3store.New(client, bucket)
			ctx := context.Background()
			b.SetBytes(blobSize * blobs)
			for i := 0; b.Loop(); i++ {
				for j, blob := range data {
					u := &storage.Upload{ID: fmt.Sprintf("bench-%d-%d", i, j)}
					for off := 0; off < len(blob); off += bc.chunk {
						if _, err := s.Append(ctx, u, bytes.NewReader(blob[off:min(off+bc.chunk, len(blob))])); err != nil {
							b.Fatal(err)
						}
					}
					// Each iteration writes a new blob key: other bytes, same digest would dedupe.
					d := digest.FromString(fmt.Sprintf("%s-%d-%d", b.Name(), i, j))
					if _, err := s.Complete(ctx, u, d); err != nil {
						b.Fatal(err)
					}
				}
			}
			b.ReportMetric(float64(c.Total())/float64(b.N), "requests/op")
		})
	}
}
