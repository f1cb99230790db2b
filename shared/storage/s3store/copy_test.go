package s3store

import (
	"bytes"
	"context"
	"crypto/rand"
	"io"
	"testing"

	"github.com/aws/aws-sdk-go-v2/service/s3"
	digest "github.com/opencontainers/go-digest"

	"github.com/airlock-registry/airlock/localdev/harness"
	"github.com/airlock-registry/airlock/shared/storage"
)

// TestCompleteMultipartCopy completes an upload larger than the store's
// single-copy limit (lowered here from S3's 5 GiB), so the data object is
// copied to the blob key part by part with UploadPartCopy.
func TestCompleteMultipartCopy(t *testing.T) {
	ctx := context.Background()
	endpoint, bucket := harness.TestS3(t)
	client, err := NewClient(ctx, Options{Endpoint: endpoint, Region: harness.Region, AccessKey: harness.AccessKey, SecretKey: harness.SecretKey})
	if err != nil {
		t.Fatal(err)
	}
	s := New(client, bucket)
	s.copyLimit, s.copyPart = 6<<20, storage.MinPartSize

	want := make([]byte, 13<<20+11)
	if _, err := rand.Read(want); err != nil {
		t.Fatal(err)
	}
	u := &storage.Upload{ID: "copy-test"}
	for _, chunk := range [][]byte{want[:4<<20], want[4<<20:]} {
		if _, err := s.Append(ctx, u, bytes.NewBuffer(chunk)); err != nil {
			t.Fatalf("Append: %v", err)
		}
	}
	d := digest.FromBytes(want)
	if err := s.Complete(ctx, u, d); err != nil {
		t.Fatalf("Complete: %v", err)
	}
	key := storage.BlobKey(d)
	out, err := client.GetObject(ctx, &s3.GetObjectInput{Bucket: &bucket, Key: &key})
	if err != nil {
		t.Fatalf("GetObject: %v", err)
	}
	defer out.Body.Close()
	got, err := io.ReadAll(out.Body)
	if err != nil || !bytes.Equal(got, want) {
		t.Fatalf("blob: %d bytes (%v), want %d bytes equal to those uploaded", len(got), err, len(want))
	}
	if left, err := s.UploadLeftovers(ctx, u.ID); err != nil || len(left) > 0 {
		t.Errorf("leftovers after Complete: %q, %v", left, err)
	}
}
