package storagetest

import (
	"bytes"
	"context"
	"crypto/rand"
	"encoding/hex"
	"errors"
	"io"
	"net/http"
	"strings"
	"testing"
	"time"

	digest "github.com/opencontainers/go-digest"

	"github.com/airlock-registry/airlock/shared/storage"
)

// UploadInspector is an optional capability of a Blobs store under test: it
// lists what an upload id still holds in the backend (objects, multipart
// uploads). TestBlobs uses it to check that Abort and Complete leave nothing.
type UploadInspector interface {
	UploadLeftovers(ctx context.Context, id string) ([]string, error)
}

// RequestCounter is an optional capability of a Blobs store under test: it
// counts the backend requests its client sent, keyed "<service>.<operation>"
// (see package awscount), and their body bytes. TestBlobs uses it to check
// the staging rule: every byte is written at most twice.
type RequestCounter interface {
	Requests() map[string]int
	RequestBytes() map[string]int64
	ResetRequests()
}

// MaxStagedEntries bounds the staged objects a session may list, whatever the
// client's chunk size: the session is one DynamoDB item (≤ 400 KB).
const MaxStagedEntries = 256

// TestBlobs runs the storage.Blobs conformance suite. newStore returns a store
// on a fresh, empty bucket; it may implement UploadInspector and RequestCounter
// (the subtests needing them skip, saying so, when it does not).
func TestBlobs(t *testing.T, newStore func(t *testing.T) storage.Blobs) {
	const mib = 1 << 20
	t.Run("Streamed20MiB", func(t *testing.T) {
		t.Parallel()
		testBlobChunks(t, newStore(t), []int{20 * mib})
	})
	t.Run("Chunks256KiB", func(t *testing.T) {
		t.Parallel()
		testBlobChunks(t, newStore(t), repeat(256<<10, 48)) // 12 MiB
	})
	t.Run("Chunks1MiB", func(t *testing.T) {
		t.Parallel()
		testBlobChunks(t, newStore(t), repeat(mib, 13))
	})
	t.Run("Chunks4MiB", func(t *testing.T) {
		t.Parallel()
		testBlobChunks(t, newStore(t), repeat(4*mib, 5))
	})
	t.Run("ChunksOdd", func(t *testing.T) {
		t.Parallel()
		testBlobChunks(t, newStore(t), []int{mib + 7, 3*mib + 7, 5*mib + 7, 7, 9*mib + 1, 1})
	})
	t.Run("ChunksEndOnPartBoundary", func(t *testing.T) {
		t.Parallel()
		testBlobChunks(t, newStore(t), []int{3 * mib, 2 * mib, 5 * mib})
	})
	t.Run("TinyChunks", func(t *testing.T) {
		t.Parallel()
		sizes := append(repeat(1<<10, 500), repeat(7<<10+3, 150)...)
		testBlobChunks(t, newStore(t), append(sizes, 5*mib, 33<<10, 33<<10))
	})
	t.Run("Small", func(t *testing.T) {
		t.Parallel()
		u := testBlobChunks(t, newStore(t), []int{100 << 10, mib, 7})
		if u.MultipartID != "" || len(u.Parts) != 0 {
			t.Errorf("upload of %d bytes made multipart parts: %+v", u.Offset, u.Parts)
		}
	})
	t.Run("SingleChunk", func(t *testing.T) {
		t.Parallel()
		testBlobChunks(t, newStore(t), []int{1000})
	})
	t.Run("Empty", func(t *testing.T) {
		t.Parallel()
		testBlobChunks(t, newStore(t), nil)
	})
	t.Run("EmptyAppends", func(t *testing.T) {
		t.Parallel()
		testBlobChunks(t, newStore(t), []int{0, 1000, 0})
	})
	t.Run("ReadStaged", func(t *testing.T) { t.Parallel(); testReadStaged(t, newStore(t)) })
	t.Run("Abort", func(t *testing.T) { t.Parallel(); testAbort(t, newStore(t)) })
	t.Run("Presign", func(t *testing.T) { t.Parallel(); testPresign(t, newStore(t)) })
	t.Run("ManifestBody", func(t *testing.T) { t.Parallel(); testManifestBody(t, newStore(t)) })
	t.Run("PutSmall", func(t *testing.T) { t.Parallel(); testPutSmall(t, newStore(t)) })
	t.Run("DeleteBlob", func(t *testing.T) { t.Parallel(); testDeleteBlob(t, newStore(t)) })
	t.Run("AppendLast", func(t *testing.T) { t.Parallel(); testAppendLast(t, newStore(t)) })
	t.Run("ChunkStager", func(t *testing.T) { t.Parallel(); testChunkStager(t, newStore(t)) })
	t.Run("RetryAfterFailedAppend", func(t *testing.T) { t.Parallel(); testRetryFailedAppend(t, newStore(t)) })
	t.Run("RetryAfterLostCommit", func(t *testing.T) { t.Parallel(); testRetryLostCommit(t, newStore(t)) })
	t.Run("CompleteTwice", func(t *testing.T) { t.Parallel(); testCompleteTwice(t, newStore(t)) })
	t.Run("StagingRule", func(t *testing.T) { t.Parallel(); testStagingRule(t, newStore) })
	t.Run("Parts", func(t *testing.T) { t.Parallel(); testParts(t, newStore(t)) })
	t.Run("ObjectLister", func(t *testing.T) { t.Parallel(); testObjectLister(t, newStore(t)) })
}

