package registry

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net/http"
	"strings"
	"sync"
	"time"

	digest "github.com/opencontainers/go-digest"
	ocispec "github.com/opencontainers/image-spec/specs-go/v1"

	"github.com/airlock-registry/airlock/shared/auth"
	"github.com/airlock-registry/airlock/shared/config"
	"github.com/airlock-registry/airlock/shared/manifest"
	"github.com/airlock-registry/airlock/shared/storage"
)

// Bounds of one manifest answer (far under Lambda's 6 MB response).
const (
	// maxListed caps the layers, child manifests and referrers listed.
	maxListed = 1000
	// maxAnnotation caps each annotation value shown (longer ones are cut, with "…").
	maxAnnotation = 1024
	// maxConfigRead is the largest image config read for its creation time and platform.
	maxConfigRead = 1 << 20
	// readers is how many manifest reads of one answer run at once.
	readers = 8
)

// summary is what the tags page shows of a manifest.
type summary struct {
	Digest       digest.Digest `json:"digest"`
	MediaType    string        `json:"mediaType"`
	ArtifactType string        `json:"artifactType,omitempty"`
	Size         int64         `json:"size"`
	// TotalSize is the manifest, its config and layers (an index: its
	// stored child manifests and their blobs), each distinct blob once.
	TotalSize int64 `json:"totalSize"`
	// Incomplete: some child manifests of an index are not stored here (a
	// proxy caches the platforms that were pulled); TotalSize counts those stored.
	Incomplete bool `json:"incomplete,omitempty"`
	// Pushed is when Airlock stored the manifest (pushed, or cached by a proxy).
	Pushed time.Time `json:"pushed,omitzero"`
	// Created is the org.opencontainers.image.created annotation, when set.
	Created   string             `json:"created,omitempty"`
	Platforms []ocispec.Platform `json:"platforms,omitempty"`
	// Member is the group member holding it (groups only) and its kind.
	Member     string      `json:"member,omitempty"`
	MemberKind config.Kind `json:"memberKind,omitempty"`
}

// body is the union of the fields of stored manifests and indexes (they were validated when stored).
type body struct {
	Config      *ocispec.Descriptor  `json:"config"`
	Layers      []ocispec.Descriptor `json:"layers"`
	Manifests   []ocispec.Descriptor `json:"manifests"`
	Subject     *ocispec.Descriptor  `json:"subject"`
	Annotations map[string]string    `json:"annotations"`
}

// stored is a manifest read from one leaf.
type stored struct {
	leaf string
	img  storage.Image
	m    storage.Manifest
	doc  body
}

// readManifest reads manifest d of img with its body (an S3 read when the
// body is too large for an item) and parses it.
func (rg *Registry) readManifest(ctx context.Context, img storage.Image, d digest.Digest) (stored, error) {
	m, err := rg.Meta.GetManifest(ctx, img, d)
	if err != nil {
		return stored{}, err
	}
	b := m.Body
	if b == nil && m.BodyKey != "" {
		if b, err = rg.Blobs.GetManifestBody(ctx, m.BodyKey); err != nil {
			return stored{}, fmt.Errorf("manifest body %s: %w", d, err)
		}
	}
	s := stored{leaf: img.Repo, img: img, m: m}
	if err := json.Unmarshal(b, &s.doc); err != nil {
		return stored{}, fmt.Errorf("stored manifest %s of %s does not parse: %w", d, img, err)
	}
	return s, nil
}

// blobs returns the config and layer descriptors (foreign layers too: they count in the image's size).
func (b body) blobs() []ocispec.Descriptor {
	var out []ocispec.Descriptor
	if b.Config != nil {
		out = append(out, *b.Config)
	}
	return append(out, b.Layers...)
}

