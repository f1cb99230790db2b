package repo

import (
	"context"
	"errors"
	"fmt"
	"slices"
	"strings"

	digest "github.com/opencontainers/go-digest"
	ocispec "github.com/opencontainers/image-spec/specs-go/v1"

	"github.com/airlock-registry/airlock/shared/config"
	"github.com/airlock-registry/airlock/shared/storage"
)

// Group is one endpoint over ordered member repositories: the first member
// that has the content serves it; tags and referrers merge; pushes go to
// the writeMember. Lookups walk the leaves (hosted and proxy repositories,
// depth first through member groups); the hosted leaves are read together
// in one round trip (storage.BatchReader), and a proxy leaf's remote is
// asked only when the leaves before it missed.
type Group struct {
	cfg    *config.Repository
	leaves []Repository
	hosted []*Hosted // the hosted leaves, in order
	write  *Hosted
	batch  storage.BatchReader // the metadata store, reading the hosted leaves together
	deps   *Deps
}

var _ Repository = (*Group)(nil)

// Name returns the repository's name.
func (g *Group) Name() string { return g.cfg.Name }

// Kind returns config.KindGroup.
func (g *Group) Kind() config.Kind { return config.KindGroup }

// Members returns the leaves the group serves, in lookup order.
func (g *Group) Members() []Repository { return g.leaves }

// Push returns the writable member, or a *DeniedError.
func (g *Group) Push() (*Hosted, error) {
	if g.write == nil {
		var names []string
		for _, h := range g.hosted {
			names = append(names, h.Name())
		}
		where := "a hosted repository"
		if len(names) > 0 {
			where = "one of its hosted members (" + strings.Join(names, ", ") + ")"
		}
		return nil, denied("group %q has no writeMember and takes no pushes: push to %s, or set writeMember", g.cfg.Name, where)
	}
	return g.write.Push()
}

func (g *Group) images(image string) []storage.Image {
	imgs := make([]storage.Image, len(g.hosted))
	for i, h := range g.hosted {
		imgs[i] = h.Image(image)
	}
	return imgs
}

// hostedTags resolves tag in every hosted leaf at once (one round trip).
func (g *Group) hostedTags(ctx context.Context, image, tag string) (map[*Hosted]digest.Digest, error) {
	out := map[*Hosted]digest.Digest{}
	if len(g.hosted) == 0 {
		return out, nil
	}
	ds, err := g.batch.ResolveTags(ctx, g.images(image), tag)
	if err != nil {
		return nil, fmt.Errorf("resolve tag %s in the group's members: %w", tag, err)
	}
	for i, d := range ds {
		if d != "" {
			out[g.hosted[i]] = d
		}
	}
	return out, nil
}

// hostedBlobs stats d in every hosted leaf at once (one round trip).
func (g *Group) hostedBlobs(ctx context.Context, image string, d digest.Digest) (map[*Hosted]storage.Blob, error) {
	out := map[*Hosted]storage.Blob{}
	if len(g.hosted) == 0 {
		return out, nil
	}
	links, ok, err := g.batch.StatBlobs(ctx, g.images(image), d)
	if err != nil {
		return nil, fmt.Errorf("stat blob %s in the group's members: %w", d, err)
	}
	for i := range links {
		if ok[i] {
			out[g.hosted[i]] = links[i]
		}
	}
	return out, nil
}

// hostedManifests tells which hosted leaves store manifest d (one round trip).
func (g *Group) hostedManifests(ctx context.Context, image string, d digest.Digest) (map[*Hosted]bool, error) {
	out := map[*Hosted]bool{}
	if len(g.hosted) == 0 {
		return out, nil
	}
	has, err := g.batch.HasManifests(ctx, g.images(image), d)
	if err != nil {
		return nil, fmt.Errorf("find manifest %s in the group's members: %w", d, err)
	}
	for i, h := range has {
		if h {
			out[g.hosted[i]] = true
		}
	}
	return out, nil
}

