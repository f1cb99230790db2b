package storagetest

import (
	"encoding/base64"
	"encoding/json"
	"fmt"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"
	digest "github.com/opencontainers/go-digest"
	ocispec "github.com/opencontainers/image-spec/specs-go/v1"

	"github.com/airlock-registry/airlock/shared/storage"
)

// The tests of storage.Collector compare touch times with times the test
// reads from the real clock: they assume the store's clock is time.Now (the
// default of every store). tick waits until that clock has moved by a few
// milliseconds, so that two writes get different touch times (kept to the
// millisecond); nothing asserts how long anything takes.

func collector(t *testing.T, s storage.Metadata) storage.Collector {
	t.Helper()
	return implements[storage.Collector](t, s, "every store of this module must")
}

// tick returns once the clock has moved past the current millisecond by at
// least two.
func tick() {
	start := time.Now().UnixMilli()
	for time.Now().UnixMilli() < start+2 {
		time.Sleep(time.Millisecond)
	}
}

// ms is t to the millisecond, as stores keep touch times.
func ms(t time.Time) time.Time { return t.Truncate(time.Millisecond) }

// between fails unless got is within [from, to] to the millisecond.
func between(t *testing.T, what string, got, from, to time.Time) {
	t.Helper()
	if got.Before(ms(from)) || got.After(to) {
		t.Fatalf("%s = %v, want the time of the write (between %v and %v)", what, got, ms(from), to)
	}
}

// later fails unless got is strictly after prev.
func later(t *testing.T, what string, got, prev time.Time) {
	t.Helper()
	if !got.After(prev) {
		t.Fatalf("%s = %v, want after %v (the touch must move it forward)", what, got, prev)
	}
}