// summarize computes the summary of s, reading an index's children from
// the same image (one GetItem each, readers at a time).
func (rg *Registry) summarize(ctx context.Context, s stored) (summary, []childInfo) {
	sum := summary{Digest: s.m.Digest, MediaType: s.m.MediaType, ArtifactType: s.m.ArtifactType, Size: s.m.Size,
		Pushed: s.m.Created, Created: s.m.Annotations[ocispec.AnnotationCreated]}
	seen := map[digest.Digest]bool{s.m.Digest: true}
	total := s.m.Size
	add := func(ds []ocispec.Descriptor) {
		for _, d := range ds {
			if !seen[d.Digest] {
				seen[d.Digest] = true
				total += d.Size
			}
		}
	}
	add(s.doc.blobs())
	var children []childInfo
	if manifest.IsIndex(s.m.MediaType) || len(s.doc.Manifests) > 0 {
		kids := s.doc.Manifests
		if len(kids) > maxListed {
			kids, sum.Incomplete = kids[:maxListed], true
		}
		children = make([]childInfo, len(kids))
		docs := make([]*body, len(kids))
		parallel(len(kids), func(i int) {
			c := kids[i]
			children[i] = childInfo{Digest: c.Digest, MediaType: c.MediaType, ArtifactType: c.ArtifactType, Size: c.Size, Platform: c.Platform}
			cs, err := rg.readManifest(ctx, s.img, c.Digest)
			if err != nil {
				if !errors.Is(err, storage.ErrNotFound) {
					rg.Logger.WarnContext(ctx, "browse: child manifest", "image", s.img.String(), "digest", c.Digest, "err", err)
				}
				return
			}
			docs[i] = &cs.doc
			children[i].Stored = true
			children[i].TotalSize = c.Size + sizeOf(cs.doc.blobs())
		})
		for i, c := range kids {
			if c.Platform != nil {
				sum.Platforms = append(sum.Platforms, *c.Platform)
			}
			if docs[i] == nil {
				sum.Incomplete = true
				continue
			}
			add([]ocispec.Descriptor{c})
			add(docs[i].blobs())
		}
	}
	sum.TotalSize = total
	return sum, children
}

func sizeOf(ds []ocispec.Descriptor) int64 {
	seen := map[digest.Digest]bool{}
	var n int64
	for _, d := range ds {
		if !seen[d.Digest] {
			seen[d.Digest] = true
			n += d.Size
		}
	}
	return n
}

// parallel runs f(0..n-1), readers at a time.
func parallel(n int, f func(i int)) {
	sem := make(chan struct{}, readers)
	var wg sync.WaitGroup
	for i := range n {
		sem <- struct{}{}
		wg.Go(func() {
			defer func() { <-sem }()
			f(i)
		})
	}
	wg.Wait()
}

// resolve finds which leaf (in lookup order) holds tag of image and the
// digest it points at: one GetItem for one leaf, one BatchGetItem for several.
func (rg *Registry) resolveIn(ctx context.Context, leaves []string, image, tag string) (int, digest.Digest, error) {
	imgs := make([]storage.Image, len(leaves))
	for i, l := range leaves {
		imgs[i] = storage.Image{Repo: l, Name: image}
	}
	if len(imgs) == 1 {
		d, err := rg.Meta.ResolveTag(ctx, imgs[0], tag)
		return 0, d, err
	}
	br, ok := rg.Meta.(storage.BatchReader)
	if !ok {
		return 0, "", fmt.Errorf("the metadata store %T cannot read a group's members together (storage.BatchReader)", rg.Meta)
	}
	ds, err := br.ResolveTags(ctx, imgs, tag)
	if err != nil {
		return 0, "", err
	}
	for i, d := range ds {
		if d != "" {
			return i, d, nil
		}
	}
	return 0, "", storage.ErrNotFound
}

// locate finds which leaf holds manifest d of image (one BatchGetItem for several leaves).
func (rg *Registry) locate(ctx context.Context, leaves []string, image string, d digest.Digest) (int, error) {
	if len(leaves) == 1 {
		return 0, nil
	}
	br, ok := rg.Meta.(storage.BatchReader)
	if !ok {
		return 0, fmt.Errorf("the metadata store %T cannot read a group's members together (storage.BatchReader)", rg.Meta)
	}
	imgs := make([]storage.Image, len(leaves))
	for i, l := range leaves {
		imgs[i] = storage.Image{Repo: l, Name: image}
	}
	has, err := br.HasManifests(ctx, imgs, d)
	if err != nil {
		return 0, err
	}
	for i, ok := range has {
		if ok {
			return i, nil
		}
	}
	return 0, storage.ErrNotFound
}

