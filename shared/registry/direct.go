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

	"github.com/airlock-registry/airlock/shared/repo"
	"github.com/airlock-registry/airlock/shared/storage"
)

// Direct-to-S3 uploads (README, Direct-to-S3 uploads): an Airlock extension
// of the upload API. On an open session the client asks for presigned S3
// UploadPart URLs (POST <location>?airlock-parts=&size=), PUTs the parts
// straight to S3, and completes with their ETags (PUT
// <location>?digest=&airlock-complete=1). The registry completes the
// multipart upload and verifies the digest on the stored object before the
// blob is recorded: in the request when the blob is at most
// DirectOptions.VerifyInline bytes, else by an asynchronous verifier
// (DirectOptions.Handoff → Registry.Verify); until then the blob is pending
// (a marker, not a blob record) and manifests referencing it are refused.

// DirectOptions tune direct-to-S3 uploads.
type DirectOptions struct {
	// VerifyInline is the largest blob whose digest the completing request
	// verifies by reading it back (default DefaultVerifyInline, sized for API
	// Gateway's 30 s; about 1 GiB fits a function URL's 15 minutes). Larger
	// blobs are handed to the verifier; < 0: always.
	VerifyInline int64
	// Handoff starts the asynchronous verification of job (on AWS: invoke the
	// verifier function, which calls Registry.Verify). nil: run
	// Registry.Verify in a goroutine of this process (localdev, tests).
	Handoff func(ctx context.Context, job VerifyJob) error
	// PartTTL is the expiry of presigned part URLs (default 1 hour).
	PartTTL time.Duration
	// PartSize is the part size chosen when the client names no part count
	// (default 16 MiB, raised to keep within storage.MaxParts).
	PartSize int64
}

// Defaults of DirectOptions.
const (
	DefaultVerifyInline = 200 << 20
	defaultPartTTL      = time.Hour
	defaultPartSize     = 16 << 20
	// maxPartURLs is the most part URLs one answer lists (about 1 KB each:
	// far under Lambda's 6 MB response); ask again with first= for more.
	maxPartURLs = 1000
	// maxCompletionBody bounds the completion's JSON (10,000 parts fit).
	maxCompletionBody = 4 << 20
	// pendingTTL is how long a pending verification is remembered; a failed
	// one is remembered failedTTL (for the manifest PUT's message).
	pendingTTL = 24 * time.Hour
	failedTTL  = time.Hour
)

// Marker groups of direct uploads (storage.ProxyMetadata markers).
const (
	// planGroup keys an upload id to its plan ("<size> <partSize> <count>").
	planGroup = "direct-plan"
	// verifyGroup keys "<repo>/<image>@<digest>" to a verifyState (JSON).
	verifyGroup = repo.DirectVerifyGroup
)

// VerifyJob is a completed direct upload whose digest is still to be
// verified (JSON: the verifier function's event).
type VerifyJob struct {
	Image  storage.Image `json:"image"`
	Digest digest.Digest `json:"digest"`
	// Key is the object holding the bytes (storage.UploadKey(Upload)).
	Key    string `json:"key"`
	Size   int64  `json:"size"`
	Upload string `json:"upload"`
}

// verifyState is the value of a verifyGroup marker.
type verifyState struct {
	Status  string `json:"status"` // "pending" or "failed"
	Message string `json:"message,omitempty"`
	Job     VerifyJob
}

// plan is the part layout of a direct upload.
type plan struct {
	size, partSize int64
	count          int32
}

func (p plan) String() string { return fmt.Sprintf("%d %d %d", p.size, p.partSize, p.count) }

func (p plan) partLen(n int32) int64 {
	if n < p.count {
		return p.partSize
	}
	return p.size - int64(p.count-1)*p.partSize
}

func parsePlan(v string) (plan, bool) {
	var p plan
	_, err := fmt.Sscanf(v, "%d %d %d", &p.size, &p.partSize, &p.count)
	return p, err == nil
}

