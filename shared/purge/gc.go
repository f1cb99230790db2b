package purge

import (
	"bytes"
	"compress/gzip"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"slices"
	"strings"
	"sync"
	"time"

	digest "github.com/opencontainers/go-digest"

	"github.com/airlock-registry/airlock/shared/repo"
	"github.com/airlock-registry/airlock/shared/storage"
)

// TaskBlobGC deletes blob links, blob records and S3 objects that nothing
// kept references, after the grace period (package doc: Blob garbage
// collection).
const TaskBlobGC = "blob-gc"

// Skip reasons and item kinds of blob-gc.
const (
	skipGCYoung = "young"  // touched within the grace period
	skipLinked  = "linked" // a record some image still links
	skipLocked  = "locked" // another run holds the pass
	skipInUse   = "in-use" // an upload, a pending verification or a new record owns the object

	kindLink   = "link"
	kindBlob   = "blob"
	kindObject = "object"
	kindMarker = "marker"
)

// Phases of a pass, in order.
const (
	phaseScan    = "scan"
	phaseLinks   = "links"
	phaseRecords = "records"
	phaseMarkers = "markers"
	phaseObjects = "objects"
)

// gcPrefixes are the S3 prefixes the reconciliation lists, in order.
var gcPrefixes = []string{"blobs/", "manifests/", "uploads/"}

// Pass bounds (package doc: Bounded, resumable work).
const (
	// gcLeaseTTL is how long one run holds the pass; a crashed run's lease
	// expires and the next run continues from the last checkpoint.
	gcLeaseTTL = 16 * time.Minute
	// gcMaxPassAge: a pass older than this starts over (its T0 would make
	// the cut too old to be meaningful, and the uploaded markers it relies
	// on live repo.UploadedFor).
	gcMaxPassAge = 2 * 24 * time.Hour
	// gcStopBefore: a run stops this long before its context's deadline
	// (the Lambda's 15 minutes) and saves its checkpoint.
	gcStopBefore = 90 * time.Second
)

// The pass's markers (group gcCheckpointGroup): a real pass's checkpoint
// and lease are gcCheckpointKey and gcCheckpointKey+gcLeaseSuffix, a dry
// pass's the same with gcDrySuffix after the task's name, so the two never
// continue each other.
const (
	gcCheckpointGroup = "purge"
	gcCheckpointKey   = "blob-gc"
	gcLeaseSuffix     = "-lease"
	gcDrySuffix       = "-dry"
)

// gcLink is a link as the pass saw it.
type gcLink struct {
	Key  string    `json:"k,omitempty"`
	Size int64     `json:"s"`
	Age  time.Time `json:"a"` // max(created, touched)
}

// gcImage is what the pass saw of one image.
type gcImage struct {
	Refs  map[digest.Digest]bool   `json:"r,omitempty"`
	Links map[digest.Digest]gcLink `json:"l,omitempty"`
}

// gcState is a pass: its clock, where it stands and what it has seen.
// It is saved gzip-compressed under storage.PurgePrefix between runs.
type gcState struct {
	Pass   string    `json:"pass"`
	T0     time.Time `json:"t0"`
	Cut    time.Time `json:"cut"`
	Phase  string    `json:"phase"`
	Cursor string    `json:"cursor,omitempty"` // scan cursor
	Index  int       `json:"index"`            // next candidate of links/records/markers
	Prefix int       `json:"prefix"`           // objects: index in gcPrefixes
	After  string    `json:"after,omitempty"`  // objects: last key listed

	Images  map[string]*gcImage     `json:"images"`            // by Image.String()
	Records map[digest.Digest]gcRec `json:"records"`           // global records
	Uploads map[string]bool         `json:"uploads,omitempty"` // upload sessions seen
	Holds   map[string][]string     `json:"holds,omitempty"`   // "holds:<proxy>" → digests
	Bodies  map[string]bool         `json:"bodies,omitempty"`  // S3 keys of manifest bodies

	LinkCands []linkCand      `json:"linkCands,omitempty"`
	RecCands  []digest.Digest `json:"recCands,omitempty"`
	MarkCands []markCand      `json:"markCands,omitempty"`
	// Kept are digests whose link delete lost to a writer: their records stay.
	Kept map[digest.Digest]bool `json:"kept,omitempty"`
	// Gone are record keys deleted by this pass (the objects phase skips them).
	Gone map[string]bool `json:"gone,omitempty"`
	// Listed are the object keys the objects phase saw.
	Listed map[string]bool `json:"listed,omitempty"`
}

