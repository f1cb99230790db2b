package memstore_test

import (
	"bytes"
	"errors"
	"io"
	"net/http"
	"strings"
	"sync"
	"testing"
	"time"

	digest "github.com/opencontainers/go-digest"

	"github.com/airlock-registry/airlock/shared/storage"
	"github.com/airlock-registry/airlock/shared/storage/memstore"
	"github.com/airlock-registry/airlock/shared/storage/storagetest"
)

var (
	_ storagetest.UploadInspector = (*memstore.Store)(nil)
	_ storagetest.RequestCounter  = (*memstore.Store)(nil)
)

// newStore returns a store closed when t ends.
func newStore(t *testing.T, opts ...memstore.Option) *memstore.Store {
	s := memstore.New(opts...)
	t.Cleanup(func() {
		if err := s.Close(); err != nil {
			t.Errorf("Close: %v", err)
		}
	})
	return s
}

func TestMetadata(t *testing.T) {
	storagetest.TestMetadata(t, func(t *testing.T) storage.Metadata { return newStore(t) })
}

func TestBlobs(t *testing.T) {
	storagetest.TestBlobs(t, func(t *testing.T) storage.Blobs { return newStore(t) })
}

// TestBlobsMinPartSize runs the suite with parts of storage.MinPartSize, as
// s3store's test of the same name.
func TestBlobsMinPartSize(t *testing.T) {
	storagetest.TestBlobs(t, func(t *testing.T) storage.Blobs {
		s := newStore(t, memstore.WithPartSize(1))
		if s.PartSize() != storage.MinPartSize {
			t.Fatalf("WithPartSize(1): part size %d, want %d", s.PartSize(), storage.MinPartSize)
		}
		return s
	})
}

// clock is a settable clock.
type clock struct {
	mu sync.Mutex
	t  time.Time
}

func (c *clock) Now() time.Time { c.mu.Lock(); defer c.mu.Unlock(); return c.t }

func (c *clock) Add(d time.Duration) { c.mu.Lock(); defer c.mu.Unlock(); c.t = c.t.Add(d) }

// TestClock checks that every expiry follows WithClock: sessions, leases,
// markers and presigned URLs.
func TestClock(t *testing.T) {
	c := &clock{t: time.Date(2030, 1, 2, 3, 4, 5, 0, time.UTC)}
	s := newStore(t, memstore.WithClock(c.Now))
	ctx := t.Context()

	u := storage.Upload{ID: "u", Image: storage.Image{Repo: "local", Name: "a"}, ExpiresAt: c.Now().Add(time.Hour)}
	if err := s.CreateUpload(ctx, u); err != nil {
		t.Fatal(err)
	}
	if _, err := s.AcquireUpload(ctx, u.ID, 0, "l1", c.Now().Add(time.Minute)); err != nil {
		t.Fatal(err)
	}
	if _, err := s.AcquireUpload(ctx, u.ID, 0, "l2", c.Now().Add(time.Minute)); !errors.Is(err, storage.ErrConflict) {
		t.Fatalf("AcquireUpload with a live lease: %v, want ErrConflict", err)
	}
	c.Add(time.Minute + time.Millisecond)
	if _, err := s.AcquireUpload(ctx, u.ID, 0, "l2", c.Now().Add(time.Minute)); err != nil {
		t.Fatalf("AcquireUpload after the lease expired by the clock: %v", err)
	}

	m := storage.Marker{Group: "g", Key: "k", Value: "v", Until: c.Now().Add(time.Second)}
	if err := s.PutMarker(ctx, m); err != nil {
		t.Fatal(err)
	}
	c.Add(999 * time.Millisecond)
	if _, err := s.GetMarker(ctx, "g", "k"); err != nil {
		t.Fatalf("GetMarker 1 ms before Until: %v", err)
	}
	c.Add(time.Millisecond)
	if _, err := s.GetMarker(ctx, "g", "k"); !errors.Is(err, storage.ErrNotFound) {
		t.Fatalf("GetMarker at Until: %v, want ErrNotFound", err)
	}
	if err := s.AcquireMarker(ctx, storage.Marker{Group: "g", Key: "k", Value: "w", Until: c.Now().Add(time.Second)}); err != nil {
		t.Fatalf("AcquireMarker at the old marker's Until: %v", err)
	}

	key, err := s.PutSmall(ctx, digest.FromString("x"), []byte("x"))
	if err != nil {
		t.Fatal(err)
	}
	url, err := s.PresignGet(ctx, key, 10*time.Second)
	if err != nil {
		t.Fatal(err)
	}
	if status, body := get(t, url); status != http.StatusOK || string(body) != "x" {
		t.Fatalf("GET presigned: %d %q", status, body)
	}
	c.Add(10 * time.Second)
	if status, _ := get(t, url); status != http.StatusForbidden {
		t.Fatalf("GET presigned URL expired by the clock: %d, want 403", status)
	}
	c.Add(time.Hour)
	if _, err := s.GetUpload(ctx, u.ID); !errors.Is(err, storage.ErrNotFound) {
		t.Fatalf("GetUpload of a session expired by the clock: %v, want ErrNotFound", err)
	}
}

func get(t *testing.T, url string) (int, []byte) {
	t.Helper()
	resp, err := http.Get(url)
	if err != nil {
		t.Fatalf("GET %s: %v", url, err)
	}
	defer resp.Body.Close()
	b, err := io.ReadAll(resp.Body)
	if err != nil {
		t.Fatalf("GET %s: %v", url, err)
	}
	return resp.StatusCode, b
}