// firstErr keeps the most telling error of members that did not serve:
// anything but "not found" (an unreachable upstream says more).
func firstErr(cur, err error) error {
	if cur == nil || notFound(cur) && !notFound(err) {
		return err
	}
	return cur
}

// Manifest tries the leaves in order. By tag, the hosted leaves' tags are
// read in one round trip and the first leaf in order that has the tag
// serves it (a proxy leaf before it is asked first, its remote included).
// By digest (content-addressed: every leaf would serve the same bytes),
// caches are tried before any remote.
func (g *Group) Manifest(ctx context.Context, image string, ref Ref) (Manifest, error) {
	var miss error = &NotFoundError{}
	if ref.Tag != "" {
		tags, err := g.hostedTags(ctx, image, ref.Tag)
		if err != nil {
			return Manifest{}, err
		}
		for _, l := range g.leaves {
			if h, ok := l.(*Hosted); ok {
				d, found := tags[h]
				if !found {
					continue
				}
				m, err := h.Manifest(ctx, image, Ref{Digest: d})
				if err == nil || !notFound(err) {
					return m, err
				}
				continue
			}
			m, err := l.Manifest(ctx, image, ref)
			if err == nil {
				return m, nil
			}
			miss = firstErr(miss, err)
		}
		return Manifest{}, miss
	}
	has, err := g.hostedManifests(ctx, image, ref.Digest)
	if err != nil {
		return Manifest{}, err
	}
	for _, h := range g.hosted {
		if has[h] {
			if m, err := h.Manifest(ctx, image, ref); err == nil || !notFound(err) {
				return m, err
			}
		}
	}
	for _, l := range g.leaves {
		if _, ok := l.(*Hosted); ok {
			continue
		}
		m, err := l.Manifest(ctx, image, ref)
		if err == nil {
			return m, nil
		}
		miss = firstErr(miss, err)
	}
	return Manifest{}, miss
}

// Cached finds the blob in a leaf's store, no remote asked: the hosted
// leaves in one round trip, then the proxies' caches of the image, then
// what the proxies hold under any image name.
func (g *Group) Cached(ctx context.Context, image string, d digest.Digest) (storage.Blob, error) {
	links, err := g.hostedBlobs(ctx, image, d)
	if err != nil {
		return storage.Blob{}, err
	}
	for _, l := range g.leaves {
		if h, ok := l.(*Hosted); ok {
			if b, found := links[h]; found {
				return b, nil
			}
			continue
		}
		b, err := l.Cached(ctx, image, d)
		if err == nil || !notFound(err) {
			return b, err
		}
	}
	// A proxy member holds the bytes under another image name (layers of a
	// base image pulled through the group, now pushed under a new name).
	for _, l := range g.leaves {
		if p, ok := l.(*Proxy); ok {
			if b, err := p.Holds(ctx, d); err == nil || !notFound(err) {
				return b, err
			}
		}
	}
	return storage.Blob{}, &NotFoundError{}
}

// blob is Cached, then each proxy leaf in order with fn (fill or HEAD).
func (g *Group) blob(ctx context.Context, image string, d digest.Digest, fn func(Repository) (storage.Blob, error)) (storage.Blob, error) {
	b, err := g.Cached(ctx, image, d)
	if err == nil || !notFound(err) {
		return b, err
	}
	var miss error = &NotFoundError{}
	for _, l := range g.leaves {
		if _, ok := l.(*Hosted); ok {
			continue
		}
		b, err := fn(l)
		if err == nil {
			return b, nil
		}
		var redirect *RedirectError
		var unavailable *UnavailableError
		if errors.As(err, &redirect) || errors.As(err, &unavailable) && unavailable.RetryAfter > 0 && !notFound(err) {
			return b, err // a fill in progress: that proxy has it
		}
		miss = firstErr(miss, err)
	}
	return storage.Blob{}, miss
}