// testCollectTouch: every writer records when it wrote, and the touches
// move the times forward.
func testCollectTouch(t *testing.T, s storage.Metadata) {
	ctx := t.Context()
	c := collector(t, s)
	b := storage.Blob{Digest: dg("touch layer"), Size: 7, Key: storage.UploadKey("touch-1"), Created: created}

	before := time.Now()
	rec, err := s.PutBlob(ctx, b)
	must(t, "PutBlob", err)
	between(t, "PutBlob: Touched of a new record", rec.Touched, before, time.Now())
	got, err := s.GetBlob(ctx, b.Digest)
	must(t, "GetBlob", err)
	if !got.Touched.Equal(rec.Touched) {
		t.Fatalf("GetBlob: Touched %v, PutBlob returned %v", got.Touched, rec.Touched)
	}

	// PutBlob of a record that exists touches it and returns it as stored.
	tick()
	again, err := s.PutBlob(ctx, storage.Blob{Digest: b.Digest, Size: 7, Key: storage.UploadKey("touch-2"), Created: created.Add(time.Hour)})
	must(t, "PutBlob again", err)
	later(t, "PutBlob of an existing record: Touched", again.Touched, rec.Touched)
	if again.Key != b.Key || !again.Created.Equal(b.Created) {
		t.Fatalf("PutBlob of an existing record returned key %q created %v, want the first record's %q %v", again.Key, again.Created, b.Key, b.Created)
	}
	got, err = s.GetBlob(ctx, b.Digest)
	must(t, "GetBlob after PutBlob again", err)
	if !got.Touched.Equal(again.Touched) || got.Key != b.Key {
		t.Fatalf("after PutBlob again: GetBlob %+v, want key %q touched %v", got, b.Key, again.Touched)
	}

	// LinkBlob touches the record and writes the link touched.
	tick()
	before = time.Now()
	must(t, "LinkBlob", s.LinkBlob(ctx, imgA, b))
	after := time.Now()
	link, err := s.StatBlob(ctx, imgA, b.Digest)
	must(t, "StatBlob", err)
	between(t, "LinkBlob: Touched of the link", link.Touched, before, after)
	got, err = s.GetBlob(ctx, b.Digest)
	must(t, "GetBlob after LinkBlob", err)
	between(t, "LinkBlob: Touched of the record", got.Touched, before, after)

	// Without a record, nothing is linked.
	lone := storage.Blob{Digest: dg("touch no record"), Size: 1, Created: created}
	wantErr(t, "LinkBlob without a record", s.LinkBlob(ctx, imgA, lone), storage.ErrNotFound)
	_, err = s.StatBlob(ctx, imgA, lone.Digest)
	wantErr(t, "StatBlob after LinkBlob without a record", err, storage.ErrNotFound)

	// TouchLink.
	tick()
	touched, err := c.TouchLink(ctx, imgA, b.Digest)
	must(t, "TouchLink", err)
	later(t, "TouchLink: Touched", touched.Touched, link.Touched)
	if diff := cmp.Diff(link, touched, cmpOpts...); diff != "" {
		t.Fatalf("TouchLink returned another link than the stored one (-stored +returned):\n%s", diff)
	}
	link, err = s.StatBlob(ctx, imgA, b.Digest)
	must(t, "StatBlob after TouchLink", err)
	if !link.Touched.Equal(touched.Touched) {
		t.Fatalf("after TouchLink: StatBlob Touched %v, TouchLink returned %v", link.Touched, touched.Touched)
	}
	_, err = c.TouchLink(ctx, imgB, b.Digest)
	wantErr(t, "TouchLink in an image without the link", err, storage.ErrNotFound)
	_, err = c.TouchLink(ctx, imgA, lone.Digest)
	wantErr(t, "TouchLink of a digest never linked", err, storage.ErrNotFound)
	_, err = s.StatBlob(ctx, imgB, b.Digest)
	wantErr(t, "StatBlob after TouchLink of a missing link (it must not create one)", err, storage.ErrNotFound)

	// Manifests: PutManifest, TouchManifest, MarkPulled.
	m := manifest("touch", "")
	before = time.Now()
	must(t, "PutManifest", s.PutManifest(ctx, imgA, m))
	gm, err := s.GetManifest(ctx, imgA, m.Digest)
	must(t, "GetManifest", err)
	between(t, "PutManifest: Touched", gm.Touched, before, time.Now())
	if !gm.Pulled.IsZero() {
		t.Fatalf("PutManifest: Pulled %v, want zero (never pulled)", gm.Pulled)
	}
	tick()
	must(t, "TouchManifest", c.TouchManifest(ctx, imgA, m.Digest))
	gm2, err := s.GetManifest(ctx, imgA, m.Digest)
	must(t, "GetManifest after TouchManifest", err)
	later(t, "TouchManifest: Touched", gm2.Touched, gm.Touched)
	if diff := cmp.Diff(m, gm2, cmpOpts...); diff != "" || !gm2.Pulled.IsZero() {
		t.Fatalf("TouchManifest changed more than Touched (Pulled %v) (-put +got):\n%s", gm2.Pulled, diff)
	}
	tick()
	before = time.Now()
	must(t, "MarkPulled", c.MarkPulled(ctx, imgA, m.Digest))
	gm3, err := s.GetManifest(ctx, imgA, m.Digest)
	must(t, "GetManifest after MarkPulled", err)
	between(t, "MarkPulled: Pulled", gm3.Pulled, before, time.Now())
	if !gm3.Touched.Equal(gm3.Pulled) {
		t.Fatalf("MarkPulled: Touched %v, want the pull's time %v (a pull protects the manifest from a delete decided before it)", gm3.Touched, gm3.Pulled)
	}
	// An overwrite is a new write: touched again, Pulled reset (documented).
	tick()
	must(t, "PutManifest again", s.PutManifest(ctx, imgA, m))
	gm4, err := s.GetManifest(ctx, imgA, m.Digest)
	must(t, "GetManifest after PutManifest again", err)
	later(t, "PutManifest again: Touched", gm4.Touched, gm3.Touched)
	if !gm4.Pulled.IsZero() {
		t.Fatalf("PutManifest over a pulled manifest: Pulled %v, want zero", gm4.Pulled)
	}
	missing := dg("touch missing manifest")
	wantErr(t, "TouchManifest of a missing manifest", c.TouchManifest(ctx, imgA, missing), storage.ErrNotFound)
	wantErr(t, "MarkPulled of a missing manifest", c.MarkPulled(ctx, imgA, missing), storage.ErrNotFound)
	wantErr(t, "TouchManifest in another image", c.TouchManifest(ctx, imgB, m.Digest), storage.ErrNotFound)
	_, err = s.GetManifest(ctx, imgA, missing)
	wantErr(t, "GetManifest after touching a missing manifest (it must not create one)", err, storage.ErrNotFound)

	// Tags record when they were written (PutTag and PutTagCheck).
	before = time.Now()
	must(t, "PutTag", s.PutTag(ctx, imgA, "v1", m.Digest, storage.TagOverwrite))
	tagTime := func(tag string) time.Time {
		t.Helper()
		items, err := c.ListImage(ctx, imgA)
		must(t, "ListImage", err)
		for _, ti := range items.Tags {
			if ti.Tag == tag {
				return ti.Updated
			}
		}
		t.Fatalf("ListImage does not list tag %s: %+v", tag, items.Tags)
		return time.Time{}
	}
	t1 := tagTime("v1")
	between(t, "PutTag: Updated", t1, before, time.Now())
	tick()
	pm := proxyOf(t, s)
	must(t, "PutTagCheck", pm.PutTagCheck(ctx, imgA, "v1", storage.TagCheck{Digest: m.Digest, Checked: created}))
	later(t, "PutTagCheck: Updated", tagTime("v1"), t1)
}

