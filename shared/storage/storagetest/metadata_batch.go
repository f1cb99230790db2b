package storagetest

import (
	"errors"
	"fmt"
	"strings"
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"
	digest "github.com/opencontainers/go-digest"

	"github.com/airlock-registry/airlock/shared/storage"
)

// batchReader returns s as a storage.BatchReader, or fails the test.
func batchReader(t *testing.T, s storage.Metadata) storage.BatchReader {
	t.Helper()
	return implements[storage.BatchReader](t, s, "group repositories read their hosted members with it, and every Metadata store of this module must implement it")
}

// searcher returns s as a storage.Searcher, or fails the test.
func searcher(t *testing.T, s storage.Metadata) storage.Searcher {
	t.Helper()
	return implements[storage.Searcher](t, s, "docker search uses it, and every Metadata store of this module must implement it")
}

// checkBatch compares the three batch reads of imgs with the one-by-one
// reads (ResolveTag of tag, StatBlob and GetManifest of d).
func checkBatch(t *testing.T, s storage.Metadata, imgs []storage.Image, tag string, d digest.Digest) {
	t.Helper()
	ctx := t.Context()
	br := batchReader(t, s)
	what := fmt.Sprintf("%d images, tag %.40q, digest %.40s", len(imgs), tag, d)

	wantTags := make([]digest.Digest, len(imgs))
	wantLinks, wantOK := make([]storage.Blob, len(imgs)), make([]bool, len(imgs))
	wantManifests := make([]bool, len(imgs))
	for i, img := range imgs {
		got, err := s.ResolveTag(ctx, img, tag)
		if err != nil && !errors.Is(err, storage.ErrNotFound) {
			t.Fatalf("ResolveTag %.80s: %v", img, err)
		}
		wantTags[i] = got
		b, err := s.StatBlob(ctx, img, d)
		if err != nil && !errors.Is(err, storage.ErrNotFound) {
			t.Fatalf("StatBlob %.80s: %v", img, err)
		}
		if err == nil {
			wantLinks[i], wantOK[i] = b, true
		}
		_, err = s.GetManifest(ctx, img, d)
		if err != nil && !errors.Is(err, storage.ErrNotFound) {
			t.Fatalf("GetManifest %.80s: %v", img, err)
		}
		wantManifests[i] = err == nil
	}

	tags, err := br.ResolveTags(ctx, imgs, tag)
	must(t, "ResolveTags "+what, err)
	if diff := cmp.Diff(wantTags, tags, cmpOpts...); diff != "" || len(tags) != len(imgs) {
		t.Fatalf("ResolveTags %s: %d results, differs from ResolveTag one by one (-want +got):\n%s", what, len(tags), diff)
	}
	links, ok, err := br.StatBlobs(ctx, imgs, d)
	must(t, "StatBlobs "+what, err)
	if len(links) != len(imgs) || len(ok) != len(imgs) {
		t.Fatalf("StatBlobs %s: %d links and %d oks, want %d each", what, len(links), len(ok), len(imgs))
	}
	if diff := cmp.Diff(wantOK, ok, cmpOpts...); diff != "" {
		t.Fatalf("StatBlobs %s: ok differs from StatBlob one by one (-want +got):\n%s", what, diff)
	}
	if diff := cmp.Diff(wantLinks, links, cmpOpts...); diff != "" {
		t.Fatalf("StatBlobs %s: links differ from StatBlob one by one (-want +got):\n%s", what, diff)
	}
	has, err := br.HasManifests(ctx, imgs, d)
	must(t, "HasManifests "+what, err)
	if diff := cmp.Diff(wantManifests, has, cmpOpts...); diff != "" || len(has) != len(imgs) {
		t.Fatalf("HasManifests %s: %d results, differs from GetManifest one by one (-want +got):\n%s", what, len(has), diff)
	}
}