type gcRec struct {
	Key  string    `json:"k"`
	Size int64     `json:"s"`
	Age  time.Time `json:"a"`
}

type linkCand struct {
	Image  string        `json:"i"`
	Digest digest.Digest `json:"d"`
}

type markCand struct {
	Group string `json:"g"`
	Key   string `json:"k"`
}

// blobGC runs (a slice of) a garbage collection pass.
func blobGC(ctx context.Context, p *Purger, r *Report) error {
	col, ok := p.d.Meta.(storage.Collector)
	if !ok {
		return fmt.Errorf("%T cannot enumerate the registry (storage.Collector)", p.d.Meta)
	}
	ol, ok := p.d.Blobs.(storage.ObjectLister)
	if !ok {
		return fmt.Errorf("%T cannot list objects (storage.ObjectLister)", p.d.Blobs)
	}
	pm, ok := p.d.Meta.(storage.ProxyMetadata)
	if !ok {
		return fmt.Errorf("%T has no markers (storage.ProxyMetadata)", p.d.Meta)
	}
	g := &gc{p: p, r: r, col: col, ol: ol, pm: pm, dry: r.DryRun, cpKey: gcCheckpointKey}
	if g.dry {
		// A dry pass is a pass of its own: its own lease, checkpoint and
		// state, the same bounds; it deletes nothing.
		g.cpKey += gcDrySuffix
	}
	leaseKey := g.cpKey + gcLeaseSuffix
	lease := newLease()
	err := pm.AcquireMarker(ctx, storage.Marker{Group: gcCheckpointGroup, Key: leaseKey, Value: lease, Until: p.d.Now().Add(gcLeaseTTL)})
	if errors.Is(err, storage.ErrConflict) {
		r.skip(skipLocked)
		r.More = true
		return nil
	}
	if err != nil {
		return fmt.Errorf("take the pass lease: %w", err)
	}
	defer func() { _ = pm.ReleaseMarker(context.WithoutCancel(ctx), gcCheckpointGroup, leaseKey, lease) }()
	if err := g.load(ctx); err != nil {
		return err
	}
	r.Pass = g.st.Pass
	return g.run(ctx)
}

type gc struct {
	p   *Purger
	r   *Report
	col storage.Collector
	ol  storage.ObjectLister
	pm  storage.ProxyMetadata
	dry bool
	// cpKey is the pass's checkpoint marker (a dry pass has its own).
	cpKey string
	st    *gcState
	// saved: the pass has (or may have) a checkpoint and a saved state,
	// which finish deletes.
	saved bool
	// dead are object keys of deleted records not yet deleted (flush).
	dead []string
	// work counts the units done this run (entries scanned / 100,
	// candidates, objects listed / 100) against the run's bound.
	work int
}

func (g *gc) newState() *gcState {
	now := g.p.d.Now().UTC()
	return &gcState{
		Pass: newPass(g.p, g.dry), T0: now, Cut: now.Add(-g.p.d.Config.BlobGraceAge()), Phase: phaseScan,
		Images: map[string]*gcImage{}, Records: map[digest.Digest]gcRec{}, Uploads: map[string]bool{},
		Holds: map[string][]string{}, Bodies: map[string]bool{}, Kept: map[digest.Digest]bool{},
		Gone: map[string]bool{}, Listed: map[string]bool{},
	}
}

// load continues the pass the checkpoint names, or starts one.
func (g *gc) load(ctx context.Context) error {
	m, err := g.pm.GetMarker(ctx, gcCheckpointGroup, g.cpKey)
	if errors.Is(err, storage.ErrNotFound) {
		g.st = g.newState()
		return nil
	}
	if err != nil {
		return fmt.Errorf("read the checkpoint: %w", err)
	}
	key := m.Value
	b, err := g.ol.ReadObject(ctx, key)
	if err == nil {
		var st gcState
		if err = decodeState(b, &st); err == nil && g.p.d.Now().Sub(st.T0) <= gcMaxPassAge {
			g.st, g.saved = &st, true
			return nil
		}
	}
	// A lost, unreadable or stale pass: start over (nothing was decided
	// from it that a new pass would not decide again).
	g.r.fail("checkpoint %s not continued (%v): starting a new pass", key, err)
	_, _ = g.ol.DeleteObjects(ctx, []string{key})
	g.st = g.newState()
	g.saved = true // the checkpoint naming it is still there: finish deletes it
	return nil
}

