package registry

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net/http"
	"strconv"
	"strings"
	"time"

	digest "github.com/opencontainers/go-digest"

	"github.com/airlock-registry/airlock/shared/storage"
)

// The completion of a direct-to-S3 upload and the verification of its
// digest (in the request, or by the asynchronous verifier); direct.go has
// the design.

// completion is the body of PUT ?airlock-complete=1.
type completion struct {
	Parts []struct {
		Number int32  `json:"number"`
		ETag   string `json:"etag"`
	} `json:"parts"`
}

// completeDirect answers PUT <location>?digest=<d>&airlock-complete=1 with
// {"parts":[{"number":1,"etag":"..."},...]}: it completes the multipart
// upload and verifies the digest (inline: 201; else handed off: 202).
func (rg *Registry) completeDirect(w http.ResponseWriter, r *http.Request, t target, d digest.Digest) error {
	_, _, pm, err := rg.direct()
	if err != nil {
		return err
	}
	ctx := r.Context()
	var c completion
	body, err := io.ReadAll(io.LimitReader(requestBody(r), maxCompletionBody+1))
	if err != nil {
		return rg.bodyErr(err, "read completion")
	}
	if len(body) > maxCompletionBody {
		return apiErr(http.StatusBadRequest, CodeBlobUploadInvalid, "the completion is over %d bytes", maxCompletionBody)
	}
	if err := json.Unmarshal(body, &c); err != nil {
		return apiErr(http.StatusBadRequest, CodeBlobUploadInvalid, "the completion is not JSON {\"parts\":[{\"number\":1,\"etag\":\"...\"},...]}: %v", err)
	}
	parts := make([]storage.Part, len(c.Parts))
	for i, p := range c.Parts {
		if p.Number != int32(i+1) || p.ETag == "" {
			return apiErr(http.StatusBadRequest, CodeBlobUploadInvalid,
				"the completion must list parts 1 to N in order, each with the ETag its PUT answered: entry %d is part %d with ETag %q", i+1, p.Number, p.ETag)
		}
		parts[i] = storage.Part{Number: p.Number, ETag: p.ETag}
	}

	u, err := rg.Meta.AcquireUpload(ctx, t.ref, 0, newID(), rg.Now().Add(leaseTTL))
	if err == nil && u.Image != t.img {
		_ = rg.Meta.CommitUpload(context.WithoutCancel(ctx), u)
		return uploadUnknown(t.ref)
	}
	if errors.Is(err, storage.ErrNotFound) {
		return rg.completedAlready(w, r, t, d, pm)
	}
	if errors.Is(err, storage.ErrConflict) {
		cur, gerr := rg.sessionFor(ctx, t)
		if gerr != nil {
			return gerr
		}
		if cur.Offset > 0 {
			return apiErr(http.StatusBadRequest, CodeBlobUploadInvalid, "upload %s has %d bytes sent through the registry: it is not a direct-to-S3 upload; complete it with PUT ?digest= (no airlock-complete)", t.ref, cur.Offset)
		}
		return apiErr(http.StatusConflict, CodeBlobUploadInvalid, "another request is completing upload %s: wait for it, then check the blob (HEAD)", t.ref)
	}
	if err != nil {
		return fmt.Errorf("acquire upload: %w", err)
	}
	held := u
	release := func() { _ = rg.Meta.CommitUpload(context.WithoutCancel(ctx), held) }
	if !isDirect(u) {
		release()
		return apiErr(http.StatusBadRequest, CodeBlobUploadInvalid, "upload %s is not a direct-to-S3 upload: ask for part URLs first (POST %s?airlock-parts=<count>&size=<bytes>)", t.ref, uploadLocation(t, t.ref))
	}
	m, err := pm.GetMarker(ctx, planGroup, u.ID)
	p, ok := parsePlan(m.Value)
	if err != nil || !ok {
		release()
		if err == nil || errors.Is(err, storage.ErrNotFound) {
			return apiErr(http.StatusNotFound, CodeBlobUploadUnknown, "the plan of direct upload %s is gone (expired): start another upload", t.ref)
		}
		return fmt.Errorf("get plan of upload %s: %w", u.ID, err)
	}
	if len(parts) != int(p.count) {
		release()
		what := fmt.Sprintf("parts %d to %d are missing", len(parts)+1, p.count)
		if len(parts) > int(p.count) {
			what = fmt.Sprintf("parts %d to %d were never issued", p.count+1, len(parts))
		}
		return apiErr(http.StatusBadRequest, CodeBlobUploadInvalid, "upload %s is planned in %d parts but the completion lists %d: %s", u.ID, p.count, len(parts), what)
	}
	for i := range parts {
		parts[i].Size = p.partLen(parts[i].Number)
	}
	key, size, err := rg.Blobs.(storage.PartPresigner).CompleteParts(ctx, &u, parts)
	switch {
	case errors.Is(err, storage.ErrInvalidParts):
		release()
		return apiErr(http.StatusBadRequest, CodeBlobUploadInvalid,
			"S3 refused the part list: every part must have been PUT to its URL and listed with the ETag that PUT answered (%v); the upload stays open for another completion", err)
	case errors.Is(err, storage.ErrNotFound):
		rg.endDirect(ctx, pm, u.ID)
		return apiErr(http.StatusNotFound, CodeBlobUploadUnknown, "the multipart upload of %s is gone (expired or cancelled): start another upload", t.ref)
	case err != nil:
		release()
		return fmt.Errorf("complete parts: %w", err)
	}
	job := VerifyJob{Image: t.img, Digest: d, Key: key, Size: size, Upload: u.ID}
	if size != p.size {
		_ = rg.Blobs.DeleteBlob(context.WithoutCancel(ctx), key)
		rg.endDirect(ctx, pm, u.ID)
		return apiErr(http.StatusBadRequest, CodeSizeInvalid, "the parts hold %d bytes, not the %d planned; nothing was stored", size, p.size)
	}
	if limit := rg.verifyInline(); limit < 0 || size > limit {
		return rg.handOff(w, r, t, job, pm, release)
	}
	b, err := rg.verify(ctx, job, false)
	var e *Error
	if errors.As(err, &e) {
		rg.endDirect(ctx, pm, u.ID)
		return e
	}
	if err != nil {
		release() // a retry finds the object completed and verifies again
		return err
	}
	rg.endDirect(ctx, pm, u.ID)
	blobCreated(w, t, b.Digest)
	return nil
}

