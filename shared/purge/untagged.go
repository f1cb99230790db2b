package purge

import (
	"context"
	"errors"
	"time"

	digest "github.com/opencontainers/go-digest"

	"github.com/airlock-registry/airlock/shared/config"
	"github.com/airlock-registry/airlock/shared/storage"
)

// TaskUntaggedManifests deletes manifests of hosted repositories that no
// tag, kept index or kept subject reaches, older than their repository's
// purge.untaggedAfter (package doc).
const TaskUntaggedManifests = "untagged-manifests"

// Skip reasons of the manifest tasks (untagged-manifests, proxy-evict).
const (
	skipTagged   = "kept-tagged"   // a tag points at it
	skipChild    = "kept-child"    // a kept index lists it
	skipReferrer = "kept-referrer" // its subject is kept
	skipYoung    = "young"         // written or touched within the threshold
	skipPulled   = "pulled"        // pulled (or cached) within evictAfter
)

// manifestPlan is what a manifest task does with one image's manifests.
type manifestPlan struct {
	// drop are the manifests to delete, in an order where every index comes
	// before its children and every subject before its referrers: when a
	// delete fails, what it would keep is still ahead and is kept too.
	drop []storage.Manifest
	// kept maps each manifest not in drop to the reason it is kept.
	kept map[digest.Digest]string
	// keeps maps a manifest to the stored manifests it keeps (children,
	// referrers).
	keeps map[digest.Digest][]digest.Digest
}

// planManifests decides which of ms (one image's manifests) go: roots are
// kept (digest -> reason), and so is everything a kept manifest keeps,
// transitively: the children of a kept index, the referrers of a kept
// subject. The rest go.
func planManifests(ms []storage.Manifest, roots map[digest.Digest]string) manifestPlan {
	byDigest := make(map[digest.Digest]storage.Manifest, len(ms))
	for _, m := range ms {
		byDigest[m.Digest] = m
	}
	pl := manifestPlan{kept: map[digest.Digest]string{}, keeps: map[digest.Digest][]digest.Digest{}}
	edge := map[[2]digest.Digest]string{}
	for _, m := range ms {
		for _, c := range m.Children {
			if _, ok := byDigest[c]; ok && c != m.Digest {
				pl.keeps[m.Digest] = append(pl.keeps[m.Digest], c)
				edge[[2]digest.Digest{m.Digest, c}] = skipChild
			}
		}
		if s := m.Subject; s != "" && s != m.Digest {
			if _, ok := byDigest[s]; ok {
				pl.keeps[s] = append(pl.keeps[s], m.Digest)
				if _, dup := edge[[2]digest.Digest{s, m.Digest}]; !dup {
					edge[[2]digest.Digest{s, m.Digest}] = skipReferrer
				}
			}
		}
	}
	var queue []digest.Digest
	for _, m := range ms { // in ms's order: reasons do not depend on map order
		if why, ok := roots[m.Digest]; ok {
			pl.kept[m.Digest] = why
			queue = append(queue, m.Digest)
		}
	}
	for len(queue) > 0 {
		d := queue[0]
		queue = queue[1:]
		for _, k := range pl.keeps[d] {
			if _, ok := pl.kept[k]; !ok {
				pl.kept[k] = edge[[2]digest.Digest{d, k}]
				queue = append(queue, k)
			}
		}
	}
	// The rest, parents first (Kahn's algorithm over the keeps edges within
	// the dropped set; digests make cycles impossible, but a cycle would
	// only leave its members out of drop, i.e. kept).
	parents := map[digest.Digest]int{}
	for _, m := range ms {
		if _, ok := pl.kept[m.Digest]; ok {
			continue
		}
		for _, k := range pl.keeps[m.Digest] {
			parents[k]++
		}
	}
	var ready []digest.Digest
	for _, m := range ms {
		if _, ok := pl.kept[m.Digest]; !ok && parents[m.Digest] == 0 {
			ready = append(ready, m.Digest)
		}
	}
	dropped := map[digest.Digest]bool{}
	for len(ready) > 0 { // first in, first out: the order follows ms's, dry or not
		d := ready[0]
		ready = ready[1:]
		pl.drop = append(pl.drop, byDigest[d])
		dropped[d] = true
		for _, k := range pl.keeps[d] {
			if _, kept := pl.kept[k]; !kept {
				if parents[k]--; parents[k] == 0 {
					ready = append(ready, k)
				}
			}
		}
	}
	for _, m := range ms {
		if _, ok := pl.kept[m.Digest]; !ok && !dropped[m.Digest] {
			pl.kept[m.Digest] = skipChild // on a cycle (impossible with digests)
		}
	}
	return pl
}

