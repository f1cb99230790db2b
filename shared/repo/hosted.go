package repo

import (
	"context"
	"fmt"
	"strings"
	"time"

	digest "github.com/opencontainers/go-digest"
	ocispec "github.com/opencontainers/image-spec/specs-go/v1"

	"github.com/airlock-registry/airlock/shared/config"
	"github.com/airlock-registry/airlock/shared/manifest"
	"github.com/airlock-registry/airlock/shared/storage"
)

// Hosted is a hosted repository: a private registry whose content is pushed
// to it. It owns the deployment policy and the "record the blob or keep the
// one stored, then link" step every writer (uploads, proxy fills) uses.
type Hosted struct {
	cfg   *config.Repository
	meta  storage.Metadata
	blobs storage.Blobs
	deps  *Deps
}

var _ Repository = (*Hosted)(nil)

// Name returns the repository's name.
func (h *Hosted) Name() string { return h.cfg.Name }

// Kind returns config.KindHosted.
func (h *Hosted) Kind() config.Kind { return config.KindHosted }

// Config returns the repository's configuration.
func (h *Hosted) Config() *config.Repository { return h.cfg }

// Image returns the storage address of image in this repository.
func (h *Hosted) Image(image string) storage.Image {
	return storage.Image{Repo: h.cfg.Name, Name: image}
}

// Manifest resolves ref (a tag: one read; then the manifest: one read).
func (h *Hosted) Manifest(ctx context.Context, image string, ref Ref) (Manifest, error) {
	img := h.Image(image)
	d := ref.Digest
	if ref.Tag != "" {
		var err error
		if d, err = h.meta.ResolveTag(ctx, img, ref.Tag); err != nil {
			if notFound(err) {
				return Manifest{}, &NotFoundError{}
			}
			return Manifest{}, fmt.Errorf("resolve tag %s: %w", ref.Tag, err)
		}
	}
	m, err := h.meta.GetManifest(ctx, img, d)
	if notFound(err) {
		return Manifest{}, &NotFoundError{}
	}
	if err != nil {
		return Manifest{}, fmt.Errorf("get manifest %s: %w", d, err)
	}
	return Manifest{Manifest: m}, nil
}

// Blob returns the blob's link in image (one read).
func (h *Hosted) Blob(ctx context.Context, image string, d digest.Digest) (storage.Blob, error) {
	return h.Cached(ctx, image, d)
}

// BlobInfo is Blob.
func (h *Hosted) BlobInfo(ctx context.Context, image string, d digest.Digest) (storage.Blob, error) {
	return h.Cached(ctx, image, d)
}

// Cached returns the blob's link in image (one read), or a *NotFoundError.
func (h *Hosted) Cached(ctx context.Context, image string, d digest.Digest) (storage.Blob, error) {
	b, err := h.meta.StatBlob(ctx, h.Image(image), d)
	if notFound(err) {
		return b, &NotFoundError{}
	}
	if err != nil {
		return b, fmt.Errorf("stat blob %s: %w", d, err)
	}
	return b, nil
}

// Tags lists image's tags. An empty page of an image with no manifest at
// all is a *NotFoundError (the registry's NAME_UNKNOWN): only then is the
// catalog entry read (Metadata.HasImage: one GetItem), so a page with tags costs
// nothing more. An image whose manifests are all untagged, or a page past
// the last tag, is an empty page.
func (h *Hosted) Tags(ctx context.Context, image, last string, n int) (storage.Page, error) {
	img := h.Image(image)
	p, err := h.meta.ListTags(ctx, img, last, n)
	if err != nil {
		return p, fmt.Errorf("list tags: %w", err)
	}
	if len(p.Items) > 0 {
		return p, nil
	}
	// The catalog lists an image while it has a manifest (Metadata's
	// DeleteManifest).
	known, err := h.meta.HasImage(ctx, img)
	if err != nil {
		return p, fmt.Errorf("look %s up in the catalog: %w", img, err)
	}
	if !known {
		return p, &NotFoundError{Msg: fmt.Sprintf("repository name not known to registry: repository %s has no image %s (no tag, no manifest); check the name, or push it first", h.cfg.Name, image)}
	}
	return p, nil
}

// Referrers lists the manifests whose subject is subject.
func (h *Hosted) Referrers(ctx context.Context, image string, subject digest.Digest) ([]ocispec.Descriptor, error) {
	ds, err := h.meta.ListReferrers(ctx, h.Image(image), subject)
	if err != nil {
		return nil, fmt.Errorf("list referrers: %w", err)
	}
	return ds, nil
}