// testBatchReads: batch reads answer, image by image and in order, what the
// one-by-one reads answer, with images present and absent, repeated, and
// with keys no store can hold; and they see writes at once (strongly consistent).
func testBatchReads(t *testing.T, s storage.Metadata) {
	ctx := t.Context()
	br := batchReader(t, s)
	long := strings.Repeat("a", 3000)
	imgC := storage.Image{Repo: "hub", Name: "library/third"}
	empty := storage.Image{Repo: "local", Name: "nothing"}
	big := storage.Image{Repo: "local", Name: long}
	bigDigest := digest.Digest("sha256:" + strings.Repeat("0", 3000))
	m1, m2 := manifest("batch-one", ""), manifest("batch-two", "")
	layer, other := dg("batch layer"), dg("batch other layer")

	must(t, "PutManifest m1 in A", s.PutManifest(ctx, imgA, m1))
	must(t, "PutManifest m1 in B", s.PutManifest(ctx, imgB, m1))
	must(t, "PutManifest m2 in C", s.PutManifest(ctx, imgC, m2))
	must(t, "PutTag latest in A", s.PutTag(ctx, imgA, "latest", m1.Digest, storage.TagOverwrite))
	must(t, "PutTag other in B", s.PutTag(ctx, imgB, "other", m1.Digest, storage.TagOverwrite))
	if pm, ok := s.(storage.ProxyMetadata); ok { // a proxy's cached tag reads as any tag
		must(t, "PutTagCheck latest in C", pm.PutTagCheck(ctx, imgC, "latest", storage.TagCheck{Digest: m2.Digest, Checked: created}))
	} else {
		must(t, "PutTag latest in C", s.PutTag(ctx, imgC, "latest", m2.Digest, storage.TagOverwrite))
	}
	linkA := storage.Blob{Digest: layer, Size: 11, Key: storage.UploadKey("batch-a"), Created: created}
	linkC := storage.Blob{Digest: layer, Size: 11, Created: created.Add(time.Hour)}
	record(t, s, linkA)
	record(t, s, storage.Blob{Digest: other, Size: 3, Created: created})
	must(t, "LinkBlob in A", s.LinkBlob(ctx, imgA, linkA))
	must(t, "LinkBlob in C", s.LinkBlob(ctx, imgC, linkC))
	must(t, "LinkBlob other in B", s.LinkBlob(ctx, imgB, storage.Blob{Digest: other, Size: 3, Created: created}))

	imgs := []storage.Image{imgA, imgB, imgA, big, imgC, empty, imgC, imgA}

	// What the results must be, not only that they equal the one-by-one reads.
	tags, err := br.ResolveTags(ctx, imgs, "latest")
	must(t, "ResolveTags", err)
	if diff := cmp.Diff([]digest.Digest{m1.Digest, "", m1.Digest, "", m2.Digest, "", m2.Digest, m1.Digest}, tags); diff != "" {
		t.Fatalf("ResolveTags latest in A B A big C empty C A (-want +got):\n%s", diff)
	}
	links, ok, err := br.StatBlobs(ctx, imgs, layer)
	must(t, "StatBlobs", err)
	if diff := cmp.Diff([]bool{true, false, true, false, true, false, true, true}, ok); diff != "" {
		t.Fatalf("StatBlobs in A B A big C empty C A: ok (-want +got):\n%s", diff)
	}
	if diff := cmp.Diff([]storage.Blob{linkA, {}, linkA, {}, linkC, {}, linkC, linkA}, links, cmpOpts...); diff != "" {
		t.Fatalf("StatBlobs in A B A big C empty C A: links, key included (-want +got):\n%s", diff)
	}
	has, err := br.HasManifests(ctx, imgs, m1.Digest)
	must(t, "HasManifests", err)
	if diff := cmp.Diff([]bool{true, true, true, false, false, false, false, true}, has); diff != "" {
		t.Fatalf("HasManifests m1 in A B A big C empty C A (-want +got):\n%s", diff)
	}

	for _, c := range []struct {
		tag string
		d   digest.Digest
	}{
		{"latest", layer}, {"latest", m1.Digest}, {"other", other}, {"other", m2.Digest},
		{"absent", dg("absent")}, {long, bigDigest}, {"latest", bigDigest}, {long, m1.Digest},
	} {
		checkBatch(t, s, imgs, c.tag, c.d)
	}
	checkBatch(t, s, []storage.Image{big, big, empty}, "latest", m1.Digest) // nothing to ask for
	checkBatch(t, s, []storage.Image{imgC}, "latest", m2.Digest)

	// No image: empty results, no error.
	tags, err = br.ResolveTags(ctx, nil, "latest")
	must(t, "ResolveTags of no image", err)
	links, ok, err = br.StatBlobs(ctx, []storage.Image{}, layer)
	must(t, "StatBlobs of no image", err)
	has, err = br.HasManifests(ctx, nil, m1.Digest)
	must(t, "HasManifests of no image", err)
	if len(tags)+len(links)+len(ok)+len(has) != 0 {
		t.Fatalf("batch reads of no image returned %d, %d, %d, %d results, want none", len(tags), len(links), len(ok), len(has))
	}

	// Writes are seen by the next batch read.
	must(t, "DeleteTag latest in A", s.DeleteTag(ctx, imgA, "latest"))
	must(t, "PutTag latest in B", s.PutTag(ctx, imgB, "latest", m2.Digest, storage.TagOverwrite))
	must(t, "UnlinkBlob in C", s.UnlinkBlob(ctx, imgC, layer))
	must(t, "LinkBlob in B", s.LinkBlob(ctx, imgB, linkC))
	must(t, "DeleteManifest m1 in A", s.DeleteManifest(ctx, imgA, m1.Digest))
	must(t, "PutManifest m1 in C", s.PutManifest(ctx, imgC, m1))
	tags, err = br.ResolveTags(ctx, imgs, "latest")
	must(t, "ResolveTags after writes", err)
	if diff := cmp.Diff([]digest.Digest{"", m2.Digest, "", "", m2.Digest, "", m2.Digest, ""}, tags); diff != "" {
		t.Fatalf("ResolveTags after writes (-want +got):\n%s", diff)
	}
	_, ok, err = br.StatBlobs(ctx, imgs, layer)
	must(t, "StatBlobs after writes", err)
	if diff := cmp.Diff([]bool{true, true, true, false, false, false, false, true}, ok); diff != "" {
		t.Fatalf("StatBlobs after writes: ok (-want +got):\n%s", diff)
	}
	has, err = br.HasManifests(ctx, imgs, m1.Digest)
	must(t, "HasManifests after writes", err)
	if diff := cmp.Diff([]bool{false, true, false, false, true, false, true, false}, has); diff != "" {
		t.Fatalf("HasManifests m1 after writes (-want +got):\n%s", diff)
	}
	checkBatch(t, s, imgs, "latest", layer)
	checkBatch(t, s, imgs, "latest", m1.Digest)
}

