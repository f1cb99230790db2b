package storagetest

import (
	"errors"
	"fmt"
	"strings"
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"

	"github.com/airlock-registry/airlock/shared/storage"
)

// proxyOf returns s as a storage.ProxyMetadata, failing the test when it is not one.
func proxyOf(t *testing.T, s storage.Metadata) storage.ProxyMetadata {
	t.Helper()
	return implements[storage.ProxyMetadata](t, s, "every Metadata store must (proxy repositories need tag checks and markers)")
}

// msNow returns the current time to the millisecond, in UTC (markers and
// tag checks keep milliseconds).
func msNow() time.Time { return time.Now().Truncate(time.Millisecond).UTC() }

// checkTag checks GetTagCheck of tag in img.
func checkTag(t *testing.T, p storage.ProxyMetadata, img storage.Image, tag string, want storage.TagCheck) {
	t.Helper()
	got, err := p.GetTagCheck(t.Context(), img, tag)
	must(t, "GetTagCheck "+tag, err)
	if got.Digest != want.Digest || !got.Checked.Equal(want.Checked) {
		t.Fatalf("GetTagCheck %s = %s checked %v, want %s checked %v", tag, got.Digest, got.Checked, want.Digest, want.Checked)
	}
}

func testTagCheck(t *testing.T, s storage.Metadata) {
	p := proxyOf(t, s)
	ctx := t.Context()
	d1, d2, d3 := dg("one"), dg("two"), dg("three")
	_, err := p.GetTagCheck(ctx, imgA, "latest")
	wantErr(t, "GetTagCheck before any write", err, storage.ErrNotFound)

	// A hosted tag was never checked.
	must(t, "PutTag", s.PutTag(ctx, imgA, "hosted", d1, storage.TagOverwrite))
	checkTag(t, p, imgA, "hosted", storage.TagCheck{Digest: d1})

	// Round trip to the millisecond: sub-millisecond parts are dropped.
	checked := created.Add(456_789 * time.Nanosecond)
	must(t, "PutTagCheck", p.PutTagCheck(ctx, imgA, "latest", storage.TagCheck{Digest: d1, Checked: checked}))
	checkTag(t, p, imgA, "latest", storage.TagCheck{Digest: d1, Checked: checked.Truncate(time.Millisecond)})
	now := msNow()
	must(t, "PutTagCheck again", p.PutTagCheck(ctx, imgA, "latest", storage.TagCheck{Digest: d1, Checked: now}))
	checkTag(t, p, imgA, "latest", storage.TagCheck{Digest: d1, Checked: now})
	_, err = p.GetTagCheck(ctx, imgB, "latest")
	wantErr(t, "GetTagCheck in another image", err, storage.ErrNotFound)

	// ResolveTag and ListTags see it as any tag.
	if got, err := s.ResolveTag(ctx, imgA, "latest"); err != nil || got != d1 {
		t.Fatalf("ResolveTag of a PutTagCheck tag = %s, %v; want %s", got, err, d1)
	}
	page, err := s.ListTags(ctx, imgA, "", 0)
	must(t, "ListTags", err)
	if diff := cmp.Diff([]string{"hosted", "latest"}, page.Items); diff != "" || page.More {
		t.Fatalf("ListTags with a PutTagCheck tag: More=%v (-want +got):\n%s", page.More, diff)
	}

	// An overwrite moves the digest (whatever rule a hosted tag would have).
	must(t, "PutTagCheck other digest", p.PutTagCheck(ctx, imgA, "latest", storage.TagCheck{Digest: d2, Checked: now.Add(time.Second)}))
	checkTag(t, p, imgA, "latest", storage.TagCheck{Digest: d2, Checked: now.Add(time.Second)})
	if got, err := s.ResolveTag(ctx, imgA, "latest"); err != nil || got != d2 {
		t.Fatalf("ResolveTag after PutTagCheck moved it = %s, %v; want %s", got, err, d2)
	}
	must(t, "PutTagCheck over a hosted tag", p.PutTagCheck(ctx, imgA, "hosted", storage.TagCheck{Digest: d3, Checked: now}))
	checkTag(t, p, imgA, "hosted", storage.TagCheck{Digest: d3, Checked: now})
	// A zero Checked stores a tag never checked.
	must(t, "PutTagCheck zero Checked", p.PutTagCheck(ctx, imgA, "hosted", storage.TagCheck{Digest: d3}))
	checkTag(t, p, imgA, "hosted", storage.TagCheck{Digest: d3})

	// PutTag over a checked tag resets Checked; create-only sees the digest.
	wantErr(t, "PutTag create-only over a checked tag of another digest",
		s.PutTag(ctx, imgA, "latest", d3, storage.TagCreateOnly), storage.ErrConflict)
	must(t, "PutTag over a checked tag", s.PutTag(ctx, imgA, "latest", d3, storage.TagOverwrite))
	checkTag(t, p, imgA, "latest", storage.TagCheck{Digest: d3})

	// DeleteTag and DeleteManifest remove checked tags as any other.
	must(t, "PutTagCheck", p.PutTagCheck(ctx, imgA, "latest", storage.TagCheck{Digest: d3, Checked: now}))
	must(t, "DeleteTag of a checked tag", s.DeleteTag(ctx, imgA, "latest"))
	_, err = p.GetTagCheck(ctx, imgA, "latest")
	wantErr(t, "GetTagCheck after DeleteTag", err, storage.ErrNotFound)
	m := manifest("proxied", "")
	must(t, "PutManifest", s.PutManifest(ctx, imgA, m))
	must(t, "PutTagCheck at the manifest", p.PutTagCheck(ctx, imgA, "cached", storage.TagCheck{Digest: m.Digest, Checked: now}))
	must(t, "DeleteManifest", s.DeleteManifest(ctx, imgA, m.Digest))
	_, err = p.GetTagCheck(ctx, imgA, "cached")
	wantErr(t, "GetTagCheck after DeleteManifest of its digest", err, storage.ErrNotFound)
}