// Push returns h, or a *DeniedError when the repository is read-only.
func (h *Hosted) Push() (*Hosted, error) {
	if h.cfg.Policy == config.PolicyReadOnly {
		return nil, denied("repository %q is read-only (deployment policy read-only)", h.cfg.Name)
	}
	return h, nil
}

// TagRule checks a push of tag → d against the deployment policy and returns
// the rule of the tag write (a *DeniedError when the policy refuses it).
func (h *Hosted) TagRule(ctx context.Context, img storage.Image, tag string, d digest.Digest) (storage.TagRule, error) {
	p := h.cfg.Policy
	if tag == "" || !(p == config.PolicyDisableRedeploy || p == config.PolicyDisableRedeployExceptLatest && tag != "latest") {
		return storage.TagOverwrite, nil
	}
	cur, err := h.meta.ResolveTag(ctx, img, tag)
	if err == nil && cur != d {
		return storage.TagCreateOnly, h.RedeployDenied(tag)
	}
	if err != nil && !notFound(err) {
		return storage.TagCreateOnly, fmt.Errorf("resolve tag %s: %w", tag, err)
	}
	return storage.TagCreateOnly, nil
}

// RedeployDenied is the refusal of a tag write under the policy.
func (h *Hosted) RedeployDenied(tag string) error {
	return denied("repository %q has deployment policy %s: tag %q already points at another manifest and cannot be redeployed",
		h.cfg.Name, h.cfg.Policy, tag)
}

// UploadedGroup is the marker group (storage.Marker) of blobs recorded at
// an upload's own key (storage.UploadKey): key the upload id, value the
// digest, kept UploadedFor. An S3 object at an upload key keeps the time its
// multipart upload was opened as its modification time, so age alone cannot
// tell an orphan from a blob recorded a moment ago; this marker can.
const UploadedGroup = "uploaded"

// UploadedFor is how long an UploadedGroup marker lives: longer than any
// garbage collection pass (package purge restarts older passes).
const UploadedFor = 7 * 24 * time.Hour

var uploadKeyPrefix = storage.UploadKey("")

// Record creates the global record of a blob whose bytes are at b.Key and
// returns the record stored. When another writer of the same bytes recorded
// its object first, that record wins and this writer's object is deleted.
func (h *Hosted) Record(ctx context.Context, b storage.Blob) (storage.Blob, error) {
	if id, ok := strings.CutPrefix(b.Key, uploadKeyPrefix); ok {
		// The blob garbage collection's reconciliation reads this marker
		// to tell the object of a blob recorded during its pass from an
		// orphan (package purge's doc).
		m := storage.Marker{Group: UploadedGroup, Key: id, Value: b.Digest.String(), Until: h.deps.Now().Add(UploadedFor)}
		if err := h.meta.(storage.ProxyMetadata).PutMarker(ctx, m); err != nil {
			return storage.Blob{}, fmt.Errorf("record blob %s: mark upload %s: %w", b.Digest, id, err)
		}
	}
	won, err := h.meta.PutBlob(ctx, b)
	if err != nil {
		return won, fmt.Errorf("record blob %s: %w", b.Digest, err)
	}
	if won.ObjectKey() != b.ObjectKey() {
		if err := h.blobs.DeleteBlob(context.WithoutCancel(ctx), b.ObjectKey()); err != nil {
			h.deps.Logger.WarnContext(ctx, "delete the object of an upload that lost the race", "digest", b.Digest, "key", b.ObjectKey(), "err", err)
		}
	}
	return won, nil
}

// RecordAndLink records the blob (Record) and links it into img.
func (h *Hosted) RecordAndLink(ctx context.Context, img storage.Image, b storage.Blob) (storage.Blob, error) {
	b, err := h.Record(ctx, b)
	if err != nil {
		return b, err
	}
	if err := h.meta.LinkBlob(ctx, img, b); err != nil {
		return b, fmt.Errorf("link blob %s: %w", b.Digest, err)
	}
	return b, nil
}

// StoreManifest stores a verified manifest (m.Digest, Size, Created set) with
// its exact body: inline in its item when it fits, else in S3. It returns
// the manifest as stored (Body or BodyKey set).
func (h *Hosted) StoreManifest(ctx context.Context, img storage.Image, m storage.Manifest, body []byte) (storage.Manifest, error) {
	if manifest.Inline(body, m) {
		m.Body = body
	} else {
		key, err := h.blobs.PutManifestBody(ctx, m.Digest, body)
		if err != nil {
			return m, fmt.Errorf("store manifest body: %w", err)
		}
		m.BodyKey = key
	}
	if err := h.meta.PutManifest(ctx, img, m); err != nil {
		return m, fmt.Errorf("put manifest %s: %w", m.Digest, err)
	}
	return m, nil
}
