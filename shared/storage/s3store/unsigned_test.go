package s3store_test

import (
	"bytes"
	"context"
	"crypto/rand"
	"net/http"
	"sync"
	"testing"

	"github.com/aws/aws-sdk-go-v2/service/s3"

	"github.com/airlock-registry/airlock/localdev/harness"
	"github.com/airlock-registry/airlock/shared/storage"
	"github.com/airlock-registry/airlock/shared/storage/s3store"
)

// payloadRecorder is an HTTP transport that records the x-amz-content-sha256
// header of every request that carries a body, keyed "PUT part" (UploadPart)
// or "PUT object" (PutObject), then sends it on to the emulator.
type payloadRecorder struct {
	mu   sync.Mutex
	seen map[string][]string
}

func (p *payloadRecorder) Do(r *http.Request) (*http.Response, error) {
	if r.Method == http.MethodPut {
		kind := "PUT object"
		if r.URL.Query().Has("partNumber") {
			kind = "PUT part"
		}
		p.mu.Lock()
		p.seen[kind] = append(p.seen[kind], r.Header.Get("X-Amz-Content-Sha256"))
		p.mu.Unlock()
	}
	return http.DefaultTransport.RoundTrip(r)
}

// TestUnsignedPayload checks that part uploads and staged puts sign
// UNSIGNED-PAYLOAD instead of hashing the body (the bytes are hashed once,
// for the digest, by the registry) and that the emulator accepts them.
func TestUnsignedPayload(t *testing.T) {
	endpoint, bucket := harness.TestS3(t)
	client, err := s3store.NewClient(context.Background(), s3store.Options{
		Endpoint: endpoint, Region: harness.Region, AccessKey: harness.AccessKey, SecretKey: harness.SecretKey,
	})
	if err != nil {
		t.Fatalf("NewClient: %v", err)
	}
	rec := &payloadRecorder{seen: map[string][]string{}}
	client = s3.New(client.Options(), func(o *s3.Options) { o.HTTPClient = rec })
	s := s3store.New(client, bucket, s3store.WithPartSize(1))
	ctx := context.Background()

	data := make([]byte, storage.MinPartSize+(1<<20))
	if _, err := rand.Read(data); err != nil {
		t.Fatal(err)
	}
	u := &storage.Upload{ID: "unsigned"}
	if _, err := s.Append(ctx, u, bytes.NewReader(data[:1<<20])); err != nil { // staged
		t.Fatalf("Append: %v", err)
	}
	if _, err := s.AppendLast(ctx, u, bytes.NewReader(data[1<<20:])); err != nil { // one part
		t.Fatalf("AppendLast: %v", err)
	}
	if len(u.Parts) != 1 || u.Parts[0].Size != int64(len(data)) {
		t.Fatalf("parts %+v, want one of %d bytes", u.Parts, len(data))
	}
	for _, kind := range []string{"PUT object", "PUT part"} {
		got := rec.seen[kind]
		if len(got) == 0 {
			t.Errorf("%s: no request seen", kind)
		}
		for _, h := range got {
			if h != "UNSIGNED-PAYLOAD" {
				t.Errorf("%s: x-amz-content-sha256 %q, want UNSIGNED-PAYLOAD", kind, h)
			}
		}
	}
}