func (g *gc) stateKey() string { return storage.PurgePrefix + g.cpKey + "/" + g.st.Pass }

// save writes the pass state and the checkpoint naming it.
func (g *gc) save(ctx context.Context) error {
	b, err := encodeState(g.st)
	if err != nil {
		return err
	}
	ctx = context.WithoutCancel(ctx)
	g.saved = true
	if err := g.ol.WriteObject(ctx, g.stateKey(), b); err != nil {
		return fmt.Errorf("save the pass state: %w", err)
	}
	m := storage.Marker{Group: gcCheckpointGroup, Key: g.cpKey, Value: g.stateKey(), Until: g.st.T0.Add(gcMaxPassAge + time.Hour)}
	if err := g.pm.PutMarker(ctx, m); err != nil {
		return fmt.Errorf("save the checkpoint: %w", err)
	}
	return nil
}

// finish ends the pass: the checkpoint and its state go (a pass made in
// one run saved neither).
func (g *gc) finish(ctx context.Context) {
	if !g.saved {
		return
	}
	ctx = context.WithoutCancel(ctx)
	_ = g.pm.DeleteMarker(ctx, gcCheckpointGroup, g.cpKey)
	_, _ = g.ol.DeleteObjects(ctx, []string{g.stateKey()})
}

// budget tells whether the run may go on: within MaxPerRun units and
// gcStopBefore ahead of the context's deadline (a dry run too).
func (g *gc) budget(ctx context.Context) bool {
	if dl, ok := ctx.Deadline(); ok && time.Until(dl) < gcStopBefore {
		return false
	}
	return g.work < g.p.d.MaxPerRun
}

// run goes through the phases from where the state stands.
func (g *gc) run(ctx context.Context) error {
	steps := []struct {
		phase string
		fn    func(context.Context) (bool, error)
	}{
		{phaseScan, g.scan}, {phaseLinks, g.links}, {phaseRecords, g.records},
		{phaseMarkers, g.markers}, {phaseObjects, g.objects},
	}
	for i := slices.IndexFunc(steps, func(s struct {
		phase string
		fn    func(context.Context) (bool, error)
	}) bool {
		return s.phase == g.st.Phase
	}); i >= 0 && i < len(steps); i++ {
		done, err := steps[i].fn(ctx)
		g.flush(ctx)
		if err != nil || !done {
			g.r.More = true
			if serr := g.save(ctx); serr != nil {
				err = errors.Join(err, serr)
			}
			return err
		}
		if i+1 < len(steps) {
			g.st.Phase, g.st.Index = steps[i+1].phase, 0
		}
	}
	g.finish(ctx)
	return nil
}

// scan reads the whole metadata store (Collector.Scan pages).
func (g *gc) scan(ctx context.Context) (bool, error) {
	st := g.st
	for {
		if !g.budget(ctx) {
			return false, nil
		}
		entries, next, err := g.col.Scan(ctx, st.Cursor, g.p.d.ScanPage)
		if err != nil {
			return false, fmt.Errorf("scan: %w", err)
		}
		for _, e := range entries {
			g.see(e)
		}
		g.work += max(1, len(entries)/100)
		st.Cursor = next
		if next == "" {
			g.plan()
			return true, nil
		}
	}
}

func (g *gc) image(img storage.Image) *gcImage {
	k := img.String()
	im := g.st.Images[k]
	if im == nil {
		im = &gcImage{Refs: map[digest.Digest]bool{}, Links: map[digest.Digest]gcLink{}}
		g.st.Images[k] = im
	}
	return im
}

func age(created, touched time.Time) time.Time {
	if touched.After(created) {
		return touched.UTC()
	}
	return created.UTC()
}

