package storagetest

import (
	"slices"
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"

	"github.com/airlock-registry/airlock/shared/storage"
)

// testUploadLister: storage.UploadLister lists exactly the sessions created
// before the cut-off (expired ones too, deleted ones never), oldest first
// across days, with the time of the store's last write of each.
func testUploadLister(t *testing.T, s storage.Metadata) {
	ctx := t.Context()
	ul := implements[storage.UploadLister](t, s, "every store of this module must")
	now := time.Now().UTC().Truncate(time.Millisecond)
	base := now.Add(-48 * time.Hour)
	mk := func(id string, created time.Time, ttl time.Duration) storage.Upload {
		u := newUpload(id, ttl)
		u.Created = created
		must(t, "CreateUpload "+id, s.CreateUpload(ctx, u))
		return u
	}
	before := time.Now()
	old3 := mk("u-72h", now.Add(-72*time.Hour), time.Hour)
	a := mk("u-48h-a", base, time.Hour)
	b := mk("u-48h-b", base, time.Hour)
	mk("u-48h-gone", base.Add(time.Second), time.Hour)
	mk("u-48h-expired", base.Add(2*time.Second), -time.Minute)
	mk("u-new", now, time.Hour)
	after := time.Now()
	must(t, "DeleteUpload", s.DeleteUpload(ctx, "u-48h-gone"))

	ids := func(us []storage.ListedUpload) []string {
		out := []string{}
		for _, u := range us {
			out = append(out, u.ID)
		}
		return out
	}
	cut := now.Add(-24 * time.Hour)
	want := []string{"u-72h", "u-48h-a", "u-48h-b", "u-48h-expired"}
	for round := range 2 { // the second listing is the same (stale index entries went in the first)
		got, err := ul.ListUploads(ctx, cut, 0)
		must(t, "ListUploads", err)
		if !slices.Equal(ids(got), want) {
			t.Fatalf("round %d: ListUploads(now-24h) = %v, want %v", round, ids(got), want)
		}
		for _, lu := range got {
			if lu.Updated.Before(before.Add(-time.Second)) || lu.Updated.After(after.Add(time.Second)) {
				t.Errorf("%s: Updated %v, want the time of CreateUpload (%v..%v)", lu.ID, lu.Updated, before, after)
			}
		}
		if diff := cmp.Diff(old3, got[0].Upload, cmpOpts...); diff != "" {
			t.Errorf("listed %s (-created +listed):\n%s", old3.ID, diff)
		}
		if diff := cmp.Diff(a, got[1].Upload, cmpOpts...); diff != "" {
			t.Errorf("listed %s (-created +listed):\n%s", a.ID, diff)
		}
	}
	got, err := ul.ListUploads(ctx, cut, 2)
	must(t, "ListUploads n=2", err)
	if !slices.Equal(ids(got), want[:2]) {
		t.Errorf("ListUploads(n=2) = %v, want %v", ids(got), want[:2])
	}
	got, err = ul.ListUploads(ctx, base, 0)
	must(t, "ListUploads at a session's creation", err)
	if !slices.Equal(ids(got), []string{"u-72h"}) {
		t.Errorf("ListUploads(base) = %v, want [u-72h] (strictly before)", ids(got))
	}
	got, err = ul.ListUploads(ctx, now.Add(-100*time.Hour), 0)
	must(t, "ListUploads before every session", err)
	if len(got) != 0 || got == nil {
		t.Errorf("ListUploads(now-100h) = %#v, want an empty slice", got)
	}

	// A commit moves Updated and is what the listing returns.
	time.Sleep(20 * time.Millisecond)
	commit := time.Now()
	next := b
	next.Offset = 5
	next.Staged = []storage.Staged{{Key: storage.UploadPrefix(b.ID) + "stage-1", Size: 5}}
	must(t, "CommitUploadAt", s.CommitUploadAt(ctx, next, 0))
	got, err = ul.ListUploads(ctx, cut, 0)
	must(t, "ListUploads after a commit", err)
	if !slices.Equal(ids(got), want) {
		t.Fatalf("ListUploads after a commit = %v, want %v", ids(got), want)
	}
	lb := got[2]
	if lb.Offset != 5 || len(lb.Staged) != 1 || lb.Updated.Before(commit.Add(-time.Second)) {
		t.Errorf("after CommitUploadAt: listed %+v (Updated %v), want offset 5, one staged object, Updated ≥ %v", lb.Upload, lb.Updated, commit)
	}
	if !lb.Updated.After(got[1].Updated) {
		t.Errorf("after CommitUploadAt: Updated %v not after the untouched session's %v", lb.Updated, got[1].Updated)
	}
	if lb.Created.UnixMilli() != base.UnixMilli() {
		t.Errorf("after CommitUploadAt: Created %v, want %v", lb.Created, base)
	}
}
