package storagetest

import (
	"errors"
	"fmt"
	"sync"
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"
	digest "github.com/opencontainers/go-digest"

	"github.com/airlock-registry/airlock/shared/storage"
)

// racers is the number of goroutines in each race test.
const racers = 12

// newUpload returns a fresh session expiring in ttl (to the second: the
// DynamoDB TTL attribute holds seconds).
func newUpload(id string, ttl time.Duration) storage.Upload {
	return storage.Upload{
		ID:            id,
		Image:         imgA,
		HashAlgorithm: "sha256",
		HashState:     []byte{0, 1, 2, 0xff},
		Created:       created,
		ExpiresAt:     time.Now().Add(ttl).Truncate(time.Second).UTC(),
	}
}

func testUpload(t *testing.T, s storage.Metadata) {
	ctx := t.Context()
	_, err := s.GetUpload(ctx, "missing")
	wantErr(t, "GetUpload of a missing session", err, storage.ErrNotFound)

	u := newUpload("u1", time.Hour)
	must(t, "CreateUpload", s.CreateUpload(ctx, u))
	got, err := s.GetUpload(ctx, u.ID)
	must(t, "GetUpload", err)
	if diff := cmp.Diff(u, got, cmpOpts...); diff != "" {
		t.Fatalf("GetUpload (-want +got):\n%s", diff)
	}
	must(t, "DeleteUpload", s.DeleteUpload(ctx, u.ID))
	_, err = s.GetUpload(ctx, u.ID)
	wantErr(t, "GetUpload after DeleteUpload", err, storage.ErrNotFound)
	must(t, "DeleteUpload twice", s.DeleteUpload(ctx, u.ID))
}

// testUploadExpired: emulators (and real TTL, lazily) keep expired items, so
// the store itself must hide them.
func testUploadExpired(t *testing.T, s storage.Metadata) {
	ctx := t.Context()
	u := newUpload("expired", -time.Minute)
	must(t, "CreateUpload expired", s.CreateUpload(ctx, u))
	_, err := s.GetUpload(ctx, u.ID)
	wantErr(t, "GetUpload of an expired session", err, storage.ErrNotFound)
	_, err = s.AcquireUpload(ctx, u.ID, 0, "lease", time.Now().Add(time.Minute))
	wantErr(t, "AcquireUpload of an expired session", err, storage.ErrNotFound)
	_, err = s.AcquireUpload(ctx, "missing", 0, "lease", time.Now().Add(time.Minute))
	wantErr(t, "AcquireUpload of a missing session", err, storage.ErrNotFound)
}

func testAcquireCommit(t *testing.T, s storage.Metadata) {
	ctx := t.Context()
	u := newUpload("u2", time.Hour)
	must(t, "CreateUpload", s.CreateUpload(ctx, u))
	until := time.Now().Add(time.Minute)

	_, err := s.AcquireUpload(ctx, u.ID, 7, "l1", until)
	wantErr(t, "AcquireUpload at a wrong offset", err, storage.ErrConflict)
	held, err := s.AcquireUpload(ctx, u.ID, 0, "l1", until)
	must(t, "AcquireUpload", err)
	if held.Lease != "l1" || held.LeaseUntil.Sub(until).Abs() > time.Second || held.ID != u.ID || held.Image != u.Image || held.Offset != 0 {
		t.Fatalf("AcquireUpload returned %+v, want lease l1 until %v", held, until)
	}
	_, err = s.AcquireUpload(ctx, u.ID, 0, "l2", until)
	wantErr(t, "AcquireUpload while another lease is live", err, storage.ErrConflict)

	next := held
	next.Offset = 6 << 20
	next.MultipartID = "mpu-1"
	next.Parts = []storage.Part{{Number: 1, ETag: `"etag-1"`, Size: 5 << 20}}
	next.Staged = []storage.Staged{{Key: storage.UploadPrefix(u.ID) + "s1", Size: 1 << 20}}
	next.HashState = []byte("state after 6 MiB")
	stolen := next
	stolen.Lease = "l2"
	wantErr(t, "CommitUpload without the lease", s.CommitUpload(ctx, stolen), storage.ErrConflict)
	must(t, "CommitUpload", s.CommitUpload(ctx, next))

	got, err := s.GetUpload(ctx, u.ID)
	must(t, "GetUpload after CommitUpload", err)
	want := next
	want.Lease, want.LeaseUntil = "", time.Time{}
	if diff := cmp.Diff(want, got, cmpOpts...); diff != "" {
		t.Fatalf("GetUpload after CommitUpload (-want +got):\n%s", diff)
	}
	wantErr(t, "CommitUpload after the lease was released", s.CommitUpload(ctx, next), storage.ErrConflict)
	_, err = s.AcquireUpload(ctx, u.ID, 0, "l3", until)
	wantErr(t, "AcquireUpload at the old offset", err, storage.ErrConflict)
	held, err = s.AcquireUpload(ctx, u.ID, next.Offset, "l3", until)
	must(t, "AcquireUpload at the new offset", err)
	if diff := cmp.Diff(next.Parts, held.Parts); diff != "" || held.Lease != "l3" || held.MultipartID != "mpu-1" {
		t.Fatalf("AcquireUpload at the new offset returned %+v (parts -want +got):\n%s", held, diff)
	}
	must(t, "DeleteUpload with a lease held", s.DeleteUpload(ctx, u.ID))
	wantErr(t, "CommitUpload after DeleteUpload", s.CommitUpload(ctx, held), storage.ErrConflict)
	_, err = s.GetUpload(ctx, u.ID)
	wantErr(t, "GetUpload after CommitUpload of a deleted session", err, storage.ErrNotFound)
}

