package repo

import (
	"context"
	"errors"
	"fmt"
	"slices"
	"strings"
	"time"

	digest "github.com/opencontainers/go-digest"
	ocispec "github.com/opencontainers/image-spec/specs-go/v1"

	"github.com/airlock-registry/airlock/shared/config"
	"github.com/airlock-registry/airlock/shared/manifest"
	"github.com/airlock-registry/airlock/shared/storage"
	"github.com/airlock-registry/airlock/shared/upstream"
)

// Marker groups other packages read (package purge keeps what they name).
const (
	// PendingFillsGroup, key <repo>/<digest>: a fill handed to proxyfetch
	// (FillJob JSON; its UploadID is the session the fill writes).
	PendingFillsGroup = "fills"
	// HoldsGroupPrefix + <proxy>, key <digest>: the proxy caches the blob.
	HoldsGroupPrefix = "holds:"
	// DirectVerifyGroup, key <repo>/<image>@<digest>: a direct upload whose
	// digest verification is pending or failed (shared/registry's
	// verifyState JSON, naming the upload in Job.upload).
	DirectVerifyGroup = "direct-verify"
)

// Marker groups of proxy state (storage.ProxyMetadata).
const (
	groupFill    = "fill" // key <repo>/<digest>: the lease of the one fill of a blob
	groupPending = PendingFillsGroup
	groupBlock   = "block" // key <repo>: consecutive remote failures, blocked-until
	groupNeg     = "neg:"  // + <repo>, key <image>@<ref>: not found upstream
	pendingTTL   = 24 * time.Hour
	retryAfter   = 10 * time.Second
	staleWarning = `110 airlock "Response is Stale`
	// groupManifestFill, key <repo>/<image>@<ref>: the one remote GET of a cold manifest.
	groupManifestFill = "mfill"
)

// Proxy is a pull-through cache of one remote registry: a Hosted cache under
// the proxy's own name plus an upstream client. See doc.go for the flows.
type Proxy struct {
	cfg   *config.Repository
	cache *Hosted
	meta  proxyMeta
	up    *upstream.Client
	deps  *Deps
	set   *Set
}

var _ Repository = (*Proxy)(nil)

// proxyMeta is the metadata store a proxy needs.
type proxyMeta interface {
	storage.Metadata
	storage.ProxyMetadata
}

// Name returns the repository's name.
func (p *Proxy) Name() string { return p.cfg.Name }

// Kind returns config.KindProxy.
func (p *Proxy) Kind() config.Kind { return config.KindProxy }

// Remote returns the remote's URL.
func (p *Proxy) Remote() string { return p.up.Remote() }

// Push refuses: a proxy takes no pushes.
func (p *Proxy) Push() (*Hosted, error) {
	var hosted []string
	if p.set != nil {
		for _, rc := range p.set.cfg.Repositories {
			if rc.Kind == config.KindHosted {
				hosted = append(hosted, rc.Name)
			}
		}
	}
	where := "a hosted repository"
	if len(hosted) > 0 {
		where = "a hosted repository (" + strings.Join(hosted, ", ") + ")"
	}
	return nil, denied("repository %q is a proxy of %s and takes no pushes: push to %s or to a group with a writable member", p.cfg.Name, p.up.Remote(), where)
}

func (p *Proxy) now() time.Time { return p.deps.Now() }

// Manifest serves a manifest from the cache, asking the remote only when the
// cache cannot answer: by digest when it is not cached (immutable: fetched
// once), by tag when the tag was last checked more than metadataMaxAge ago.
func (p *Proxy) Manifest(ctx context.Context, image string, ref Ref) (Manifest, error) {
	if ref.Tag != "" {
		return p.manifestByTag(ctx, image, ref.Tag, false)
	}
	img := p.cache.Image(image)
	m, err := p.meta.GetManifest(ctx, img, ref.Digest)
	if err == nil {
		p.markPulled(ctx, img, m)
		return Manifest{Manifest: m}, nil
	}
	if !notFound(err) {
		return Manifest{}, fmt.Errorf("get manifest %s: %w", ref.Digest, err)
	}
	if p.negative(ctx, image, ref.String()) {
		return Manifest{}, p.negativeErr(image, ref.String())
	}
	return p.coalesce(ctx, image, ref.String(), func() (Manifest, bool) {
		m, err := p.meta.GetManifest(ctx, img, ref.Digest)
		return Manifest{Manifest: m}, err == nil
	}, func() (Manifest, error) {
		var um upstream.Manifest
		err := p.call(ctx, func(ctx context.Context) (err error) {
			um, err = p.up.GetManifest(ctx, image, ref.Digest.String(), "")
			return err
		})
		if err != nil {
			return Manifest{}, p.upErr(ctx, err, image, ref.String(), "manifest")
		}
		sm, err := p.store(ctx, img, um)
		return Manifest{Manifest: sm}, err
	})
}

