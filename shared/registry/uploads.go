package registry

import (
	"context"
	"crypto/rand"
	"encoding"
	"encoding/hex"
	"errors"
	"fmt"
	"hash"
	"io"
	"net/http"
	"net/url"
	"strconv"
	"strings"
	"time"

	digest "github.com/opencontainers/go-digest"

	"github.com/airlock-registry/airlock/shared/storage"
)

const (
	// minChunkLength is the OCI-Chunk-Min-Length advertised on upload POST.
	minChunkLength = 1 << 20
	// uploadTTL is how long an idle upload session lives.
	uploadTTL = 24 * time.Hour
	// leaseTTL bounds how long a crashed writer can hold a session.
	leaseTTL = 15 * time.Minute
)

func newID() string {
	var b [16]byte
	_, _ = rand.Read(b[:])
	return hex.EncodeToString(b[:])
}

func uploadUnknown(id string) error {
	if len(id) > 64 {
		id = id[:64] + "..."
	}
	return apiErr(http.StatusNotFound, CodeBlobUploadUnknown, "upload %q is not known (unknown, finished, cancelled or expired)", id)
}

func uploadLocation(t target, id string) string { return "/v2/" + t.full + "/blobs/uploads/" + id }

// rangeHeader is the Range of committed bytes, "0-<last>" (distribution's form).
func rangeHeader(offset int64) string {
	end := offset - 1
	if end < 0 {
		end = 0
	}
	return "0-" + strconv.FormatInt(end, 10)
}

// hashFor restores (or starts) the hash of an upload.
func hashFor(u *storage.Upload) (hash.Hash, error) {
	alg := digest.Algorithm(u.HashAlgorithm)
	if !alg.Available() {
		return nil, fmt.Errorf("upload %s: hash algorithm %q unavailable", u.ID, u.HashAlgorithm)
	}
	h := alg.Hash()
	if len(u.HashState) > 0 {
		if err := h.(encoding.BinaryUnmarshaler).UnmarshalBinary(u.HashState); err != nil {
			return nil, fmt.Errorf("upload %s: restore hash state: %w", u.ID, err)
		}
	}
	return h, nil
}

func saveHash(u *storage.Upload, h hash.Hash) error {
	st, err := h.(encoding.BinaryMarshaler).MarshalBinary()
	if err != nil {
		return fmt.Errorf("upload %s: save hash state: %w", u.ID, err)
	}
	u.HashState = st
	return nil
}

// startUpload opens a session, mounts a blob from another image, or takes a
// monolithic upload.
// https://github.com/opencontainers/distribution-spec/blob/main/spec.md#pushing-blobs
func (rg *Registry) startUpload(w http.ResponseWriter, r *http.Request, t target) error {
	q := r.URL.Query()
	if m := q.Get("mount"); m != "" {
		done, err := rg.mount(w, r, t, m, q.Get("from"))
		if done || err != nil {
			return err
		}
	}
	alg := digest.SHA256
	if a := q.Get("digest-algorithm"); a != "" {
		alg = digest.Algorithm(a)
		if alg != digest.SHA256 && alg != digest.SHA512 {
			return apiErr(http.StatusBadRequest, CodeDigestInvalid, "unsupported digest algorithm %q", a)
		}
	}
	now := rg.Now()
	u := storage.Upload{ID: newID(), Image: t.img, HashAlgorithm: string(alg), Created: now, ExpiresAt: now.Add(uploadTTL)}
	if ds := q.Get("digest"); ds != "" {
		d, err := parseDigest(ds)
		if err != nil {
			return err
		}
		u.HashAlgorithm = string(d.Algorithm())
		return rg.finish(w, r, t, &u, d, false)
	}
	if err := rg.Meta.CreateUpload(r.Context(), u); err != nil {
		return fmt.Errorf("create upload: %w", err)
	}
	h := w.Header()
	// With an upload ingress the bodies go there (README, Upload ingress).
	h.Set("Location", rg.IngressURL+uploadLocation(t, u.ID))
	h.Set("Docker-Upload-UUID", u.ID)
	h.Set("Range", "0-0")
	// Short chunks are staged and joined into parts, so the minimum only keeps
	// clients from sending tiny requests; it must never raise a client's chunk
	// size over the front-door limit (regclient takes the larger of the two).
	minChunk := int64(minChunkLength)
	if rg.MaxBody > 0 {
		minChunk = min(minChunk, rg.MaxBody)
		if rg.IngressURL == "" { // the ingress takes chunks of any length
			h.Set("OCI-Chunk-Max-Length", strconv.FormatInt(rg.MaxBody, 10))
		}
	}
	h.Set("OCI-Chunk-Min-Length", strconv.FormatInt(minChunk, 10))
	if rg.directSupported() {
		h.Set("Airlock-Direct-Upload", "parts") // README, Direct-to-S3 uploads
	}
	h.Set("Content-Length", "0")
	w.WriteHeader(http.StatusAccepted)
	return nil
}