// testBatchMany: a batch of 100 distinct images (DynamoDB's most keys per
// BatchGetItem), and one of 250 with repeats (150 distinct).
func testBatchMany(t *testing.T, s storage.Metadata) {
	ctx := t.Context()
	br := batchReader(t, s)
	layer := dg("many layer")
	m := manifest("many", "")
	record(t, s, storage.Blob{Digest: layer, Size: 1, Created: created})
	var imgs []storage.Image
	for i := range 150 {
		img := storage.Image{Repo: "local", Name: fmt.Sprintf("many/img%03d", i)}
		imgs = append(imgs, img)
		if i%2 == 1 {
			continue
		}
		must(t, "PutTag in "+img.String(), s.PutTag(ctx, img, "latest", dg(img.Name), storage.TagOverwrite))
		must(t, "LinkBlob in "+img.String(), s.LinkBlob(ctx, img, storage.Blob{Digest: layer, Size: int64(i), Key: "k" + img.Name, Created: created}))
		if i%4 == 0 {
			must(t, "PutManifest in "+img.String(), s.PutManifest(ctx, img, m))
		}
	}
	check := func(imgs []storage.Image) {
		t.Helper()
		tags, err := br.ResolveTags(ctx, imgs, "latest")
		must(t, fmt.Sprintf("ResolveTags of %d images", len(imgs)), err)
		links, ok, err := br.StatBlobs(ctx, imgs, layer)
		must(t, fmt.Sprintf("StatBlobs of %d images", len(imgs)), err)
		has, err := br.HasManifests(ctx, imgs, m.Digest)
		must(t, fmt.Sprintf("HasManifests of %d images", len(imgs)), err)
		if len(tags) != len(imgs) || len(links) != len(imgs) || len(ok) != len(imgs) || len(has) != len(imgs) {
			t.Fatalf("batch reads of %d images returned %d, %d, %d, %d results", len(imgs), len(tags), len(links), len(ok), len(has))
		}
		for j, img := range imgs {
			var i int
			if _, err := fmt.Sscanf(img.Name, "many/img%03d", &i); err != nil {
				t.Fatal(err)
			}
			want := digest.Digest("")
			if i%2 == 0 {
				want = dg(img.Name)
			}
			if tags[j] != want {
				t.Fatalf("ResolveTags of %d images: [%d] %s = %q, want %q", len(imgs), j, img, tags[j], want)
			}
			if ok[j] != (i%2 == 0) || (ok[j] && (links[j].Size != int64(i) || links[j].Key != "k"+img.Name)) {
				t.Fatalf("StatBlobs of %d images: [%d] %s = %+v, %v", len(imgs), j, img, links[j], ok[j])
			}
			if has[j] != (i%4 == 0) {
				t.Fatalf("HasManifests of %d images: [%d] %s = %v, want %v", len(imgs), j, img, has[j], i%4 == 0)
			}
		}
	}
	check(imgs[:100])
	checkBatch(t, s, imgs[:100], "latest", layer)
	var mixed []storage.Image // 250 images, 150 distinct, in no order
	for i := range 100 {
		mixed = append(mixed, imgs[99-i], imgs[100+i%50], imgs[i])
	}
	mixed = mixed[:250]
	check(mixed)
	checkBatch(t, s, mixed, "latest", m.Digest)
}

