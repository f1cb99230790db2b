package storagetest

import (
	"errors"
	"fmt"
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
		got, err := ul.ListUploads(ctx, cut, "", 0)
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
	got, err := ul.ListUploads(ctx, cut, "", 2)
	must(t, "ListUploads n=2", err)
	if !slices.Equal(ids(got), want[:2]) {
		t.Errorf("ListUploads(n=2) = %v, want %v", ids(got), want[:2])
	}
	got, err = ul.ListUploads(ctx, base, "", 0)
	must(t, "ListUploads at a session's creation", err)
	if !slices.Equal(ids(got), []string{"u-72h"}) {
		t.Errorf("ListUploads(base) = %v, want [u-72h] (strictly before)", ids(got))
	}
	got, err = ul.ListUploads(ctx, now.Add(-100*time.Hour), "", 0)
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
	got, err = ul.ListUploads(ctx, cut, "", 0)
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

// testUploadListerCursor: paging ListUploads with the last listed Cursor
// lists every session once, in order, across days and within one
// millisecond; a cursor is a place (its session deleted, or one no session
// has, the listing goes on after it); a string that is no cursor fails
// with storage.ErrBadCursor.
func testUploadListerCursor(t *testing.T, s storage.Metadata) {
	ctx := t.Context()
	ul := implements[storage.UploadLister](t, s, "every store of this module must")
	now := time.Now().UTC().Truncate(time.Millisecond)
	d2 := now.Add(-48 * time.Hour)
	sessions := []struct {
		id      string
		created time.Time
	}{
		{"c-72h", now.Add(-72 * time.Hour)},
		{"c-48h-b", d2}, {"c-48h-a", d2}, {"c-48h-c", d2}, // one millisecond: ID order
		{"c-48h-later", d2.Add(time.Second)},
		{"c-30h-a", now.Add(-30 * time.Hour)},
		{"c-30h-b", now.Add(-30*time.Hour + time.Millisecond)},
		{"c-new", now}, // after the cut-off
	}
	for _, x := range sessions {
		u := newUpload(x.id, time.Hour)
		u.Created = x.created
		must(t, "CreateUpload "+x.id, s.CreateUpload(ctx, u))
	}
	cut := now.Add(-24 * time.Hour)
	want := []string{"c-72h", "c-48h-a", "c-48h-b", "c-48h-c", "c-48h-later", "c-30h-a", "c-30h-b"}
	all, err := ul.ListUploads(ctx, cut, "", 0)
	must(t, "ListUploads", err)
	if !slices.Equal(uploadIDs(all), want) {
		t.Fatalf("ListUploads = %v, want %v", uploadIDs(all), want)
	}
	cursors := map[string]string{}
	for _, lu := range all {
		if c := storage.UploadCursor(lu.Created, lu.ID); lu.Cursor != c {
			t.Errorf("%s: Cursor %q, want %q (UploadCursor of Created and ID)", lu.ID, lu.Cursor, c)
		}
		cursors[lu.ID] = lu.Cursor
	}
	for _, n := range []int{1, 2, 3} {
		var got []string
		var pages int
		for after := ""; ; pages++ {
			if pages > len(want) {
				t.Fatalf("n=%d: still listing after %d pages: %v", n, pages, got)
			}
			pg, err := ul.ListUploads(ctx, cut, after, n)
			must(t, fmt.Sprintf("ListUploads(after %q, n=%d)", after, n), err)
			if len(pg) > n || pg == nil {
				t.Fatalf("n=%d after %q: %#v, want at most %d sessions, an empty slice at the end", n, after, uploadIDs(pg), n)
			}
			if len(pg) == 0 {
				break
			}
			got = append(got, uploadIDs(pg)...)
			after = pg[len(pg)-1].Cursor
		}
		if !slices.Equal(got, want) || pages != (len(want)+n-1)/n {
			t.Errorf("paged by %d: %v in %d pages, want %v in %d", n, got, pages, want, (len(want)+n-1)/n)
		}
	}
	after := func(what, cursor string, want ...string) {
		t.Helper()
		got, err := ul.ListUploads(ctx, cut, cursor, 0)
		must(t, "ListUploads after "+what, err)
		if !slices.Equal(uploadIDs(got), want) || got == nil {
			t.Errorf("after %s (%q): %#v, want %v", what, cursor, uploadIDs(got), want)
		}
	}
	after("the first", cursors["c-72h"], want[1:]...)
	after("a session of the same millisecond", cursors["c-48h-a"], want[2:]...)
	after("the last", cursors["c-30h-b"])
	after("a place no session has", storage.UploadCursor(d2.Add(500*time.Millisecond), "zzz"), "c-48h-later", "c-30h-a", "c-30h-b")
	after("1970", storage.UploadCursor(time.Unix(0, 0), "a"), want...)
	after("the cut-off", storage.UploadCursor(cut, "a"))
	after("a place past the cut-off", storage.UploadCursor(now.Add(time.Hour), "a"))
	must(t, "DeleteUpload c-48h-b", s.DeleteUpload(ctx, "c-48h-b"))
	after("a deleted session", cursors["c-48h-b"], "c-48h-c", "c-48h-later", "c-30h-a", "c-30h-b")
	after("the session before a deleted one", cursors["c-48h-a"], "c-48h-c", "c-48h-later", "c-30h-a", "c-30h-b")
	for _, bad := range []string{"nope", "#c-72h", "c-72h", "123#c-72h", "12345678901234#c-72h", "abcdefghijklm#c-72h",
		"+000000000001#c-72h", "-000000000001#c-72h", storage.UploadCursor(now, "")} {
		got, err := ul.ListUploads(ctx, cut, bad, 0)
		if !errors.Is(err, storage.ErrBadCursor) || got != nil {
			t.Errorf("ListUploads(after %q) = %v, %v; want no listing and an error wrapping storage.ErrBadCursor", bad, uploadIDs(got), err)
		}
	}
}

func uploadIDs(us []storage.ListedUpload) []string {
	out := []string{}
	for _, u := range us {
		out = append(out, u.ID)
	}
	return out
}
