package registry

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"hash"
	"io"
	"net/http"

	digest "github.com/opencontainers/go-digest"

	"github.com/airlock-registry/airlock/shared/storage"
)

// requestBody is r's body, or an empty one.
func requestBody(r *http.Request) io.Reader {
	if r.Body == nil {
		return http.NoBody
	}
	return r.Body
}

// finish takes the last bytes of an upload (the body of PUT ?digest=, or of a
// monolithic POST ?digest=), verifies the digest and makes the blob visible.
// stored tells whether u is a held session item (else a transient upload of
// a monolithic POST).
//
// A blob that is all in the body and at most storage.MinPartSize bytes (config
// blobs, small layers) is read into memory, verified and stored with one
// PutObject at its content-addressed key. Anything else streams through the
// Blobs store (AppendLast: straight into the last part when a multipart
// upload exists), is verified from the hash state, and is completed where it
// was uploaded, without a copy.
func (rg *Registry) finish(w http.ResponseWriter, r *http.Request, t target, u *storage.Upload, d digest.Digest, stored bool) error {
	end, ranged := int64(0), false
	if _, e, ok, _ := contentRange(r); ok {
		end, ranged = e, true
	}
	body := requestBody(r)
	if u.Offset == 0 && r.ContentLength <= storage.MinPartSize {
		small, rest, err := readSmall(body)
		if err != nil {
			if stored {
				_ = rg.Meta.CommitUpload(context.WithoutCancel(r.Context()), *u) // release the lease
			}
			return rg.bodyErr(err, "read blob body")
		}
		if rest == nil {
			return rg.finishSmall(w, r, t, u, d, stored, small, end, ranged)
		}
		body = rest
	}
	h, err := rg.appendLast(r, u, body, end, ranged, stored)
	if err != nil {
		return err
	}
	ctx := r.Context()
	cleanup := func() {
		_ = rg.Blobs.Abort(ctx, u)
		if stored {
			_ = rg.Meta.DeleteUpload(ctx, u.ID)
		}
	}
	got, err := rg.contentDigest(ctx, u, d.Algorithm(), h)
	if errors.Is(err, errVerifyStored) {
		return rg.finishVerifyStored(w, r, t, u, d, stored)
	}
	if err != nil {
		cleanup()
		return err
	}
	if got != d {
		cleanup()
		return apiErr(http.StatusBadRequest, CodeDigestInvalid, "uploaded content has digest %s, not %s; nothing was stored", got, d)
	}
	b, linked, err := rg.linkExisting(ctx, t, d)
	switch {
	case err != nil:
		return err
	case linked: // the bytes are stored already: drop this upload's copy
		if err := rg.Blobs.Abort(ctx, u); err != nil {
			rg.Logger.WarnContext(ctx, "abort upload of an existing blob", "id", u.ID, "err", err)
		}
	default:
		key, err := rg.Blobs.Complete(ctx, u, d)
		if err != nil {
			return fmt.Errorf("complete blob %s: %w", d, err)
		}
		if b, err = t.hosted.Record(ctx, storage.Blob{Digest: d, Size: u.Offset, Key: key, Created: rg.Now()}); err != nil {
			return err
		}
	}
	return rg.linkFinished(w, r, t, u, b, stored, linked)
}

// linkExisting links the blob's existing record into the image: linked is
// false when there is no record, also when the purge deleted it between the
// read and the link (LinkBlob touches the record, and fails when it is
// gone): the caller then stores its own bytes.
func (rg *Registry) linkExisting(ctx context.Context, t target, d digest.Digest) (b storage.Blob, linked bool, err error) {
	b, err = rg.Meta.GetBlob(ctx, d)
	if err == nil {
		err = rg.Meta.LinkBlob(ctx, t.img, b)
		if err == nil {
			return b, true, nil
		}
	}
	if errors.Is(err, storage.ErrNotFound) {
		return storage.Blob{}, false, nil
	}
	return storage.Blob{}, false, fmt.Errorf("blob %s: %w", d, err)
}

// appendLast streams body into u as its last bytes: a held session
// (appendBody), or a transient one of a monolithic POST (aborted on failure).
func (rg *Registry) appendLast(r *http.Request, u *storage.Upload, body io.Reader, end int64, ranged, stored bool) (hash.Hash, error) {
	if stored {
		return rg.appendBody(r, u, body, end, ranged, true)
	}
	h, err := hashFor(u)
	if err != nil {
		return nil, err
	}
	if _, err := rg.Blobs.AppendLast(r.Context(), u, io.TeeReader(body, h)); err != nil {
		_ = rg.Blobs.Abort(context.WithoutCancel(r.Context()), u)
		return nil, rg.bodyErr(err, "monolithic upload")
	}
	return h, nil
}

// readSmall reads body when it holds at most storage.MinPartSize bytes
// (rest nil); otherwise rest replays what was read, then the remainder.
func readSmall(body io.Reader) (small []byte, rest io.Reader, err error) {
	var buf bytes.Buffer
	_, err = io.CopyN(&buf, body, storage.MinPartSize+1)
	if errors.Is(err, io.EOF) {
		return buf.Bytes(), nil, nil
	}
	if err != nil {
		return nil, nil, err
	}
	return nil, io.MultiReader(&buf, body), nil
}