// see records one scanned item.
func (g *gc) see(e storage.Entry) {
	st := g.st
	g.r.Considered++
	switch e.Kind {
	case storage.EntryManifest:
		im := g.image(e.Image)
		for _, d := range e.Manifest.Blobs {
			im.Refs[d] = true
		}
		if e.Manifest.BodyKey != "" {
			st.Bodies[e.Manifest.BodyKey] = true
		}
	case storage.EntryLink:
		g.image(e.Image).Links[e.Blob.Digest] = gcLink{Key: e.Blob.ObjectKey(), Size: e.Blob.Size, Age: age(e.Blob.Created, e.Blob.Touched)}
	case storage.EntryBlob:
		st.Records[e.Blob.Digest] = gcRec{Key: e.Blob.ObjectKey(), Size: e.Blob.Size, Age: age(e.Blob.Created, e.Blob.Touched)}
	case storage.EntryUpload:
		st.Uploads[e.Upload.ID] = true
	case storage.EntryMarker:
		if strings.HasPrefix(e.Marker.Group, repo.HoldsGroupPrefix) {
			st.Holds[e.Marker.Group] = append(st.Holds[e.Marker.Group], e.Marker.Key)
		}
	}
}

// plan lists the candidates once the scan is complete, in a fixed order
// (a dry run and the real run that follows report the same list).
func (g *gc) plan() {
	st := g.st
	for _, name := range sortedKeys(st.Images) {
		im := st.Images[name]
		for _, d := range sortedKeys(im.Links) {
			if im.Refs[d] {
				continue
			}
			st.LinkCands = append(st.LinkCands, linkCand{Image: name, Digest: d})
		}
	}
}

func sortedKeys[K ~string, V any](m map[K]V) []K {
	ks := make([]K, 0, len(m))
	for k := range m {
		ks = append(ks, k)
	}
	slices.Sort(ks)
	return ks
}

func parseImage(s string) storage.Image {
	repoName, name, _ := strings.Cut(s, "/")
	return storage.Image{Repo: repoName, Name: name}
}

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

// objects lists the bucket's blob, manifest and staging prefixes and
// deletes what no record, manifest or live upload owns, once older than
// the grace period.
func (g *gc) objects(ctx context.Context) (bool, error) {
	st := g.st
	owned := map[string]bool{}
	for _, rec := range st.Records {
		if !st.Gone[rec.Key] {
			owned[rec.Key] = true
		}
	}
	for _, im := range st.Images {
		for _, l := range im.Links {
			owned[l.Key] = true
		}
	}
	var pending map[string]bool // upload ids of pending direct verifications (read once per run)
	for ; st.Prefix < len(gcPrefixes); st.Prefix, st.After = st.Prefix+1, "" {
		prefix := gcPrefixes[st.Prefix]
		for {
			if !g.budget(ctx) {
				return false, nil
			}
			objs, more, err := g.ol.ListObjects(ctx, prefix, st.After, 1000)
			if err != nil {
				return false, fmt.Errorf("list %s: %w", prefix, err)
			}
			g.work += max(1, len(objs)/100)
			var del []string
			var items []Item
			for _, o := range objs {
				st.After = o.Key
				st.Listed[o.Key] = true
				g.r.Considered++
				if owned[o.Key] || st.Bodies[o.Key] || st.Gone[o.Key] {
					continue // owned, or deleted with its record (reported there)
				}
				if !o.Modified.Before(st.Cut) {
					g.r.skip(skipGCYoung)
					continue
				}
				id, isUpload := uploadOf(o.Key)
				if isUpload && st.Uploads[id] {
					g.r.skip(skipInUse)
					continue
				}
				if isUpload {
					if pending == nil {
						if pending, err = g.pendingVerifications(ctx); err != nil {
							return false, err
						}
					}
					inUse, err := g.uploadInUse(ctx, id, o.Key, pending)
					if err != nil {
						g.r.fail("check upload %s: %v", id, err)
						continue
					}
					if inUse {
						g.r.skip(skipInUse)
						continue
					}
				}
				del = append(del, o.Key)
				items = append(items, Item{Kind: kindObject, ID: o.Key, Keys: []string{o.Key}, Bytes: o.Size, Created: o.Modified})
			}
			if len(del) > 0 && !g.dry {
				failed, err := g.ol.DeleteObjects(ctx, del)
				if err != nil {
					g.r.fail("delete %d objects: %v", len(failed), err)
				}
				items = slices.DeleteFunc(items, func(it Item) bool { return slices.Contains(failed, it.ID) })
			}
			for _, it := range items {
				g.r.add(it)
			}
			if !more {
				break
			}
		}
	}
	// Both ways: a record whose object is missing is reported (its bytes
	// are lost; a client's HEAD still says the blob exists until an
	// operator deletes the record).
	for _, d := range sortedKeys(st.Records) {
		rec := st.Records[d]
		if !st.Gone[rec.Key] && !st.Listed[rec.Key] && rec.Age.Before(st.Cut) {
			g.r.fail("blob record %s names object %s, which the bucket does not hold", d, rec.Key)
		}
	}
	return true, nil
}

