package registry

import (
	"bytes"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"mime"
	"net/http"
	"regexp"
	"strconv"
	"strings"
	"unicode/utf8"

	digest "github.com/opencontainers/go-digest"
	ocispec "github.com/opencontainers/image-spec/specs-go/v1"

	"github.com/airlock-registry/airlock/shared/config"
	"github.com/airlock-registry/airlock/shared/storage"
)

// Manifest media types accepted on PUT.
const (
	mtDockerManifest = "application/vnd.docker.distribution.manifest.v2+json"
	mtDockerList     = "application/vnd.docker.distribution.manifest.list.v2+json"
	mtOCIManifest    = ocispec.MediaTypeImageManifest
	mtOCIIndex       = ocispec.MediaTypeImageIndex
	// mtDockerForeign is a Docker foreign layer: it lives outside the registry.
	mtDockerForeign = "application/vnd.docker.image.rootfs.foreign.diff.tar.gzip"
)

const (
	// MaxManifestSize is the largest manifest accepted on PUT.
	MaxManifestSize = 4 << 20
	// inlineManifestSize is the largest body kept in the DynamoDB item; larger
	// bodies go to S3 (an item is at most 400 KB).
	inlineManifestSize = 350 << 10
	// maxReferences caps the blobs and child manifests one manifest may
	// reference, so that its item (which lists them) stays under 400 KB.
	maxReferences = 4096
	// maxReferrerAnnotations caps the annotations copied into a referrer
	// descriptor; larger ones are left out of the referrers list.
	maxReferrerAnnotations = 16 << 10
)

var tagRe = regexp.MustCompile(`^[a-zA-Z0-9_][a-zA-Z0-9._-]{0,127}$`)

func isIndex(mt string) bool { return mt == mtDockerList || mt == mtOCIIndex }

// manifestDoc is the union of the fields of image manifests and indexes.
type manifestDoc struct {
	SchemaVersion *int                 `json:"schemaVersion"`
	MediaType     string               `json:"mediaType"`
	ArtifactType  string               `json:"artifactType"`
	Config        *ocispec.Descriptor  `json:"config"`
	Layers        []ocispec.Descriptor `json:"layers"`
	Manifests     []ocispec.Descriptor `json:"manifests"`
	Subject       *ocispec.Descriptor  `json:"subject"`
	Annotations   map[string]string    `json:"annotations"`
}

func manifestInvalid(format string, args ...any) error {
	return apiErr(http.StatusBadRequest, CodeManifestInvalid, format, args...)
}

func checkDescriptor(where string, d ocispec.Descriptor) error {
	if err := d.Digest.Validate(); err != nil {
		return manifestInvalid("%s: invalid digest %q: %v", where, d.Digest, err)
	}
	if d.Size < 0 {
		return manifestInvalid("%s: negative size %d", where, d.Size)
	}
	if d.MediaType == "" {
		return manifestInvalid("%s: mediaType is required", where)
	}
	return nil
}