// tagInfo is one row of the tags page.
type tagInfo struct {
	Tag string `json:"tag"`
	summary
}

// browseTags lists an image's stored tags (for a group: its members',
// merged; the first member holding a tag serves it) with their manifests'
// summaries. Per page: one ListTags Query per member, then per tag one
// GetItem of the tag (a BatchGetItem over the members for a group) and one
// of the manifest, plus one per child manifest of an index.
func (rg *Registry) browseTags(w http.ResponseWriter, r *http.Request, id auth.Identity) error {
	rp, image, err := rg.browseImage(r, id)
	if err != nil {
		return err
	}
	n, err := intParam(r, "n", defaultTagsPage, maxTagsPage)
	if err != nil {
		return err
	}
	last := r.URL.Query().Get("last")
	if last != "" && !tagRe.MatchString(last) {
		return apiErr(http.StatusBadRequest, CodeUnsupported, "last %q is not a tag", echo(last))
	}
	ctx := r.Context()
	leaves := rg.leaves(rp)
	tags, next, err := mergePages(len(leaves), func(i int, after string, n int) (storage.Page, error) {
		return rg.Meta.ListTags(ctx, storage.Image{Repo: leaves[i], Name: image}, after, n)
	}, last, n, func(string) bool { return true })
	if err != nil {
		return err
	}
	out := make([]tagInfo, len(tags))
	errs := make([]error, len(tags))
	parallel(len(tags), func(i int) {
		out[i].Tag = tags[i]
		at, d, err := rg.resolveIn(ctx, leaves, image, tags[i])
		if err == nil {
			var s stored
			if s, err = rg.readManifest(ctx, storage.Image{Repo: leaves[at], Name: image}, d); err == nil {
				out[i].summary, _ = rg.summarize(ctx, s)
				if rp.Kind() == config.KindGroup {
					out[i].Member, out[i].MemberKind = leaves[at], rg.kindOf(leaves[at])
				}
			}
		}
		errs[i] = err
	})
	rows := out[:0]
	for i, err := range errs {
		switch {
		case errors.Is(err, storage.ErrNotFound): // deleted since it was listed
		case err != nil:
			return fmt.Errorf("tag %s of %s/%s: %w", tags[i], rp.Name(), image, err)
		default:
			rows = append(rows, out[i])
		}
	}
	writeJSON(w, r, "application/json", struct {
		Repository string      `json:"repository"`
		Kind       config.Kind `json:"kind"`
		Image      string      `json:"image"`
		Tags       []tagInfo   `json:"tags"`
		Next       string      `json:"next,omitempty"`
	}{rp.Name(), rp.Kind(), image, rows, next})
	return nil
}

func (rg *Registry) kindOf(name string) config.Kind {
	if rp, ok := rg.repos.Get(name); ok {
		return rp.Kind()
	}
	return ""
}

// childInfo is one manifest of an index.
type childInfo struct {
	Digest       digest.Digest     `json:"digest"`
	MediaType    string            `json:"mediaType"`
	ArtifactType string            `json:"artifactType,omitempty"`
	Size         int64             `json:"size"`
	Platform     *ocispec.Platform `json:"platform,omitempty"`
	// Stored tells whether Airlock holds it; TotalSize is then its size with its blobs'.
	Stored    bool  `json:"stored"`
	TotalSize int64 `json:"totalSize,omitempty"`
}

// configInfo is what the manifest page shows of an image config.
type configInfo struct {
	ocispec.Descriptor
	Created      *time.Time `json:"created,omitempty"`
	OS           string     `json:"os,omitempty"`
	Architecture string     `json:"architecture,omitempty"`
	Variant      string     `json:"variant,omitempty"`
}