// coalesce runs fetch (one remote GET of a manifest nobody cached) in one
// request at a time per image and reference, across instances: a lease
// marker (mfill/<proxy>/<image>@<ref>); the others poll cached until the
// winner stored it (bounded by UpstreamTimeout), then fetch themselves. So
// a burst of cold pulls of one tag costs one GET of the remote's quota.
func (p *Proxy) coalesce(ctx context.Context, image, ref string, cached func() (Manifest, bool), fetch func() (Manifest, error)) (Manifest, error) {
	key, owner := p.cfg.Name+"/"+image+"@"+ref, newID()
	lease := storage.Marker{Group: groupManifestFill, Key: key, Value: owner, Until: p.now().Add(p.deps.Proxy.UpstreamTimeout + 5*time.Second)}
	err := p.meta.AcquireMarker(ctx, lease)
	if err == nil {
		defer func() { _ = p.meta.ReleaseMarker(context.WithoutCancel(ctx), groupManifestFill, key, owner) }()
		return fetch()
	}
	if !errors.Is(err, storage.ErrConflict) {
		return Manifest{}, fmt.Errorf("take the manifest fill lease: %w", err)
	}
	deadline := p.now().Add(p.deps.Proxy.UpstreamTimeout)
	for p.now().Before(deadline) {
		select {
		case <-ctx.Done():
			return Manifest{}, ctx.Err()
		case <-time.After(p.deps.Proxy.Poll):
		}
		if m, ok := cached(); ok {
			return m, nil
		}
		if _, err := p.meta.GetMarker(ctx, groupManifestFill, key); notFound(err) {
			break // the winner is done (and failed, or cached is not it): ask ourselves
		}
	}
	return fetch()
}

// Refresh revalidates one cached tag now, whatever its age (the admin call).
func (p *Proxy) Refresh(ctx context.Context, image, tag string) (Manifest, error) {
	return p.manifestByTag(ctx, image, tag, true)
}

func (p *Proxy) manifestByTag(ctx context.Context, image, tag string, force bool) (Manifest, error) {
	img := p.cache.Image(image)
	tc, err := p.meta.GetTagCheck(ctx, img, tag)
	have := err == nil
	if err != nil && !notFound(err) {
		return Manifest{}, fmt.Errorf("get tag %s: %w", tag, err)
	}
	if have && !force && p.now().Sub(tc.Checked) < p.cfg.MaxAge() {
		if m, err := p.cached(ctx, img, tc.Digest, ""); !notFound(err) {
			return m, err
		}
		have = false // the tag's manifest is gone (a crash between writes): fetch again
	}
	if !have && !force && p.negative(ctx, image, tag) {
		return Manifest{}, p.negativeErr(image, tag)
	}
	if !have && !force {
		return p.coalesce(ctx, image, tag, func() (Manifest, bool) {
			tc, err := p.meta.GetTagCheck(ctx, img, tag)
			if err != nil {
				return Manifest{}, false
			}
			m, err := p.cached(ctx, img, tc.Digest, "")
			return m, err == nil
		}, func() (Manifest, error) { return p.revalidate(ctx, image, tag, storage.TagCheck{}, false) })
	}
	return p.revalidate(ctx, image, tag, tc, have)
}

