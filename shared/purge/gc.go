package purge

import (
	"context"
	"errors"
	"fmt"
	"slices"
	"time"

	digest "github.com/opencontainers/go-digest"

	"github.com/airlock-registry/airlock/shared/storage"
)

// blob-gc: its constants, the pass state and its saving, the run loop
// over the phases (scan: gc_scan.go; deletes: gc_sweep.go; the bucket:
// gc_reconcile.go; the saved state's format: gc_state.go).

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