func (rg *Registry) verifyInline() int64 {
	if rg.Direct.VerifyInline == 0 {
		return DefaultVerifyInline
	}
	return rg.Direct.VerifyInline
}

// endDirect deletes a finished direct upload's session and plan.
func (rg *Registry) endDirect(ctx context.Context, pm storage.ProxyMetadata, id string) {
	ctx = context.WithoutCancel(ctx)
	if err := rg.Meta.DeleteUpload(ctx, id); err != nil {
		rg.Logger.WarnContext(ctx, "delete finished direct upload", "id", id, "err", err)
	}
	_ = pm.DeleteMarker(ctx, planGroup, id)
}

func verifyKey(img storage.Image, d digest.Digest) string { return img.String() + "@" + d.String() }

// handOff records the blob as pending, hands its verification off and answers 202.
func (rg *Registry) handOff(w http.ResponseWriter, r *http.Request, t target, job VerifyJob, pm storage.ProxyMetadata, release func()) error {
	ctx := r.Context()
	st, _ := json.Marshal(verifyState{Status: "pending", Job: job})
	mk := storage.Marker{Group: verifyGroup, Key: verifyKey(job.Image, job.Digest), Value: string(st), Until: rg.Now().Add(pendingTTL)}
	if err := pm.PutMarker(ctx, mk); err != nil {
		release()
		return fmt.Errorf("record pending verification: %w", err)
	}
	handoff := rg.Direct.Handoff
	if handoff == nil {
		handoff = func(ctx context.Context, job VerifyJob) error {
			go func() {
				vctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), 15*time.Minute)
				defer cancel()
				if err := rg.Verify(vctx, job); err != nil {
					rg.Logger.WarnContext(vctx, "verify direct upload", "digest", job.Digest, "image", job.Image.String(), "err", err)
				}
			}()
			return nil
		}
	}
	if err := handoff(ctx, job); err != nil {
		_ = pm.DeleteMarker(context.WithoutCancel(ctx), verifyGroup, mk.Key)
		release() // a retry of the completion hands off again
		return apiErr(http.StatusServiceUnavailable, CodeUnavailable, "could not start the verification of %s (%v): retry the completion", job.Digest, err)
	}
	rg.endDirect(ctx, pm, job.Upload)
	pendingAccepted(w, r, t, job.Digest)
	return nil
}