// testCommitAt: an optimistic commit succeeds only at the offset it read,
// with no live lease, on a live session.
func testCommitAt(t *testing.T, s storage.Metadata) {
	ctx := t.Context()
	u := newUpload("u-at", time.Hour)
	must(t, "CreateUpload", s.CreateUpload(ctx, u))
	read, err := s.GetUpload(ctx, u.ID)
	must(t, "GetUpload", err)
	a, b := read, read // two writers that read the same state
	a.Offset, a.Staged, a.HashState = 300, []storage.Staged{{Key: storage.UploadPrefix(u.ID) + "a", Size: 300}}, []byte("a")
	b.Offset, b.Staged, b.HashState = 200, []storage.Staged{{Key: storage.UploadPrefix(u.ID) + "b", Size: 200}}, []byte("b")
	must(t, "CommitUploadAt", s.CommitUploadAt(ctx, a, 0))
	wantErr(t, "CommitUploadAt of a writer that read the old offset", s.CommitUploadAt(ctx, b, 0), storage.ErrConflict)
	got, err := s.GetUpload(ctx, u.ID)
	must(t, "GetUpload after CommitUploadAt", err)
	if diff := cmp.Diff(a, got, cmpOpts...); diff != "" {
		t.Fatalf("GetUpload after CommitUploadAt (-want +got):\n%s", diff)
	}
	// A live lease (a streamed or part-making writer) blocks it.
	held, err := s.AcquireUpload(ctx, u.ID, 300, "l1", time.Now().Add(time.Minute))
	must(t, "AcquireUpload", err)
	c := got
	c.Offset = 400
	wantErr(t, "CommitUploadAt while a lease is live", s.CommitUploadAt(ctx, c, 300), storage.ErrConflict)
	must(t, "CommitUpload by the lease holder", s.CommitUpload(ctx, held))
	must(t, "CommitUploadAt after the lease was released", s.CommitUploadAt(ctx, c, 300))
	// An expired lease does not block it.
	_, err = s.AcquireUpload(ctx, u.ID, 400, "crashed", time.Now().Add(-time.Second))
	must(t, "AcquireUpload with an expired lease", err)
	c.Offset = 500
	must(t, "CommitUploadAt over an expired lease", s.CommitUploadAt(ctx, c, 400))
	// A deleted or expired session is a conflict, and is not re-created.
	must(t, "DeleteUpload", s.DeleteUpload(ctx, u.ID))
	c.Offset = 600
	wantErr(t, "CommitUploadAt of a deleted session", s.CommitUploadAt(ctx, c, 500), storage.ErrConflict)
	_, err = s.GetUpload(ctx, u.ID)
	wantErr(t, "GetUpload after CommitUploadAt of a deleted session", err, storage.ErrNotFound)
	e := newUpload("u-at-expired", time.Hour)
	must(t, "CreateUpload", s.CreateUpload(ctx, e))
	e.ExpiresAt = time.Now().Add(-time.Minute)
	ex := e
	must(t, "CommitUploadAt (making the session expired)", s.CommitUploadAt(ctx, ex, 0))
	ex.ExpiresAt = time.Now().Add(time.Hour)
	wantErr(t, "CommitUploadAt of an expired session", s.CommitUploadAt(ctx, ex, 0), storage.ErrConflict)
}