// finishSmall stores a whole blob held in memory: verify, then one PutObject
// (none when the blob exists), record and link.
func (rg *Registry) finishSmall(w http.ResponseWriter, r *http.Request, t target, u *storage.Upload, d digest.Digest, stored bool, body []byte, end int64, ranged bool) error {
	ctx := r.Context()
	fail := func(err error) error {
		if stored {
			_ = rg.Meta.CommitUpload(context.WithoutCancel(ctx), *u) // release the lease
		}
		return err
	}
	if ranged && int64(len(body)) != end+1 {
		return fail(apiErr(http.StatusRequestedRangeNotSatisfiable, CodeBlobUploadInvalid,
			"Content-Range 0-%d announces %d bytes but the body has %d", end, end+1, len(body)))
	}
	if got := d.Algorithm().FromBytes(body); got != d {
		if stored {
			_ = rg.Meta.DeleteUpload(ctx, u.ID)
		}
		return apiErr(http.StatusBadRequest, CodeDigestInvalid, "uploaded content has digest %s, not %s; nothing was stored", got, d)
	}
	b, linked, err := rg.linkExisting(ctx, t, d)
	if err == nil && !linked {
		var key string
		if key, err = rg.Blobs.PutSmall(ctx, d, body); err != nil {
			return fail(fmt.Errorf("put blob %s: %w", d, err))
		}
		b, err = t.hosted.Record(ctx, storage.Blob{Digest: d, Size: int64(len(body)), Key: key, Created: rg.Now()})
	}
	if err != nil {
		return fail(fmt.Errorf("blob %s: %w", d, err))
	}
	u.Offset = int64(len(body))
	return rg.linkFinished(w, r, t, u, b, stored, linked)
}

// finishVerifyStored finishes an upload hashed with another algorithm than
// its digest's, whose bytes are in multipart parts (a chunked push of a
// sha512 blob that did not announce ?digest-algorithm=sha512): the upload is
// completed at its own key, read back and hashed; a mismatch deletes it. This
// costs one read of the blob, on this rare path only.
func (rg *Registry) finishVerifyStored(w http.ResponseWriter, r *http.Request, t target, u *storage.Upload, d digest.Digest, stored bool) error {
	ctx := r.Context()
	key, err := rg.Blobs.Complete(ctx, u, d)
	if err != nil {
		return fmt.Errorf("complete blob %s: %w", d, err)
	}
	rc, err := rg.Blobs.(storage.BlobReader).ReadBlob(ctx, key)
	if err != nil {
		return fmt.Errorf("read back blob %s: %w", d, err)
	}
	got, err := d.Algorithm().FromReader(rc)
	rc.Close()
	if err != nil {
		return fmt.Errorf("hash blob %s: %w", d, err)
	}
	if got != d {
		_ = rg.Blobs.DeleteBlob(context.WithoutCancel(ctx), key)
		if stored {
			_ = rg.Meta.DeleteUpload(ctx, u.ID)
		}
		return apiErr(http.StatusBadRequest, CodeDigestInvalid, "uploaded content has digest %s, not %s; nothing was stored", got, d)
	}
	// The object exists: record it (an existing record wins, is touched,
	// and Record drops this copy).
	b, err := t.hosted.Record(ctx, storage.Blob{Digest: d, Size: u.Offset, Key: key, Created: rg.Now()})
	if err != nil {
		return fmt.Errorf("blob %s: %w", d, err)
	}
	return rg.linkFinished(w, r, t, u, b, stored, false)
}

// linkFinished links the blob into the image (unless linked already), ends
// the session and answers 201.
func (rg *Registry) linkFinished(w http.ResponseWriter, r *http.Request, t target, u *storage.Upload, b storage.Blob, stored, linked bool) error {
	ctx := r.Context()
	if linked {
		// done by linkExisting
	} else if err := rg.Meta.LinkBlob(ctx, t.img, b); err != nil {
		return fmt.Errorf("link blob %s: %w", b.Digest, err)
	}
	if stored {
		if err := rg.Meta.DeleteUpload(ctx, u.ID); err != nil {
			rg.Logger.WarnContext(ctx, "delete finished upload", "id", u.ID, "err", err)
		}
	}
	blobCreated(w, t, b.Digest)
	return nil
}

// errVerifyStored: the digest can only be checked on the completed object.
var errVerifyStored = errors.New("verify the digest on the stored object")

// contentDigest is the digest of the upload's bytes in algorithm alg: from
// the session's hash when it used alg, else by reading back the staged bytes
// of a short upload (the session cannot know the algorithm before PUT). For
// bytes already in multipart parts it returns errVerifyStored when the store
// can read objects back.
func (rg *Registry) contentDigest(ctx context.Context, u *storage.Upload, alg digest.Algorithm, h hash.Hash) (digest.Digest, error) {
	if u.HashAlgorithm == string(alg) {
		return digest.NewDigest(alg, h), nil
	}
	if _, ok := rg.Blobs.(storage.BlobReader); ok && u.MultipartID != "" {
		return "", errVerifyStored
	}
	sr, ok := rg.Blobs.(storage.StagedReader)
	if !ok || u.MultipartID != "" {
		return "", apiErr(http.StatusBadRequest, CodeDigestInvalid,
			"upload was hashed with %s but completed with a %s digest; for uploads over %d bytes start the upload with ?digest-algorithm=%s",
			u.HashAlgorithm, alg, storage.MinPartSize, alg)
	}
	rc, err := sr.ReadStaged(ctx, u)
	if err != nil {
		return "", fmt.Errorf("read staged bytes of upload %s: %w", u.ID, err)
	}
	defer rc.Close()
	d, err := alg.FromReader(rc)
	if err != nil {
		return "", fmt.Errorf("hash staged bytes of upload %s: %w", u.ID, err)
	}
	return d, nil
}