// mount links a blob visible in another image; done is false when the
// source does not have it and a normal session should be opened instead.
func (rg *Registry) mount(w http.ResponseWriter, r *http.Request, t target, m, from string) (bool, error) {
	d, err := parseDigest(m)
	if err != nil {
		return false, err
	}
	if from == "" {
		return false, nil
	}
	if checkName(from) != nil || !rg.mayPull(r, from) {
		return false, nil // an invalid, unknown or unreadable source just does not mount
	}
	src, name, err := rg.repos.Resolve(from, "")
	if err != nil {
		return false, nil
	}
	b, err := src.Cached(r.Context(), name, d)
	if errors.Is(err, storage.ErrNotFound) {
		return false, nil
	}
	if err != nil {
		return false, fmt.Errorf("mount: stat %s in %s: %w", d, from, err)
	}
	if err := rg.Meta.LinkBlob(r.Context(), t.img, b); errors.Is(err, storage.ErrNotFound) {
		return false, nil // its record was purged meanwhile: the client uploads it
	} else if err != nil {
		return false, fmt.Errorf("mount: link %s: %w", d, err)
	}
	blobCreated(w, t, d)
	return true, nil
}

func blobCreated(w http.ResponseWriter, t target, d digest.Digest) {
	h := w.Header()
	h.Set("Location", "/v2/"+t.full+"/blobs/"+d.String())
	h.Set("Docker-Content-Digest", d.String())
	h.Set("Content-Length", "0")
	w.WriteHeader(http.StatusCreated)
}

// contentRange parses a chunk's Content-Range ("<start>-<end>", optionally
// prefixed "bytes "/"bytes="); ok is false when the header is absent.
func contentRange(r *http.Request) (start, end int64, ok bool, err error) {
	v := r.Header.Get("Content-Range")
	if v == "" {
		return 0, 0, false, nil
	}
	v = strings.TrimPrefix(strings.TrimPrefix(v, "bytes "), "bytes=")
	a, b, found := strings.Cut(v, "-")
	if found {
		b, _, _ = strings.Cut(b, "/")
		start, err1 := strconv.ParseInt(a, 10, 64)
		end, err2 := strconv.ParseInt(b, 10, 64)
		if err1 == nil && err2 == nil && start >= 0 && end >= start {
			if end >= storage.MaxObjectSize { // also keeps end-start+2 from overflowing
				return 0, 0, true, apiErr(http.StatusRequestedRangeNotSatisfiable, CodeBlobUploadInvalid,
					"Content-Range %q ends past byte %d: a blob is at most 5 TiB (S3's largest object)", r.Header.Get("Content-Range"), int64(storage.MaxObjectSize)-1)
			}
			return start, end, true, nil
		}
	}
	return 0, 0, true, apiErr(http.StatusRequestedRangeNotSatisfiable, CodeBlobUploadInvalid, "invalid Content-Range %q: want <start>-<end>", r.Header.Get("Content-Range"))
}