// testAcquireExpiredLease: a crashed writer's lease stops blocking the session
// once it expires, and the crashed writer can then no longer commit.
func testAcquireExpiredLease(t *testing.T, s storage.Metadata) {
	ctx := t.Context()
	u := newUpload("u3", time.Hour)
	must(t, "CreateUpload", s.CreateUpload(ctx, u))
	crashed, err := s.AcquireUpload(ctx, u.ID, 0, "crashed", time.Now().Add(-time.Second))
	must(t, "AcquireUpload with a lease already expired", err)
	held, err := s.AcquireUpload(ctx, u.ID, 0, "next", time.Now().Add(time.Minute))
	must(t, "AcquireUpload over an expired lease", err)
	crashed.Offset = 10
	wantErr(t, "CommitUpload by the expired lease holder", s.CommitUpload(ctx, crashed), storage.ErrConflict)
	held.Offset = 20
	must(t, "CommitUpload by the new holder", s.CommitUpload(ctx, held))
	got, err := s.GetUpload(ctx, u.ID)
	must(t, "GetUpload", err)
	if got.Offset != 20 || got.Lease != "" {
		t.Fatalf("GetUpload = offset %d lease %q, want 20 and no lease", got.Offset, got.Lease)
	}
}

// race runs fn(i) for i in [0, racers) at once and returns their errors.
func race(fn func(i int) error) []error {
	errs := make([]error, racers)
	start := make(chan struct{})
	var wg sync.WaitGroup
	for i := range racers {
		wg.Go(func() {
			<-start
			errs[i] = fn(i)
		})
	}
	close(start)
	wg.Wait()
	return errs
}

// winner checks that exactly one error is nil and all others are ErrConflict,
// and returns the index of the nil one.
func winner(t *testing.T, what string, errs []error) int {
	t.Helper()
	win := -1
	for i, err := range errs {
		switch {
		case err == nil && win >= 0:
			t.Fatalf("%s: racers %d and %d both won", what, win, i)
		case err == nil:
			win = i
		case !errors.Is(err, storage.ErrConflict):
			t.Fatalf("%s: racer %d: %v, want ErrConflict", what, i, err)
		}
	}
	if win < 0 {
		t.Fatalf("%s: no racer won", what)
	}
	return win
}

func testRaceAcquire(t *testing.T, s storage.Metadata) {
	ctx := t.Context()
	for round := range 3 {
		u := newUpload(fmt.Sprint("race-", round), time.Hour)
		must(t, "CreateUpload", s.CreateUpload(ctx, u))
		got := make([]storage.Upload, racers)
		errs := race(func(i int) error {
			var err error
			got[i], err = s.AcquireUpload(ctx, u.ID, 0, fmt.Sprint("lease-", i), time.Now().Add(time.Minute))
			return err
		})
		win := winner(t, "concurrent AcquireUpload", errs)
		if got[win].Lease != fmt.Sprint("lease-", win) {
			t.Fatalf("winner %d got lease %q", win, got[win].Lease)
		}
		stored, err := s.GetUpload(ctx, u.ID)
		must(t, "GetUpload", err)
		if stored.Lease != got[win].Lease {
			t.Fatalf("stored lease %q, want the winner's %q", stored.Lease, got[win].Lease)
		}
		// Every loser's commit fails; the winner's succeeds.
		errs = race(func(i int) error {
			next := got[win]
			next.Lease = fmt.Sprint("lease-", i)
			next.Offset = int64(i + 1)
			return s.CommitUpload(ctx, next)
		})
		if w := winner(t, "concurrent CommitUpload", errs); w != win {
			t.Fatalf("CommitUpload won by racer %d, want the lease holder %d", w, win)
		}
		stored, err = s.GetUpload(ctx, u.ID)
		must(t, "GetUpload after commit", err)
		if stored.Offset != int64(win+1) || stored.Lease != "" {
			t.Fatalf("after commit: offset %d lease %q, want %d and none", stored.Offset, stored.Lease, win+1)
		}
	}
}

func testRaceTagCreateOnly(t *testing.T, s storage.Metadata) {
	ctx := t.Context()
	for round := range 3 {
		tag := fmt.Sprint("v", round)
		ds := make([]digest.Digest, racers)
		for i := range ds {
			ds[i] = dg(fmt.Sprint(tag, "-", i))
		}
		errs := race(func(i int) error {
			return s.PutTag(ctx, imgA, tag, ds[i], storage.TagCreateOnly)
		})
		win := winner(t, "concurrent PutTag create-only", errs)
		got, err := s.ResolveTag(ctx, imgA, tag)
		must(t, "ResolveTag", err)
		if got != ds[win] {
			t.Fatalf("tag %s = %s, want the winner's %s", tag, got, ds[win])
		}
	}
}