// testSearch: SearchImages finds catalog names by substring, ASCII
// case-insensitively, in lexical order, up to n.
func testSearch(t *testing.T, s storage.Metadata) {
	ctx := t.Context()
	se := searcher(t, s)
	got, err := se.SearchImages(ctx, "", 0)
	must(t, "SearchImages of an empty store", err)
	if got == nil || len(got) != 0 {
		t.Fatalf("SearchImages of an empty store = %#v, want an empty slice", got)
	}
	names := []string{
		"local/team/app", "local/team/other", "hub/library/nginx", "hub/library/redis",
		"local/app-team", "docker/x", "local/teammate", "local/a.b", "local/a/b",
	}
	for _, name := range names {
		repo, n, _ := strings.Cut(name, "/")
		img := storage.Image{Repo: repo, Name: n}
		m := manifest(name, "")
		must(t, "PutManifest "+name, s.PutManifest(ctx, img, m))
		must(t, "PutManifest again "+name, s.PutManifest(ctx, img, m))
	}
	// Tags and links alone do not make a catalog entry.
	must(t, "PutTag without manifest", s.PutTag(ctx, storage.Image{Repo: "local", Name: "team-tagonly"}, "v", dg("x"), storage.TagOverwrite))
	record(t, s, storage.Blob{Digest: dg("x"), Size: 1, Created: created})
	must(t, "LinkBlob without manifest", s.LinkBlob(ctx, storage.Image{Repo: "local", Name: "team-linkonly"}, storage.Blob{Digest: dg("x"), Size: 1, Created: created}))

	all := byteOrder(names)
	team := []string{"local/app-team", "local/team/app", "local/team/other", "local/teammate"}
	cases := []struct {
		q    string
		n    int
		want []string
	}{
		{"", 0, all},
		{"", -1, all},
		{"", 3, all[:3]},
		{"/", 0, all},
		{"team", 0, team},
		{"TEAM", 0, team},
		{"tEaM", 2, team[:2]},
		{"team", 4, team},
		{"team", 5, team},
		{"team", 1, team[:1]},
		{"TeAm/", 0, []string{"local/team/app", "local/team/other"}},
		{"library/", 0, []string{"hub/library/nginx", "hub/library/redis"}},
		{"HUB/LIBRARY/NGINX", 0, []string{"hub/library/nginx"}},
		{"local/team/app", 0, []string{"local/team/app"}},
		{"local/team/app/", 0, nil},
		{"x", 0, []string{"docker/x", "hub/library/nginx"}},
		{"a.b", 0, []string{"local/a.b"}}, // literal, no pattern
		{"a/b", 0, []string{"local/a/b"}},
		{"a*b", 0, nil},
		{"a%", 0, nil},
		{"_", 0, nil},
		{"zzz", 0, nil},
		{"team-tagonly", 0, nil},
		{"linkonly", 0, nil},
		{"é", 0, nil},
		{strings.Repeat("a", 3000), 0, nil},
	}
	for _, c := range cases {
		got, err := se.SearchImages(ctx, c.q, c.n)
		must(t, fmt.Sprintf("SearchImages %.40q n=%d", c.q, c.n), err)
		if got == nil {
			t.Errorf("SearchImages %.40q n=%d = nil, want an empty slice", c.q, c.n)
		}
		if diff := cmp.Diff(c.want, got, cmpOpts...); diff != "" {
			t.Errorf("SearchImages %.40q n=%d (-want +got):\n%s", c.q, c.n, diff)
		}
	}
}