// acquire loads the session, checks it belongs to this image and takes its
// lease for an append at the given offset (-1: the committed offset).
func (rg *Registry) acquire(r *http.Request, t target, start int64) (storage.Upload, error) {
	ctx := r.Context()
	lease, until := newID(), rg.Now().Add(leaseTTL)
	if start >= 0 {
		// The usual chunk: one conditional write both checks and takes the session.
		u, err := rg.Meta.AcquireUpload(ctx, t.ref, start, lease, until)
		if err == nil {
			if u.Image != t.img || isDirect(u) {
				_ = rg.Meta.CommitUpload(context.WithoutCancel(ctx), u)
				if isDirect(u) {
					return u, directMixed(t)
				}
				return u, uploadUnknown(t.ref)
			}
			return u, nil
		}
		if !errors.Is(err, storage.ErrConflict) && !errors.Is(err, storage.ErrNotFound) {
			return u, fmt.Errorf("acquire upload: %w", err)
		}
	}
	// Diagnose (or, for a chunk without Content-Range, learn the offset).
	cur, err := rg.Meta.GetUpload(ctx, t.ref)
	if errors.Is(err, storage.ErrNotFound) || err == nil && cur.Image != t.img {
		return cur, uploadUnknown(t.ref)
	}
	if err != nil {
		return cur, fmt.Errorf("get upload: %w", err)
	}
	if isDirect(cur) {
		return cur, directMixed(t)
	}
	notSatisfiable := func(off int64, busy bool) error { return chunkRefused(t, start, off, busy) }
	if start >= 0 {
		return cur, notSatisfiable(cur.Offset, start == cur.Offset)
	}
	start = cur.Offset
	u, err := rg.Meta.AcquireUpload(ctx, t.ref, start, lease, until)
	switch {
	case errors.Is(err, storage.ErrNotFound):
		return u, uploadUnknown(t.ref)
	case errors.Is(err, storage.ErrConflict):
		return u, notSatisfiable(cur.Offset, true)
	case err != nil:
		return u, fmt.Errorf("acquire upload: %w", err)
	case isDirect(u):
		_ = rg.Meta.CommitUpload(context.WithoutCancel(ctx), u)
		return u, directMixed(t)
	}
	return u, nil
}

// chunkRefused is the 416 for a chunk at start when off bytes are committed
// (busy: another request holds or just changed the session).
func chunkRefused(t target, start, off int64, busy bool) error {
	e := apiErr(http.StatusRequestedRangeNotSatisfiable, CodeBlobUploadInvalid,
		"chunk starts at byte %d but the upload has %d bytes committed; send the next chunk from byte %d", start, off, off)
	if busy {
		e.Message = fmt.Sprintf("another request is writing to this upload at byte %d; check the upload's status (GET) and continue from its Range", off)
	}
	e.Header = http.Header{"Range": {rangeHeader(off)}, "Location": {uploadLocation(t, t.ref)}, "Docker-Upload-Uuid": {t.ref}}
	return e
}

// appendBody streams body (the request's, or what is left of it) into the
// held session u, hashing it; last appends the upload's last bytes (PUT). On
// failure it releases the lease with the session as it was.
func (rg *Registry) appendBody(r *http.Request, u *storage.Upload, body io.Reader, end int64, ranged, last bool) (hash.Hash, error) {
	held := *u
	release := func() { _ = rg.Meta.CommitUpload(context.WithoutCancel(r.Context()), held) }
	h, err := hashFor(u)
	if err != nil {
		release()
		return nil, err
	}
	if ranged {
		body = io.LimitReader(body, end-u.Offset+2) // one byte more shows an over-long body
	}
	start := u.Offset
	appendFn := rg.Blobs.Append
	if last {
		appendFn = rg.Blobs.AppendLast
	}
	n, err := appendFn(r.Context(), u, io.TeeReader(body, h))
	if err == nil && ranged && start+n != end+1 {
		err = apiErr(http.StatusRequestedRangeNotSatisfiable, CodeBlobUploadInvalid,
			"Content-Range %d-%d announces %d bytes but the body has %d", start, end, end-start+1, n)
	}
	if err != nil {
		*u = held
		release()
		var e *Error
		if errors.As(err, &e) {
			return nil, e
		}
		return nil, rg.bodyErr(err, "append to upload")
	}
	if err := saveHash(u, h); err != nil {
		release()
		return nil, err
	}
	return h, nil
}

// patchUpload appends a chunk (with Content-Range) or a stream (without).
// https://github.com/opencontainers/distribution-spec/blob/main/spec.md#pushing-a-blob-in-chunks
func (rg *Registry) patchUpload(w http.ResponseWriter, r *http.Request, t target) error {
	start, end, ranged, err := contentRange(r)
	if err != nil {
		return err
	}
	if !ranged {
		start = -1
	}
	if cs, ok := rg.Blobs.(storage.ChunkStager); ok && ranged && fastChunk(r, start, end) {
		return rg.patchChunk(w, r, t, cs, start, end)
	}
	u, err := rg.acquire(r, t, start)
	if err != nil {
		return err
	}
	if _, err := rg.appendBody(r, &u, requestBody(r), end, ranged, false); err != nil {
		return err
	}
	u.ExpiresAt = rg.Now().Add(uploadTTL)
	if err := rg.Meta.CommitUpload(r.Context(), u); err != nil {
		return fmt.Errorf("commit upload: %w", err)
	}
	chunkAccepted(w, t, u.Offset)
	return nil
}