// checkMarker checks GetMarker of want's key returns want.
func checkMarker(t *testing.T, p storage.ProxyMetadata, want storage.Marker) {
	t.Helper()
	got, err := p.GetMarker(t.Context(), want.Group, want.Key)
	must(t, "GetMarker "+want.Group+"/"+want.Key, err)
	if diff := cmp.Diff(want, got, cmpOpts...); diff != "" {
		t.Fatalf("GetMarker %s/%s (-want +got):\n%s", want.Group, want.Key, diff)
	}
}

func testMarkers(t *testing.T, s storage.Metadata) {
	p := proxyOf(t, s)
	ctx := t.Context()
	_, err := p.GetMarker(ctx, "neg", "k")
	wantErr(t, "GetMarker before PutMarker", err, storage.ErrNotFound)
	must(t, "DeleteMarker of a missing marker", p.DeleteMarker(ctx, "neg", "k"))

	until := msNow().Add(time.Hour)
	m := storage.Marker{Group: "neg", Key: "docker.io/library/nginx:sha256:" + strings.Repeat("ab", 32), Value: "not found", Count: 3, Until: until}
	must(t, "PutMarker", p.PutMarker(ctx, m))
	checkMarker(t, p, m)
	// Overwrite: every field is replaced; Until keeps milliseconds only.
	m.Value, m.Count = `{"status":404,"body":"`+strings.Repeat("x", 4000)+`"}`, 0
	m.Until = until.Add(2*time.Minute + 345_678*time.Nanosecond)
	must(t, "PutMarker overwrite", p.PutMarker(ctx, m))
	m.Until = m.Until.Truncate(time.Millisecond)
	checkMarker(t, p, m)
	empty := storage.Marker{Group: "neg", Key: "empty", Until: until}
	must(t, "PutMarker with an empty value", p.PutMarker(ctx, empty))
	checkMarker(t, p, empty)

	// Groups are separate.
	_, err = p.GetMarker(ctx, "other", m.Key)
	wantErr(t, "GetMarker in another group", err, storage.ErrNotFound)

	must(t, "DeleteMarker", p.DeleteMarker(ctx, m.Group, m.Key))
	_, err = p.GetMarker(ctx, m.Group, m.Key)
	wantErr(t, "GetMarker after DeleteMarker", err, storage.ErrNotFound)
	must(t, "DeleteMarker twice", p.DeleteMarker(ctx, m.Group, m.Key))
	checkMarker(t, p, empty)

	// Until and Key are required.
	for _, bad := range []storage.Marker{{Group: "neg", Key: "forever", Value: "v"}, {Group: "neg", Until: until}} {
		if err := p.PutMarker(ctx, bad); err == nil {
			t.Errorf("PutMarker %+v: no error (Key and Until are required)", bad)
		}
		if err := p.AcquireMarker(ctx, bad); err == nil || errors.Is(err, storage.ErrConflict) {
			t.Errorf("AcquireMarker %+v: %v, want an error other than ErrConflict", bad, err)
		}
	}
	if _, err := p.GetMarker(ctx, "neg", "forever"); !errors.Is(err, storage.ErrNotFound) {
		t.Errorf("GetMarker of a marker written without Until: %v, want ErrNotFound", err)
	}
}

