package registry

import (
	_ "crypto/sha256" // register the digest algorithms
	_ "crypto/sha512"
	"errors"
	"fmt"
	"net/http"
	"strconv"

	digest "github.com/opencontainers/go-digest"

	"github.com/airlock-registry/airlock/shared/repo"
	"github.com/airlock-registry/airlock/shared/storage"
)

// parseDigest validates a digest from a path or query.
func parseDigest(s string) (digest.Digest, error) {
	d, err := digest.Parse(s)
	if err != nil {
		if errors.Is(err, digest.ErrDigestUnsupported) {
			return "", apiErr(http.StatusBadRequest, CodeDigestInvalid, "unsupported digest algorithm in %q: sha256 and sha512 are supported", s)
		}
		return "", apiErr(http.StatusBadRequest, CodeDigestInvalid, "invalid digest %q: %v", s, err)
	}
	if d.Algorithm() != digest.SHA256 && d.Algorithm() != digest.SHA512 {
		return "", apiErr(http.StatusBadRequest, CodeDigestInvalid, "unsupported digest algorithm %q: sha256 and sha512 are supported", d.Algorithm())
	}
	return d, nil
}

// blobUnknown is BLOB_UNKNOWN; cause, when a repository said more than
// "not found" (a proxy: not found upstream), gives the message.
func blobUnknown(d digest.Digest, name string, cause ...error) error {
	if msg := notFoundMsg(cause); msg != "" {
		return apiErr(http.StatusNotFound, CodeBlobUnknown, "blob %s: %s", d, msg)
	}
	return apiErr(http.StatusNotFound, CodeBlobUnknown, "blob %s is not known to %s", d, name)
}

// etagMatches reports whether If-None-Match names the digest.
func etagMatches(r *http.Request, d digest.Digest) bool {
	for _, v := range r.Header.Values("If-None-Match") {
		for _, tag := range splitList(v) {
			if tag == "*" || tag == `"`+d.String()+`"` || tag == d.String() || tag == `W/"`+d.String()+`"` {
				return true
			}
		}
	}
	return false
}

// getBlob answers GET with a 307 to a presigned URL and HEAD from the link alone.
// https://github.com/opencontainers/distribution-spec/blob/main/spec.md#pulling-blobs
func (rg *Registry) getBlob(w http.ResponseWriter, r *http.Request, t target) error {
	d, err := parseDigest(t.ref)
	if err != nil {
		return err
	}
	var b storage.Blob
	if r.Method == http.MethodHead {
		b, err = t.repo.BlobInfo(r.Context(), t.name, d)
	} else {
		b, err = t.repo.Blob(r.Context(), t.name, d)
	}
	var redirect *repo.RedirectError
	if errors.As(err, &redirect) {
		w.Header().Set("Location", redirect.URL)
		w.Header().Set("Content-Length", "0")
		w.WriteHeader(http.StatusTemporaryRedirect)
		return nil
	}
	if errors.Is(err, storage.ErrNotFound) {
		return blobUnknown(d, t.full, err)
	}
	if err != nil {
		return fmt.Errorf("blob %s: %w", d, err)
	}
	h := w.Header()
	h.Set("Docker-Content-Digest", d.String())
	h.Set("ETag", `"`+d.String()+`"`)
	if etagMatches(r, d) {
		w.WriteHeader(http.StatusNotModified)
		return nil
	}
	if r.Method == http.MethodHead {
		h.Set("Content-Type", "application/octet-stream")
		h.Set("Content-Length", strconv.FormatInt(b.Size, 10))
		h.Set("Accept-Ranges", "bytes")
		w.WriteHeader(http.StatusOK)
		return nil
	}
	// The link carries the object's key: no further read.
	u, err := rg.Blobs.PresignGet(r.Context(), b.ObjectKey(), rg.PresignTTL)
	if err != nil {
		return fmt.Errorf("presign blob %s: %w", d, err)
	}
	h.Set("Location", u)
	h.Set("Content-Length", "0")
	w.WriteHeader(http.StatusTemporaryRedirect)
	return nil
}

// deleteBlob removes the blob from this image (the bytes are collected later).
// https://github.com/opencontainers/distribution-spec/blob/main/spec.md#deleting-blobs
func (rg *Registry) deleteBlob(w http.ResponseWriter, r *http.Request, t target) error {
	d, err := parseDigest(t.ref)
	if err != nil {
		return err
	}
	err = rg.Meta.UnlinkBlob(r.Context(), t.img, d)
	if errors.Is(err, storage.ErrNotFound) {
		return blobUnknown(d, t.full)
	}
	if err != nil {
		return fmt.Errorf("unlink blob %s: %w", d, err)
	}
	w.Header().Set("Content-Length", "0")
	w.WriteHeader(http.StatusAccepted)
	return nil
}