// chunkAccepted answers 202 with the committed range.
func chunkAccepted(w http.ResponseWriter, t target, offset int64) {
	h := w.Header()
	h.Set("Location", uploadLocation(t, t.ref))
	h.Set("Docker-Upload-UUID", t.ref)
	h.Set("Range", rangeHeader(offset))
	h.Set("Content-Length", "0")
	w.WriteHeader(http.StatusAccepted)
}

// putUpload takes the last chunk (if any) and completes the blob.
// https://github.com/opencontainers/distribution-spec/blob/main/spec.md#pushing-a-blob-in-chunks
func (rg *Registry) putUpload(w http.ResponseWriter, r *http.Request, t target) error {
	ds := r.URL.Query().Get("digest")
	if ds == "" {
		return apiErr(http.StatusBadRequest, CodeDigestInvalid, "the digest query parameter is required to complete an upload")
	}
	d, err := parseDigest(ds)
	if err != nil {
		return err
	}
	if v, ok := r.URL.Query()["airlock-complete"]; ok {
		if len(v) != 1 || v[0] != "1" {
			return apiErr(http.StatusBadRequest, CodeBlobUploadInvalid, "airlock-complete=%s: the only value is airlock-complete=1, given once (it completes a direct-to-S3 upload; leave it out to complete an upload sent through the registry)", echo(strings.Join(v, "&airlock-complete=")))
		}
		return rg.completeDirect(w, r, t, d)
	}
	start, _, ranged, err := contentRange(r)
	if err != nil {
		return err
	}
	if !ranged {
		start = -1
	}
	u, err := rg.acquire(r, t, start)
	if err != nil {
		return err
	}
	if u.Offset == 0 && u.HashAlgorithm != string(d.Algorithm()) {
		u.HashAlgorithm, u.HashState = string(d.Algorithm()), nil
	}
	return rg.finish(w, r, t, &u, d, true)
}

// uploadStatus reports the committed range of a session.
// https://github.com/opencontainers/distribution-spec/blob/main/spec.md#getting-the-upload-status
func (rg *Registry) uploadStatus(w http.ResponseWriter, r *http.Request, t target) error {
	u, err := rg.Meta.GetUpload(r.Context(), t.ref)
	if errors.Is(err, storage.ErrNotFound) || err == nil && u.Image != t.img {
		return uploadUnknown(t.ref)
	}
	if err != nil {
		return fmt.Errorf("get upload: %w", err)
	}
	h := w.Header()
	h.Set("Location", uploadLocation(t, u.ID))
	h.Set("Docker-Upload-UUID", u.ID)
	h.Set("Range", rangeHeader(u.Offset))
	h.Set("Content-Length", "0")
	w.WriteHeader(http.StatusNoContent)
	return nil
}

// cancelUpload aborts a session and removes what it wrote.
// https://github.com/opencontainers/distribution-spec/blob/main/spec.md#canceling-an-upload
func (rg *Registry) cancelUpload(w http.ResponseWriter, r *http.Request, t target) error {
	u, err := rg.Meta.GetUpload(r.Context(), t.ref)
	if errors.Is(err, storage.ErrNotFound) || err == nil && u.Image != t.img {
		return uploadUnknown(t.ref)
	}
	if err != nil {
		return fmt.Errorf("get upload: %w", err)
	}
	if err := rg.Meta.DeleteUpload(r.Context(), u.ID); err != nil {
		return fmt.Errorf("delete upload: %w", err)
	}
	if err := rg.Blobs.Abort(r.Context(), &u); err != nil {
		rg.Logger.WarnContext(r.Context(), "abort cancelled upload", "id", u.ID, "err", err)
	}
	w.Header().Set("Content-Length", "0")
	w.WriteHeader(http.StatusNoContent)
	return nil
}

// checkIngressURL accepts an absolute http(s) URL with a host and nothing
// after it (Locations are the URL followed by /v2/...).
func checkIngressURL(v string) error {
	u, err := url.Parse(v)
	if err != nil || (u.Scheme != "https" && u.Scheme != "http") || u.Host == "" ||
		(u.Path != "" && u.Path != "/") || u.RawQuery != "" || u.Fragment != "" || u.User != nil || strings.HasSuffix(v, "/") {
		return fmt.Errorf("ingress URL %q: want scheme://host[:port] (http or https, no path, no trailing slash), e.g. https://push.example.com", v)
	}
	return nil
}