// makePlan lays out size bytes in parts of partSize bytes, or in count
// parts (parts of ceil(size/count) bytes), or (both 0) in parts of defPart
// bytes, within S3's limits.
func makePlan(size, count, partSize, defPart int64) (plan, error) {
	if size < 1 || size > storage.MaxObjectSize {
		return plan{}, apiErr(http.StatusBadRequest, CodeSizeInvalid, "size %d is out of range: a direct upload holds 1 to %d bytes (S3's largest object); push empty blobs with a PUT", size, int64(storage.MaxObjectSize))
	}
	ps := partSize
	switch {
	case ps > 0:
		n := (size + ps - 1) / ps
		if count != 0 && count != n {
			return plan{}, apiErr(http.StatusBadRequest, CodeSizeInvalid, "airlock-parts=%d and airlock-part-size=%d disagree: %d bytes make %d parts of that size", count, ps, size, n)
		}
		count = n
	case count == 0:
		ps = max(defPart, (size+storage.MaxParts-1)/storage.MaxParts)
		count = (size + ps - 1) / ps
	default:
		ps = (size + count - 1) / count
	}
	if count < 1 || count > storage.MaxParts {
		return plan{}, apiErr(http.StatusBadRequest, CodeSizeInvalid, "%d parts is out of range: S3 takes 1 to %d parts", count, storage.MaxParts)
	}
	p := plan{size: size, partSize: ps, count: int32(count)}
	most := min(storage.MaxParts, max(1, size/storage.MinPartSize))
	switch {
	case ps > storage.MaxPartSize:
		return plan{}, apiErr(http.StatusBadRequest, CodeSizeInvalid, "%d bytes in %d parts makes parts of %d bytes, over S3's limit of %d: use at least %d parts", size, count, ps, int64(storage.MaxPartSize), (size+storage.MaxPartSize-1)/storage.MaxPartSize)
	case count > 1 && ps < storage.MinPartSize:
		return plan{}, apiErr(http.StatusBadRequest, CodeSizeInvalid, "%d bytes in %d parts makes parts of %d bytes, under S3's minimum of %d for all parts but the last: use at most %d parts", size, count, ps, storage.MinPartSize, most)
	case p.partLen(p.count) < 1:
		return plan{}, apiErr(http.StatusBadRequest, CodeSizeInvalid, "%d bytes do not split into %d parts of %d bytes with a non-empty last part: use at most %d parts", size, count, ps, most)
	}
	return p, nil
}

// isDirect tells whether a session is a direct upload: a multipart upload
// created for the client's parts, no bytes written by the registry.
func isDirect(u storage.Upload) bool {
	return u.MultipartID != "" && len(u.Parts) == 0 && len(u.Staged) == 0 && u.Offset == 0
}

// directMixed is the refusal of a chunk or a monolithic PUT on a direct upload.
func directMixed(t target) error {
	return apiErr(http.StatusBadRequest, CodeBlobUploadInvalid,
		"upload %s is a direct-to-S3 upload (part URLs were issued): send its parts to S3 and complete it with PUT ?digest=&airlock-complete=1, or cancel it (DELETE) and start another; chunks cannot be mixed in", t.ref)
}

// direct returns the capabilities direct uploads need, or an UNSUPPORTED error.
func (rg *Registry) direct() (storage.PartPresigner, storage.BlobReader, storage.ProxyMetadata, error) {
	pp, ok1 := rg.Blobs.(storage.PartPresigner)
	br, ok2 := rg.Blobs.(storage.BlobReader)
	pm, ok3 := rg.Meta.(storage.ProxyMetadata)
	if !ok1 || !ok2 || !ok3 {
		return nil, nil, nil, apiErr(http.StatusMethodNotAllowed, CodeUnsupported, "this registry's storage does not offer direct-to-S3 uploads: push through the upload API")
	}
	return pp, br, pm, nil
}

// directSupported tells whether the stores offer direct uploads (the upload
// POST advertises them).
func (rg *Registry) directSupported() bool {
	_, _, _, err := rg.direct()
	return err == nil
}

// sessionFor reads the session of t (uploadUnknown when absent or another image's).
func (rg *Registry) sessionFor(ctx context.Context, t target) (storage.Upload, error) {
	u, err := rg.Meta.GetUpload(ctx, t.ref)
	if errors.Is(err, storage.ErrNotFound) || err == nil && u.Image != t.img {
		return u, uploadUnknown(t.ref)
	}
	if err != nil {
		return u, fmt.Errorf("get upload: %w", err)
	}
	return u, nil
}

// partURL is one presigned part of the answer.
type partURL struct {
	Number int32  `json:"number"`
	URL    string `json:"url"`
	Size   int64  `json:"size"`
}