// testCollectDeleteIf: the conditional deletes remove an item not touched
// since the cut, refuse one touched at or after it (ErrConflict, the item
// stays) and tell a missing one (ErrNotFound).
func testCollectDeleteIf(t *testing.T, s storage.Metadata) {
	ctx := t.Context()
	c := collector(t, s)

	// Blob records.
	b := storage.Blob{Digest: dg("deleteif layer"), Size: 9, Created: created}
	rec, err := s.PutBlob(ctx, b)
	must(t, "PutBlob", err)
	wantErr(t, "DeleteBlobIf at the touch time", c.DeleteBlobIf(ctx, b.Digest, rec.Touched), storage.ErrConflict)
	wantErr(t, "DeleteBlobIf long before the touch", c.DeleteBlobIf(ctx, b.Digest, rec.Touched.Add(-time.Hour)), storage.ErrConflict)
	_, err = s.GetBlob(ctx, b.Digest)
	must(t, "GetBlob after a refused DeleteBlobIf", err)
	// A writer touching after the cut wins over the purge.
	cut := rec.Touched.Add(time.Millisecond)
	tick()
	_, err = s.PutBlob(ctx, b)
	must(t, "PutBlob (touch)", err)
	wantErr(t, "DeleteBlobIf of a record touched after the cut", c.DeleteBlobIf(ctx, b.Digest, cut), storage.ErrConflict)
	tick()
	must(t, "DeleteBlobIf after the touch", c.DeleteBlobIf(ctx, b.Digest, time.Now()))
	_, err = s.GetBlob(ctx, b.Digest)
	wantErr(t, "GetBlob after DeleteBlobIf", err, storage.ErrNotFound)
	wantErr(t, "DeleteBlobIf twice", c.DeleteBlobIf(ctx, b.Digest, time.Now()), storage.ErrNotFound)
	wantErr(t, "LinkBlob of a deleted record", s.LinkBlob(ctx, imgA, b), storage.ErrNotFound)

	// Links: the record and other images' links are not affected.
	record(t, s, b)
	must(t, "LinkBlob in A", s.LinkBlob(ctx, imgA, b))
	must(t, "LinkBlob in B", s.LinkBlob(ctx, imgB, b))
	link, err := s.StatBlob(ctx, imgA, b.Digest)
	must(t, "StatBlob", err)
	wantErr(t, "DeleteLinkIf at the touch time", c.DeleteLinkIf(ctx, imgA, b.Digest, link.Touched), storage.ErrConflict)
	cut = link.Touched.Add(time.Millisecond)
	tick()
	_, err = c.TouchLink(ctx, imgA, b.Digest)
	must(t, "TouchLink", err)
	wantErr(t, "DeleteLinkIf of a link touched after the cut", c.DeleteLinkIf(ctx, imgA, b.Digest, cut), storage.ErrConflict)
	_, err = s.StatBlob(ctx, imgA, b.Digest)
	must(t, "StatBlob after refused DeleteLinkIfs", err)
	tick()
	must(t, "DeleteLinkIf", c.DeleteLinkIf(ctx, imgA, b.Digest, time.Now()))
	_, err = s.StatBlob(ctx, imgA, b.Digest)
	wantErr(t, "StatBlob after DeleteLinkIf", err, storage.ErrNotFound)
	wantErr(t, "DeleteLinkIf twice", c.DeleteLinkIf(ctx, imgA, b.Digest, time.Now()), storage.ErrNotFound)
	_, err = s.StatBlob(ctx, imgB, b.Digest)
	must(t, "StatBlob in B after DeleteLinkIf in A", err)
	_, err = s.GetBlob(ctx, b.Digest)
	must(t, "GetBlob after DeleteLinkIf", err)

	// Tags.
	m := manifest("deleteif", "")
	other := manifest("deleteif other", "")
	must(t, "PutTag", s.PutTag(ctx, imgA, "x", m.Digest, storage.TagOverwrite))
	listedTag := func() storage.TagItem {
		t.Helper()
		items, err := c.ListImage(ctx, imgA)
		must(t, "ListImage", err)
		for _, ti := range items.Tags {
			if ti.Tag == "x" {
				return ti
			}
		}
		t.Fatal("ListImage does not list tag x")
		return storage.TagItem{}
	}
	listed := listedTag()
	wrong := listed
	wrong.Digest = other.Digest
	wantErr(t, "DeleteTagIf of another digest", c.DeleteTagIf(ctx, imgA, wrong), storage.ErrConflict)
	if d, err := s.ResolveTag(ctx, imgA, "x"); err != nil || d != m.Digest {
		t.Fatalf("after a refused DeleteTagIf: ResolveTag = %s, %v; want %s", d, err, m.Digest)
	}
	// Pushed again to the same digest after the listing: the tag is new, it stays.
	time.Sleep(3 * time.Millisecond)
	must(t, "PutTag again", s.PutTag(ctx, imgA, "x", m.Digest, storage.TagOverwrite))
	wantErr(t, "DeleteTagIf of a tag written again", c.DeleteTagIf(ctx, imgA, listed), storage.ErrConflict)
	if d, err := s.ResolveTag(ctx, imgA, "x"); err != nil || d != m.Digest {
		t.Fatalf("after a refused DeleteTagIf (written again): ResolveTag = %s, %v; want %s", d, err, m.Digest)
	}
	listed = listedTag()
	must(t, "DeleteTagIf", c.DeleteTagIf(ctx, imgA, listed))
	_, err = s.ResolveTag(ctx, imgA, "x")
	wantErr(t, "ResolveTag after DeleteTagIf", err, storage.ErrNotFound)
	wantErr(t, "DeleteTagIf twice", c.DeleteTagIf(ctx, imgA, listed), storage.ErrNotFound)
}