// testMarkerExpiry: an expired marker reads as absent everywhere, to the
// millisecond (not to the second of the TTL attribute).
func testMarkerExpiry(t *testing.T, s storage.Metadata) {
	p := proxyOf(t, s)
	ctx := t.Context()
	old := storage.Marker{Group: "lease", Key: "old", Value: "v", Until: msNow().Add(-time.Minute)}
	must(t, "PutMarker expired", p.PutMarker(ctx, old))
	_, err := p.GetMarker(ctx, old.Group, old.Key)
	wantErr(t, "GetMarker of an expired marker", err, storage.ErrNotFound)
	list, err := p.ListMarkers(ctx, old.Group, 0)
	must(t, "ListMarkers", err)
	if len(list) != 0 {
		t.Fatalf("ListMarkers lists expired markers: %+v", list)
	}
	must(t, "DeleteMarker of an expired marker", p.DeleteMarker(ctx, old.Group, old.Key))

	// Live until 500 ms past a whole second: checked 50 ms after Until, the
	// marker must be gone although its second has not ended.
	until := time.Now().Truncate(time.Second).Add(time.Second + 500*time.Millisecond).UTC()
	soon := storage.Marker{Group: "lease", Key: "soon", Value: "v", Until: until}
	must(t, "PutMarker", p.PutMarker(ctx, soon))
	if _, err := p.GetMarker(ctx, soon.Group, soon.Key); err != nil && time.Now().Before(until) {
		t.Fatalf("GetMarker before Until: %v", err)
	}
	time.Sleep(time.Until(until.Add(50 * time.Millisecond)))
	_, err = p.GetMarker(ctx, soon.Group, soon.Key)
	wantErr(t, "GetMarker 50 ms after Until", err, storage.ErrNotFound)
	if list, err := p.ListMarkers(ctx, soon.Group, 0); err != nil || len(list) != 0 {
		t.Fatalf("ListMarkers 50 ms after Until = %+v, %v; want none", list, err)
	}
}

func testMarkerList(t *testing.T, s storage.Metadata) {
	p := proxyOf(t, s)
	ctx := t.Context()
	list, err := p.ListMarkers(ctx, "fills", 0)
	must(t, "ListMarkers of an empty group", err)
	if list == nil || len(list) != 0 {
		t.Fatalf("ListMarkers of an empty group = %#v, want an empty slice", list)
	}
	until := msNow().Add(time.Hour)
	// Many expired markers sort before the live ones: a limit must count
	// live markers only.
	for i := range 30 {
		must(t, "PutMarker expired", p.PutMarker(ctx, storage.Marker{Group: "fills", Key: fmt.Sprintf("!%02d", i), Value: "old", Until: until.Add(-2 * time.Hour)}))
	}
	keys := []string{"b", "a", "B", "a-1", "a.1", "a_1", "0", "sha256:" + strings.Repeat("f", 64), "a/b", "é"}
	var want []storage.Marker
	for i, k := range keys {
		m := storage.Marker{Group: "fills", Key: k, Value: "v-" + k, Count: i, Until: until.Add(time.Duration(i) * time.Millisecond)}
		must(t, "PutMarker "+k, p.PutMarker(ctx, m))
		want = append(want, m)
	}
	must(t, "PutMarker in another group", p.PutMarker(ctx, storage.Marker{Group: "fills2", Key: "a", Until: until}))
	must(t, "PutMarker in a prefix group", p.PutMarker(ctx, storage.Marker{Group: "fill", Key: "sa", Until: until}))
	byKey := map[string]storage.Marker{}
	for _, m := range want {
		byKey[m.Key] = m
	}
	want = want[:0]
	for _, k := range byteOrder(keys) {
		want = append(want, byKey[k])
	}
	for _, n := range []int{0, -1, 1, 3, len(keys), len(keys) + 5} {
		list, err := p.ListMarkers(ctx, "fills", n)
		must(t, fmt.Sprintf("ListMarkers n=%d", n), err)
		w := want
		if n > 0 && n < len(want) {
			w = want[:n]
		}
		if diff := cmp.Diff(w, list, cmpOpts...); diff != "" {
			t.Fatalf("ListMarkers n=%d (-want +got):\n%s", n, diff)
		}
	}
}