// presignParts answers POST <location>?size=<bytes>[&airlock-parts=<count>
// | &airlock-part-size=<bytes>][&first=<n>]:
// on the first call it creates the session's multipart upload and records
// the plan; every call (the same size and count) returns fresh URLs for up
// to maxPartURLs parts from first.
func (rg *Registry) presignParts(w http.ResponseWriter, r *http.Request, t target) error {
	pp, _, pm, err := rg.direct()
	if err != nil {
		return err
	}
	ctx := r.Context()
	q := r.URL.Query()
	num := func(name string, def int64) (int64, error) {
		v := q.Get(name)
		if v == "" {
			return def, nil
		}
		n, err := strconv.ParseInt(v, 10, 64)
		if err != nil || n < 0 {
			return 0, apiErr(http.StatusBadRequest, CodeSizeInvalid, "%s=%q is not a non-negative integer", name, v)
		}
		return n, nil
	}
	if !q.Has("size") {
		return apiErr(http.StatusBadRequest, CodeSizeInvalid, "size=<total bytes of the blob> is required to plan a direct upload (with airlock-parts=<count>, optional)")
	}
	size, err := num("size", 0)
	if err != nil {
		return err
	}
	count, err := num("airlock-parts", 0)
	if err != nil {
		return err
	}
	partSize, err := num("airlock-part-size", 0)
	if err != nil {
		return err
	}
	first, err := num("first", 1)
	if err != nil {
		return err
	}
	defPart := rg.Direct.PartSize
	if defPart <= 0 {
		defPart = defaultPartSize
	}
	p, err := makePlan(size, count, partSize, max(defPart, storage.MinPartSize))
	if err != nil {
		return err
	}
	if first < 1 || first > int64(p.count) {
		return apiErr(http.StatusBadRequest, CodeSizeInvalid, "first=%d is not a part of this upload (1 to %d)", first, p.count)
	}
	u, err := rg.sessionFor(ctx, t)
	if err != nil {
		return err
	}
	if isDirect(u) {
		m, err := pm.GetMarker(ctx, planGroup, u.ID)
		if err != nil {
			return fmt.Errorf("get plan of upload %s: %w", u.ID, err)
		}
		if had, _ := parsePlan(m.Value); had != p {
			return apiErr(http.StatusBadRequest, CodeBlobUploadInvalid,
				"upload %s is planned as %d bytes in %d parts of %d bytes; ask with size=%d&airlock-parts=%d (or cancel it and start another)",
				u.ID, had.size, had.count, had.partSize, had.size, had.count)
		}
	} else {
		if u.Offset != 0 || u.MultipartID != "" || len(u.Staged) > 0 {
			return apiErr(http.StatusBadRequest, CodeBlobUploadInvalid,
				"upload %s has %d bytes sent through the registry already: a direct-to-S3 upload starts on an empty session (POST a new one)", u.ID, u.Offset)
		}
		if u, err = rg.startDirect(r, t, pp, pm, p); err != nil {
			return err
		}
	}
	ttl := rg.Direct.PartTTL
	if ttl <= 0 {
		ttl = defaultPartTTL
	}
	last := min(int64(p.count), first+maxPartURLs-1)
	out := struct {
		Parts    []partURL `json:"parts"`
		Size     int64     `json:"size"`
		PartSize int64     `json:"partSize"`
		Count    int32     `json:"count"`
		Next     int64     `json:"next,omitempty"`
		Expires  time.Time `json:"expires"`
	}{Size: p.size, PartSize: p.partSize, Count: p.count, Expires: rg.Now().Add(ttl).UTC().Truncate(time.Second)}
	for n := int32(first); n <= int32(last); n++ {
		url, err := pp.PresignUploadPart(ctx, &u, n, p.partLen(n), ttl)
		if err != nil {
			return fmt.Errorf("presign part %d: %w", n, err)
		}
		out.Parts = append(out.Parts, partURL{Number: n, URL: url, Size: p.partLen(n)})
	}
	if last < int64(p.count) {
		out.Next = last + 1
	}
	w.Header().Set("Location", uploadLocation(t, u.ID))
	w.Header().Set("Docker-Upload-UUID", u.ID)
	writeJSON(w, r, "application/json", out)
	return nil
}

// startDirect turns an empty session into a direct upload: under its lease,
// the multipart upload is created and the plan recorded.
func (rg *Registry) startDirect(r *http.Request, t target, pp storage.PartPresigner, pm storage.ProxyMetadata, p plan) (storage.Upload, error) {
	ctx := r.Context()
	u, err := rg.Meta.AcquireUpload(ctx, t.ref, 0, newID(), rg.Now().Add(leaseTTL))
	switch {
	case errors.Is(err, storage.ErrNotFound):
		return u, uploadUnknown(t.ref)
	case errors.Is(err, storage.ErrConflict):
		return u, apiErr(http.StatusConflict, CodeBlobUploadInvalid, "another request is writing to upload %s: ask again when it is done", t.ref)
	case err != nil:
		return u, fmt.Errorf("acquire upload: %w", err)
	}
	held := u
	release := func() { _ = rg.Meta.CommitUpload(context.WithoutCancel(ctx), held) }
	if !(u.Offset == 0 && u.MultipartID == "" && len(u.Staged) == 0) {
		release()
		return u, apiErr(http.StatusConflict, CodeBlobUploadInvalid, "upload %s changed meanwhile: ask again", t.ref)
	}
	if err := pp.StartParts(ctx, &u); err != nil {
		release()
		return u, fmt.Errorf("start direct upload: %w", err)
	}
	abort := func() { _ = rg.Blobs.Abort(context.WithoutCancel(ctx), &u) }
	if err := pm.PutMarker(ctx, storage.Marker{Group: planGroup, Key: u.ID, Value: p.String(), Until: u.ExpiresAt.Add(time.Hour)}); err != nil {
		abort()
		release()
		return u, fmt.Errorf("record plan of upload %s: %w", u.ID, err)
	}
	if err := rg.Meta.CommitUpload(ctx, u); err != nil {
		abort()
		return u, fmt.Errorf("commit upload: %w", err)
	}
	u.Lease, u.LeaseUntil = "", time.Time{}
	return u, nil
}

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