// browseManifest shows one manifest (by tag or digest): its summary,
// config (creation time and platform read from the config blob when it is
// stored and at most 1 MiB: one GetItem of its link and one S3 GetObject),
// layers, an index's manifests, annotations, subject and referrers (one
// Query per member). With ?index=<digest> the manifest (ref, a digest) is
// one platform of that index, read from the index's member: the answer's
// platform is the index's for it (one GetItem more; a group: one BatchGetItem
// more); without, the config's.
func (rg *Registry) browseManifest(w http.ResponseWriter, r *http.Request, id auth.Identity) error {
	rp, image, err := rg.browseImage(r, id)
	if err != nil {
		return err
	}
	ref, index := r.URL.Query().Get("ref"), r.URL.Query().Get("index")
	ctx := r.Context()
	leaves := rg.leaves(rp)
	var at int
	var d digest.Digest
	var in *ocispec.Descriptor // the index's descriptor of the manifest (?index=)
	switch {
	case index != "":
		if at, d, in, err = rg.inIndex(ctx, rp.Name(), leaves, image, index, ref); err != nil {
			return err
		}
	case tagRe.MatchString(ref):
		at, d, err = rg.resolveIn(ctx, leaves, image, ref)
	default:
		if d, err = parseDigest(ref); err != nil {
			return apiErr(http.StatusBadRequest, CodeManifestInvalid, "?ref= %q is neither a tag nor a digest", echo(ref))
		}
		at, err = rg.locate(ctx, leaves, image, d)
	}
	var s stored
	if err == nil {
		s, err = rg.readManifest(ctx, storage.Image{Repo: leaves[at], Name: image}, d)
	}
	if errors.Is(err, storage.ErrNotFound) {
		return apiErr(http.StatusNotFound, CodeManifestUnknown, "%s/%s has no stored manifest %s", rp.Name(), image, echo(ref))
	}
	if err != nil {
		return err
	}
	sum, children := rg.summarize(ctx, s)
	if rp.Kind() == config.KindGroup {
		sum.Member, sum.MemberKind = s.leaf, rg.kindOf(s.leaf)
	}
	var cfg *configInfo
	var plat *ocispec.Platform
	if s.doc.Config != nil {
		cfg = rg.readConfig(ctx, s.img, *s.doc.Config)
		if cfg.OS != "" || cfg.Architecture != "" {
			plat = &ocispec.Platform{OS: cfg.OS, Architecture: cfg.Architecture, Variant: cfg.Variant}
		}
	}
	var indexDigest digest.Digest
	if in != nil {
		indexDigest = digest.Digest(index)
		if in.Platform != nil {
			plat = in.Platform
		}
	}
	layers := s.doc.Layers
	more := len(layers) > maxListed
	if more {
		layers = layers[:maxListed]
	}
	for i := range layers {
		layers[i].Annotations = cut(layers[i].Annotations)
	}
	refs := []ocispec.Descriptor{}
	seen := map[digest.Digest]bool{}
	for _, l := range leaves {
		ds, err := rg.Meta.ListReferrers(ctx, storage.Image{Repo: l, Name: image}, s.m.Digest)
		if err != nil {
			return fmt.Errorf("referrers of %s/%s@%s: %w", l, image, s.m.Digest, err)
		}
		for _, d := range ds {
			if !seen[d.Digest] && len(refs) < maxListed {
				seen[d.Digest] = true
				d.Annotations = cut(d.Annotations)
				refs = append(refs, d)
			}
		}
	}
	var subject digest.Digest
	if s.doc.Subject != nil {
		subject = s.doc.Subject.Digest
	}
	writeJSON(w, r, "application/json", struct {
		Repository string      `json:"repository"`
		Kind       config.Kind `json:"kind"`
		Image      string      `json:"image"`
		Ref        string      `json:"ref"`
		summary
		// Platform is the index's platform of the manifest (with ?index=), else its config's.
		Platform    *ocispec.Platform    `json:"platform,omitempty"`
		Index       digest.Digest        `json:"index,omitempty"`
		Annotations map[string]string    `json:"annotations,omitempty"`
		Subject     digest.Digest        `json:"subject,omitempty"`
		Config      *configInfo          `json:"config,omitempty"`
		Layers      []ocispec.Descriptor `json:"layers"`
		Manifests   []childInfo          `json:"manifests,omitempty"`
		Referrers   []ocispec.Descriptor `json:"referrers"`
		Truncated   bool                 `json:"truncated,omitempty"`
	}{rp.Name(), rp.Kind(), image, ref, sum, plat, indexDigest, cut(s.doc.Annotations), subject, cfg, nonNil(layers), children, refs,
		more || len(s.doc.Manifests) > maxListed || len(refs) == maxListed})
	return nil
}

