package repo_test

import (
	"context"
	"fmt"
	"sync"
	"testing"
	"time"

	digest "github.com/opencontainers/go-digest"

	"github.com/airlock-registry/airlock/shared/config"
	"github.com/airlock-registry/airlock/shared/repo"
	"github.com/airlock-registry/airlock/shared/storage"
	"github.com/airlock-registry/airlock/shared/storage/memstore"
	"github.com/airlock-registry/airlock/shared/upstream/upstreamtest"
)

// countingStore is a memstore that counts the MarkPulled calls reaching it.
type countingStore struct {
	*memstore.Store
	mu    sync.Mutex
	marks []digest.Digest
}

func (s *countingStore) MarkPulled(ctx context.Context, img storage.Image, d digest.Digest) error {
	s.mu.Lock()
	s.marks = append(s.marks, d)
	s.mu.Unlock()
	return s.Store.MarkPulled(ctx, img, d)
}

func (s *countingStore) count() int {
	s.mu.Lock()
	defer s.mu.Unlock()
	return len(s.marks)
}

// TestProxyRecordsPullsOncePerDay: serving a cached manifest records the
// pull (storage.Manifest.Pulled, proxy-evict's clock) only when the last
// recorded pull, or the caching, is more than a day old: pulls by tag and
// by digest the same day write nothing.
func TestProxyRecordsPullsOncePerDay(t *testing.T) {
	up := upstreamtest.New(t)
	im := up.PushImage(t, "library/alpine", "3", 1, 1000)
	cfg, err := config.Parse(fmt.Appendf(nil, "repositories:\n- {name: hub, kind: proxy, remote: %q, metadataMaxAge: 720h}\n", up.URL))
	if err != nil {
		t.Fatal(err)
	}
	var mu sync.Mutex
	now := time.Now()
	clock := func() time.Time { mu.Lock(); defer mu.Unlock(); return now }
	advance := func(d time.Duration) { mu.Lock(); now = now.Add(d); mu.Unlock() }
	st := &countingStore{Store: memstore.New(memstore.WithClock(clock))}
	t.Cleanup(func() { st.Close() })
	set, err := repo.New(t.Context(), cfg, repo.Deps{Meta: st, Blobs: st, Now: clock})
	if err != nil {
		t.Fatal(err)
	}
	hub, _ := set.Get("hub")
	img := storage.Image{Repo: "hub", Name: "library/alpine"}
	dg := digest.Digest(im.Digest)
	pull := func(what string, ref repo.Ref) {
		t.Helper()
		m, err := hub.Manifest(t.Context(), "library/alpine", ref)
		if err != nil || m.Digest != dg {
			t.Fatalf("%s: %v %v, want %s", what, m.Digest, err, dg)
		}
	}
	pulled := func() time.Time {
		t.Helper()
		m, err := st.GetManifest(t.Context(), img, dg)
		if err != nil {
			t.Fatal(err)
		}
		return m.Pulled
	}

	pull("cold pull (caches it)", repo.Ref{Tag: "3"})
	pull("warm pull by tag, same day", repo.Ref{Tag: "3"})
	pull("warm pull by digest, same day", repo.Ref{Digest: dg})
	if n := st.count(); n != 0 || !pulled().IsZero() {
		t.Fatalf("pulls within a day of caching: %d MarkPulled calls (Pulled %v), want none", n, pulled())
	}

	advance(25 * time.Hour)
	pull("pull a day after caching", repo.Ref{Tag: "3"})
	if n := st.count(); n != 1 || !pulled().Equal(clock().Truncate(time.Millisecond)) {
		t.Fatalf("first pull after a day: %d MarkPulled calls, Pulled %v; want 1 and now (%v)", n, pulled(), clock())
	}
	advance(20 * time.Hour)
	pull("by tag, 20 h after the recorded pull", repo.Ref{Tag: "3"})
	pull("by digest, 20 h after the recorded pull", repo.Ref{Digest: dg})
	if n := st.count(); n != 1 {
		t.Fatalf("pulls within a day of the recorded one: %d MarkPulled calls, want still 1", n)
	}
	advance(5 * time.Hour) // 25 h after the recorded pull
	pull("by digest, a day after the recorded pull", repo.Ref{Digest: dg})
	pull("by tag right after", repo.Ref{Tag: "3"})
	if n := st.count(); n != 2 {
		t.Fatalf("a day after the recorded pull: %d MarkPulled calls, want 2", n)
	}
}
