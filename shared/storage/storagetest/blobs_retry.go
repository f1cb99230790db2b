package storagetest

import (
	"bytes"
	"context"
	"errors"
	"io"
	"reflect"
	"slices"
	"testing"
	"time"

	digest "github.com/opencontainers/go-digest"

	"github.com/airlock-registry/airlock/shared/storage"
)

// errBodyBroken is what a failing request body returns.
var errBodyBroken = errors.New("storagetest: request body broken")

// failingBody yields b's first n bytes, then errBodyBroken (a client that
// hung up mid-chunk).
func failingBody(b []byte, n int) io.Reader {
	return io.MultiReader(bytes.NewReader(b[:n]), readerFunc(func([]byte) (int, error) { return 0, errBodyBroken }))
}

type readerFunc func([]byte) (int, error)

func (f readerFunc) Read(p []byte) (int, error) { return f(p) }

// cloneUpload copies u deeply enough that Append on the copy leaves u alone.
func cloneUpload(u *storage.Upload) *storage.Upload {
	c := *u
	c.Parts = slices.Clone(u.Parts)
	c.Staged = slices.Clone(u.Staged)
	c.HashState = slices.Clone(u.HashState)
	return &c
}

// testRetryFailedAppend breaks request bodies at several points (inside a
// staged chunk, inside a part, after a part was written) and checks the
// failed Append leaves the session as it was and a retry writes the blob right.
func testRetryFailedAppend(t *testing.T, s storage.Blobs) {
	ctx := context.Background()
	u := newBlobUpload(t)
	var all bytes.Buffer
	first := randomBytes(t, 2<<20)
	all.Write(first)
	appendChunk(t, ctx, s, u, first)

	big := randomBytes(t, 19<<20+3)
	for _, failAt := range []int{0, 100, 3 << 20, 7 << 20, 15 << 20, len(big) - 1} {
		before := cloneUpload(u)
		n, err := s.Append(ctx, u, failingBody(big, failAt))
		if err == nil {
			t.Fatalf("Append with a body broken after %d bytes: no error (appended %d)", failAt, n)
		}
		if !errors.Is(err, errBodyBroken) {
			t.Errorf("Append with a broken body: error %v does not wrap the body's error", err)
		}
		if !reflect.DeepEqual(u, before) {
			t.Fatalf("failed Append (body broken after %d bytes) changed the session:\n got %+v\nwant %+v", failAt, u, before)
		}
	}
	small := randomBytes(t, 1<<20)
	before := cloneUpload(u)
	if _, err := s.Append(ctx, u, failingBody(small, 1000)); err == nil || !reflect.DeepEqual(u, before) {
		t.Fatalf("failed short Append: err %v, session changed: %v", err, !reflect.DeepEqual(u, before))
	}
	all.Write(big)
	appendChunk(t, ctx, s, u, big)
	all.Write(small)
	appendChunk(t, ctx, s, u, small)
	_, key := completeBlob(t, ctx, s, u, all.Bytes())
	// A failed Append may leave a multipart upload nobody refers to (if it
	// could not abort it); Abort of the finished session removes it.
	if err := s.Abort(ctx, u); err != nil {
		t.Fatalf("Abort after Complete: %v", err)
	}
	checkNoLeftovers(t, ctx, s, u.ID, "after Complete and Abort")
	if got := fetchBlob(t, ctx, s, key); !bytes.Equal(got, all.Bytes()) {
		t.Errorf("Abort after Complete damaged the blob")
	}
}

// testRetryLostCommit: Append succeeds but the caller cannot commit the new
// state (lease lost, DynamoDB error), so the client sends the chunk again,
// with other bytes, at the same offset. The retry must win everywhere.
func testRetryLostCommit(t *testing.T, s storage.Blobs) {
	ctx := context.Background()
	u := newBlobUpload(t)
	var all bytes.Buffer
	for range 20 { // enough tiny chunks for a store to coalesce them
		b := randomBytes(t, 1<<10)
		all.Write(b)
		appendChunk(t, ctx, s, u, b)
	}
	for _, sizes := range [][2]int{
		{2 << 10, 3 << 10},   // tiny chunks (coalesced by the S3 store)
		{2 << 20, 2 << 20},   // staged, lost staged chunk at the same key
		{7 << 20, 7 << 20},   // lost attempt made the first part and the multipart upload
		{1 << 20, 1 << 20},   // staged after a part
		{12 << 20, 12 << 20}, // lost attempt wrote parts 2 and 3
		{3 << 20, 2 << 20},   // retry shorter than the lost attempt
	} {
		lost := cloneUpload(u)
		if _, err := s.Append(ctx, lost, streamOnly{bytes.NewReader(randomBytes(t, sizes[0]))}); err != nil {
			t.Fatalf("Append (to be lost): %v", err)
		}
		b := randomBytes(t, sizes[1])
		all.Write(b)
		appendChunk(t, ctx, s, u, b)
	}
	completeBlob(t, ctx, s, u, all.Bytes())
	if err := s.Abort(ctx, u); err != nil {
		t.Fatalf("Abort after Complete: %v", err)
	}
	checkNoLeftovers(t, ctx, s, u.ID, "after Complete and Abort")
}