// pendingAccepted answers 202: the blob is completed, its verification pending.
func pendingAccepted(w http.ResponseWriter, r *http.Request, t target, d digest.Digest) {
	body, _ := json.Marshal(map[string]string{
		"status":  "verifying",
		"digest":  d.String(),
		"message": "the blob is stored and its digest is being verified; it is not visible until then: HEAD " + "/v2/" + t.full + "/blobs/" + d.String() + " answers 200 once verified (404 if verification failed), and a manifest PUT referencing it is refused until then",
	})
	h := w.Header()
	h.Set("Location", "/v2/"+t.full+"/blobs/"+d.String())
	h.Set("Docker-Content-Digest", d.String())
	h.Set("Content-Type", "application/json")
	h.Set("Content-Length", strconv.Itoa(len(body)))
	w.WriteHeader(http.StatusAccepted)
	_, _ = w.Write(body)
}

// completedAlready answers a completion of a session that no longer exists:
// a retry after a lost answer finds the blob linked (201) or pending (202).
func (rg *Registry) completedAlready(w http.ResponseWriter, r *http.Request, t target, d digest.Digest, pm storage.ProxyMetadata) error {
	ctx := r.Context()
	if b, err := rg.Meta.StatBlob(ctx, t.img, d); err == nil {
		blobCreated(w, t, b.Digest)
		return nil
	}
	if m, err := pm.GetMarker(ctx, verifyGroup, verifyKey(t.img, d)); err == nil {
		var st verifyState
		if json.Unmarshal([]byte(m.Value), &st) == nil && st.Status == "pending" && st.Job.Upload == t.ref {
			pendingAccepted(w, r, t, d)
			return nil
		}
	}
	return uploadUnknown(t.ref)
}

// Verify runs the asynchronous verification of a direct upload (the
// verifier function's entry point; idempotent): it reads the object back
// and hashes it; on a match the blob is recorded and linked into the image,
// on a mismatch the object is deleted and the failure remembered for an
// hour (the manifest PUT's message). It returns an error for a mismatch too.
func (rg *Registry) Verify(ctx context.Context, job VerifyJob) error {
	_, err := rg.verify(ctx, job, true)
	return err
}