// lastWrite is when a manifest was last written or touched.
func lastWrite(m storage.Manifest) time.Time {
	if m.Touched.After(m.Created) {
		return m.Touched
	}
	return m.Created
}

// older reports whether t is before cut, both to the millisecond (as the
// stores keep and compare touch times).
func older(t, cut time.Time) bool { return t.UnixMilli() < cut.UnixMilli() }

// run deletes pl.drop in order with DeleteManifestIf(cut), or in a dry run
// reports them. A manifest whose delete lost to a writer (ErrConflict:
// touched since the listing) or failed is kept, and so is everything it
// keeps ("busy"); one already gone (a concurrent run) is not reported.
// It returns how many of pl.drop are gone (deleted, or found gone).
func (pl manifestPlan) run(ctx context.Context, col storage.Collector, r *Report, img storage.Image, cut time.Time) int {
	for _, why := range pl.kept {
		r.skip(why)
	}
	blocked := map[digest.Digest]bool{}
	n := 0
	for _, m := range pl.drop {
		r.Considered++
		if blocked[m.Digest] {
			r.skip(skipBusy)
			for _, k := range pl.keeps[m.Digest] {
				blocked[k] = true
			}
			continue
		}
		var err error
		if !r.DryRun {
			err = col.DeleteManifestIf(ctx, img, m.Digest, cut)
		}
		switch {
		case err == nil:
			r.add(Item{Kind: "manifest", ID: m.Digest.String(), Image: img.String(), Bytes: m.Size, Created: m.Created, Updated: lastWrite(m)})
			n++
			continue
		case errors.Is(err, storage.ErrNotFound):
			r.skip(skipGone)
			n++
			continue
		case errors.Is(err, storage.ErrConflict):
			r.skip(skipBusy)
		default:
			r.fail("delete manifest %s of %s: %v", m.Digest, img, err)
		}
		for _, k := range pl.keeps[m.Digest] {
			blocked[k] = true
		}
	}
	r.Considered += len(pl.kept)
	return n
}

func untaggedManifests(ctx context.Context, p *Purger, r *Report) error {
	now := p.d.Now()
	applies := func(rc *config.Repository) bool { return rc.Kind == config.KindHosted && rc.UntaggedAge() > 0 }
	return walkImages(ctx, p, r, applies, func(col storage.Collector, img storage.Image, rc *config.Repository, items storage.ImageItems) error {
		cut := now.Add(-rc.UntaggedAge())
		roots := map[digest.Digest]string{}
		for _, t := range items.Tags {
			roots[t.Digest] = skipTagged
		}
		for _, m := range items.Manifests {
			if _, ok := roots[m.Digest]; !ok && !older(lastWrite(m), cut) {
				roots[m.Digest] = skipYoung
			}
		}
		planManifests(items.Manifests, roots).run(ctx, col, r, img, cut)
		dropDanglingTags(ctx, col, r, img, items, cut)
		return nil
	})
}

// dropDanglingTags deletes the tags, written before cut, that point at a
// manifest the image does not hold (a crash between DeleteManifest's
// writes leaves them; a GET by such a tag answers MANIFEST_UNKNOWN while a
// push of the tag would be refused under a no-redeploy policy). Each goes
// with DeleteTagIf on the digest it names: a tag re-pushed meanwhile stays.
func dropDanglingTags(ctx context.Context, col storage.Collector, r *Report, img storage.Image, items storage.ImageItems, cut time.Time) {
	have := map[digest.Digest]bool{}
	for _, m := range items.Manifests {
		have[m.Digest] = true
	}
	for _, t := range items.Tags {
		if have[t.Digest] || !older(t.Updated, cut) {
			continue
		}
		var err error
		if !r.DryRun {
			err = col.DeleteTagIf(ctx, img, t)
		}
		switch {
		case err == nil:
			r.add(Item{Kind: "tag", ID: t.Tag, Image: img.String(), Updated: t.Updated})
		case errors.Is(err, storage.ErrNotFound):
			r.skip(skipGone)
		case errors.Is(err, storage.ErrConflict):
			r.skip(skipBusy)
		default:
			r.fail("delete dangling tag %s of %s: %v", t.Tag, img, err)
		}
	}
}
