package purge

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"math"
	"time"

	"github.com/airlock-registry/airlock/shared/repo"
	"github.com/airlock-registry/airlock/shared/storage"
)

// TaskIncompleteUploads removes upload sessions idle past
// purge.incompleteUploadsAfter (package doc).
const TaskIncompleteUploads = "incomplete-uploads"

// claimTTL is how long the purge's claim (lease) on a session lasts: the
// abort and delete take a few calls.
const claimTTL = 5 * time.Minute

// Skip reasons of incomplete-uploads.
const (
	skipActive = "active"      // written within the threshold
	skipLeased = "leased"      // a writer holds a live lease
	skipParked = "parked-fill" // a parked proxy fill (its pending marker exists)
	skipBusy   = "busy"        // a writer won the race for the session
	skipGone   = "gone"        // completed or cancelled meanwhile
)

// uploadsExamined bounds the sessions one run of incomplete-uploads
// examines to uploadsExamined × MaxPerRun (it deletes at most MaxPerRun):
// a kept session costs its share of a listing page, not a claim, so a run
// walks past many of them within the Lambda's deadline.
const uploadsExamined = 10

func incompleteUploads(ctx context.Context, p *Purger, r *Report) error {
	ul, ok := p.d.Meta.(storage.UploadLister)
	if !ok {
		return fmt.Errorf("%T cannot list upload sessions (storage.UploadLister)", p.d.Meta)
	}
	parked, err := parkedUploads(ctx, p.d.Meta)
	if err != nil {
		return err
	}
	now := p.d.Now()
	w := &uploadWalk{p: p, r: r, ul: ul, cutoff: now.Add(-p.d.Config.IncompleteUploadsAge())}
	w.maxSeen = p.d.MaxPerRun * uploadsExamined
	if p.d.MaxPerRun > math.MaxInt/uploadsExamined {
		w.maxSeen = math.MaxInt
	}
	// A dry run continues its pass after its checkpoint. A real run lists
	// from the first session (what it deleted is not listed again) and
	// looks for its checkpoint only when that first page is full: a run of
	// the ordinary case (one page) reads and writes no checkpoint.
	var list []storage.ListedUpload
	listed := false // list is the next page
	n := w.page()
	if r.DryRun {
		w.load(ctx)
	} else {
		if list, err = ul.ListUploads(ctx, w.cutoff, "", n); err != nil {
			return err
		}
		listed = true
		if len(list) == n {
			w.load(ctx)
			listed = w.cp.Last == "" // else continue the pass after its checkpoint
		}
	}
	if w.cp.Pass == "" {
		w.cp.Pass = newPass(p, r.DryRun)
	}
	r.Pass = w.cp.Pass
	defer func() { w.end(ctx) }()
	lease := newLease()
	for {
		if !listed {
			n = w.page()
			if list, err = w.list(ctx, n); err != nil {
				r.More = w.cp.Last != "" // stopped within the pass
				return err
			}
		}
		for _, lu := range list {
			if w.candidates == p.d.MaxPerRun || r.Considered == w.maxSeen {
				r.More = true
				return nil
			}
			if err := ctx.Err(); err != nil {
				r.More = true
				return err
			}
			w.cp.Last = lu.Cursor
			r.Considered++
			if !w.visit(ctx, lu, parked, now, lease) {
				w.behind = true
			}
		}
		if len(list) < n {
			return nil // the end of the listing: the pass is done
		}
		listed = false
	}
}

// uploadWalk is one run of incomplete-uploads: where it is in the listing
// and its checkpoint marker (the task's name, drySuffix after it for a dry
// pass; value {"pass","last"}, last the storage.ListedUpload.Cursor of the
// last session considered).
type uploadWalk struct {
	p      *Purger
	r      *Report
	ul     storage.UploadLister
	cutoff time.Time
	// maxSeen bounds the sessions examined (Report.Considered).
	maxSeen int
	cp      walkCheckpoint
	stored  bool // a checkpoint exists
	// candidates counts the sessions the run would delete (dry) or tried
	// to delete (real); at most MaxPerRun.
	candidates int
	// behind: a session the run considered is still there (kept, busy,
	// failed), so its deletes alone are not its progress.
	behind bool
}

// page is the size of the next listing page: enough to reach either bound,
// and one more to tell whether sessions follow.
func (w *uploadWalk) page() int {
	return min(w.p.d.MaxPerRun-w.candidates, w.maxSeen-w.r.Considered) + 1
}

// load reads the checkpoint: the pass to continue and its place.
func (w *uploadWalk) load(ctx context.Context) {
	v := loadCheckpoint(ctx, w.p, checkpointKey(w.r))
	if v == "" {
		return
	}
	w.stored = true
	if err := json.Unmarshal([]byte(v), &w.cp); err != nil || w.cp.Pass == "" {
		w.r.fail("%s checkpoint %q not continued (want {\"pass\", \"last\"}): starting a new pass", checkpointKey(w.r), v)
		w.cp = walkCheckpoint{}
	}
}

// list returns the next n sessions after the walk's place. A place the
// store rejects (not a cursor it returns: another store's, or damaged)
// starts the pass over, and the report says so.
func (w *uploadWalk) list(ctx context.Context, n int) ([]storage.ListedUpload, error) {
	after := w.cp.Last
	list, err := w.ul.ListUploads(ctx, w.cutoff, after, n)
	if after != "" && errors.Is(err, storage.ErrBadCursor) {
		w.r.fail("%s checkpoint %q not continued (%v): starting a new pass", checkpointKey(w.r), after, err)
		w.cp = walkCheckpoint{Pass: newPass(w.p, w.r.DryRun)}
		w.r.Pass = w.cp.Pass
		list, err = w.ul.ListUploads(ctx, w.cutoff, "", n)
	}
	return list, err
}