// revalidate asks the remote about a tag (a conditional HEAD when it is
// cached, a GET when not) and serves, stores or moves it accordingly.
func (p *Proxy) revalidate(ctx context.Context, image, tag string, tc storage.TagCheck, have bool) (Manifest, error) {
	img := p.cache.Image(image)
	var um upstream.Manifest
	err := p.call(ctx, func(ctx context.Context) (err error) {
		if have {
			um, err = p.up.HeadManifest(ctx, image, tag, tc.Digest)
		} else {
			um, err = p.up.GetManifest(ctx, image, tag, "")
		}
		return err
	})
	if err != nil {
		if have { // serve the cache: stale beats nothing (a tag deleted upstream too)
			p.deps.Logger.WarnContext(ctx, "serving a stale cached tag", "repo", p.cfg.Name, "image", image, "tag", tag, "err", err)
			return p.cached(ctx, img, tc.Digest, staleWarning+`: upstream `+p.up.Remote()+` did not confirm the tag (`+shortErr(err)+`); serving the cached copy"`)
		}
		return Manifest{}, p.upErr(ctx, err, image, tag, "manifest")
	}
	p.logRate(ctx, image, tag, um.Descriptor)
	if have && (um.NotModified || um.Digest == tc.Digest) {
		m, err := p.cached(ctx, img, tc.Digest, "")
		if !notFound(err) {
			if err == nil {
				if err := p.meta.PutTagCheck(ctx, img, tag, storage.TagCheck{Digest: tc.Digest, Checked: p.now()}); err != nil {
					return Manifest{}, fmt.Errorf("record tag check %s: %w", tag, err)
				}
			}
			return m, err
		}
		// The tag is confirmed but its manifest is gone (evicted, or a
		// crash between writes): fetch it by digest below.
		um = upstream.Manifest{Descriptor: upstream.Descriptor{Digest: tc.Digest}}
	}
	// A new digest: use the cached manifest of that digest, or fetch it.
	var sm storage.Manifest
	if um.Body != nil {
		sm, err = p.store(ctx, img, um)
	} else if sm, err = p.meta.GetManifest(ctx, img, um.Digest); notFound(err) {
		var full upstream.Manifest
		err = p.call(ctx, func(ctx context.Context) (err error) {
			full, err = p.up.GetManifest(ctx, image, um.Digest.String(), "")
			return err
		})
		if err != nil {
			err = p.upErr(ctx, err, image, um.Digest.String(), "manifest")
			if have {
				p.deps.Logger.WarnContext(ctx, "serving a stale cached tag", "repo", p.cfg.Name, "image", image, "tag", tag, "err", err)
				return p.cached(ctx, img, tc.Digest, staleWarning+`: upstream moved the tag but its manifest could not be fetched; serving the cached copy"`)
			}
			return Manifest{}, err
		}
		sm, err = p.store(ctx, img, full)
	}
	if err != nil {
		return Manifest{}, err
	}
	if err := p.meta.PutTagCheck(ctx, img, tag, storage.TagCheck{Digest: sm.Digest, Checked: p.now()}); err != nil {
		return Manifest{}, fmt.Errorf("move tag %s: %w", tag, err)
	}
	return Manifest{Manifest: sm}, nil
}

// cached reads a cached manifest (a *NotFoundError when it is not there).
func (p *Proxy) cached(ctx context.Context, img storage.Image, d digest.Digest, warning string) (Manifest, error) {
	m, err := p.meta.GetManifest(ctx, img, d)
	if notFound(err) {
		return Manifest{}, &NotFoundError{}
	}
	if err != nil {
		return Manifest{}, fmt.Errorf("get manifest %s: %w", d, err)
	}
	p.markPulled(ctx, img, m)
	return Manifest{Manifest: m, Warning: warning}, nil
}

// pullMarkEvery: a proxy records that a cached manifest was pulled (the
// proxy-evict purge's clock, storage.Manifest.Pulled) when its last
// recorded pull, or its caching, is older than this: at most one write per
// manifest per day, none on most pulls.
const pullMarkEvery = 24 * time.Hour

// pullMarkTimeout bounds that write.
const pullMarkTimeout = 2 * time.Second

// markPulled records a pull of the cached manifest m when due
// (pullMarkEvery). Best effort: the write is not cancelled with the
// request, and a failure is logged without failing the pull (the next
// pull tries again; eviction only ever sees the last pull as older than
// it was).
func (p *Proxy) markPulled(ctx context.Context, img storage.Image, m storage.Manifest) {
	last := m.Pulled
	if last.IsZero() {
		last = m.Created
	}
	if p.now().Sub(last) <= pullMarkEvery {
		return
	}
	col, ok := p.meta.(storage.Collector)
	if !ok {
		p.deps.Logger.WarnContext(ctx, "cannot record a pull: the metadata store has no storage.Collector", "repo", p.cfg.Name, "store", fmt.Sprintf("%T", p.meta))
		return
	}
	ctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), pullMarkTimeout)
	defer cancel()
	if err := col.MarkPulled(ctx, img, m.Digest); err != nil && !notFound(err) {
		p.deps.Logger.WarnContext(ctx, "record a pull", "repo", p.cfg.Name, "image", img.Name, "digest", m.Digest, "err", err)
	}
}