func testAcquireMarker(t *testing.T, s storage.Metadata) {
	p := proxyOf(t, s)
	ctx := t.Context()
	until := msNow().Add(time.Minute)
	a := storage.Marker{Group: "lease", Key: "blob", Value: "fill-a", Count: 1, Until: until}
	must(t, "AcquireMarker of a free key", p.AcquireMarker(ctx, a))
	checkMarker(t, p, a)
	b := storage.Marker{Group: "lease", Key: "blob", Value: "fill-b", Count: 9, Until: until.Add(time.Hour)}
	wantErr(t, "AcquireMarker held by another value", p.AcquireMarker(ctx, b), storage.ErrConflict)
	checkMarker(t, p, a)
	// The owner renews: Until and Count are replaced.
	a.Until, a.Count = until.Add(time.Minute), 2
	must(t, "AcquireMarker renewed by its owner", p.AcquireMarker(ctx, a))
	checkMarker(t, p, a)
	// An expired marker is taken over.
	crashed := storage.Marker{Group: "lease", Key: "crashed", Value: "fill-a", Until: msNow().Add(-time.Second)}
	must(t, "PutMarker expired", p.PutMarker(ctx, crashed))
	b.Key = crashed.Key
	must(t, "AcquireMarker of an expired marker", p.AcquireMarker(ctx, b))
	checkMarker(t, p, b)
	// A deleted marker is free again; PutMarker overwrites whoever holds it.
	must(t, "DeleteMarker", p.DeleteMarker(ctx, a.Group, a.Key))
	b.Key = a.Key
	must(t, "AcquireMarker after DeleteMarker", p.AcquireMarker(ctx, b))
	checkMarker(t, p, b)
	must(t, "PutMarker over a held marker", p.PutMarker(ctx, a))
	checkMarker(t, p, a)
}

func testReleaseMarker(t *testing.T, s storage.Metadata) {
	p := proxyOf(t, s)
	ctx := t.Context()
	must(t, "ReleaseMarker of a missing marker", p.ReleaseMarker(ctx, "lease", "blob", "fill-a"))
	a := storage.Marker{Group: "lease", Key: "blob", Value: "fill-a", Until: msNow().Add(time.Minute)}
	must(t, "AcquireMarker", p.AcquireMarker(ctx, a))
	wantErr(t, "ReleaseMarker by another value", p.ReleaseMarker(ctx, a.Group, a.Key, "fill-b"), storage.ErrConflict)
	checkMarker(t, p, a)
	must(t, "ReleaseMarker by its owner", p.ReleaseMarker(ctx, a.Group, a.Key, a.Value))
	_, err := p.GetMarker(ctx, a.Group, a.Key)
	wantErr(t, "GetMarker after ReleaseMarker", err, storage.ErrNotFound)
	must(t, "ReleaseMarker twice", p.ReleaseMarker(ctx, a.Group, a.Key, a.Value))
	must(t, "AcquireMarker by another after ReleaseMarker", p.AcquireMarker(ctx, storage.Marker{Group: a.Group, Key: a.Key, Value: "fill-b", Until: a.Until}))
	// An expired marker of another value is no obstacle.
	old := storage.Marker{Group: "lease", Key: "old", Value: "fill-b", Until: msNow().Add(-time.Second)}
	must(t, "PutMarker expired", p.PutMarker(ctx, old))
	must(t, "ReleaseMarker of an expired marker of another value", p.ReleaseMarker(ctx, old.Group, old.Key, "fill-a"))
	_, err = p.GetMarker(ctx, old.Group, old.Key)
	wantErr(t, "GetMarker after releasing an expired marker", err, storage.ErrNotFound)
}

