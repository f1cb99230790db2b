package purge

import (
	"context"
	"errors"
	"slices"
	"strings"
	"sync"
	"time"

	digest "github.com/opencontainers/go-digest"

	"github.com/airlock-registry/airlock/shared/repo"
	"github.com/airlock-registry/airlock/shared/storage"
)

// blob-gc's conditional deletes: links, records (and their objects),
// proxies' holds: markers, with the parallel sweep they share.

// links deletes the links no manifest of their image references, once
// untouched for the grace period.
func (g *gc) links(ctx context.Context) (bool, error) {
	st := g.st
	age := func(c linkCand) time.Time { return st.Images[c.Image].Links[c.Digest].Age }
	del := func(c linkCand) error { return g.col.DeleteLinkIf(ctx, parseImage(c.Image), c.Digest, st.Cut) }
	if !sweep(ctx, g, st.LinkCands, age, del, func(c linkCand, err error) {
		im := st.Images[c.Image]
		l := im.Links[c.Digest]
		switch {
		case errors.Is(err, errYoung):
			g.r.skip(skipGCYoung)
		case err == nil, errors.Is(err, storage.ErrNotFound):
			delete(im.Links, c.Digest)
			if err == nil {
				g.r.add(Item{Kind: kindLink, ID: c.Digest.String(), Image: c.Image, Keys: []string{l.Key}, Created: l.Age})
			}
		case errors.Is(err, storage.ErrConflict):
			g.r.skip(skipBusy) // a manifest PUT touched it meanwhile
			st.Kept[c.Digest] = true
		default:
			g.r.fail("delete link %s in %s: %v", c.Digest, c.Image, err)
			st.Kept[c.Digest] = true
		}
	}) {
		return false, nil
	}
	// Records no remaining link names are the next candidates.
	linked := map[digest.Digest]bool{}
	for _, im := range st.Images {
		for d := range im.Links {
			linked[d] = true
		}
	}
	for _, d := range sortedKeys(st.Records) {
		if linked[d] || st.Kept[d] {
			g.r.skip(skipLinked)
			continue
		}
		st.RecCands = append(st.RecCands, d)
	}
	return true, nil
}

// records deletes unlinked records untouched for the grace period, each
// before its object (package doc: why in that order).
func (g *gc) records(ctx context.Context) (bool, error) {
	st := g.st
	age := func(d digest.Digest) time.Time { return st.Records[d].Age }
	del := func(d digest.Digest) error { return g.col.DeleteBlobIf(ctx, d, st.Cut) }
	if !sweep(ctx, g, st.RecCands, age, del, func(d digest.Digest, err error) {
		rec := st.Records[d]
		switch {
		case errors.Is(err, errYoung):
			g.r.skip(skipGCYoung)
			return
		case err == nil:
		case errors.Is(err, storage.ErrNotFound):
			return // deleted by a concurrent pass: its object is its job
		case errors.Is(err, storage.ErrConflict):
			g.r.skip(skipBusy) // linked or re-uploaded meanwhile
			return
		default:
			g.r.fail("delete blob record %s: %v", d, err)
			return
		}
		st.Gone[rec.Key] = true
		g.r.add(Item{Kind: kindBlob, ID: d.String(), Keys: []string{rec.Key}, Bytes: rec.Size, Created: rec.Age})
		if g.dead = append(g.dead, rec.Key); len(g.dead) >= 1000 {
			g.flush(ctx)
		}
	}) {
		return false, nil
	}
	g.flush(ctx)
	g.planMarkers()
	return true, nil
}

// sweep makes the conditional deletes (del) of the candidates from the
// pass's Index on, gcWorkers at a time, within the run's bound (false: the
// bound stopped it). A candidate whose age is not before the cut is not
// deleted (errYoung), nor is any in a dry run (every delete "succeeds").
// settle then takes each candidate's outcome, in candidate order: a dry run
// reports what a real run does.
func sweep[C any](ctx context.Context, g *gc, cands []C, age func(C) time.Time, del func(C) error, settle func(C, error)) bool {
	st := g.st
	for st.Index < len(cands) {
		if !g.budget(ctx) {
			return false
		}
		chunk := cands[st.Index:min(len(cands), st.Index+g.chunk())]
		errs := g.parallel(len(chunk), func(i int) error {
			if !age(chunk[i]).Before(st.Cut) {
				return errYoung
			}
			if g.dry {
				return nil
			}
			return del(chunk[i])
		})
		for i, c := range chunk {
			settle(c, errs[i])
		}
		g.work += len(chunk)
		st.Index += len(chunk)
	}
	return true
}

// gcWorkers bounds the conditional deletes a run has in flight at once.
const gcWorkers = 16

// errYoung marks a candidate touched after the cut (no call made).
var errYoung = errors.New("young")

// chunk is how many candidates the next parallel step takes: gcWorkers,
// within what is left of the run's bound.
func (g *gc) chunk() int {
	return max(1, min(gcWorkers, g.p.d.MaxPerRun-g.work))
}

// parallel runs call(0..n-1) with at most gcWorkers at once and returns
// their errors by index.
func (g *gc) parallel(n int, call func(i int) error) []error {
	errs := make([]error, n)
	var wg sync.WaitGroup
	for i := range n {
		wg.Go(func() { errs[i] = call(i) })
	}
	wg.Wait()
	return errs
}

// flush deletes the objects of the records deleted so far (one
// DeleteObjects per 1,000). A failure leaves objects without a record: the
// objects phase of this pass or the next finds and deletes them.
func (g *gc) flush(ctx context.Context) {
	if len(g.dead) == 0 || g.dry {
		g.dead = nil
		return
	}
	if failed, err := g.ol.DeleteObjects(context.WithoutCancel(ctx), g.dead); err != nil {
		g.r.fail("delete %d objects of deleted blob records (the reconciliation retries): %v", len(failed), err)
	}
	g.dead = nil
}

// planMarkers lists the holds: markers of blobs their proxy no longer links.
func (g *gc) planMarkers() {
	st := g.st
	held := map[string]map[digest.Digest]bool{} // proxy → linked digests
	for name, im := range st.Images {
		proxy := parseImage(name).Repo
		if held[proxy] == nil {
			held[proxy] = map[digest.Digest]bool{}
		}
		for d := range im.Links {
			held[proxy][d] = true
		}
	}
	for _, group := range sortedKeys(st.Holds) {
		proxy := strings.TrimPrefix(group, repo.HoldsGroupPrefix)
		keys := slices.Clone(st.Holds[group])
		slices.Sort(keys)
		for _, k := range keys {
			if !held[proxy][digest.Digest(k)] && !st.Kept[digest.Digest(k)] {
				st.MarkCands = append(st.MarkCands, markCand{Group: group, Key: k})
			}
		}
	}
}

// markers deletes the planned holds: markers.
func (g *gc) markers(ctx context.Context) (bool, error) {
	st := g.st
	for ; st.Index < len(st.MarkCands); st.Index++ {
		if !g.budget(ctx) {
			return false, nil
		}
		g.work++
		c := st.MarkCands[st.Index]
		it := Item{Kind: kindMarker, ID: c.Key, Image: c.Group}
		if !g.dry {
			if err := g.pm.DeleteMarker(ctx, c.Group, c.Key); err != nil {
				g.r.fail("delete marker %s %s: %v", c.Group, c.Key, err)
				continue
			}
		}
		g.r.add(it)
	}
	return true, nil
}