// parseManifest validates a manifest body and returns what is stored of it.
func parseManifest(contentType string, body []byte) (storage.Manifest, error) {
	var m storage.Manifest
	mt := contentType
	if mt != "" {
		if parsed, _, err := mime.ParseMediaType(mt); err == nil {
			mt = parsed
		}
	}
	var doc manifestDoc
	if err := json.Unmarshal(body, &doc); err != nil {
		return m, manifestInvalid("manifest is not valid JSON: %v", err)
	}
	if mt == "" {
		mt = doc.MediaType
	}
	switch mt {
	case mtDockerManifest, mtDockerList, mtOCIManifest, mtOCIIndex:
	case "":
		return m, manifestInvalid("the manifest's media type is unknown: set Content-Type")
	default:
		return m, manifestInvalid("unsupported manifest media type %q (supported: %s, %s, %s, %s)", mt, mtOCIManifest, mtOCIIndex, mtDockerManifest, mtDockerList)
	}
	if doc.MediaType != "" && doc.MediaType != mt {
		return m, manifestInvalid("Content-Type %q does not match the manifest's mediaType %q", mt, doc.MediaType)
	}
	if doc.SchemaVersion == nil || *doc.SchemaVersion != 2 {
		return m, manifestInvalid("schemaVersion must be 2")
	}
	m.MediaType, m.ArtifactType = mt, doc.ArtifactType
	if isIndex(mt) {
		if doc.Config != nil || doc.Layers != nil {
			return m, manifestInvalid("an index has no config or layers")
		}
		if doc.Manifests == nil {
			return m, manifestInvalid("an index needs a manifests list")
		}
		for i, d := range doc.Manifests {
			if err := checkDescriptor(fmt.Sprintf("manifests[%d]", i), d); err != nil {
				return m, err
			}
			m.Children = append(m.Children, d.Digest)
		}
	} else {
		if doc.Manifests != nil {
			return m, manifestInvalid("an image manifest has no manifests list")
		}
		if doc.Config == nil {
			return m, manifestInvalid("an image manifest needs a config")
		}
		if err := checkDescriptor("config", *doc.Config); err != nil {
			return m, err
		}
		m.Blobs = append(m.Blobs, doc.Config.Digest)
		if m.ArtifactType == "" && doc.Subject != nil {
			m.ArtifactType = doc.Config.MediaType
		}
		for i, d := range doc.Layers {
			if err := checkDescriptor(fmt.Sprintf("layers[%d]", i), d); err != nil {
				return m, err
			}
			if len(d.URLs) > 0 && (d.MediaType == mtDockerForeign || strings.Contains(d.MediaType, "nondistributable")) {
				continue // foreign layers live outside the registry
			}
			m.Blobs = append(m.Blobs, d.Digest)
		}
	}
	m.Blobs, m.Children = dedupe(m.Blobs), dedupe(m.Children)
	if n := len(m.Blobs) + len(m.Children); n > maxReferences {
		return m, manifestInvalid("the manifest references %d blobs and manifests; the limit is %d", n, maxReferences)
	}
	if doc.Subject != nil {
		if err := checkDescriptor("subject", *doc.Subject); err != nil {
			return m, err
		}
		m.Subject = doc.Subject.Digest
		// Annotations are kept only for the referrers list, and only when they
		// are small: the manifest's item must stay under DynamoDB's 400 KB.
		if a, _ := json.Marshal(doc.Annotations); len(a) <= maxReferrerAnnotations {
			m.Annotations = doc.Annotations
		}
	}
	return m, nil
}

// putManifest validates and stores a manifest, then points the tag at it.
// https://github.com/opencontainers/distribution-spec/blob/main/spec.md#pushing-manifests
func (rg *Registry) putManifest(w http.ResponseWriter, r *http.Request, t target) error {
	ctx := r.Context()
	if err := denyWrites(t); err != nil {
		return err
	}
	tag, refDigest, err := parseRef(t.ref)
	if err != nil {
		return err
	}
	var body []byte
	if r.Body != nil {
		body, err = io.ReadAll(io.LimitReader(r.Body, MaxManifestSize+1))
		if err != nil {
			return rg.bodyErr(err, "read manifest")
		}
	}
	if len(body) > MaxManifestSize {
		return apiErr(http.StatusRequestEntityTooLarge, CodeSizeInvalid, "manifest is larger than the %d-byte limit", MaxManifestSize)
	}
	m, err := parseManifest(r.Header.Get("Content-Type"), body)
	if err != nil {
		return err
	}
	alg := digest.Canonical
	if refDigest != "" {
		alg = refDigest.Algorithm()
	}
	m.Digest, m.Size, m.Created = alg.FromBytes(body), int64(len(body)), rg.Now()
	if refDigest != "" && m.Digest != refDigest {
		return apiErr(http.StatusBadRequest, CodeDigestInvalid, "manifest content has digest %s, not %s", m.Digest, refDigest)
	}
	rule := storage.TagOverwrite
	if tag != "" && (t.repo.Policy == config.PolicyDisableRedeploy ||
		t.repo.Policy == config.PolicyDisableRedeployExceptLatest && tag != "latest") {
		rule = storage.TagCreateOnly
		cur, err := rg.Meta.ResolveTag(ctx, t.img, tag)
		if err == nil && cur != m.Digest {
			return redeployDenied(t, tag)
		}
		if err != nil && !errors.Is(err, storage.ErrNotFound) {
			return fmt.Errorf("resolve tag %s: %w", tag, err)
		}
	}
	if err := rg.checkReferences(r, t, m); err != nil {
		return err
	}
	if itemSize(body, m) > inlineManifestSize {
		if m.BodyKey, err = rg.Blobs.PutManifestBody(ctx, m.Digest, body); err != nil {
			return fmt.Errorf("store manifest body: %w", err)
		}
	} else {
		m.Body = body
	}
	if err := rg.Meta.PutManifest(ctx, t.img, m); err != nil {
		return fmt.Errorf("put manifest %s: %w", m.Digest, err)
	}
	if tag != "" {
		err := rg.Meta.PutTag(ctx, t.img, tag, m.Digest, rule)
		if errors.Is(err, storage.ErrConflict) {
			return redeployDenied(t, tag)
		}
		if err != nil {
			return fmt.Errorf("put tag %s: %w", tag, err)
		}
	}
	h := w.Header()
	h.Set("Location", "/v2/"+t.full+"/manifests/"+m.Digest.String())
	h.Set("Docker-Content-Digest", m.Digest.String())
	if m.Subject != "" {
		h.Set("OCI-Subject", m.Subject.String())
	}
	h.Set("Content-Length", "0")
	w.WriteHeader(http.StatusCreated)
	return nil
}