// testRaceAcquireMarker: of concurrent acquirers with different values
// exactly one wins, over a free key, an expired marker and a released one.
func testRaceAcquireMarker(t *testing.T, s storage.Metadata) {
	p := proxyOf(t, s)
	ctx := t.Context()
	for round, setup := range []string{"free", "expired", "released"} {
		k := fmt.Sprint("blob-", round)
		switch setup {
		case "expired":
			must(t, "PutMarker expired", p.PutMarker(ctx, storage.Marker{Group: "lease", Key: k, Value: "crashed", Until: msNow().Add(-time.Second)}))
		case "released":
			must(t, "AcquireMarker", p.AcquireMarker(ctx, storage.Marker{Group: "lease", Key: k, Value: "done", Until: msNow().Add(time.Minute)}))
			must(t, "ReleaseMarker", p.ReleaseMarker(ctx, "lease", k, "done"))
		}
		until := msNow().Add(time.Minute)
		errs := race(func(i int) error {
			return p.AcquireMarker(ctx, storage.Marker{Group: "lease", Key: k, Value: fmt.Sprint("racer-", i), Count: i, Until: until})
		})
		win := winner(t, "concurrent AcquireMarker over a "+setup+" key", errs)
		checkMarker(t, p, storage.Marker{Group: "lease", Key: k, Value: fmt.Sprint("racer-", win), Count: win, Until: until})
		loser := fmt.Sprint("racer-", (win+1)%racers)
		wantErr(t, "ReleaseMarker by a loser", p.ReleaseMarker(ctx, "lease", k, loser), storage.ErrConflict)
		must(t, "ReleaseMarker by the winner", p.ReleaseMarker(ctx, "lease", k, fmt.Sprint("racer-", win)))
	}
}

// testProxyOversizedKeys: tags, groups and keys longer than any store can key
// by are absent, and writing them fails (never silently).
func testProxyOversizedKeys(t *testing.T, s storage.Metadata) {
	p := proxyOf(t, s)
	ctx := t.Context()
	long := strings.Repeat("a", 3000)
	_, err := p.GetTagCheck(ctx, imgA, long)
	wantErr(t, "GetTagCheck of a 3000-byte tag", err, storage.ErrNotFound)
	_, err = p.GetTagCheck(ctx, storage.Image{Repo: "local", Name: long}, "latest")
	wantErr(t, "GetTagCheck in an image with a 3000-byte name", err, storage.ErrNotFound)
	if err := p.PutTagCheck(ctx, imgA, long, storage.TagCheck{Digest: dg("x"), Checked: msNow()}); err == nil {
		t.Errorf("PutTagCheck of a 3000-byte tag: no error")
	}
	_, err = p.GetMarker(ctx, "g", long)
	wantErr(t, "GetMarker of a 3000-byte key", err, storage.ErrNotFound)
	_, err = p.GetMarker(ctx, long, "k")
	wantErr(t, "GetMarker in a 3000-byte group", err, storage.ErrNotFound)
	must(t, "DeleteMarker of a 3000-byte key", p.DeleteMarker(ctx, "g", long))
	must(t, "ReleaseMarker of a 3000-byte key", p.ReleaseMarker(ctx, "g", long, "v"))
	list, err := p.ListMarkers(ctx, long, 0)
	must(t, "ListMarkers of a 3000-byte group", err)
	if len(list) != 0 {
		t.Errorf("ListMarkers of a 3000-byte group = %+v", list)
	}
	big := storage.Marker{Group: "g", Key: long, Value: "v", Until: msNow().Add(time.Minute)}
	if err := p.PutMarker(ctx, big); err == nil {
		t.Errorf("PutMarker with a 3000-byte key: no error")
	}
	if err := p.AcquireMarker(ctx, big); err == nil || errors.Is(err, storage.ErrConflict) {
		t.Errorf("AcquireMarker with a 3000-byte key: %v, want an error other than ErrConflict", err)
	}
}
