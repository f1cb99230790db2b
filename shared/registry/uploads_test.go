package registry_test

import (
	"bytes"
	"context"
	"crypto/sha512"
	"fmt"
	"net/http"
	"strconv"
	"strings"
	"testing"
	"time"

	digest "github.com/opencontainers/go-digest"

	"github.com/airlock-registry/airlock/shared/registry"
	"github.com/airlock-registry/airlock/shared/storage"
)

// uploadID is the last path component of an upload Location.
func uploadID(loc string) string {
	loc, _, _ = strings.Cut(loc, "?")
	return loc[strings.LastIndex(loc, "/")+1:]
}

func TestUploadSessionHeaders(t *testing.T) {
	e := newEnv(t, func(d *registry.Deps) { d.MaxBody = 4 << 20 })
	r := e.do("POST", "/v2/app/blobs/uploads/", nil)
	wantStatus(t, "POST upload", r, http.StatusAccepted)
	loc := r.Header.Get("Location")
	if !strings.HasPrefix(loc, "/v2/app/blobs/uploads/") || len(uploadID(loc)) == 0 {
		t.Fatalf("Location = %q", loc)
	}
	wantHeader(t, "POST upload", r, "Docker-Upload-UUID", uploadID(loc))
	wantHeader(t, "POST upload", r, "Range", "0-0")
	if v, err := strconv.Atoi(r.Header.Get("OCI-Chunk-Min-Length")); err != nil || v <= 0 || v > 4<<20 {
		t.Errorf("OCI-Chunk-Min-Length = %q, want a positive length within the body limit", r.Header.Get("OCI-Chunk-Min-Length"))
	}
	wantHeader(t, "POST upload", r, "OCI-Chunk-Max-Length", strconv.Itoa(4<<20))

	st := e.do("GET", loc, nil)
	wantStatus(t, "upload status", st, http.StatusNoContent)
	wantHeader(t, "upload status", st, "Range", "0-0")
	wantHeader(t, "upload status", st, "Location", loc)
}

func TestMonolithicPost(t *testing.T) {
	e := newEnv(t)
	data := randBytes(3000)
	d := digest.FromBytes(data)
	r := e.do("POST", "/v2/app/blobs/uploads/?digest="+d.String(), data)
	wantStatus(t, "POST ?digest=", r, http.StatusCreated)
	wantHeader(t, "POST ?digest=", r, "Location", "/v2/app/blobs/"+d.String())
	wantHeader(t, "POST ?digest=", r, "Docker-Content-Digest", d.String())
	if !bytes.Equal(e.pullBlob("app", d), data) {
		t.Fatal("blob bytes differ")
	}
	// Pushing an existing blob again is fine and keeps it.
	wantStatus(t, "POST ?digest= again", e.do("POST", "/v2/app/blobs/uploads/?digest="+d.String(), data), http.StatusCreated)
	// An empty blob is a valid blob.
	empty := digest.FromBytes(nil)
	wantStatus(t, "POST empty blob", e.do("POST", "/v2/app/blobs/uploads/?digest="+empty.String(), []byte{}), http.StatusCreated)
	h := e.do("HEAD", "/v2/app/blobs/"+empty.String(), nil)
	wantStatus(t, "HEAD empty blob", h, http.StatusOK)
	wantHeader(t, "HEAD empty blob", h, "Content-Length", "0")
}

func TestPostThenPut(t *testing.T) {
	e := newEnv(t)
	data := randBytes(10_000)
	d := digest.FromBytes(data)
	loc := e.startUpload("team/app", "")
	r := e.do("PUT", withQuery(loc, "digest="+d.String()), data)
	wantStatus(t, "PUT with body", r, http.StatusCreated)
	wantHeader(t, "PUT", r, "Location", "/v2/team/app/blobs/"+d.String())
	wantHeader(t, "PUT", r, "Docker-Content-Digest", d.String())
	if !bytes.Equal(e.pullBlob("team/app", d), data) {
		t.Fatal("blob bytes differ")
	}
	// The session is finished.
	wantErr(t, "status after PUT", e.do("GET", loc, nil), http.StatusNotFound, registry.CodeBlobUploadUnknown)
	wantErr(t, "PATCH after PUT", e.do("PATCH", loc, []byte("x")), http.StatusNotFound, registry.CodeBlobUploadUnknown)
}