// inCatalog reports whether img is listed by ListImages and found by
// SearchImages of its full name, and fails when the two disagree.
func inCatalog(t *testing.T, s storage.Metadata, img storage.Image) bool {
	t.Helper()
	ctx := t.Context()
	page, err := s.ListImages(ctx, "", 0)
	must(t, "ListImages", err)
	listed := false
	for _, name := range page.Items {
		listed = listed || name == img.String()
	}
	found, err := searcher(t, s).SearchImages(ctx, img.String(), 0)
	must(t, "SearchImages "+img.String(), err)
	searched := false
	for _, name := range found {
		searched = searched || name == img.String()
	}
	if listed != searched {
		t.Fatalf("%s: listed by ListImages %v, found by SearchImages %v", img, listed, searched)
	}
	return listed
}

// testCatalogHygiene: deleting an image's last manifest removes it from the
// catalog (ListImages, SearchImages); deleting one of two does not; a new
// push brings it back.
func testCatalogHygiene(t *testing.T, s storage.Metadata) {
	ctx := t.Context()
	x := storage.Image{Repo: "local", Name: "hyg/x"}
	x2 := storage.Image{Repo: "local", Name: "hyg/x2"} // x's name is a prefix of its
	y := storage.Image{Repo: "local", Name: "hyg/y"}
	subject := manifest("hyg-subject", "")
	ref := manifest("hyg-referrer", subject.Digest)
	plain := manifest("hyg-plain", "")
	for _, m := range []storage.Manifest{subject, ref, plain} {
		must(t, "PutManifest in x", s.PutManifest(ctx, x, m))
	}
	must(t, "PutManifest in x2", s.PutManifest(ctx, x2, plain))
	must(t, "PutManifest in y", s.PutManifest(ctx, y, plain))
	must(t, "PutTag in x", s.PutTag(ctx, x, "latest", plain.Digest, storage.TagOverwrite))
	layer := storage.Blob{Digest: dg("hyg layer"), Size: 5, Created: created}
	record(t, s, layer)
	must(t, "LinkBlob in x", s.LinkBlob(ctx, x, layer))

	catalog := func(want ...string) {
		t.Helper()
		page, err := s.ListImages(ctx, "", 0)
		must(t, "ListImages", err)
		if diff := cmp.Diff(want, page.Items, cmpOpts...); diff != "" || page.More {
			t.Fatalf("ListImages: More=%v (-want +got):\n%s", page.More, diff)
		}
		found, err := searcher(t, s).SearchImages(ctx, "HYG/", 0)
		must(t, "SearchImages", err)
		if diff := cmp.Diff(want, found, cmpOpts...); diff != "" {
			t.Fatalf("SearchImages hyg/ (-want +got):\n%s", diff)
		}
	}
	catalog("local/hyg/x", "local/hyg/x2", "local/hyg/y")
	must(t, "DeleteManifest plain in x", s.DeleteManifest(ctx, x, plain.Digest))
	catalog("local/hyg/x", "local/hyg/x2", "local/hyg/y")
	must(t, "DeleteManifest subject in x", s.DeleteManifest(ctx, x, subject.Digest))
	catalog("local/hyg/x", "local/hyg/x2", "local/hyg/y") // the referrer is a manifest of x
	wantErr(t, "DeleteManifest of a manifest x does not have", s.DeleteManifest(ctx, x, dg("absent")), storage.ErrNotFound)
	catalog("local/hyg/x", "local/hyg/x2", "local/hyg/y")
	must(t, "DeleteManifest referrer in x (its last)", s.DeleteManifest(ctx, x, ref.Digest))
	catalog("local/hyg/x2", "local/hyg/y")
	if page, err := s.ListImages(ctx, "local/hyg/", 1); err != nil || fmt.Sprint(page.Items) != "[local/hyg/x2]" || !page.More {
		t.Fatalf("ListImages after local/hyg/, n=1 = %+v, %v; want [local/hyg/x2], More", page, err)
	}
	// The rest of x is untouched: its blob links stay.
	if got, err := s.StatBlob(ctx, x, layer.Digest); err != nil || got.Size != layer.Size {
		t.Fatalf("StatBlob in x after its last manifest went = %+v, %v", got, err)
	}
	// A new push brings x back.
	must(t, "PutManifest in x again", s.PutManifest(ctx, x, plain))
	catalog("local/hyg/x", "local/hyg/x2", "local/hyg/y")
	// y's and x2's last manifests: the catalog empties.
	must(t, "DeleteManifest in y", s.DeleteManifest(ctx, y, plain.Digest))
	must(t, "DeleteManifest in x2", s.DeleteManifest(ctx, x2, plain.Digest))
	catalog("local/hyg/x")
	must(t, "DeleteManifest in x", s.DeleteManifest(ctx, x, plain.Digest))
	catalog()
}

