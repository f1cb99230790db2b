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

	"github.com/airlock-registry/airlock/shared/storage"
)

// putPart PUTs b to a presigned part URL and returns the status, the ETag
// and the body. A refused PUT may also end in a connection reset (the
// server answers before reading the body, and closes): status 0 then.
func putPart(t testing.TB, ctx context.Context, url string, b []byte) (int, string, string) {
	t.Helper()
	req, err := http.NewRequestWithContext(ctx, http.MethodPut, url, bytes.NewReader(b))
	if err != nil {
		t.Fatalf("part URL %q: %v", url, err)
	}
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		return 0, "", err.Error()
	}
	defer resp.Body.Close()
	body, _ := io.ReadAll(resp.Body)
	return resp.StatusCode, resp.Header.Get("ETag"), string(body)
}

// testParts checks storage.PartPresigner: parts PUT by a client straight to
// presigned URLs, completed with their ETags into the object at UploadKey.
func testParts(t *testing.T, s storage.Blobs) {
	pp, ok := s.(storage.PartPresigner)
	if !ok {
		t.Skip("the store is not a storage.PartPresigner")
	}
	ctx := context.Background()
	const mib = 1 << 20
	data := randomBytes(t, 12*mib)
	sizes := []int{5 * mib, 5 * mib, 2 * mib}
	u := newBlobUpload(t)
	if err := pp.StartParts(ctx, u); err != nil {
		t.Fatalf("StartParts: %v", err)
	}
	if u.MultipartID == "" {
		t.Fatal("StartParts set no MultipartID")
	}
	if err := pp.StartParts(ctx, u); err == nil {
		t.Error("StartParts of an upload with a multipart upload succeeded")
	}
	other := newBlobUpload(t)
	if err := pp.StartParts(ctx, other); err != nil {
		t.Fatalf("StartParts (other): %v", err)
	}
	t.Cleanup(func() { _ = s.Abort(context.Background(), other) })

	parts := make([]storage.Part, len(sizes))
	var off int
	for i, n := range sizes {
		num := int32(i + 1)
		url, err := pp.PresignUploadPart(ctx, u, num, int64(n), time.Minute)
		if err != nil {
			t.Fatalf("PresignUploadPart %d: %v", num, err)
		}
		b := data[off : off+n]
		off += n
		if i == 0 {
			// Another length than signed, and the URL moved to another session's key: refused.
			if st, _, body := putPart(t, ctx, url, b[:n-1]); st != http.StatusForbidden && st != 0 {
				t.Errorf("PUT of %d bytes to a URL signed for %d: status %d, want 403: %.300s", n-1, n, st, body)
			}
			moved := strings.Replace(url, storage.UploadKey(u.ID), storage.UploadKey(other.ID), 1)
			if st, _, body := putPart(t, ctx, moved, b); st != http.StatusForbidden && st != 0 {
				t.Errorf("PUT of a part URL moved to another session: status %d, want 403: %.300s", st, body)
			}
		}
		st, etag, body := putPart(t, ctx, url, b)
		if st != http.StatusOK || etag == "" {
			t.Fatalf("PUT part %d: status %d, ETag %q: %.300s", num, st, etag, body)
		}
		parts[i] = storage.Part{Number: num, ETag: etag, Size: int64(n)}
	}
	for _, bad := range [][]storage.Part{
		{parts[0], {Number: 2, ETag: `"0123456789abcdef0123456789abcdef"`}, parts[2]},
		{parts[1], parts[0], parts[2]},
	} {
		if _, _, err := pp.CompleteParts(ctx, u, bad); !errors.Is(err, storage.ErrInvalidParts) {
			t.Errorf("CompleteParts with a wrong part list: err %v, want ErrInvalidParts", err)
		}
	}
	key, size, err := pp.CompleteParts(ctx, u, parts)
	if err != nil {
		t.Fatalf("CompleteParts: %v", err)
	}
	if key != storage.UploadKey(u.ID) || size != int64(len(data)) {
		t.Errorf("CompleteParts = %q, %d; want %q, %d", key, size, storage.UploadKey(u.ID), len(data))
	}
	if got := fetchBlob(t, ctx, s, key); !bytes.Equal(got, data) {
		t.Errorf("completed object: %d bytes, not the parts' %d", len(got), len(data))
	}
	if br, ok := s.(storage.BlobReader); ok {
		rc, err := br.ReadBlob(ctx, key)
		if err != nil {
			t.Fatalf("ReadBlob: %v", err)
		}
		got, _ := io.ReadAll(rc)
		rc.Close()
		if !bytes.Equal(got, data) {
			t.Error("ReadBlob of the completed object differs from the parts")
		}
	}
	key2, size2, err := pp.CompleteParts(ctx, u, parts)
	if err != nil || key2 != key || size2 != size {
		t.Errorf("CompleteParts retried = %q, %d, %v; want %q, %d", key2, size2, err, key, size)
	}
	// A part for a completed upload is refused.
	url, err := pp.PresignUploadPart(ctx, u, 4, 1, time.Minute)
	if err != nil {
		t.Fatalf("PresignUploadPart: %v", err)
	}
	if st, _, body := putPart(t, ctx, url, []byte{1}); st != 0 && st < 400 {
		t.Errorf("PUT of a part of a completed upload: status %d: %.300s", st, body)
	}
	if err := s.Abort(ctx, u); err != nil {
		t.Fatalf("Abort: %v", err)
	}
	checkNoLeftovers(t, ctx, s, u.ID, "after CompleteParts and Abort")
	if ok, err := s.BlobExists(ctx, key); !ok || err != nil {
		t.Errorf("completed object gone after Abort: %v %v", ok, err)
	}
	// Out-of-range requests are refused without a request.
	for _, c := range []struct {
		num  int32
		size int64
	}{{0, 1}, {storage.MaxParts + 1, 1}, {1, storage.MaxPartSize + 1}} {
		if _, err := pp.PresignUploadPart(ctx, other, c.num, c.size, time.Minute); err == nil {
			t.Errorf("PresignUploadPart(%d, %d) succeeded", c.num, c.size)
		}
	}
	if _, _, err := pp.CompleteParts(ctx, &storage.Upload{ID: other.ID}, parts); !errors.Is(err, storage.ErrNotFound) {
		t.Errorf("CompleteParts without a multipart upload: %v, want ErrNotFound", err)
	}
}