// store validates a manifest from the remote and caches its exact bytes.
func (p *Proxy) store(ctx context.Context, img storage.Image, um upstream.Manifest) (storage.Manifest, error) {
	m, err := manifest.Parse(um.MediaType, um.Body)
	if err != nil {
		return m, &BadUpstreamError{Msg: fmt.Sprintf("upstream %s sent an invalid manifest %s for %s: %v; nothing was cached", p.up.Remote(), um.Digest, img.Name, err)}
	}
	m.Digest, m.Size, m.Created = um.Digest, int64(len(um.Body)), p.now()
	m, err = p.cache.StoreManifest(ctx, img, m, um.Body)
	if err != nil {
		return m, err
	}
	if f := manifest.ForeignLayers(um.MediaType, um.Body); len(f) > 0 {
		p.rememberForeign(ctx, img, f)
	}
	return m, nil
}

func (p *Proxy) logRate(ctx context.Context, image, ref string, d upstream.Descriptor) {
	if d.RateLimit != "" || d.RateRemaining != "" {
		p.deps.Logger.InfoContext(ctx, "upstream rate limit", "repo", p.cfg.Name, "image", image, "ref", ref, "ratelimit-limit", d.RateLimit, "ratelimit-remaining", d.RateRemaining)
	}
}

// Tags merges the remote's tag list (when it answers in time) with the cached tags.
func (p *Proxy) Tags(ctx context.Context, image, last string, n int) (storage.Page, error) {
	img := p.cache.Image(image)
	cached, err := p.meta.ListTags(ctx, img, "", 0)
	if err != nil {
		return storage.Page{}, fmt.Errorf("list tags: %w", err)
	}
	var remote []string
	err = p.call(ctx, func(ctx context.Context) (err error) {
		remote, err = p.up.Tags(ctx, image)
		return err
	})
	if err != nil {
		if len(cached.Items) == 0 {
			return storage.Page{}, p.upErr(ctx, err, image, "tags", "tag list")
		}
		p.deps.Logger.WarnContext(ctx, "tag list from the cache only", "repo", p.cfg.Name, "image", image, "err", err)
	}
	all := append(slices.Clone(cached.Items), remote...)
	slices.Sort(all)
	all = slices.Compact(all)
	i, _ := slices.BinarySearch(all, last)
	if i < len(all) && all[i] == last {
		i++
	}
	if last == "" {
		i = 0
	}
	all = all[i:]
	pg := storage.Page{Items: all}
	if n > 0 && len(all) > n {
		pg.Items, pg.More = all[:n], true
	}
	return pg, nil
}

// Referrers lists the cached referrers.
func (p *Proxy) Referrers(ctx context.Context, image string, subject digest.Digest) ([]ocispec.Descriptor, error) {
	return p.cache.Referrers(ctx, image, subject)
}

// Cached returns the cached blob's link, with no remote call.
func (p *Proxy) Cached(ctx context.Context, image string, d digest.Digest) (storage.Blob, error) {
	return p.cache.Cached(ctx, image, d)
}

// BlobInfo answers a HEAD: from the cache, else from the remote's HEAD
// (nothing is fetched).
func (p *Proxy) BlobInfo(ctx context.Context, image string, d digest.Digest) (storage.Blob, error) {
	b, err := p.cache.Cached(ctx, image, d)
	if !notFound(err) {
		return b, err
	}
	if p.negative(ctx, image, d.String()) {
		return b, p.negativeErr(image, d.String())
	}
	var size int64
	err = p.call(ctx, func(ctx context.Context) (err error) {
		size, err = p.up.HeadBlob(ctx, image, d)
		return err
	})
	if err != nil {
		return b, p.upErr(ctx, err, image, d.String(), "blob")
	}
	return storage.Blob{Digest: d, Size: size}, nil
}

// negative reports whether the remote said "not found" for image@ref within negativeCacheTTL.
func (p *Proxy) negative(ctx context.Context, image, ref string) bool {
	if p.cfg.NegativeTTL() == 0 {
		return false
	}
	_, err := p.meta.GetMarker(ctx, groupNeg+p.cfg.Name, image+"@"+ref)
	return err == nil
}

func (p *Proxy) negativeErr(image, ref string) error {
	return &NotFoundError{Msg: fmt.Sprintf("%s was not found upstream at %s (answer remembered for %s)", refName(image, ref), p.up.Remote(), p.cfg.NegativeTTL())}
}

// shortErr is an upstream error without the remote's URL (already named).
func shortErr(err error) string {
	var ue *upstream.Error
	if errors.As(err, &ue) {
		s := ue.Kind.String()
		if ue.Status != 0 {
			s += fmt.Sprintf(", HTTP %d", ue.Status)
		}
		return s
	}
	var ua *UnavailableError
	if errors.As(err, &ua) {
		return "blocked after repeated failures"
	}
	return err.Error()
}