// testCollectDeleteManifestIf: DeleteManifestIf is DeleteManifest (tags
// pointing at it, referrer item, catalog entry with the last manifest) on
// condition, and deletes nothing when the condition fails.
func testCollectDeleteManifestIf(t *testing.T, s storage.Metadata) {
	ctx := t.Context()
	c := collector(t, s)
	img := storage.Image{Repo: "local", Name: "collect/del"}
	subject := manifest("dmi subject", "")
	ref := manifest("dmi referrer", subject.Digest)
	for _, m := range []storage.Manifest{subject, ref} {
		must(t, "PutManifest "+m.Digest.String(), s.PutManifest(ctx, img, m))
	}
	must(t, "PutTag a", s.PutTag(ctx, img, "a", ref.Digest, storage.TagOverwrite))
	must(t, "PutTag b", s.PutTag(ctx, img, "b", ref.Digest, storage.TagOverwrite))
	must(t, "PutTag s", s.PutTag(ctx, img, "s", subject.Digest, storage.TagOverwrite))
	gm, err := s.GetManifest(ctx, img, ref.Digest)
	must(t, "GetManifest", err)

	state := func() (tags []string, manifests []digest.Digest, referrers int, listed bool) {
		t.Helper()
		items, err := c.ListImage(ctx, img)
		must(t, "ListImage", err)
		for _, ti := range items.Tags {
			tags = append(tags, ti.Tag+"="+ti.Digest.Encoded()[:6])
		}
		for _, m := range items.Manifests {
			manifests = append(manifests, m.Digest)
		}
		refs, err := s.ListReferrers(ctx, img, subject.Digest)
		must(t, "ListReferrers", err)
		cat, err := s.ListImages(ctx, "", 0)
		must(t, "ListImages", err)
		slices.Sort(tags)
		slices.Sort(manifests)
		return tags, manifests, len(refs), slices.Contains(cat.Items, img.String())
	}
	tags0, ms0, refs0, listed0 := state()
	if len(tags0) != 3 || len(ms0) != 2 || refs0 != 1 || !listed0 {
		t.Fatalf("before: tags %v, manifests %v, %d referrers, in catalog %v; want 3 tags, 2 manifests, 1 referrer, listed", tags0, ms0, refs0, listed0)
	}

	// Touched at or after the cut: nothing is deleted.
	wantErr(t, "DeleteManifestIf at the touch time", c.DeleteManifestIf(ctx, img, ref.Digest, gm.Touched), storage.ErrConflict)
	cut := time.Now()
	tick()
	must(t, "TouchManifest", c.TouchManifest(ctx, img, ref.Digest))
	wantErr(t, "DeleteManifestIf of a manifest touched after the cut", c.DeleteManifestIf(ctx, img, ref.Digest, cut), storage.ErrConflict)
	tags, mans, refs, listed := state()
	if !slices.Equal(tags, tags0) || !slices.Equal(mans, ms0) || refs != 1 || !listed {
		t.Fatalf("after refused DeleteManifestIfs: tags %v, manifests %v, %d referrers, in catalog %v; want all kept (%v, %v)", tags, mans, refs, listed, tags0, ms0)
	}

	// Not touched since: the manifest, its tags and its referrer item go;
	// the other manifest and its tag and the catalog entry stay.
	tick()
	cut = time.Now()
	tick()
	must(t, "DeleteManifestIf", c.DeleteManifestIf(ctx, img, ref.Digest, cut))
	_, err = s.GetManifest(ctx, img, ref.Digest)
	wantErr(t, "GetManifest after DeleteManifestIf", err, storage.ErrNotFound)
	tags, mans, refs, listed = state()
	if want := []string{"s=" + subject.Digest.Encoded()[:6]}; !slices.Equal(tags, want) || !slices.Equal(mans, []digest.Digest{subject.Digest}) || refs != 0 || !listed {
		t.Fatalf("after DeleteManifestIf: tags %v, manifests %v, %d referrers, in catalog %v; want tags %v, manifest %s, no referrer, listed", tags, mans, refs, listed, want, subject.Digest)
	}
	wantErr(t, "DeleteManifestIf twice", c.DeleteManifestIf(ctx, img, ref.Digest, cut), storage.ErrNotFound)

	// A tag written at or after the cut stays (it is never a tag of the
	// deleted write: a push writes its manifest before the tag).
	tick()
	must(t, "PutTag late", s.PutTag(ctx, img, "late", subject.Digest, storage.TagOverwrite))
	must(t, "DeleteManifestIf of the last manifest", c.DeleteManifestIf(ctx, img, subject.Digest, cut))
	tags, mans, _, listed = state()
	if want := []string{"late=" + subject.Digest.Encoded()[:6]}; !slices.Equal(tags, want) || len(mans) != 0 || listed {
		t.Fatalf("after DeleteManifestIf of the last manifest: tags %v, manifests %v, in catalog %v; want tags %v (written after the cut), no manifest, not listed", tags, mans, listed, want)
	}
	_, err = s.ResolveTag(ctx, img, "s")
	wantErr(t, "ResolveTag of a tag written before the cut", err, storage.ErrNotFound)
	wantErr(t, "DeleteManifestIf in an image without it", c.DeleteManifestIf(ctx, imgB, subject.Digest, time.Now()), storage.ErrNotFound)
}