// Blob serves a blob GET: any leaf's store first, then the proxies in order.
func (g *Group) Blob(ctx context.Context, image string, d digest.Digest) (storage.Blob, error) {
	return g.blob(ctx, image, d, func(l Repository) (storage.Blob, error) { return l.Blob(ctx, image, d) })
}

// BlobInfo answers a HEAD: any leaf's store, then the proxies' remotes
// (so a push through the group skips layers a member has). A proxy whose
// remote cannot answer counts as a miss here: a HEAD is how pushing clients
// ask "upload this?", and a push to the group's hosted member must not
// depend on the internet (a GET of the blob still says the remote is down).
func (g *Group) BlobInfo(ctx context.Context, image string, d digest.Digest) (storage.Blob, error) {
	b, err := g.blob(ctx, image, d, func(l Repository) (storage.Blob, error) { return l.BlobInfo(ctx, image, d) })
	var unavailable *UnavailableError
	var limited *RateLimitedError
	if errors.As(err, &unavailable) || errors.As(err, &limited) {
		return b, &NotFoundError{Msg: fmt.Sprintf("not in any member of %s (a proxy's upstream could not be asked: %v)", g.cfg.Name, err)}
	}
	return b, err
}

// Tags merges the leaves' tags (deduplicated, lexical). When every member
// says it does not know the image, so does the group (*NotFoundError); a
// member that could not answer keeps today's merged (possibly empty) list.
func (g *Group) Tags(ctx context.Context, image, last string, n int) (storage.Page, error) {
	var all []string
	found := false
	answered := 0 // members that answered (a hosted member always does)
	unknown := 0  // members that answered "not found"
	var miss error
	for _, l := range g.leaves {
		p, err := l.Tags(ctx, image, "", 0)
		if err == nil || notFound(err) {
			answered++
		}
		if notFound(err) {
			unknown++
		}
		if err != nil {
			if !notFound(err) {
				g.deps.Logger.WarnContext(ctx, "group member's tags left out", "group", g.cfg.Name, "member", l.Name(), "err", err)
			}
			miss = firstErr(miss, err)
			continue
		}
		found = found || len(p.Items) > 0
		all = append(all, p.Items...)
	}
	if !found && answered == 0 && miss != nil {
		return storage.Page{}, miss // no member could answer at all
	}
	if len(g.leaves) > 0 && unknown == len(g.leaves) {
		return storage.Page{}, &NotFoundError{Msg: fmt.Sprintf("repository name not known to registry: no member of group %s (%s) has image %s; check the name", g.cfg.Name, g.memberNames(), image)}
	}
	return pageOf(all, last, n), nil
}

// pageOf sorts and deduplicates names and returns the page after last.
func pageOf(all []string, last string, n int) storage.Page {
	slices.Sort(all)
	all = slices.Compact(all)
	if last != "" {
		i, found := slices.BinarySearch(all, last)
		if found {
			i++
		}
		all = all[i:]
	}
	pg := storage.Page{Items: all}
	if pg.Items == nil {
		pg.Items = []string{}
	}
	if n > 0 && len(all) > n {
		pg.Items, pg.More = all[:n], true
	}
	return pg
}

// Referrers merges the leaves' referrers (each manifest once).
func (g *Group) Referrers(ctx context.Context, image string, subject digest.Digest) ([]ocispec.Descriptor, error) {
	var out []ocispec.Descriptor
	seen := map[digest.Digest]bool{}
	for _, l := range g.leaves {
		ds, err := l.Referrers(ctx, image, subject)
		if err != nil {
			return nil, err
		}
		for _, d := range ds {
			if !seen[d.Digest] {
				seen[d.Digest] = true
				out = append(out, d)
			}
		}
	}
	return out, nil
}

// memberNames lists the leaves' names, in lookup order.
func (g *Group) memberNames() string {
	names := make([]string, len(g.leaves))
	for i, l := range g.leaves {
		names[i] = l.Name()
	}
	return strings.Join(names, ", ")
}