// testCompleteTwice: a Complete retried (the caller failed after it) and a
// Complete of a second upload of the same bytes both succeed, at the same
// key for the same upload, and clean up.
func testCompleteTwice(t *testing.T, s storage.Blobs) {
	ctx := context.Background()
	for _, split := range [][]int{{1 << 20, 5<<20 + 5}, {1 << 20, 6 << 10, 5}, {300 << 10}} {
		var want []byte
		for _, n := range split {
			want = append(want, randomBytes(t, n)...)
		}
		for range 2 {
			u := newBlobUpload(t)
			off := 0
			for _, n := range split {
				appendChunk(t, ctx, s, u, want[off:off+n])
				off += n
			}
			_, k1 := completeAndCheck(t, ctx, s, u, want)
			_, k2 := completeAndCheck(t, ctx, s, u, want)
			if k1 != k2 {
				t.Errorf("Complete retried returned key %q, first %q", k2, k1)
			}
		}
	}
}

// testStagingRule counts the backend's requests: each staged byte is read
// back once, the multipart upload is created once, the bytes written
// (PutObject + UploadPart) are at most twice the blob's size, nothing is
// copied, HEADed or listed, and cleanup is at most one DeleteObjects call. A
// streamed body stages nothing: CreateMultipartUpload, its parts and
// CompleteMultipartUpload are all its calls.
func testStagingRule(t *testing.T, newStore func(t *testing.T) storage.Blobs) {
	for _, tc := range []struct {
		name         string
		chunk, total int
	}{
		{"4MiB", 4 << 20, 24 << 20},
		{"1MiB", 1 << 20, 12 << 20},
		{"256KiB", 256 << 10, 12 << 20},
		{"streamed", 20 << 20, 20 << 20},
		{"streamedTail", 23<<20 + 5, 23<<20 + 5},
		{"streamedShortTail", 17<<20 + 1, 17<<20 + 1},
	} {
		t.Run(tc.name, func(t *testing.T) {
			s := newStore(t)
			rc, ok := s.(RequestCounter)
			if !ok {
				t.Skipf("%T does not count its requests (storagetest.RequestCounter)", s)
			}
			ctx := context.Background()
			want := randomBytes(t, tc.total)
			u := newBlobUpload(t)
			rc.ResetRequests()
			start := time.Now()
			for off := 0; off < len(want); off += tc.chunk {
				appendChunk(t, ctx, s, u, want[off:min(off+tc.chunk, len(want))])
			}
			final := cloneUpload(u)
			appendCalls := rc.Requests()
			completeBlob(t, ctx, s, u, want)
			elapsed := time.Since(start)
			calls, sent := rc.Requests(), rc.RequestBytes()
			written := sent["S3.PutObject"] + sent["S3.UploadPart"]
			t.Logf("%d bytes in %d-byte chunks: %v, %d bytes written (%.2f×), requests %v",
				tc.total, tc.chunk, elapsed.Round(time.Millisecond), written, float64(written)/float64(tc.total), calls)
			if written > 2*int64(tc.total) {
				t.Errorf("wrote %d bytes for a %d-byte blob: more than twice", written, tc.total)
			}
			if written < int64(tc.total) {
				t.Errorf("counted %d bytes written for a %d-byte blob: the counter misses requests", written, tc.total)
			}
			if calls["S3.CreateMultipartUpload"] != 1 {
				t.Errorf("CreateMultipartUpload called %d times, want once", calls["S3.CreateMultipartUpload"])
			}
			parts := len(final.Parts)
			if len(final.Staged) > 0 {
				parts++
			}
			if calls["S3.UploadPart"] != parts {
				t.Errorf("UploadPart called %d times for %d parts", calls["S3.UploadPart"], parts)
			}
			if calls["S3.GetObject"] > calls["S3.PutObject"] {
				t.Errorf("%d GetObject for %d staged objects: staged bytes read more than once", calls["S3.GetObject"], calls["S3.PutObject"])
			}
			for _, op := range []string{"S3.HeadObject", "S3.ListObjectsV2", "S3.ListMultipartUploads", "S3.CopyObject", "S3.UploadPartCopy"} {
				if calls[op] > 0 {
					t.Errorf("%s called %d times on the push path", op, calls[op])
				}
			}
			if calls["S3.DeleteObjects"] > 1 {
				t.Errorf("DeleteObjects called %d times: cleanup is one call", calls["S3.DeleteObjects"])
			}
			if tc.chunk == tc.total { // streamed
				if calls["S3.PutObject"]+calls["S3.GetObject"] > 0 || len(final.Staged) > 0 {
					t.Errorf("a streamed body was staged: %d PutObject, %d GetObject, session staged %+v", calls["S3.PutObject"], calls["S3.GetObject"], final.Staged)
				}
				if n := total(calls) - total(appendCalls); n != 1 || calls["S3.CompleteMultipartUpload"] != 1 {
					t.Errorf("Complete of a streamed upload made %d requests (%v), want one CompleteMultipartUpload", n, calls)
				}
			}
		})
	}
}

// total sums request counts.
func total(calls map[string]int) int {
	n := 0
	for _, c := range calls {
		n += c
	}
	return n
}

// completeBlob completes u as want's digest and checks the bytes served,
// without checking for leftovers.
func completeBlob(t testing.TB, ctx context.Context, s storage.Blobs, u *storage.Upload, want []byte) (digest.Digest, string) {
	return completeChecked(t, ctx, s, u, want, false)
}