// bigManifest returns a manifest of about n layers: its body and digest
// list are large enough for package dynamo to store them compressed.
func bigManifest(t *testing.T, n int) storage.Manifest {
	var layers []ocispec.Descriptor
	var blobs []digest.Digest
	for i := range n {
		d := digest.FromBytes(fmt.Appendf(nil, "collect layer %d", i))
		layers = append(layers, ocispec.Descriptor{MediaType: ocispec.MediaTypeImageLayerGzip, Digest: d, Size: int64(i)})
		blobs = append(blobs, d)
	}
	body, err := json.Marshal(ocispec.Manifest{MediaType: ocispec.MediaTypeImageManifest, Config: layers[0], Layers: layers[1:]})
	must(t, "marshal manifest", err)
	return storage.Manifest{Digest: digest.FromBytes(body), MediaType: ocispec.MediaTypeImageManifest, Size: int64(len(body)), Body: body, Blobs: blobs, Created: created}
}

// testCollectListImage: ListImage lists exactly the image's tags,
// manifests (without bodies, digest lists whole) and links.
func testCollectListImage(t *testing.T, s storage.Metadata) {
	ctx := t.Context()
	c := collector(t, s)
	img := storage.Image{Repo: "local", Name: "collect/list"}
	items, err := c.ListImage(ctx, img)
	must(t, "ListImage of an empty image", err)
	if items.Image != img || len(items.Tags)+len(items.Manifests)+len(items.Links) != 0 {
		t.Fatalf("ListImage of an empty image = %+v, want nothing listed for %s", items, img)
	}

	small := manifest("list small", "")
	withSubject := manifest("list referrer", small.Digest)
	big := bigManifest(t, 2000)
	inS3 := storage.Manifest{Digest: dg("list index"), MediaType: ocispec.MediaTypeImageIndex, Size: 500_000,
		BodyKey: storage.ManifestKey(dg("list index")), Children: []digest.Digest{small.Digest, big.Digest}, Created: created}
	for _, m := range []storage.Manifest{small, withSubject, big, inS3} {
		must(t, "PutManifest "+m.Digest.String(), s.PutManifest(ctx, img, m))
	}
	must(t, "PutTag latest", s.PutTag(ctx, img, "latest", big.Digest, storage.TagOverwrite))
	must(t, "PutTag v1", s.PutTag(ctx, img, "v1", small.Digest, storage.TagOverwrite))
	var links []storage.Blob
	for i, d := range big.Blobs[:3] {
		b := storage.Blob{Digest: d, Size: int64(i), Key: storage.UploadKey(fmt.Sprint("list-", i)), Created: created}
		record(t, s, b)
		must(t, "LinkBlob", s.LinkBlob(ctx, img, b))
		links = append(links, b)
	}
	// Items of another image, and an image whose name extends this one's.
	must(t, "PutManifest elsewhere", s.PutManifest(ctx, imgB, small))
	must(t, "PutTag elsewhere", s.PutTag(ctx, storage.Image{Repo: img.Repo, Name: img.Name + "x"}, "latest", small.Digest, storage.TagOverwrite))

	items, err = c.ListImage(ctx, img)
	must(t, "ListImage", err)
	if items.Image != img {
		t.Fatalf("ListImage: Image %v, want %v", items.Image, img)
	}
	tags := map[string]digest.Digest{}
	for _, ti := range items.Tags {
		tags[ti.Tag] = ti.Digest
		if ti.Updated.IsZero() {
			t.Errorf("ListImage: tag %s has no Updated", ti.Tag)
		}
	}
	if diff := cmp.Diff(map[string]digest.Digest{"latest": big.Digest, "v1": small.Digest}, tags); diff != "" || len(items.Tags) != 2 {
		t.Fatalf("ListImage tags %+v (-want +got):\n%s", items.Tags, diff)
	}
	byDigest := func(m storage.Manifest) string { return m.Digest.String() }
	got := slices.SortedFunc(slices.Values(items.Manifests), func(a, b storage.Manifest) int { return strings.Compare(byDigest(a), byDigest(b)) })
	var want []storage.Manifest
	for _, m := range []storage.Manifest{small, withSubject, big, inS3} {
		m.Body = nil
		want = append(want, m)
	}
	want = slices.SortedFunc(slices.Values(want), func(a, b storage.Manifest) int { return strings.Compare(byDigest(a), byDigest(b)) })
	if diff := cmp.Diff(want, got, cmpOpts...); diff != "" {
		t.Fatalf("ListImage manifests (bodies left out) (-want +got):\n%.3000s", diff)
	}
	for _, m := range got {
		if m.Body != nil || m.Touched.IsZero() {
			t.Errorf("ListImage: manifest %s has a body (%d bytes) or no Touched (%v)", m.Digest, len(m.Body), m.Touched)
		}
	}
	gotLinks := slices.SortedFunc(slices.Values(items.Links), func(a, b storage.Blob) int { return strings.Compare(a.Digest.String(), b.Digest.String()) })
	links = slices.SortedFunc(slices.Values(links), func(a, b storage.Blob) int { return strings.Compare(a.Digest.String(), b.Digest.String()) })
	if diff := cmp.Diff(links, gotLinks, cmpOpts...); diff != "" {
		t.Fatalf("ListImage links (-want +got):\n%s", diff)
	}
	for _, l := range gotLinks {
		st, err := s.StatBlob(ctx, img, l.Digest)
		must(t, "StatBlob", err)
		if !st.Touched.Equal(l.Touched) || l.Touched.IsZero() {
			t.Errorf("ListImage: link %s Touched %v, StatBlob says %v", l.Digest, l.Touched, st.Touched)
		}
	}
}