// uploadOf returns the upload id of an object written by an upload: its
// multipart object (storage.UploadKey) or a staged chunk (storage.UploadPrefix).
func uploadOf(key string) (string, bool) {
	if id, ok := strings.CutPrefix(key, storage.UploadKey("")); ok {
		return id, true
	}
	if rest, ok := strings.CutPrefix(key, "uploads/"); ok {
		id, _, _ := strings.Cut(rest, "/")
		return id, true
	}
	return "", false
}

// uploadInUse tells whether the object of upload id is owned by a writer
// the scan could have missed. Writers hand ownership on in this order: the
// session (UPLOAD#), a pending direct verification, the record (whose
// writer first leaves a repo.UploadedGroup marker); each is created before
// the previous one is removed, so reading them in the same order misses
// none (package doc).
func (g *gc) uploadInUse(ctx context.Context, id, key string, pending map[string]bool) (bool, error) {
	if _, err := g.p.d.Meta.GetUpload(ctx, id); err == nil {
		return true, nil
	} else if !errors.Is(err, storage.ErrNotFound) {
		return false, err
	}
	if pending[id] {
		return true, nil
	}
	if !strings.HasPrefix(key, storage.UploadKey("")) {
		return false, nil // a staged chunk: only a session owns it
	}
	m, err := g.pm.GetMarker(ctx, repo.UploadedGroup, id)
	if errors.Is(err, storage.ErrNotFound) {
		return false, nil
	}
	if err != nil {
		return false, err
	}
	b, err := g.p.d.Meta.GetBlob(ctx, digest.Digest(m.Value))
	if errors.Is(err, storage.ErrNotFound) {
		return false, nil
	}
	if err != nil {
		return false, err
	}
	return b.ObjectKey() == key, nil
}

// pendingVerifications returns the upload ids of direct uploads whose
// verification is pending (one Query of their marker group).
func (g *gc) pendingVerifications(ctx context.Context) (map[string]bool, error) {
	ms, err := g.pm.ListMarkers(ctx, repo.DirectVerifyGroup, 0)
	if err != nil {
		return nil, fmt.Errorf("list pending verifications: %w", err)
	}
	out := map[string]bool{}
	for _, m := range ms {
		var v struct {
			Job struct {
				Upload string `json:"upload"`
			}
		}
		if json.Unmarshal([]byte(m.Value), &v) == nil && v.Job.Upload != "" {
			out[v.Job.Upload] = true
		}
	}
	return out, nil
}

func encodeState(st *gcState) ([]byte, error) {
	var buf bytes.Buffer
	zw := gzip.NewWriter(&buf)
	if err := json.NewEncoder(zw).Encode(st); err != nil {
		return nil, fmt.Errorf("encode the pass state: %w", err)
	}
	if err := zw.Close(); err != nil {
		return nil, err
	}
	return buf.Bytes(), nil
}

func decodeState(b []byte, st *gcState) error {
	zr, err := gzip.NewReader(bytes.NewReader(b))
	if err != nil {
		return fmt.Errorf("decode the pass state: %w", err)
	}
	if err := json.NewDecoder(io.LimitReader(zr, 4<<30)).Decode(st); err != nil {
		return fmt.Errorf("decode the pass state: %w", err)
	}
	for _, m := range []*map[string]bool{&st.Uploads, &st.Bodies, &st.Gone, &st.Listed} {
		if *m == nil {
			*m = map[string]bool{}
		}
	}
	if st.Kept == nil {
		st.Kept = map[digest.Digest]bool{}
	}
	if st.Images == nil {
		st.Images = map[string]*gcImage{}
	}
	if st.Records == nil {
		st.Records = map[digest.Digest]gcRec{}
	}
	if st.Holds == nil {
		st.Holds = map[string][]string{}
	}
	for _, im := range st.Images {
		if im.Refs == nil {
			im.Refs = map[digest.Digest]bool{}
		}
		if im.Links == nil {
			im.Links = map[digest.Digest]gcLink{}
		}
	}
	return nil
}