func repeat(size, n int) []int {
	s := make([]int, n)
	for i := range s {
		s[i] = size
	}
	return s
}

// randomBytes returns n random bytes.
func randomBytes(t testing.TB, n int) []byte {
	b := make([]byte, n)
	if _, err := rand.Read(b); err != nil {
		t.Fatal(err)
	}
	return b
}

// newBlobUpload returns a fresh session with a random id.
func newBlobUpload(t testing.TB) *storage.Upload {
	var id [12]byte
	if _, err := rand.Read(id[:]); err != nil {
		t.Fatal(err)
	}
	return &storage.Upload{ID: hex.EncodeToString(id[:]), Image: storage.Image{Repo: "local", Name: "test/blobs"}, HashAlgorithm: "sha256"}
}

// streamOnly hides every method but Read, as a request body does (no Seek, no Len).
type streamOnly struct{ r io.Reader }

func (s streamOnly) Read(p []byte) (int, error) { return s.r.Read(p) }

// appendChunk appends b as one request body and checks the session's bookkeeping.
func appendChunk(t testing.TB, ctx context.Context, s storage.Blobs, u *storage.Upload, b []byte) {
	t.Helper()
	before := u.Offset
	n, err := s.Append(ctx, u, streamOnly{bytes.NewReader(b)})
	if err != nil {
		t.Fatalf("Append of %d bytes at %d: %v", len(b), before, err)
	}
	if n != int64(len(b)) || u.Offset != before+int64(len(b)) {
		t.Fatalf("Append of %d bytes at %d: returned %d, offset now %d", len(b), before, n, u.Offset)
	}
	checkUploadShape(t, u)
}

// checkUploadShape checks the session invariants Append must keep.
func checkUploadShape(t testing.TB, u *storage.Upload) {
	t.Helper()
	checkShape(t, u, false)
}

// checkShape checks the session invariants; shortLast allows a last part
// under storage.MinPartSize (after AppendLast).
func checkShape(t testing.TB, u *storage.Upload, shortLast bool) {
	t.Helper()
	var total, staged int64
	for i, p := range u.Parts {
		short := p.Size < storage.MinPartSize && !(shortLast && i == len(u.Parts)-1 && p.Size > 0)
		if p.Number != int32(i+1) || p.ETag == "" || short {
			t.Errorf("part %d = %+v: want number %d, an ETag and at least %d bytes", i, p, i+1, storage.MinPartSize)
		}
		total += p.Size
	}
	for _, st := range u.Staged {
		if st.Size <= 0 || !strings.HasPrefix(st.Key, storage.UploadPrefix(u.ID)) {
			t.Errorf("staged %+v: want bytes under %s", st, storage.UploadPrefix(u.ID))
		}
		staged += st.Size
	}
	if len(u.Staged) > MaxStagedEntries {
		t.Errorf("%d staged entries: the session item would grow past DynamoDB's limits", len(u.Staged))
	}
	if staged >= storage.MinPartSize {
		t.Errorf("%d bytes staged: a part should have been made at %d", staged, storage.MinPartSize)
	}
	if total+staged != u.Offset {
		t.Errorf("parts (%d) + staged (%d) != offset %d", total, staged, u.Offset)
	}
	if (len(u.Parts) > 0) != (u.MultipartID != "") {
		t.Errorf("multipart id %q with %d parts", u.MultipartID, len(u.Parts))
	}
}

// testBlobChunks appends chunks of the given sizes, completes the upload and
// checks the blob served by the presigned URL. It returns the session as it
// was before Complete.
func testBlobChunks(t *testing.T, s storage.Blobs, sizes []int) storage.Upload {
	ctx := context.Background()
	u := newBlobUpload(t)
	var all bytes.Buffer
	for _, n := range sizes {
		b := randomBytes(t, n)
		all.Write(b)
		appendChunk(t, ctx, s, u, b)
	}
	before := *u
	completeAndCheck(t, ctx, s, u, all.Bytes())
	return before
}