// inIndex finds the index (a digest) of image in the leaves and, in it,
// the descriptor of the manifest ref (a digest): the leaf to read the
// manifest from (the index's), its digest and the descriptor.
func (rg *Registry) inIndex(ctx context.Context, repoName string, leaves []string, image, index, ref string) (int, digest.Digest, *ocispec.Descriptor, error) {
	id, err := parseDigest(index)
	if err != nil {
		return 0, "", nil, apiErr(http.StatusBadRequest, CodeDigestInvalid, "?index= %q is not a digest: give the digest of the index (its manifest page's Digest)", echo(index))
	}
	d, err := parseDigest(ref)
	if err != nil {
		return 0, "", nil, apiErr(http.StatusBadRequest, CodeDigestInvalid, "?ref= %q: with ?index= the ref is the digest of one of the index's manifests", echo(ref))
	}
	at, err := rg.locate(ctx, leaves, image, id)
	var ix stored
	if err == nil {
		ix, err = rg.readManifest(ctx, storage.Image{Repo: leaves[at], Name: image}, id)
	}
	if errors.Is(err, storage.ErrNotFound) {
		return 0, "", nil, apiErr(http.StatusNotFound, CodeManifestUnknown, "%s/%s has no stored index %s", repoName, image, id)
	}
	if err != nil {
		return 0, "", nil, err
	}
	for i, c := range ix.doc.Manifests {
		if c.Digest == d {
			return at, d, &ix.doc.Manifests[i], nil
		}
	}
	return 0, "", nil, apiErr(http.StatusNotFound, CodeManifestUnknown, "the index %s/%s@%s does not list manifest %s (open the index's page for its manifests)", repoName, image, id, d)
}

// readConfig reads an image config's creation time and platform when its
// blob is stored in img and small; otherwise only the descriptor.
func (rg *Registry) readConfig(ctx context.Context, img storage.Image, d ocispec.Descriptor) *configInfo {
	ci := &configInfo{Descriptor: d}
	ci.Annotations = cut(ci.Annotations)
	br, ok := rg.Blobs.(storage.BlobReader)
	if !ok || d.Size > maxConfigRead {
		return ci
	}
	link, err := rg.Meta.StatBlob(ctx, img, d.Digest)
	if err != nil {
		return ci // not stored here (a proxy caches a config once it was pulled)
	}
	rc, err := br.ReadBlob(ctx, link.ObjectKey())
	if err != nil {
		rg.Logger.WarnContext(ctx, "browse: image config", "image", img.String(), "digest", d.Digest, "err", err)
		return ci
	}
	defer rc.Close()
	b, err := io.ReadAll(io.LimitReader(rc, maxConfigRead+1))
	if err != nil || digest.FromBytes(b) != d.Digest && d.Digest.Algorithm() == digest.SHA256 {
		return ci
	}
	var c ocispec.Image
	if json.Unmarshal(b, &c) == nil {
		ci.Created, ci.OS, ci.Architecture, ci.Variant = c.Created, c.OS, c.Architecture, c.Variant
		if ci.Created != nil && ci.Created.IsZero() { // "0001-01-01T00:00:00Z": no date recorded
			ci.Created = nil
		}
	}
	return ci
}

// cut shortens long annotation values.
func cut(m map[string]string) map[string]string {
	for k, v := range m {
		if len(v) > maxAnnotation {
			m[k] = strings.ToValidUTF8(v[:maxAnnotation], "") + "…"
		}
	}
	return m
}

func nonNil[T any](s []T) []T {
	if s == nil {
		return []T{}
	}
	return s
}
