package registry

import (
	"context"
	"errors"
	"fmt"
	"net/http"
	"strconv"
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