// completeAndCheck completes u as want's digest and checks the blob's bytes
// through a presigned URL, and what the upload left behind.
func completeAndCheck(t testing.TB, ctx context.Context, s storage.Blobs, u *storage.Upload, want []byte) (digest.Digest, string) {
	t.Helper()
	return completeChecked(t, ctx, s, u, want, true)
}

// completeChecked completes u as want's digest, checks the key returned (the
// upload's own key, staged or multipart)
// and the bytes served there and, when leftovers is set, that the upload
// left no multipart upload and none of the staged objects it listed.
func completeChecked(t testing.TB, ctx context.Context, s storage.Blobs, u *storage.Upload, want []byte, leftovers bool) (digest.Digest, string) {
	t.Helper()
	d := digest.FromBytes(want)
	key, err := s.Complete(ctx, u, d)
	if err != nil {
		t.Fatalf("Complete: %v", err)
	}
	wantKey := storage.UploadKey(u.ID) // staged or multipart: the upload's own key, written once
	if key != wantKey {
		t.Errorf("Complete returned key %q, want %q (multipart upload %q)", key, wantKey, u.MultipartID)
	}
	got := fetchBlob(t, ctx, s, key)
	if !bytes.Equal(got, want) {
		t.Fatalf("blob %s at %s: fetched %d bytes (digest %s), want %d bytes", d, key, len(got), digest.FromBytes(got), len(want))
	}
	if leftovers {
		checkCompleteLeftovers(t, ctx, s, u)
	}
	return d, key
}

// checkCompleteLeftovers checks that after Complete no multipart upload is
// open and none of the staged objects u lists remains (staged objects read
// into earlier parts are the lifecycle rule's: they are allowed, but only
// under the upload's prefix).
func checkCompleteLeftovers(t testing.TB, ctx context.Context, s storage.Blobs, u *storage.Upload) {
	t.Helper()
	in, ok := s.(UploadInspector)
	if !ok {
		return
	}
	left, err := in.UploadLeftovers(ctx, u.ID)
	if err != nil {
		t.Errorf("UploadLeftovers after Complete: %v", err)
		return
	}
	listed := map[string]bool{}
	for _, st := range u.Staged {
		listed["object "+st.Key] = true
	}
	for _, l := range left {
		if listed[l] || !strings.HasPrefix(l, "object "+storage.UploadPrefix(u.ID)) {
			t.Errorf("upload %s left behind after Complete: %q", u.ID, l)
		}
	}
}

// fetchBlob GETs the object at key through a presigned URL with plain net/http.
func fetchBlob(t testing.TB, ctx context.Context, s storage.Blobs, key string) []byte {
	t.Helper()
	url, err := s.PresignGet(ctx, key, time.Minute)
	if err != nil {
		t.Fatalf("PresignGet: %v", err)
	}
	status, body := httpGet(t, ctx, url)
	if status != http.StatusOK {
		t.Fatalf("GET presigned blob %s: status %d: %.300s", key, status, body)
	}
	return body
}

func httpGet(t testing.TB, ctx context.Context, url string) (int, []byte) {
	t.Helper()
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, url, nil)
	if err != nil {
		t.Fatalf("presigned URL %q: %v", url, err)
	}
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatalf("GET %s: %v", url, err)
	}
	defer resp.Body.Close()
	body, err := io.ReadAll(resp.Body)
	if err != nil {
		t.Fatalf("GET %s: reading body: %v", url, err)
	}
	return resp.StatusCode, body
}

// checkNoLeftovers checks that the upload holds nothing in the backend any more.
func checkNoLeftovers(t testing.TB, ctx context.Context, s storage.Blobs, id, when string) {
	t.Helper()
	in, ok := s.(UploadInspector)
	if !ok {
		return
	}
	left, err := in.UploadLeftovers(ctx, id)
	if err != nil {
		t.Errorf("UploadLeftovers %s: %v", when, err)
	} else if len(left) > 0 {
		t.Errorf("upload %s left behind %s: %q", id, when, left)
	}
}

func testReadStaged(t *testing.T, s storage.Blobs) {
	sr, ok := s.(storage.StagedReader)
	if !ok {
		t.Skipf("%T does not implement storage.StagedReader", s)
	}
	ctx := context.Background()
	u := newBlobUpload(t)
	var all bytes.Buffer
	for _, n := range []int{1, 300 << 10, 2 << 20, 5} {
		b := randomBytes(t, n)
		all.Write(b)
		appendChunk(t, ctx, s, u, b)
	}
	rc, err := sr.ReadStaged(ctx, u)
	if err != nil {
		t.Fatalf("ReadStaged: %v", err)
	}
	got, err := io.ReadAll(rc)
	rc.Close()
	if err != nil || !bytes.Equal(got, all.Bytes()) {
		t.Fatalf("ReadStaged: %d bytes, err %v; want the %d bytes appended", len(got), err, all.Len())
	}
	appendChunk(t, ctx, s, u, randomBytes(t, 6<<20))
	if _, err := sr.ReadStaged(ctx, u); err == nil {
		t.Errorf("ReadStaged of an upload with parts: no error")
	}
	if err := s.Abort(ctx, u); err != nil {
		t.Fatalf("Abort: %v", err)
	}
}

