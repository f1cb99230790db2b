package purge_test

import (
	"context"
	"fmt"
	"slices"
	"testing"
	"time"

	"github.com/airlock-registry/airlock/shared/purge"
	"github.com/airlock-registry/airlock/shared/storage"
)

// Tests of incomplete-uploads' bounded real runs: past kept sessions, and
// the calls of the ordinary run.

// createAt creates a session indexed at created (so the listing's order is
// the test's), idle for the purge's clock.
func createAt(t *testing.T, b backend, id string, created time.Time) storage.Upload {
	t.Helper()
	u := storage.Upload{ID: id, Image: img, HashAlgorithm: "sha256", Created: created, ExpiresAt: time.Now().Add(72 * time.Hour)}
	if err := b.meta.CreateUpload(t.Context(), u); err != nil {
		t.Fatal(err)
	}
	return u
}

// TestIncompleteUploadsKeptFront: with MaxPerRun 2 and 25 leased sessions
// at the front of the listing (more than a run examines, 10 × MaxPerRun),
// consecutive real runs walk past them, within the run and from a
// checkpoint across runs, and delete every idle session behind them, at
// most MaxPerRun per run, in one pass; the pass's end clears the
// checkpoint. (Real runs that listed from the first session every time
// never got past the front.)
func TestIncompleteUploadsKeptFront(t *testing.T) {
	for _, b := range backends(t) {
		t.Run(b.name, func(t *testing.T) {
			ctx := t.Context()
			base := time.Now().Add(-time.Hour).Truncate(time.Millisecond)
			var kept, idle []string
			for i := range 25 {
				u := createAt(t, b, fmt.Sprintf("kept-%02d", i), base.Add(time.Duration(i)*time.Millisecond))
				if _, err := b.meta.AcquireUpload(ctx, u.ID, 0, "someone", time.Now().Add(72*time.Hour)); err != nil {
					t.Fatal(err)
				}
				kept = append(kept, u.ID)
			}
			for i := range 5 {
				u := createAt(t, b, fmt.Sprintf("idle-%d", i), base.Add(time.Duration(100+i)*time.Millisecond))
				idle = append(idle, u.ID)
			}
			const maxPerRun = 2
			p, err := purge.New(purge.Deps{Meta: b.meta, Blobs: b.blobs, Config: cfg, MaxPerRun: maxPerRun, Now: func() time.Time { return time.Now().Add(48 * time.Hour) }})
			if err != nil {
				t.Fatal(err)
			}
			var deleted []string
			pass, checkpointed := "", false
			for runs, more := 0, true; more; runs++ {
				if runs == 10 {
					t.Fatalf("still more after %d real runs; deleted %v, want %v", runs, deleted, idle)
				}
				r, err := p.Run(ctx, purge.TaskIncompleteUploads, false)
				if err != nil || len(r.Errors) != 0 {
					t.Fatalf("real run %d: %v %v", runs, err, r.Errors)
				}
				if r.Count > maxPerRun || r.Considered > 10*maxPerRun {
					t.Errorf("real run %d: %d deleted, %d considered; want at most %d and %d", runs, r.Count, r.Considered, maxPerRun, 10*maxPerRun)
				}
				if runs == 0 && (r.Considered != 10*maxPerRun || r.Skipped["leased"] != r.Considered || !r.More) {
					t.Errorf("first run: %+v; want it to examine %d kept sessions, past MaxPerRun, and stop on its bound", r, 10*maxPerRun)
				}
				if pass != "" && r.Pass != pass {
					t.Errorf("real run %d: pass %q, want the first run's %q continued", runs, r.Pass, pass)
				}
				pass, more = r.Pass, r.More
				m, err := b.meta.GetMarker(ctx, "purge", purge.TaskIncompleteUploads)
				switch {
				case err == nil:
					checkpointed = true
					if !more {
						t.Errorf("real run %d ended the pass and left its checkpoint %+v", runs, m)
					}
				case more && runs == 0:
					t.Errorf("the first run stopped behind 20 kept sessions with no checkpoint: %v", err)
				}
				for _, it := range fullList(t, b.blobs, r) {
					deleted = append(deleted, it.ID)
				}
			}
			if !slices.Equal(deleted, idle) || !checkpointed {
				t.Errorf("real runs deleted %v (checkpoint used: %v), want %v, continued from a checkpoint", deleted, checkpointed, idle)
			}
			for _, id := range kept {
				if _, err := b.meta.GetUpload(ctx, id); err != nil {
					t.Errorf("kept session %s: %v", id, err)
				}
			}
			for _, id := range idle {
				if _, err := b.meta.GetUpload(ctx, id); err == nil {
					t.Errorf("idle session %s still there", id)
				}
			}
		})
	}
}

