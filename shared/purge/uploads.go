package purge

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
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
	cutoff := now.Add(-p.d.Config.IncompleteUploadsAge())
	// A real run starts from the first session (its deletes are its
	// progress); a dry pass continues after its checkpoint.
	var dry *dryUploads
	after := ""
	if r.DryRun {
		dry = loadDryUploads(ctx, p, r)
		after = dry.cp.Last
	}
	list, err := ul.ListUploads(ctx, cutoff, after, p.d.MaxPerRun+1)
	if dry != nil && errors.Is(err, storage.ErrBadCursor) {
		// Not a cursor this store returns (another store's, or damaged):
		// start the dry pass over, and say so.
		r.fail("dry checkpoint %q not continued (%v): starting a new pass", after, err)
		after, dry.cp = "", walkCheckpoint{Pass: newPass(p, true)}
		r.Pass = dry.cp.Pass
		list, err = ul.ListUploads(ctx, cutoff, after, p.d.MaxPerRun+1)
	}
	if err != nil {
		return err
	}
	if len(list) > p.d.MaxPerRun {
		list, r.More = list[:p.d.MaxPerRun], true
	}
	if dry != nil {
		defer func() { dry.end(ctx, r) }()
	}
	lease := newLease()
	for _, lu := range list {
		if err := ctx.Err(); err != nil {
			r.More = true
			return err
		}
		if dry != nil {
			dry.cp.Last = lu.Cursor
		}
		r.Considered++
		u := lu.Upload
		switch {
		case parked[u.ID]:
			r.skip(skipParked)
			continue
		case !lu.Updated.Before(cutoff):
			r.skip(skipActive)
			continue
		case u.Lease != "" && u.LeaseUntil.After(now):
			r.skip(skipLeased)
			continue
		}
		if r.DryRun {
			r.add(describe(lu))
			continue
		}
		held, reason, err := claim(ctx, p, u, lease)
		if err != nil {
			r.fail("claim upload %s: %v", u.ID, err)
			continue
		}
		if reason != "" {
			r.skip(reason)
			continue
		}
		if err := p.d.Blobs.Abort(ctx, &held); err != nil {
			r.fail("abort upload %s: %v", u.ID, err) // the claim expires; the next run retries
			continue
		}
		if err := p.d.Meta.DeleteUpload(ctx, u.ID); err != nil {
			r.fail("delete upload %s: %v", u.ID, err)
			continue
		}
		r.add(describe(storage.ListedUpload{Upload: held, Updated: lu.Updated}))
	}
	return nil
}

// dryUploads is a dry pass of incomplete-uploads: its checkpoint marker
// (the task's name and drySuffix; value {"pass","last"}, last the
// storage.ListedUpload.Cursor of the last session considered) and whether
// one exists.
type dryUploads struct {
	p      *Purger
	cp     walkCheckpoint
	stored bool
}

// loadDryUploads continues the dry pass the checkpoint names, or starts one.
func loadDryUploads(ctx context.Context, p *Purger, r *Report) *dryUploads {
	d := &dryUploads{p: p}
	if v := loadCheckpoint(ctx, p, checkpointKey(r)); v != "" {
		d.stored = true
		if err := json.Unmarshal([]byte(v), &d.cp); err != nil || d.cp.Pass == "" {
			r.fail("dry checkpoint %q not continued (want {\"pass\", \"last\"}): starting a new pass", v)
			d.cp = walkCheckpoint{}
		}
	}
	if d.cp.Pass == "" {
		d.cp.Pass = newPass(p, true)
	}
	r.Pass = d.cp.Pass
	return d
}

// end records where the dry run stopped (More: the next run continues
// after the last session considered) or ends the pass.
func (d *dryUploads) end(ctx context.Context, r *Report) {
	switch {
	case r.More && d.cp.Last != "":
		b, _ := json.Marshal(d.cp) // two strings always encode
		if err := saveCheckpoint(ctx, d.p, checkpointKey(r), string(b)); err != nil {
			r.fail("%v", err)
		}
	case !r.More && d.stored:
		if err := clearCheckpoint(ctx, d.p, checkpointKey(r)); err != nil {
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