func testAbort(t *testing.T, s storage.Blobs) {
	ctx := context.Background()
	u := newBlobUpload(t)
	var all bytes.Buffer
	for _, n := range []int{1 << 20, 5 << 20, 1 << 20} { // a part and a staged chunk
		b := randomBytes(t, n)
		all.Write(b)
		appendChunk(t, ctx, s, u, b)
	}
	if u.MultipartID == "" || len(u.Staged) == 0 {
		t.Fatalf("want a multipart upload and staged bytes before Abort, got %+v", u)
	}
	if in, ok := s.(UploadInspector); ok {
		if left, err := in.UploadLeftovers(ctx, u.ID); err != nil || len(left) == 0 {
			t.Fatalf("UploadLeftovers before Abort = %q, %v; want the upload's objects", left, err)
		}
	}
	if err := s.Abort(ctx, u); err != nil {
		t.Fatalf("Abort: %v", err)
	}
	checkNoLeftovers(t, ctx, s, u.ID, "after Abort")
	if err := s.Abort(ctx, u); err != nil {
		t.Errorf("second Abort: %v", err)
	}
	d := digest.FromBytes(all.Bytes())
	for _, key := range []string{storage.UploadKey(u.ID), storage.BlobKey(d)} {
		if ok, err := s.BlobExists(ctx, key); err != nil || ok {
			t.Errorf("BlobExists(%s) after Abort = %v, %v; want false", key, ok, err)
		}
	}
	// Completing an aborted upload must fail, not make a blob of what is left.
	if key, err := s.Complete(ctx, u, d); err == nil {
		t.Errorf("Complete after Abort: no error (key %q)", key)
	}
	for _, key := range []string{storage.UploadKey(u.ID), storage.BlobKey(d)} {
		if ok, _ := s.BlobExists(ctx, key); ok {
			t.Errorf("Complete after Abort made the object %s", key)
		}
	}
	if err := s.Abort(ctx, newBlobUpload(t)); err != nil {
		t.Errorf("Abort of an upload that wrote nothing: %v", err)
	}
}

func testManifestBody(t *testing.T, s storage.Blobs) {
	ctx := context.Background()
	body := []byte(`{"schemaVersion":2,"mediaType":"application/vnd.oci.image.index.v1+json","manifests":[` +
		strings.Repeat(`{"mediaType":"application/vnd.oci.image.manifest.v1+json","size":1,"digest":"sha256:`+strings.Repeat("a", 64)+`"},`, 3000) +
		`{}]}`)
	d := digest.FromBytes(body)
	key, err := s.PutManifestBody(ctx, d, body)
	if err != nil {
		t.Fatalf("PutManifestBody: %v", err)
	}
	if !strings.HasPrefix(key, storage.ManifestKey(d)+".") {
		t.Errorf("PutManifestBody key = %q, want %q followed by . and 16 hex digits", key, storage.ManifestKey(d))
	}
	got, err := s.GetManifestBody(ctx, key)
	if err != nil || !bytes.Equal(got, body) {
		t.Fatalf("GetManifestBody = %d bytes, %v; want the %d bytes stored", len(got), err, len(body))
	}
	const mt = "application/vnd.oci.image.manifest.v1+json"
	url, err := s.PresignManifest(ctx, key, mt, time.Minute)
	if err != nil {
		t.Fatalf("PresignManifest: %v", err)
	}
	req, _ := http.NewRequestWithContext(ctx, http.MethodGet, url, nil)
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatalf("GET presigned manifest: %v", err)
	}
	got, _ = io.ReadAll(resp.Body)
	resp.Body.Close()
	if resp.StatusCode != http.StatusOK || !bytes.Equal(got, body) {
		t.Errorf("GET presigned manifest: status %d, %d bytes", resp.StatusCode, len(got))
	}
	if ct := resp.Header.Get("Content-Type"); ct != mt {
		t.Errorf("presigned manifest Content-Type = %q, want %q", ct, mt)
	}
	missing := storage.ManifestKey(digest.FromString("missing"))
	if _, err := s.GetManifestBody(ctx, missing); !errors.Is(err, storage.ErrNotFound) {
		t.Errorf("GetManifestBody(missing) = %v, want ErrNotFound", err)
	}
}
