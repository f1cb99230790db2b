package registry

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"io"
	"net/http"
	"regexp"
	"strconv"
	"strings"
	"sync"
	"unicode/utf8"

	digest "github.com/opencontainers/go-digest"

	"github.com/airlock-registry/airlock/shared/config"
	"github.com/airlock-registry/airlock/shared/manifest"
	"github.com/airlock-registry/airlock/shared/repo"
	"github.com/airlock-registry/airlock/shared/storage"
)

// MaxManifestSize is the largest manifest accepted on PUT.
const MaxManifestSize = manifest.MaxSize

var tagRe = regexp.MustCompile(`^[a-zA-Z0-9_][a-zA-Z0-9._-]{0,127}$`)

// putManifest validates and stores a manifest, then points the tag at it.
// https://github.com/opencontainers/distribution-spec/blob/main/spec.md#pushing-manifests
func (rg *Registry) putManifest(w http.ResponseWriter, r *http.Request, t target) error {
	ctx := r.Context()
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
	m, descs, err := manifest.ParseBlobs(r.Header.Get("Content-Type"), body)
	var invalid *manifest.InvalidError
	if errors.As(err, &invalid) {
		return apiErr(http.StatusBadRequest, CodeManifestInvalid, "%s", invalid.Msg)
	}
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
	rule, err := t.hosted.TagRule(ctx, t.img, tag, m.Digest)
	if err != nil {
		return err
	}
	sizes := make(map[digest.Digest][]manifest.Described, len(descs))
	for _, d := range descs {
		sizes[d.Digest] = append(sizes[d.Digest], d)
	}
	if err := rg.checkReferences(r, t, m, sizes); err != nil {
		return err
	}
	if _, err := t.hosted.StoreManifest(ctx, t.img, m, body); err != nil {
		return err
	}
	if tag != "" {
		err := rg.Meta.PutTag(ctx, t.img, tag, m.Digest, rule)
		if errors.Is(err, storage.ErrConflict) {
			return t.hosted.RedeployDenied(tag)
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

// checkReferences requires every referenced blob and child manifest to exist
// in the image, and touches each (storage.Collector: one conditional write
// each, where a read was needed anyway), so that a purge running at the same
// time cannot delete what this manifest is about to reference (package
// purge's doc). The touches run in parallel (at most refWorkers at once) and
// stop at the first missing or failed reference: no check is started after
// it, the ones under way finish (at most refWorkers), and the first failed
// reference in manifest order among them is the one reported. Pushed
// through a group, what another member has is linked (blobs) or stored
// (child manifests) into the writable member first: server-side, no bytes
// from the client. The blob descriptors in sizes (by digest; nil: none)
// must give the stored blob's size: the touch returns the link, so this
// costs no call (a child manifest's touch returns nothing: its size is not
// checked).
func (rg *Registry) checkReferences(r *http.Request, t target, m storage.Manifest, sizes map[digest.Digest][]manifest.Described) error {
	ctx := r.Context()
	viaGroup := t.repo.Name() != t.hosted.Name()
	refs := make([]digest.Digest, 0, len(m.Blobs)+len(m.Children))
	refs = append(append(refs, m.Blobs...), m.Children...)
	errs := make([]error, len(refs))
	var (
		mu     sync.Mutex
		failed bool // a check has failed: no more are started
		wg     sync.WaitGroup
	)
	sem := make(chan struct{}, refWorkers)
	for i, d := range refs {
		sem <- struct{}{}
		mu.Lock()
		stop := failed
		mu.Unlock()
		if stop {
			<-sem
			break
		}
		wg.Add(1)
		go func() {
			defer func() { <-sem; wg.Done() }()
			var err error
			if i < len(m.Blobs) {
				var b storage.Blob
				if b, err = rg.touchBlob(ctx, t, d, viaGroup); err == nil {
					err = checkSizes(sizes[d], b)
				}
			} else {
				err = rg.touchChild(r, t, d, viaGroup)
			}
			if err != nil {
				mu.Lock()
				errs[i], failed = err, true
				mu.Unlock()
			}
		}()
	}
	wg.Wait()
	for i, err := range errs {
		d := refs[i]
		var size *sizeError
		switch {
		case err == nil:
		case errors.As(err, &size):
			return apiErr(http.StatusBadRequest, CodeManifestInvalid, "%s: the descriptor of blob %s gives size %d, but the blob stored in %s is %d bytes: give the blob's size (clients trust it)",
				size.desc.Where, d, size.desc.Size, t.full, size.stored)
		case i < len(m.Blobs) && errors.Is(err, storage.ErrNotFound):
			return rg.blobUnknownInManifest(ctx, t, d) // says when a direct upload's verification is pending
		case errors.Is(err, storage.ErrNotFound):
			return apiErr(http.StatusBadRequest, CodeManifestBlobUnknown, "manifest %s referenced by the index is not in %s: push it first", d, t.full)
		case i < len(m.Blobs):
			return refLookupErr(t, "blob", d, err)
		default:
			return refLookupErr(t, "manifest", d, err)
		}
	}
	return nil
}

// sizeError is a blob descriptor whose size is not the stored blob's.
type sizeError struct {
	desc   manifest.Described
	stored int64
}

func (e *sizeError) Error() string {
	return fmt.Sprintf("%s: size %d, stored %d", e.desc.Where, e.desc.Size, e.stored)
}

// checkSizes returns a *sizeError for the first of descs (descriptors of
// blob b) whose size is not b's.
func checkSizes(descs []manifest.Described, b storage.Blob) error {
	for _, d := range descs {
		if d.Size != b.Size {
			return &sizeError{d, b.Size}
		}
	}
	return nil
}

// refLookupErr is the error of a reference that could not be looked up: a
// group member's upstream trouble (503, 429...) says which reference of the
// push was looked up and where, since the upstream's own message (blocked
// for 30s...) names neither.
func refLookupErr(t target, kind string, d digest.Digest, err error) error {
	if e := fromRepo(err); e != nil && e.Status != http.StatusNotFound {
		e.Message = fmt.Sprintf("%s %s referenced by the manifest is not in %s and another member of %s could not be asked (retry later, or push the %s first): %s",
			kind, d, t.img, t.repo.Name(), kind, e.Message)
		return e
	}
	return fmt.Errorf("%s %s: %w", kind, d, err)
}

// refWorkers bounds the parallel reference checks of one manifest PUT.
const refWorkers = 8

// touchBlob touches the link of d in the image (through a group: links it
// from the member that has it when the writable member does not) and
// returns it.
func (rg *Registry) touchBlob(ctx context.Context, t target, d digest.Digest, viaGroup bool) (storage.Blob, error) {
	b, err := rg.col.TouchLink(ctx, t.img, d)
	if errors.Is(err, storage.ErrNotFound) && viaGroup && !rg.directVerifying(ctx, t, d) {
		// (a blob whose direct upload is being verified is not asked of
		// the other members: its verification decides, and the answer
		// says so rather than a proxy member's remote trouble)
		if b, err = t.repo.Blob(ctx, t.name, d); err == nil {
			err = rg.Meta.LinkBlob(ctx, t.img, b) // writes a touched link
		}
	}
	return b, err
}

// touchChild touches child manifest d of an index (through a group: copies
// it from the member that has it).
func (rg *Registry) touchChild(r *http.Request, t target, d digest.Digest, viaGroup bool) error {
	err := rg.col.TouchManifest(r.Context(), t.img, d)
	if errors.Is(err, storage.ErrNotFound) && viaGroup {
		err = rg.copyManifest(r, t, d) // PutManifest writes it touched
	}
	return err
}

// copyManifest stores manifest d, found in a member of the group t
// addresses, into the writable member (its blobs linked there first).
func (rg *Registry) copyManifest(r *http.Request, t target, d digest.Digest) error {
	ctx := r.Context()
	src, err := t.repo.Manifest(ctx, t.name, repo.Ref{Digest: d})
	if err != nil {
		return err
	}
	body := src.Body
	if src.BodyKey != "" {
		if body, err = rg.Blobs.GetManifestBody(ctx, src.BodyKey); err != nil {
			return fmt.Errorf("read manifest body %s: %w", src.BodyKey, err)
		}
	}
	if err := rg.checkReferences(r, t, src.Manifest, nil); err != nil {
		return err
	}
	m := src.Manifest
	m.Body, m.BodyKey, m.Created = nil, "", rg.Now()
	_, err = t.hosted.StoreManifest(ctx, t.img, m, body)
	return err
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
func (rg *Registry) lookup(r *http.Request, t target) (repo.Manifest, error) {
	tag, d, err := parseRef(t.ref)
	if err != nil {
		return repo.Manifest{}, err
	}
	m, err := t.repo.Manifest(r.Context(), t.name, repo.Ref{Tag: tag, Digest: d})
	if errors.Is(err, storage.ErrNotFound) {
		if msg := notFoundMsg([]error{err}); msg != "" {
			return m, apiErr(http.StatusNotFound, CodeManifestUnknown, "manifest %s: %s", t.ref, msg)
		}
		return m, apiErr(http.StatusNotFound, CodeManifestUnknown, "manifest %s is not known to %s", t.ref, t.full)
	}
	if err != nil {
		return m, fmt.Errorf("manifest %s: %w", t.ref, err)
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
	if err != nil && r.Method == http.MethodHead && pushProbe(t, err) {
		// A HEAD through a writable group is how pushing clients (crane,
		// regctl) ask "does this tag exist?": a proxy member whose remote is
		// down must not make a push to the hosted member fail. A HEAD has
		// no body: the Warning header says why. (GET still answers 503.)
		e := apiErr(http.StatusNotFound, CodeManifestUnknown, "manifest %s is not in any reachable member of %s", t.ref, t.repo.Name())
		e.Header = http.Header{"Warning": {`199 airlock "not in any member; a proxy member's upstream could not be asked"`}}
		return e
	}
	if err != nil {
		return err
	}
	if m.Warning != "" {
		w.Header().Set("Warning", m.Warning)
	}
	if manifest.IsIndex(m.MediaType) && !accepts(r, m.MediaType) {
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
			return rg.redirectManifest(w, r, m.Manifest)
		}
	}
	w.WriteHeader(http.StatusOK)
	_, _ = io.Copy(w, bytes.NewReader(body))
	return nil
}

// deleteManifest deletes a manifest by digest (with its tags) or a tag.
// https://github.com/opencontainers/distribution-spec/blob/main/spec.md#deleting-manifests
func (rg *Registry) deleteManifest(w http.ResponseWriter, r *http.Request, t target) error {
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

// pushProbe reports whether err is a proxy member's unreachable upstream
// answering a lookup through a group that takes pushes.
func pushProbe(t target, err error) bool {
	var unavailable *repo.UnavailableError
	var limited *repo.RateLimitedError
	if t.repo.Kind() != config.KindGroup || !(errors.As(err, &unavailable) || errors.As(err, &limited)) {
		return false
	}
	_, perr := t.repo.Push()
	return perr == nil
}