// countingMeta counts the store calls incomplete-uploads makes to list
// sessions and to read and write markers.
type countingMeta struct {
	meta
	n map[string]int
}

func (m countingMeta) ListUploads(ctx context.Context, olderThan time.Time, after string, n int) ([]storage.ListedUpload, error) {
	m.n["ListUploads"]++
	return m.meta.ListUploads(ctx, olderThan, after, n)
}

func (m countingMeta) ListMarkers(ctx context.Context, group string, n int) ([]storage.Marker, error) {
	m.n["ListMarkers"]++
	return m.meta.ListMarkers(ctx, group, n)
}

func (m countingMeta) GetMarker(ctx context.Context, group, key string) (storage.Marker, error) {
	m.n["GetMarker"]++
	return m.meta.GetMarker(ctx, group, key)
}

func (m countingMeta) PutMarker(ctx context.Context, mk storage.Marker) error {
	m.n["PutMarker"]++
	return m.meta.PutMarker(ctx, mk)
}

func (m countingMeta) DeleteMarker(ctx context.Context, group, key string) error {
	m.n["DeleteMarker"]++
	return m.meta.DeleteMarker(ctx, group, key)
}

// TestIncompleteUploadsOrdinaryCalls: the ordinary real run (a few
// sessions, one listing page) lists the parked fills and the sessions once
// each and reads or writes no checkpoint; a dry run reads its checkpoint
// as well.
func TestIncompleteUploadsOrdinaryCalls(t *testing.T) {
	for _, b := range backends(t) {
		t.Run(b.name, func(t *testing.T) {
			ctx := t.Context()
			for i := range 3 {
				open(t, b, fmt.Sprintf("idle-%d", i), 72*time.Hour)
			}
			leased := open(t, b, "leased", 72*time.Hour)
			if _, err := b.meta.AcquireUpload(ctx, leased.ID, 0, "someone", time.Now().Add(72*time.Hour)); err != nil {
				t.Fatal(err)
			}
			cm := countingMeta{meta: b.meta, n: map[string]int{}}
			p := purger(t, cm, b.blobs)
			for _, c := range []struct {
				dry     bool
				deleted int
				want    map[string]int
			}{
				{true, 3, map[string]int{"ListMarkers": 1, "GetMarker": 1, "ListUploads": 1}},
				{false, 3, map[string]int{"ListMarkers": 1, "ListUploads": 1}},
				{false, 0, map[string]int{"ListMarkers": 1, "ListUploads": 1}},
			} {
				clear(cm.n)
				r, err := p.Run(ctx, purge.TaskIncompleteUploads, c.dry)
				if err != nil || len(r.Errors) != 0 || r.Count != c.deleted || r.More {
					t.Fatalf("dry %v: %+v, %v; want %d deleted in one run", c.dry, r, err, c.deleted)
				}
				if fmt.Sprint(cm.n) != fmt.Sprint(c.want) {
					t.Errorf("dry %v: calls %v, want %v", c.dry, cm.n, c.want)
				}
			}
		})
	}
}