// testRaceCatalog: a PutManifest of an image racing the DeleteManifest of
// its last other manifest never leaves a stored manifest without a catalog
// entry; neither does a PutManifest racing the delete of the same digest.
func testRaceCatalog(t *testing.T, s storage.Metadata) {
	ctx := t.Context()
	race := func(img storage.Image, put, del storage.Manifest, delay time.Duration) {
		t.Helper()
		start := make(chan struct{})
		errs := make(chan error, 2)
		go func() {
			<-start
			time.Sleep(delay)
			errs <- s.PutManifest(ctx, img, put)
		}()
		go func() {
			<-start
			errs <- s.DeleteManifest(ctx, img, del.Digest) // del is stored: never ErrNotFound
		}()
		close(start)
		for range 2 {
			must(t, "PutManifest racing DeleteManifest", <-errs)
		}
	}
	for i := range 20 {
		img := storage.Image{Repo: "local", Name: fmt.Sprintf("race/other%02d", i)}
		old, fresh := manifest(fmt.Sprint("race-old", i), ""), manifest(fmt.Sprint("race-new", i), "")
		must(t, "PutManifest "+img.String(), s.PutManifest(ctx, img, old))
		race(img, fresh, old, time.Duration(i%10)*500*time.Microsecond)
		if _, err := s.GetManifest(ctx, img, fresh.Digest); err != nil {
			t.Fatalf("round %d: GetManifest of the manifest put: %v", i, err)
		}
		if _, err := s.GetManifest(ctx, img, old.Digest); !errors.Is(err, storage.ErrNotFound) {
			t.Fatalf("round %d: GetManifest of the manifest deleted: %v, want ErrNotFound", i, err)
		}
		if !inCatalog(t, s, img) {
			t.Fatalf("round %d: %s has a manifest (put while its last other one was deleted) but is not in the catalog", i, img)
		}
	}
	for i := range 10 {
		img := storage.Image{Repo: "local", Name: fmt.Sprintf("race/same%02d", i)}
		m := manifest(fmt.Sprint("race-same", i), "")
		must(t, "PutManifest "+img.String(), s.PutManifest(ctx, img, m))
		race(img, m, m, time.Duration(i%5)*500*time.Microsecond)
		_, err := s.GetManifest(ctx, img, m.Digest)
		if err != nil && !errors.Is(err, storage.ErrNotFound) {
			t.Fatal(err)
		}
		if err == nil && !inCatalog(t, s, img) {
			t.Fatalf("round %d: %s has its manifest (put again while deleted) but is not in the catalog", i, img)
		}
	}
}