// patchChunks sends data in chunks of the given sizes with Content-Range and
// checks Range after each.
func (e *env) patchChunks(loc string, data []byte, sizes []int) string {
	e.t.Helper()
	off := 0
	for i, n := range sizes {
		chunk := data[off : off+n]
		r := e.do("PATCH", loc, chunk, "Content-Type", "application/octet-stream",
			"Content-Range", fmt.Sprintf("%d-%d", off, off+n-1))
		wantStatus(e.t, fmt.Sprintf("PATCH chunk %d", i), r, http.StatusAccepted)
		off += n
		wantHeader(e.t, fmt.Sprintf("PATCH chunk %d", i), r, "Range", fmt.Sprintf("0-%d", off-1))
		wantHeader(e.t, fmt.Sprintf("PATCH chunk %d", i), r, "Docker-Upload-UUID", uploadID(loc))
		if l := r.Header.Get("Location"); l != "" {
			loc = l
		}
	}
	return loc
}

func TestChunkedUploadMultipart(t *testing.T) {
	e := newEnv(t, func(d *registry.Deps) { d.MaxBody = 4 << 20 })
	const mib = 1 << 20
	sizes := []int{mib, 3 * mib, 2*mib + 5, 1500 * 1024, 3*mib + 17}
	total := 0
	for _, n := range sizes {
		total += n
	}
	last := 700_001
	data := randBytes(total + last)
	d := digest.FromBytes(data)

	loc := e.startUpload("big", "")
	loc = e.patchChunks(loc, data[:total], sizes)

	st := e.do("GET", loc, nil)
	wantStatus(t, "status", st, http.StatusNoContent)
	wantHeader(t, "status", st, "Range", fmt.Sprintf("0-%d", total-1))
	u, err := e.meta.GetUpload(context.Background(), uploadID(loc))
	if err != nil {
		t.Fatalf("GetUpload: %v", err)
	}
	if u.Offset != int64(total) || u.MultipartID == "" || len(u.Parts) == 0 {
		t.Errorf("after %d bytes: offset %d, multipart %q, %d parts: want multipart parts in use", total, u.Offset, u.MultipartID, len(u.Parts))
	}
	for _, p := range u.Parts {
		if p.Size < storage.MinPartSize {
			t.Errorf("part %d has %d bytes, below S3's minimum part size", p.Number, p.Size)
		}
	}

	// The last chunk comes with the PUT.
	r := e.do("PUT", withQuery(loc, "digest="+d.String()), data[total:],
		"Content-Range", fmt.Sprintf("%d-%d", total, len(data)-1))
	wantStatus(t, "PUT last chunk", r, http.StatusCreated)
	h := e.do("HEAD", "/v2/big/blobs/"+d.String(), nil)
	wantHeader(t, "HEAD", h, "Content-Length", strconv.Itoa(len(data)))
	if !bytes.Equal(e.pullBlob("big", d), data) {
		t.Fatal("assembled blob differs from the chunks sent")
	}
}

func TestStreamedPatch(t *testing.T) {
	e := newEnv(t)
	data := randBytes(6<<20 + 123)
	d := digest.FromBytes(data)
	loc := e.startUpload("stream", "")
	// Like docker push: one PATCH body without Content-Length or Content-Range.
	r := e.do("PATCH", loc, bytes.NewReader(data))
	wantStatus(t, "streamed PATCH", r, http.StatusAccepted)
	wantHeader(t, "streamed PATCH", r, "Range", fmt.Sprintf("0-%d", len(data)-1))
	// A second streamed PATCH appends.
	more := randBytes(1000)
	r = e.do("PATCH", loc, bytes.NewReader(more))
	wantStatus(t, "second streamed PATCH", r, http.StatusAccepted)
	wantHeader(t, "second streamed PATCH", r, "Range", fmt.Sprintf("0-%d", len(data)+len(more)-1))
	all := append(append([]byte{}, data...), more...)
	d = digest.FromBytes(all)
	wantStatus(t, "PUT empty", e.do("PUT", withQuery(loc, "digest="+d.String()), nil), http.StatusCreated)
	if !bytes.Equal(e.pullBlob("stream", d), all) {
		t.Fatal("streamed blob differs")
	}
}