// visit decides on one listed session and, in a real run, deletes it;
// it reports whether the session is gone (deleted, dry: would be).
func (w *uploadWalk) visit(ctx context.Context, lu storage.ListedUpload, parked map[string]bool, now time.Time, lease string) bool {
	r, p := w.r, w.p
	u := lu.Upload
	switch {
	case parked[u.ID]:
		r.skip(skipParked)
		return false
	case !lu.Updated.Before(w.cutoff):
		r.skip(skipActive)
		return false
	case u.Lease != "" && u.LeaseUntil.After(now):
		r.skip(skipLeased)
		return false
	}
	w.candidates++
	if r.DryRun {
		r.add(describe(lu))
		return true
	}
	held, reason, err := claim(ctx, p, u, lease)
	if err != nil {
		r.fail("claim upload %s: %v", u.ID, err)
		return false
	}
	if reason != "" {
		r.skip(reason)
		return reason == skipGone
	}
	if err := p.d.Blobs.Abort(ctx, &held); err != nil {
		r.fail("abort upload %s: %v", u.ID, err) // the claim expires; a later run retries
		return false
	}
	if err := p.d.Meta.DeleteUpload(ctx, u.ID); err != nil {
		r.fail("delete upload %s: %v", u.ID, err)
		return false
	}
	r.add(describe(storage.ListedUpload{Upload: held, Updated: lu.Updated}))
	return true
}

// end records where the run stopped or ends the pass. A run that stopped
// with sessions left (More) saves its place, except a real run that left
// nothing behind it: the sessions it considered are gone, so the next
// listing from the first (or from the checkpoint it continued) starts
// where this run stopped anyway. A run that reached the end of the listing
// clears the checkpoint it read.
func (w *uploadWalk) end(ctx context.Context) {
	r := w.r
	switch {
	case r.More && w.cp.Last != "" && (r.DryRun || w.behind):
		b, _ := json.Marshal(w.cp) // two strings always encode
		if err := saveCheckpoint(ctx, w.p, checkpointKey(r), string(b)); err != nil {
			r.fail("%v", err)
		}
	case !r.More && w.stored:
		if err := clearCheckpoint(ctx, w.p, checkpointKey(r)); err != nil {
			r.fail("%v", err)
		}
	}
}

// claim takes the session from writers (package doc, race safety) and
// returns it as stored, or the reason to skip it.
func claim(ctx context.Context, p *Purger, u storage.Upload, lease string) (storage.Upload, string, error) {
	now := p.d.Now()
	if !u.ExpiresAt.After(now) {
		return u, "", nil // expired: nobody can write it any more
	}
	held, err := p.d.Meta.AcquireUpload(ctx, u.ID, u.Offset, lease, now.Add(claimTTL))
	switch {
	case errors.Is(err, storage.ErrConflict):
		return u, skipBusy, nil
	case errors.Is(err, storage.ErrNotFound):
		if !u.ExpiresAt.After(p.d.Now()) {
			return u, "", nil // expired in between
		}
		return u, skipGone, nil
	case err != nil:
		return u, "", err
	}
	if !held.ExpiresAt.Equal(u.ExpiresAt) || held.MultipartID != u.MultipartID || len(held.Parts) != len(u.Parts) || len(held.Staged) != len(u.Staged) {
		// A commit at the same offset (an empty PATCH) in between: it is
		// in use. Give it back.
		if err := p.d.Meta.CommitUpload(ctx, held); err != nil {
			return u, "", fmt.Errorf("release: %w", err)
		}
		return u, skipBusy, nil
	}
	return held, "", nil
}

// parkedUploads returns the ids of the sessions of parked proxy fills.
func parkedUploads(ctx context.Context, meta storage.Metadata) (map[string]bool, error) {
	pm, ok := meta.(storage.ProxyMetadata)
	if !ok {
		return nil, fmt.Errorf("%T has no markers (storage.ProxyMetadata): cannot tell parked proxy fills", meta)
	}
	ms, err := pm.ListMarkers(ctx, repo.PendingFillsGroup, 0)
	if err != nil {
		return nil, fmt.Errorf("list parked proxy fills: %w", err)
	}
	out := map[string]bool{}
	for _, m := range ms {
		var job repo.FillJob
		if err := json.Unmarshal([]byte(m.Value), &job); err != nil {
			return nil, fmt.Errorf("parked proxy fill %s: decode: %w", m.Key, err)
		}
		if job.UploadID != "" {
			out[job.UploadID] = true
		}
	}
	return out, nil
}

// describe returns the report item of a session: its S3 keys and stored bytes.
func describe(lu storage.ListedUpload) Item {
	u := lu.Upload
	it := Item{ID: u.ID, Image: u.Image.String(), Created: u.Created, Updated: lu.Updated}
	if u.MultipartID != "" {
		it.Keys = append(it.Keys, "multipart "+storage.UploadKey(u.ID)+" "+u.MultipartID)
	}
	for _, pt := range u.Parts {
		it.Bytes += pt.Size
	}
	for _, st := range u.Staged {
		it.Keys = append(it.Keys, st.Key)
		it.Bytes += st.Size
	}
	return it
}