func redeployDenied(t target, tag string) error {
	return apiErr(http.StatusForbidden, CodeDenied, "repository %q has deployment policy %s: tag %q already points at another manifest and cannot be redeployed",
		t.repo.Name, t.repo.Policy, tag)
}

// checkReferences requires every referenced blob and child manifest to exist in the image.
func (rg *Registry) checkReferences(r *http.Request, t target, m storage.Manifest) error {
	for _, d := range m.Blobs {
		if _, err := rg.Meta.StatBlob(r.Context(), t.img, d); err != nil {
			if errors.Is(err, storage.ErrNotFound) {
				return apiErr(http.StatusBadRequest, CodeManifestBlobUnknown, "blob %s referenced by the manifest is not in %s: push it first", d, t.full)
			}
			return fmt.Errorf("stat blob %s: %w", d, err)
		}
	}
	for _, d := range m.Children {
		if _, err := rg.Meta.GetManifest(r.Context(), t.img, d); err != nil {
			if errors.Is(err, storage.ErrNotFound) {
				return apiErr(http.StatusBadRequest, CodeManifestBlobUnknown, "manifest %s referenced by the index is not in %s: push it first", d, t.full)
			}
			return fmt.Errorf("get manifest %s: %w", d, err)
		}
	}
	return nil
}

// parseRef splits a manifest reference into a tag or a digest.
func parseRef(ref string) (string, digest.Digest, error) {
	if strings.Contains(ref, ":") {
		d, err := parseDigest(ref)
		return "", d, err
	}
	if !tagRe.MatchString(ref) {
		return "", "", apiErr(http.StatusBadRequest, CodeManifestInvalid, "invalid tag %q: up to 128 letters, digits, '_', '.' and '-', not starting with '.' or '-'", ref)
	}
	return ref, "", nil
}

// lookup finds the manifest a tag or digest names.
func (rg *Registry) lookup(r *http.Request, t target) (storage.Manifest, error) {
	tag, d, err := parseRef(t.ref)
	if err != nil {
		return storage.Manifest{}, err
	}
	unknown := apiErr(http.StatusNotFound, CodeManifestUnknown, "manifest %s is not known to %s", t.ref, t.full)
	if tag != "" {
		d, err = rg.Meta.ResolveTag(r.Context(), t.img, tag)
		if errors.Is(err, storage.ErrNotFound) {
			return storage.Manifest{}, unknown
		}
		if err != nil {
			return storage.Manifest{}, fmt.Errorf("resolve tag %s: %w", tag, err)
		}
	}
	m, err := rg.Meta.GetManifest(r.Context(), t.img, d)
	if errors.Is(err, storage.ErrNotFound) {
		return m, unknown
	}
	if err != nil {
		return m, fmt.Errorf("get manifest %s: %w", d, err)
	}
	return m, nil
}

// accepts reports whether the Accept headers allow media type mt.
func accepts(r *http.Request, mt string) bool {
	vals := r.Header.Values("Accept")
	if len(vals) == 0 {
		return true
	}
	for _, v := range vals {
		for _, a := range splitList(v) {
			a, _, _ = strings.Cut(a, ";")
			a = strings.TrimSpace(a)
			if a == mt || a == "*/*" || a == "application/*" {
				return true
			}
		}
	}
	return false
}

func splitList(v string) []string {
	parts := strings.Split(v, ",")
	for i := range parts {
		parts[i] = strings.TrimSpace(parts[i])
	}
	return parts
}