func TestCancelUpload(t *testing.T) {
	e := newEnv(t)
	data := randBytes(4000)
	loc := e.startUpload("app", "")
	e.patchChunks(loc, data, []int{4000})
	wantStatus(t, "DELETE upload", e.do("DELETE", loc, nil), http.StatusNoContent)
	wantErr(t, "status after cancel", e.do("GET", loc, nil), http.StatusNotFound, registry.CodeBlobUploadUnknown)
	wantErr(t, "PATCH after cancel", e.do("PATCH", loc, data, "Content-Range", "4000-7999"), http.StatusNotFound, registry.CodeBlobUploadUnknown)
	wantErr(t, "PUT after cancel", e.do("PUT", withQuery(loc, "digest="+digest.FromBytes(data).String()), nil), http.StatusNotFound, registry.CodeBlobUploadUnknown)
	wantErr(t, "DELETE again", e.do("DELETE", loc, nil), http.StatusNotFound, registry.CodeBlobUploadUnknown)
	e.assertBlobAbsent("app", digest.FromBytes(data))
}

func TestCrossRepoMount(t *testing.T) {
	e := newEnv(t)
	data := randBytes(2000)
	d := e.pushBlob("local/src", data)

	t.Run("success", func(t *testing.T) {
		e := e.sub(t)
		r := e.do("POST", "/v2/other/dst/blobs/uploads/?mount="+d.String()+"&from=local/src", nil)
		wantStatus(t, "mount", r, http.StatusCreated)
		wantHeader(t, "mount", r, "Location", "/v2/other/dst/blobs/"+d.String())
		wantHeader(t, "mount", r, "Docker-Content-Digest", d.String())
		if !bytes.Equal(e.pullBlob("other/dst", d), data) {
			t.Fatal("mounted blob differs")
		}
	})
	t.Run("source through the default repository", func(t *testing.T) {
		e := e.sub(t)
		r := e.do("POST", "/v2/dst2/blobs/uploads/?mount="+d.String()+"&from=src", nil)
		wantStatus(t, "mount from default", r, http.StatusCreated)
	})
	fallbacks := []struct{ name, query string }{
		{"source lacks the blob", "?mount=" + digest.FromString("nope").String() + "&from=local/src"},
		{"unknown source", "?mount=" + d.String() + "&from=local/nothing"},
		{"no from", "?mount=" + d.String()},
		{"invalid from", "?mount=" + d.String() + "&from=../x"},
	}
	for _, tc := range fallbacks {
		t.Run(tc.name, func(t *testing.T) {
			e := e.sub(t)
			r := e.do("POST", "/v2/other/dst3/blobs/uploads/"+tc.query, nil)
			wantStatus(t, "mount fallback", r, http.StatusAccepted)
			if !strings.HasPrefix(r.Header.Get("Location"), "/v2/other/dst3/blobs/uploads/") {
				t.Errorf("fallback Location %q is not an upload session", r.Header.Get("Location"))
			}
		})
	}
	// Fallback mounts never made the blob visible.
	e.assertBlobAbsent("other/dst3", d)
}