// TestNoAliasing changes what was passed in and what came out, and checks
// the store did not change with it.
func TestNoAliasing(t *testing.T) {
	s := newStore(t)
	ctx := t.Context()
	img := storage.Image{Repo: "local", Name: "a"}
	body := []byte(`{"schemaVersion":2}`)
	m := storage.Manifest{
		Digest: digest.FromBytes(body), MediaType: "application/vnd.oci.image.manifest.v1+json", Size: int64(len(body)),
		Body: body, Blobs: []digest.Digest{digest.FromString("l")}, Subject: digest.FromString("s"),
		Annotations: map[string]string{"k": "v"},
	}
	if err := s.PutManifest(ctx, img, m); err != nil {
		t.Fatal(err)
	}
	body[0], m.Blobs[0], m.Annotations["k"] = 'X', "changed", "changed"
	got, err := s.GetManifest(ctx, img, m.Digest)
	if err != nil {
		t.Fatal(err)
	}
	if got.Body[0] != '{' || got.Blobs[0] != digest.FromString("l") || got.Annotations["k"] != "v" {
		t.Fatalf("PutManifest kept the caller's slices or maps: %+v", got)
	}
	got.Body[0], got.Blobs[0], got.Annotations["k"] = 'Y', "changed", "changed"
	refs, _ := s.ListReferrers(ctx, img, m.Subject)
	refs[0].Annotations["k"] = "changed"
	again, _ := s.GetManifest(ctx, img, m.Digest)
	refs, _ = s.ListReferrers(ctx, img, m.Subject)
	if again.Body[0] != '{' || again.Blobs[0] != digest.FromString("l") || again.Annotations["k"] != "v" || refs[0].Annotations["k"] != "v" {
		t.Fatalf("GetManifest or ListReferrers returned the store's slices or maps: %+v %+v", again, refs)
	}

	u := storage.Upload{
		ID: "u", Image: img, ExpiresAt: time.Now().Add(time.Hour), HashState: []byte{1},
		Parts: []storage.Part{{Number: 1, ETag: "e", Size: 5}}, Staged: []storage.Staged{{Key: "k", Size: 1}},
	}
	if err := s.CreateUpload(ctx, u); err != nil {
		t.Fatal(err)
	}
	u.HashState[0], u.Parts[0].ETag, u.Staged[0].Key = 9, "changed", "changed"
	gu, _ := s.GetUpload(ctx, "u")
	gu.HashState[0], gu.Parts[0].ETag, gu.Staged[0].Key = 8, "changed", "changed"
	gu, _ = s.GetUpload(ctx, "u")
	if gu.HashState[0] != 1 || gu.Parts[0].ETag != "e" || gu.Staged[0].Key != "k" {
		t.Fatalf("upload sessions alias the caller's slices: %+v", gu)
	}

	mb := []byte("manifest body")
	key, _ := s.PutManifestBody(ctx, digest.FromBytes(mb), mb)
	mb[0] = 'X'
	b, _ := s.GetManifestBody(ctx, key)
	b[1] = 'Y'
	if b, _ := s.GetManifestBody(ctx, key); string(b) != "manifest body" {
		t.Fatalf("manifest bodies alias the caller's bytes: %q", b)
	}
	chunk := bytes.Repeat([]byte("c"), 10)
	st, _ := s.StageChunk(ctx, "u2", 0, "tok", chunk)
	chunk[0] = 'X'
	rc, err := s.ReadStaged(ctx, &storage.Upload{ID: "u2", Offset: 10, Staged: []storage.Staged{st}})
	if err != nil {
		t.Fatal(err)
	}
	if b, _ := io.ReadAll(rc); string(b) != strings.Repeat("c", 10) {
		t.Fatalf("staged chunks alias the caller's bytes: %q", b)
	}
}

// TestClose: presigned URLs stop working, presigning fails, Close is idempotent.
func TestClose(t *testing.T) {
	s := memstore.New()
	ctx := t.Context()
	key, _ := s.PutSmall(ctx, digest.FromString("x"), []byte("x"))
	if err := s.Close(); err != nil {
		t.Fatalf("Close before any presign: %v", err)
	}
	if _, err := s.PresignGet(ctx, key, time.Minute); err == nil {
		t.Fatalf("PresignGet after Close: no error")
	}
	s = memstore.New()
	key, _ = s.PutSmall(ctx, digest.FromString("x"), []byte("x"))
	url, err := s.PresignGet(ctx, key, time.Minute)
	if err != nil {
		t.Fatal(err)
	}
	if status, _ := get(t, url); status != http.StatusOK {
		t.Fatalf("GET presigned: %d", status)
	}
	if err := s.Close(); err != nil {
		t.Fatalf("Close: %v", err)
	}
	if err := s.Close(); err != nil {
		t.Fatalf("second Close: %v", err)
	}
	if resp, err := http.Get(url); err == nil {
		resp.Body.Close()
		t.Fatalf("GET presigned after Close: status %d, want a connection error", resp.StatusCode)
	}
	if ok, err := s.BlobExists(ctx, key); !ok || err != nil {
		t.Fatalf("BlobExists after Close = %v, %v; data must stay readable", ok, err)
	}
}