// getManifest serves a manifest by tag or digest.
// https://github.com/opencontainers/distribution-spec/blob/main/spec.md#pulling-manifests
func (rg *Registry) getManifest(w http.ResponseWriter, r *http.Request, t target) error {
	m, err := rg.lookup(r, t)
	if err != nil {
		return err
	}
	if isIndex(m.MediaType) && !accepts(r, m.MediaType) {
		return apiErr(http.StatusNotFound, CodeManifestUnknown,
			"%s is an index (%s) and the request's Accept header does not include that media type", t.ref, m.MediaType)
	}
	h := w.Header()
	h.Set("Docker-Content-Digest", m.Digest.String())
	h.Set("ETag", `"`+m.Digest.String()+`"`)
	if etagMatches(r, m.Digest) {
		w.WriteHeader(http.StatusNotModified)
		return nil
	}
	h.Set("Content-Type", m.MediaType)
	h.Set("Content-Length", strconv.FormatInt(m.Size, 10))
	if r.Method == http.MethodHead {
		w.WriteHeader(http.StatusOK)
		return nil
	}
	body := m.Body
	if m.BodyKey != "" {
		if body, err = rg.Blobs.GetManifestBody(r.Context(), m.BodyKey); err != nil {
			return fmt.Errorf("read manifest body %s: %w", m.BodyKey, err)
		}
		if rg.ManifestRedirectSize > 0 && envelopeSize(body) > rg.ManifestRedirectSize {
			return rg.redirectManifest(w, r, m)
		}
	}
	w.WriteHeader(http.StatusOK)
	_, _ = io.Copy(w, bytes.NewReader(body))
	return nil
}

// deleteManifest deletes a manifest by digest (with its tags) or a tag.
// https://github.com/opencontainers/distribution-spec/blob/main/spec.md#deleting-manifests
func (rg *Registry) deleteManifest(w http.ResponseWriter, r *http.Request, t target) error {
	if err := denyWrites(t); err != nil {
		return err
	}
	tag, d, err := parseRef(t.ref)
	if err != nil {
		return err
	}
	if tag != "" {
		err = rg.Meta.DeleteTag(r.Context(), t.img, tag)
	} else {
		err = rg.Meta.DeleteManifest(r.Context(), t.img, d)
	}
	if errors.Is(err, storage.ErrNotFound) {
		return apiErr(http.StatusNotFound, CodeManifestUnknown, "manifest %s is not known to %s", t.ref, t.full)
	}
	if err != nil {
		return fmt.Errorf("delete manifest %s: %w", t.ref, err)
	}
	w.Header().Set("Content-Length", "0")
	w.WriteHeader(http.StatusAccepted)
	return nil
}

// dedupe removes repeated digests, keeping the first of each.
func dedupe(ds []digest.Digest) []digest.Digest {
	seen := make(map[digest.Digest]bool, len(ds))
	out := ds[:0]
	for _, d := range ds {
		if !seen[d] {
			seen[d] = true
			out = append(out, d)
		}
	}
	return out
}

// itemSize estimates the size of the manifest's item if its body were kept inline.
func itemSize(body []byte, m storage.Manifest) int {
	n := len(body) + 1024
	for _, d := range m.Blobs {
		n += len(d) + 8
	}
	for _, d := range m.Children {
		n += len(d) + 8
	}
	for k, v := range m.Annotations {
		n += len(k) + len(v) + 8
	}
	return n
}

// redirectManifest answers a manifest GET with a 307 to a presigned URL of
// its S3 body: the response would not fit the front door (Deps.ManifestRedirectSize).
func (rg *Registry) redirectManifest(w http.ResponseWriter, r *http.Request, m storage.Manifest) error {
	u, err := rg.Blobs.PresignManifest(r.Context(), m.BodyKey, m.MediaType, rg.PresignTTL)
	if err != nil {
		return fmt.Errorf("presign manifest %s: %w", m.Digest, err)
	}
	h := w.Header()
	h.Del("Content-Type")
	h.Set("Content-Length", "0")
	h.Set("Location", u)
	w.WriteHeader(http.StatusTemporaryRedirect)
	return nil
}

// envelopeSize is the length of body once carried in a Lambda/API Gateway
// JSON response: base64 when it is not valid UTF-8 (aws-lambda-go-api-proxy),
// otherwise a JSON string as aws-lambda-go writes it (encoding/json without
// HTML escaping: '"', '\\' and control characters escaped, U+2028/U+2029 as
// \uXXXX).
func envelopeSize(body []byte) int64 {
	if !utf8.Valid(body) {
		return int64((len(body) + 2) / 3 * 4)
	}
	n := int64(len(body))
	for i := 0; i < len(body); i++ {
		switch c := body[i]; {
		case c == '"' || c == '\\' || c == '\n' || c == '\r' || c == '\t':
			n++
		case c < 0x20:
			n += 5
		case c == 0xE2 && i+2 < len(body) && body[i+1] == 0x80 && (body[i+2] == 0xA8 || body[i+2] == 0xA9):
			n += 3 // 3 bytes become \u2028 (6)
			i += 2
		}
	}
	return n
}