func TestSHA512Upload(t *testing.T) {
	e := newEnv(t)
	data := randBytes(9000)
	sum := sha512.Sum512(data)
	d := digest.NewDigestFromBytes(digest.SHA512, sum[:])

	t.Run("chunked", func(t *testing.T) {
		e := e.sub(t)
		loc := e.startUpload("app", "?digest-algorithm=sha512")
		loc = e.patchChunks(loc, data, []int{4000, 5000})
		r := e.do("PUT", withQuery(loc, "digest="+d.String()), nil)
		wantStatus(t, "PUT sha512", r, http.StatusCreated)
		wantHeader(t, "PUT sha512", r, "Docker-Content-Digest", d.String())
		if !bytes.Equal(e.pullBlob("app", d), data) {
			t.Fatal("sha512 blob differs")
		}
	})
	t.Run("monolithic", func(t *testing.T) {
		e := e.sub(t)
		r := e.do("POST", "/v2/mono/blobs/uploads/?digest="+d.String(), data)
		wantStatus(t, "POST sha512", r, http.StatusCreated)
		h := e.do("HEAD", "/v2/mono/blobs/"+d.String(), nil)
		wantStatus(t, "HEAD sha512", h, http.StatusOK)
		wantHeader(t, "HEAD sha512", h, "Content-Length", strconv.Itoa(len(data)))
	})
	t.Run("short sha256 session completed with sha512", func(t *testing.T) {
		e := e.sub(t)
		// All bytes are staged: the registry reads them back to verify.
		loc := e.startUpload("mixed", "")
		loc = e.patchChunks(loc, data, []int{9000})
		wantStatus(t, "PUT sha512 on a sha256 session", e.do("PUT", withQuery(loc, "digest="+d.String()), nil), http.StatusCreated)
		if !bytes.Equal(e.pullBlob("mixed", d), data) {
			t.Fatal("blob differs")
		}
		other := sha512.Sum512([]byte("other"))
		wrong := digest.NewDigestFromBytes(digest.SHA512, other[:])
		loc = e.startUpload("mixed2", "")
		loc = e.patchChunks(loc, data, []int{9000})
		wantErr(t, "wrong sha512", e.do("PUT", withQuery(loc, "digest="+wrong.String()), nil), http.StatusBadRequest, registry.CodeDigestInvalid)
		e.assertBlobAbsent("mixed2", wrong)
		e.assertBlobAbsent("mixed2", d)
	})
	t.Run("long sha256 session completed with sha512", func(t *testing.T) {
		e := e.sub(t)
		// The bytes are in multipart parts: the registry completes the
		// upload, reads the object back to verify, and deletes it on a mismatch.
		big := randBytes(storage.MinPartSize + 1000)
		sum := sha512.Sum512(big)
		bd := digest.NewDigestFromBytes(digest.SHA512, sum[:])
		loc := e.startUpload("mixed3", "")
		wantStatus(t, "PATCH", e.do("PATCH", loc, bytes.NewReader(big)), http.StatusAccepted)
		wantStatus(t, "PUT sha512 on a long sha256 session", e.do("PUT", withQuery(loc, "digest="+bd.String()), nil), http.StatusCreated)
		if !bytes.Equal(e.pullBlob("mixed3", bd), big) {
			t.Fatal("blob differs")
		}
		other := sha512.Sum512([]byte("other"))
		wrong := digest.NewDigestFromBytes(digest.SHA512, other[:])
		loc = e.startUpload("mixed4", "")
		loc = e.patchChunks(loc, big, []int{3 << 20, len(big) - 3<<20})
		wantErr(t, "wrong sha512 on a long sha256 session", e.do("PUT", withQuery(loc, "digest="+wrong.String()), nil), http.StatusBadRequest, registry.CodeDigestInvalid)
		e.assertBlobAbsent("mixed4", wrong)
		if ok, err := e.blobs.BlobExists(t.Context(), storage.UploadKey(uploadID(loc))); err != nil || ok {
			t.Errorf("object of the refused upload: exists %v (%v), want deleted", ok, err)
		}
	})
}

// TestConcurrentPatchSameOffset races two chunks at offset 0 of one session.
func TestConcurrentPatchSameOffset(t *testing.T) {
	e := newEnv(t)
	for round := range 3 {
		loc := e.startUpload("race", "")
		bodies := [][]byte{randBytes(1 << 20), randBytes(1 << 20)}
		win := e.racePatches(t, round, loc, 0, bodies)
		d := digest.FromBytes(bodies[win])
		wantStatus(t, "PUT", e.do("PUT", withQuery(loc, "digest="+d.String()), nil), http.StatusCreated)
		if !bytes.Equal(e.pullBlob("race", d), bodies[win]) {
			t.Fatalf("round %d: final blob is not the winning chunk", round)
		}
	}
}

// TestExpiredSession: a session past its expiry is unknown, whatever is stored.
func TestExpiredSession(t *testing.T) {
	e := newEnv(t, func(d *registry.Deps) { d.Now = func() time.Time { return time.Now().Add(-25 * time.Hour) } })
	loc := e.startUpload("app", "")
	data := randBytes(100)
	wantErr(t, "status of an expired session", e.do("GET", loc, nil), http.StatusNotFound, registry.CodeBlobUploadUnknown)
	wantErr(t, "PATCH an expired session", e.do("PATCH", loc, data, "Content-Range", "0-99"), http.StatusNotFound, registry.CodeBlobUploadUnknown)
	wantErr(t, "PUT an expired session", e.do("PUT", withQuery(loc, "digest="+digest.FromBytes(data).String()), data), http.StatusNotFound, registry.CodeBlobUploadUnknown)
	e.assertBlobAbsent("app", digest.FromBytes(data))
}
