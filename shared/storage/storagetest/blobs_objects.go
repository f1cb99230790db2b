package storagetest

import (
	"bytes"
	"context"
	"errors"
	"io"
	"net/http"
	"strings"
	"testing"
	"time"

	digest "github.com/opencontainers/go-digest"

	"github.com/airlock-registry/airlock/shared/storage"
)

func testPresign(t *testing.T, s storage.Blobs) {
	ctx := context.Background()
	for _, n := range []int{3000, 6 << 20} { // content-addressed key, upload key
		want := randomBytes(t, n)
		u := newBlobUpload(t)
		appendChunk(t, ctx, s, u, want)
		_, key := completeAndCheck(t, ctx, s, u, want)

		url, err := s.PresignGet(ctx, key, time.Minute)
		if err != nil {
			t.Fatalf("PresignGet: %v", err)
		}
		i := strings.Index(url, "X-Amz-Signature=")
		if i < 0 {
			t.Fatalf("presigned URL has no X-Amz-Signature: %s", url)
		}
		i += len("X-Amz-Signature=")
		c := byte('0')
		if url[i] == '0' {
			c = '1'
		}
		tampered := url[:i] + string(c) + url[i+1:]
		if status, body := httpGet(t, ctx, tampered); status != http.StatusForbidden {
			t.Errorf("GET with a tampered signature: status %d (want 403): %.200s", status, body)
		}
		leaf := key[strings.LastIndex(key, "/")+1:]
		other := strings.Replace(url, leaf, strings.Repeat("0", len(leaf)), 1)
		if other == url {
			t.Fatalf("presigned URL %s does not name the key %s", url, key)
		}
		if status, _ := httpGet(t, ctx, other); status != http.StatusForbidden {
			t.Errorf("GET of another key with the blob's signature: status %d, want 403", status)
		}

		short, err := s.PresignGet(ctx, key, time.Second)
		if err != nil {
			t.Fatalf("PresignGet: %v", err)
		}
		time.Sleep(2100 * time.Millisecond)
		if status, body := httpGet(t, ctx, short); status != http.StatusForbidden {
			t.Errorf("GET of an expired presigned URL: status %d (want 403): %.200s", status, body)
		}
	}
}

// testPutSmall: a small blob is one object at a new key under its
// content-addressed one (storage.NewBlobKey): two puts of the same bytes
// never share a key.
func testPutSmall(t *testing.T, s storage.Blobs) {
	ctx := context.Background()
	for _, n := range []int{0, 311, storage.MinPartSize} {
		want := randomBytes(t, n)
		d := digest.FromBytes(want)
		key, err := s.PutSmall(ctx, d, want)
		if err != nil {
			t.Fatalf("PutSmall of %d bytes: %v", n, err)
		}
		if !strings.HasPrefix(key, storage.BlobKey(d)+".") || len(key) != len(storage.BlobKey(d))+17 {
			t.Errorf("PutSmall key = %q, want %q followed by . and 16 hex digits", key, storage.BlobKey(d))
		}
		again, err := s.PutSmall(ctx, d, want)
		if err != nil || again == key {
			t.Errorf("second PutSmall of the same bytes: key %q, %v; want a new key (not %q)", again, err, key)
		}
		if got := fetchBlob(t, ctx, s, key); !bytes.Equal(got, want) {
			t.Errorf("PutSmall of %d bytes: fetched %d bytes that differ", n, len(got))
		}
	}
	big := randomBytes(t, storage.MinPartSize+1)
	if _, err := s.PutSmall(ctx, digest.FromBytes(big), big); err == nil {
		t.Errorf("PutSmall of %d bytes (over storage.MinPartSize): no error", len(big))
	}
}

func testDeleteBlob(t *testing.T, s storage.Blobs) {
	ctx := context.Background()
	for _, n := range []int{10, 6 << 20} { // content-addressed key, upload key
		want := randomBytes(t, n)
		u := newBlobUpload(t)
		appendChunk(t, ctx, s, u, want)
		_, key := completeAndCheck(t, ctx, s, u, want)
		if ok, err := s.BlobExists(ctx, key); err != nil || !ok {
			t.Errorf("BlobExists(%s) after Complete = %v, %v", key, ok, err)
		}
		if br, ok := s.(storage.BlobReader); ok {
			rc, err := br.ReadBlob(ctx, key)
			if err != nil {
				t.Fatalf("ReadBlob: %v", err)
			}
			got, err := io.ReadAll(rc)
			rc.Close()
			if err != nil || !bytes.Equal(got, want) {
				t.Errorf("ReadBlob: %d bytes (%v), want the %d bytes stored", len(got), err, len(want))
			}
		}
		if err := s.DeleteBlob(ctx, key); err != nil {
			t.Fatalf("DeleteBlob: %v", err)
		}
		if ok, err := s.BlobExists(ctx, key); err != nil || ok {
			t.Errorf("BlobExists after DeleteBlob = %v, %v", ok, err)
		}
		if err := s.DeleteBlob(ctx, key); err != nil {
			t.Errorf("DeleteBlob of a missing blob: %v", err)
		}
		if br, ok := s.(storage.BlobReader); ok {
			if _, err := br.ReadBlob(ctx, key); !errors.Is(err, storage.ErrNotFound) {
				t.Errorf("ReadBlob of a deleted blob: %v, want ErrNotFound", err)
			}
		}
		// The same content uploaded twice completes twice (the registry keeps
		// one record and deletes the other object).
		var keys []string
		for range 2 {
			u := newBlobUpload(t)
			appendChunk(t, ctx, s, u, want)
			_, k := completeAndCheck(t, ctx, s, u, want)
			keys = append(keys, k)
		}
		if n > storage.MinPartSize && keys[0] == keys[1] {
			t.Errorf("two multipart uploads of the same bytes completed at one key %s", keys[0])
		}
	}
}
