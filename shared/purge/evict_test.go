package purge_test

import (
	"context"
	"slices"
	"strings"
	"testing"
	"time"

	digest "github.com/opencontainers/go-digest"

	"github.com/airlock-registry/airlock/shared/purge"
	"github.com/airlock-registry/airlock/shared/storage"
)

// markerRacer is a racer that also runs a writer's request just before
// the purge's marker deletes.
type markerRacer struct {
	racer
	onMarker func(group, key string)
}

func (r markerRacer) DeleteMarker(ctx context.Context, group, key string) error {
	if r.onMarker != nil {
		r.onMarker(group, key)
	}
	return r.racer.DeleteMarker(ctx, group, key)
}

func foreignMarker(t *testing.T, s store, img storage.Image, layer string) storage.Marker {
	t.Helper()
	m := storage.Marker{Group: "foreign:" + img.Repo, Key: img.Name + "@" + digest.FromString(layer).String(), Value: `["https://example.com/` + layer + `"]`, Until: time.Now().Add(time.Hour)}
	if err := s.PutMarker(t.Context(), m); err != nil {
		t.Fatal(err)
	}
	return m
}

func hasMarker(t *testing.T, s store, m storage.Marker) bool {
	t.Helper()
	_, err := s.GetMarker(t.Context(), m.Group, m.Key)
	return err == nil
}

// evictFixture stores, in proxy hub: library/alpine, an index (tag 3) and
// two children, the index and one child pulled after the purge's now; in
// library/old one manifest (tag 1) never pulled and two foreign layer
// markers; in library/half one pulled manifest (tag a) and one not (tag b);
// in hosted apps/app an old manifest. It returns the purge's now (evictAfter
// 300ms, the fixture is older), the images and what a proxy-evict run
// deletes.
func evictFixture(t *testing.T, s store) (now time.Time, imgs []storage.Image, old storage.Manifest, oldMarkers []storage.Marker, want []string) {
	alpine, oldImg, half := storage.Image{Repo: "hub", Name: "library/alpine"}, storage.Image{Repo: "hub", Name: "library/old"}, storage.Image{Repo: "hub", Name: "library/half"}
	hosted := storage.Image{Repo: "apps", Name: "app"}
	a1, a2 := put(t, s, alpine, "a1", nil), put(t, s, alpine, "a2", nil)
	ai := put(t, s, alpine, "ai", nil, a1, a2)
	tag(t, s, alpine, "3", ai)
	old = put(t, s, oldImg, "old", nil)
	tag(t, s, oldImg, "1", old)
	h1, h2 := put(t, s, half, "h1", nil), put(t, s, half, "h2", nil)
	tag(t, s, half, "a", h1)
	tag(t, s, half, "b", h2)
	put(t, s, hosted, "hosted", nil)
	oldMarkers = []storage.Marker{foreignMarker(t, s, oldImg, "l1"), foreignMarker(t, s, oldImg, "l2")}
	foreignMarker(t, s, alpine, "l3")
	foreignMarker(t, s, half, "l4")
	time.Sleep(400 * time.Millisecond) // older than evictAfter (setup wait; nothing timed is asserted)
	now = time.Now()
	for _, x := range []struct {
		img storage.Image
		m   storage.Manifest
	}{{alpine, ai}, {alpine, a1}, {half, h1}} {
		if err := s.MarkPulled(t.Context(), x.img, x.m.Digest); err != nil {
			t.Fatal(err)
		}
	}
	want = []string{item(oldImg, old.Digest), item(half, h2.Digest), "hub/library/old " + oldMarkers[0].Group + "/" + oldMarkers[0].Key, "hub/library/old " + oldMarkers[1].Group + "/" + oldMarkers[1].Key}
	return now, []storage.Image{alpine, oldImg, half, hosted}, old, oldMarkers, want
}