// entryKey names a scanned item ("" for storage.EntryOther).
func entryKey(e storage.Entry) string {
	switch e.Kind {
	case storage.EntryTag:
		return "tag " + e.Image.String() + ":" + e.Tag.Tag
	case storage.EntryManifest:
		return "manifest " + e.Image.String() + "@" + e.Manifest.Digest.String()
	case storage.EntryLink:
		return "link " + e.Image.String() + "@" + e.Blob.Digest.String()
	case storage.EntryBlob:
		return "blob " + e.Blob.Digest.String()
	case storage.EntryUpload:
		return "upload " + e.Upload.ID
	case storage.EntryMarker:
		return "marker " + e.Marker.Group + "/" + e.Marker.Key
	}
	return ""
}

// testCollectScan: a Scan followed over its pages returns every item once,
// whatever the page size, classified and decoded; a malformed cursor is an
// error.
func testCollectScan(t *testing.T, s storage.Metadata) {
	ctx := t.Context()
	c := collector(t, s)
	pm := proxyOf(t, s)
	imgX := storage.Image{Repo: "local", Name: "scan/x"}
	imgY := storage.Image{Repo: "hub", Name: "library/y"}
	subject := manifest("scan subject", "")
	ref := manifest("scan referrer", subject.Digest)
	big := bigManifest(t, 1500)
	layer := storage.Blob{Digest: dg("scan layer"), Size: 3, Key: storage.UploadKey("scan"), Created: created}
	record(t, s, layer)
	record(t, s, storage.Blob{Digest: dg("scan unlinked"), Size: 4, Created: created})
	want := map[string]bool{"blob " + layer.Digest.String(): true, "blob " + dg("scan unlinked").String(): true}
	for _, img := range []storage.Image{imgX, imgY} {
		for _, m := range []storage.Manifest{subject, ref} {
			must(t, "PutManifest", s.PutManifest(ctx, img, m))
			want["manifest "+img.String()+"@"+m.Digest.String()] = true
		}
		must(t, "PutTag", s.PutTag(ctx, img, "latest", ref.Digest, storage.TagOverwrite))
		must(t, "LinkBlob", s.LinkBlob(ctx, img, layer))
		want["tag "+img.String()+":latest"] = true
		want["link "+img.String()+"@"+layer.Digest.String()] = true
	}
	must(t, "PutManifest big", s.PutManifest(ctx, imgX, big))
	want["manifest "+imgX.String()+"@"+big.Digest.String()] = true
	live, expired := newUpload("scan-live", time.Hour), newUpload("scan-expired", -time.Minute)
	for _, u := range []storage.Upload{live, expired} {
		must(t, "CreateUpload "+u.ID, s.CreateUpload(ctx, u))
		want["upload "+u.ID] = true
	}
	liveM := storage.Marker{Group: "scan", Key: "live", Value: "v", Count: 2, Until: time.Now().Add(time.Hour).Truncate(time.Millisecond).UTC()}
	expiredM := storage.Marker{Group: "scan", Key: "expired", Value: "w", Until: time.Now().Add(-time.Minute).Truncate(time.Millisecond).UTC()}
	for _, m := range []storage.Marker{liveM, expiredM} {
		must(t, "PutMarker "+m.Key, pm.PutMarker(ctx, m))
		want["marker scan/"+m.Key] = true
	}

	for _, n := range []int{1, 2, 3, 0} {
		seen := map[string]int{}
		var all []storage.Entry
		cursor, pages := "", 0
		for {
			entries, next, err := c.Scan(ctx, cursor, n)
			must(t, fmt.Sprintf("Scan(n=%d) page %d", n, pages), err)
			pages++
			all = append(all, entries...)
			if next == "" {
				break
			}
			if pages > 1000 {
				t.Fatalf("Scan(n=%d): more than 1000 pages for %d items", n, len(want))
			}
			cursor = next
		}
		for _, e := range all {
			if k := entryKey(e); k != "" {
				seen[k]++
			}
		}
		for k := range want {
			if seen[k] != 1 {
				t.Errorf("Scan(n=%d): %s returned %d times, want once", n, k, seen[k])
			}
		}
		for k := range seen {
			if !want[k] {
				t.Errorf("Scan(n=%d): unexpected %s", n, k)
			}
		}
		if n == 1 && pages <= len(want) {
			t.Errorf("Scan(n=1): %d pages for at least %d items", pages, len(want))
		}
		if t.Failed() {
			t.FailNow()
		}
		if n != 0 {
			continue
		}
		// Decoded entries.
		for _, e := range all {
			switch e.Kind {
			case storage.EntryManifest:
				m := big
				if e.Manifest.Digest != big.Digest {
					m = map[digest.Digest]storage.Manifest{subject.Digest: subject, ref.Digest: ref}[e.Manifest.Digest]
				}
				m.Body = nil
				if diff := cmp.Diff(m, e.Manifest, cmpOpts...); diff != "" || e.Manifest.Body != nil || e.Manifest.Touched.IsZero() {
					t.Errorf("Scan: manifest %s in %s (touched %v) (-want +got, no body):\n%.2000s", e.Manifest.Digest, e.Image, e.Manifest.Touched, diff)
				}
			case storage.EntryLink, storage.EntryBlob:
				if e.Blob.Digest == layer.Digest {
					if diff := cmp.Diff(layer, e.Blob, cmpOpts...); diff != "" || e.Blob.Touched.IsZero() {
						t.Errorf("Scan: %s (-want +got):\n%s", entryKey(e), diff)
					}
				}
			case storage.EntryTag:
				if e.Tag.Digest != ref.Digest || e.Tag.Updated.IsZero() {
					t.Errorf("Scan: %s = %+v, want digest %s and Updated", entryKey(e), e.Tag, ref.Digest)
				}
			case storage.EntryUpload:
				u := map[string]storage.Upload{live.ID: live, expired.ID: expired}[e.Upload.ID]
				if diff := cmp.Diff(u, e.Upload, cmpOpts...); diff != "" {
					t.Errorf("Scan: %s (-want +got):\n%s", entryKey(e), diff)
				}
			case storage.EntryMarker:
				m := map[string]storage.Marker{liveM.Key: liveM, expiredM.Key: expiredM}[e.Marker.Key]
				if diff := cmp.Diff(m, e.Marker); diff != "" {
					t.Errorf("Scan: %s (-want +got):\n%s", entryKey(e), diff)
				}
			}
		}
	}

	for _, bad := range []string{"not a cursor!", base64.RawURLEncoding.EncodeToString([]byte("{]")), base64.RawURLEncoding.EncodeToString([]byte(`{"pk":""}`))} {
		if entries, _, err := c.Scan(ctx, bad, 2); err == nil {
			t.Errorf("Scan with the malformed cursor %q returned %d entries and no error", bad, len(entries))
		}
	}
}