// verify hashes job's object; on a match it records and links the blob
// (ending a pending state when async), else deletes the object and returns
// a DIGEST_INVALID *Error.
func (rg *Registry) verify(ctx context.Context, job VerifyJob, async bool) (storage.Blob, error) {
	_, br, pm, err := rg.direct()
	if err != nil {
		return storage.Blob{}, err
	}
	if err := job.Digest.Validate(); err != nil {
		return storage.Blob{}, fmt.Errorf("verify: %w", err)
	}
	rp, ok := rg.repos.Get(job.Image.Repo)
	if !ok {
		return storage.Blob{}, fmt.Errorf("verify %s: repository %q is not configured", job.Digest, job.Image.Repo)
	}
	hosted, err := rp.Push()
	if err != nil {
		return storage.Blob{}, fmt.Errorf("verify %s: %w", job.Digest, err)
	}
	mkKey := verifyKey(job.Image, job.Digest)
	rc, err := br.ReadBlob(ctx, job.Key)
	if errors.Is(err, storage.ErrNotFound) {
		if b, serr := rg.Meta.StatBlob(ctx, job.Image, job.Digest); serr == nil {
			return b, nil // verified already
		}
	}
	if err != nil {
		return storage.Blob{}, fmt.Errorf("verify %s: read back: %w", job.Digest, err)
	}
	counter := &countingReader{r: rc}
	got, err := job.Digest.Algorithm().FromReader(counter)
	rc.Close()
	if err != nil {
		return storage.Blob{}, fmt.Errorf("verify %s: hash: %w", job.Digest, err)
	}
	if got != job.Digest || counter.n != job.Size {
		_ = rg.Blobs.DeleteBlob(context.WithoutCancel(ctx), job.Key)
		msg := fmt.Sprintf("uploaded content (%d bytes) has digest %s, not %s; nothing was stored", counter.n, got, job.Digest)
		if async {
			st, _ := json.Marshal(verifyState{Status: "failed", Message: msg, Job: job})
			_ = pm.PutMarker(context.WithoutCancel(ctx), storage.Marker{Group: verifyGroup, Key: mkKey, Value: string(st), Until: rg.Now().Add(failedTTL)})
		}
		return storage.Blob{}, apiErr(http.StatusBadRequest, CodeDigestInvalid, "%s", msg)
	}
	b, err := hosted.RecordAndLink(ctx, job.Image, storage.Blob{Digest: job.Digest, Size: job.Size, Key: job.Key, Created: rg.Now()})
	if err != nil {
		return b, fmt.Errorf("verify %s: %w", job.Digest, err)
	}
	if async {
		_ = pm.DeleteMarker(ctx, verifyGroup, mkKey)
	}
	return b, nil
}

type countingReader struct {
	r io.Reader
	n int64
}

func (c *countingReader) Read(p []byte) (int, error) {
	n, err := c.r.Read(p)
	c.n += int64(n)
	return n, err
}

// blobUnknownInManifest is the MANIFEST_BLOB_UNKNOWN of a manifest PUT
// referencing blob d, saying when its direct upload's verification is
// pending or failed (one marker read, only on this failure path).
// directVerifying tells whether a direct upload of d into the image is
// pending or failed verification (its marker exists: one read).
func (rg *Registry) directVerifying(ctx context.Context, t target, d digest.Digest) bool {
	pm, ok := rg.Meta.(storage.ProxyMetadata)
	if !ok {
		return false
	}
	_, err := pm.GetMarker(ctx, verifyGroup, verifyKey(t.img, d))
	return err == nil
}

func (rg *Registry) blobUnknownInManifest(ctx context.Context, t target, d digest.Digest) error {
	e := apiErr(http.StatusBadRequest, CodeManifestBlobUnknown, "blob %s referenced by the manifest is not in %s: push it first", d, t.full)
	pm, ok := rg.Meta.(storage.ProxyMetadata)
	if !ok {
		return e
	}
	m, err := pm.GetMarker(ctx, verifyGroup, verifyKey(t.img, d))
	if err != nil {
		return e
	}
	var st verifyState
	if json.Unmarshal([]byte(m.Value), &st) != nil {
		return e
	}
	switch st.Status {
	case "pending":
		e.Message = fmt.Sprintf("blob %s referenced by the manifest is not in %s yet: its direct upload's digest verification is pending; retry the manifest PUT once HEAD of the blob answers 200", d, t.full)
	case "failed":
		e.Message = fmt.Sprintf("blob %s referenced by the manifest is not in %s: its direct upload failed verification (%s); push it again", d, t.full, strings.TrimSuffix(st.Message, "; nothing was stored"))
	}
	return e
}