// TestProxyEvict: cached manifests not pulled within evictAfter go with
// their tags, but not the children of a pulled index, nor anything of a
// hosted repository; the foreign layer markers of an image with nothing
// cached left go too; a dry run reports the same first.
func TestProxyEvict(t *testing.T) {
	for _, b := range backends(t) {
		t.Run(b.name, func(t *testing.T) {
			s := collectorOf(t, b)
			now, imgs, _, oldMarkers, want := evictFixture(t, s)
			before0 := state(t, s, imgs...)
			p := newPurger(t, s, taskConfig(t, 0, 300*time.Millisecond), 0, func() time.Time { return now })
			dry, err := p.Run(t.Context(), purge.TaskProxyEvict, true)
			if err != nil {
				t.Fatal(err)
			}
			if got := sorted(deleted(dry)); !slices.Equal(got, sorted(want)) || len(dry.Errors) != 0 || dry.Skipped["pulled"] != 3 || dry.Skipped["kept-child"] != 1 {
				t.Fatalf("dry run: deleted %v, skipped %v, errors %v; want %v, 3 pulled and 1 kept-child", got, dry.Skipped, dry.Errors, sorted(want))
			}
			if got := state(t, s, imgs...); !slices.Equal(got, before0) || !hasMarker(t, s, oldMarkers[0]) {
				t.Fatalf("the dry run changed the store: %v", got)
			}
			real, err := p.Run(t.Context(), purge.TaskProxyEvict, false)
			if err != nil {
				t.Fatal(err)
			}
			if got := deleted(real); !slices.Equal(got, deleted(dry)) || len(real.Errors) != 0 {
				t.Fatalf("real run deleted %v (errors %v); the dry run reported %v", got, real.Errors, deleted(dry))
			}
			for _, it := range real.Deleted {
				if k := map[bool]string{true: "marker", false: "manifest"}[strings.HasPrefix(it.ID, "foreign:")]; it.Kind != k || k == "manifest" && it.Bytes == 0 {
					t.Errorf("item %+v: want kind %s (and bytes for a manifest)", it, k)
				}
			}
			if got, want := state(t, s, imgs...), without(before0, want[:2]...); !slices.Equal(got, want) {
				t.Errorf("left:\n%v\nwant\n%v", got, want)
			}
			for _, m := range oldMarkers {
				if hasMarker(t, s, m) {
					t.Errorf("marker %s/%s of an evicted image is left", m.Group, m.Key)
				}
			}
			if ms, err := s.ListMarkers(t.Context(), "foreign:hub", 0); err != nil || len(ms) != 2 {
				t.Errorf("foreign markers of cached images: %v %v, want the 2 of alpine and half", ms, err)
			}
		})
	}
}

// TestProxyEvictRacingFill: a fill caching the image again while the
// purge evicts it wins: before the manifest's delete the manifest stays
// (busy) with its markers; between the manifest's delete and the markers'
// the markers are written back.
func TestProxyEvictRacingFill(t *testing.T) {
	for _, b := range backends(t) {
		t.Run(b.name, func(t *testing.T) {
			for _, when := range []string{"before the manifest delete", "before the marker delete"} {
				t.Run(when, func(t *testing.T) {
					s := collectorOf(t, b)
					for _, img := range []string{"library/old", "library/alpine", "library/half"} { // a fresh table per backend: clear the previous case
						items, _ := s.ListImage(t.Context(), storage.Image{Repo: "hub", Name: img})
						for _, m := range items.Manifests {
							_ = s.DeleteManifest(t.Context(), items.Image, m.Digest)
						}
					}
					now, _, old, oldMarkers, _ := evictFixture(t, s)
					oldImg := storage.Image{Repo: "hub", Name: "library/old"}
					refill := func() {
						if err := s.PutManifest(t.Context(), oldImg, old); err != nil {
							t.Error(err)
						}
					}
					rc := markerRacer{racer: racer{store: s}}
					if when == "before the manifest delete" {
						rc.onManifest = func(img storage.Image, d digest.Digest) {
							if d == old.Digest {
								refill()
							}
						}
					} else {
						rc.onMarker = func(group, key string) {
							if key == oldMarkers[0].Key {
								refill()
							}
						}
					}
					r, err := newPurger(t, rc, taskConfig(t, 0, 300*time.Millisecond), 0, func() time.Time { return now }).Run(t.Context(), purge.TaskProxyEvict, false)
					if err != nil {
						t.Fatal(err)
					}
					if slices.ContainsFunc(r.Deleted, func(it purge.Item) bool { return it.Image == oldImg.String() && it.ID != old.Digest.String() }) || r.Skipped["busy"] == 0 {
						t.Errorf("report %+v: want library/old's markers not deleted, a busy skip", r)
					}
					if _, err := s.GetManifest(t.Context(), oldImg, old.Digest); err != nil {
						t.Errorf("the refilled manifest: %v", err)
					}
					for _, m := range oldMarkers {
						if !hasMarker(t, s, m) {
							t.Errorf("marker %s of the refilled image is gone", m.Key)
						}
					}
				})
			}
		})
	}
}
