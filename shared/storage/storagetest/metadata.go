// Package storagetest is the conformance suite of the storage contract: every
// implementation of storage.Metadata and storage.Blobs runs the same tests,
// against every local emulator of the real AWS APIs.
//
// Use it from an implementation's tests:
//
//	func TestConformance(t *testing.T) {
//		storagetest.TestMetadata(t, func(t *testing.T) storage.Metadata { return newStore(t) })
//	}
package storagetest

import (
	"bytes"
	"errors"
	"fmt"
	"reflect"
	"sort"
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"
	"github.com/google/go-cmp/cmp/cmpopts"
	digest "github.com/opencontainers/go-digest"
	ocispec "github.com/opencontainers/image-spec/specs-go/v1"

	"github.com/airlock-registry/airlock/shared/storage"
)

// TestMetadata runs the storage.Metadata and storage.ProxyMetadata
// conformance suite, with storage.UploadLister, storage.Collector and the
// optional storage.BatchReader and storage.Searcher (a store that is not a
// ProxyMetadata, UploadLister, Collector, BatchReader or Searcher fails
// those tests: every store of this module is). The store's clock must be
// time.Now (touch times are compared with it). newStore must return an empty store (nothing in the catalog) each
// time it is called; each subtest calls it once and subtests run in parallel.
func TestMetadata(t *testing.T, newStore func(t *testing.T) storage.Metadata) {
	tests := []struct {
		name string
		fn   func(t *testing.T, s storage.Metadata)
	}{
		{"BlobRecord", testBlobRecord},
		{"BlobLink", testBlobLink},
		{"Manifest", testManifest},
		{"ManifestLargeBody", testManifestLargeBody},
		{"ManifestManyBlobs", testManifestManyBlobs},
		{"OversizedKeys", testOversizedKeys},
		{"Tags", testTags},
		{"TagOrder", testTagOrder},
		{"TagPagination", testTagPagination},
		{"Images", testImages},
		{"Referrers", testReferrers},
		{"DeleteManifest", testDeleteManifest},
		{"Upload", testUpload},
		{"UploadExpired", testUploadExpired},
		{"AcquireCommit", testAcquireCommit},
		{"CommitAt", testCommitAt},
		{"AcquireExpiredLease", testAcquireExpiredLease},
		{"RaceAcquire", testRaceAcquire},
		{"RaceTagCreateOnly", testRaceTagCreateOnly},
		// storage.UploadLister (metadata_uploadlist.go): every store implements it.
		{"UploadLister", testUploadLister},
		{"UploadListerCursor", testUploadListerCursor},
		// storage.Collector (metadata_collect.go): every store implements it.
		{"CollectTouch", testCollectTouch},
		{"CollectDeleteIf", testCollectDeleteIf},
		{"CollectDeleteManifestIf", testCollectDeleteManifestIf},
		{"CollectListImage", testCollectListImage},
		{"CollectScan", testCollectScan},
		// Catalog hygiene, storage.BatchReader and storage.Searcher (metadata_batch.go).
		{"CatalogHygiene", testCatalogHygiene},
		{"RaceCatalog", testRaceCatalog},
		{"BatchReads", testBatchReads},
		{"BatchMany", testBatchMany},
		{"Search", testSearch},
		// storage.ProxyMetadata (metadata_proxy.go): every store implements it.
		{"TagCheck", testTagCheck},
		{"Markers", testMarkers},
		{"MarkerExpiry", testMarkerExpiry},
		{"MarkerList", testMarkerList},
		{"AcquireMarker", testAcquireMarker},
		{"ReleaseMarker", testReleaseMarker},
		{"RaceAcquireMarker", testRaceAcquireMarker},
		{"ProxyOversizedKeys", testProxyOversizedKeys},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			tc.fn(t, newStore(t))
		})
	}
}

var (
	imgA = storage.Image{Repo: "local", Name: "team/app"}
	imgB = storage.Image{Repo: "local", Name: "team/other"}
	// created is a fixed timestamp of millisecond precision in UTC.
	created = time.Date(2026, 5, 4, 3, 2, 1, 123_000_000, time.UTC)
)

// dg returns the sha256 digest of s.
func dg(s string) digest.Digest { return digest.FromString(s) }

// cmpOpts compares times with Equal and treats nil and empty alike. It
// ignores the times only the store sets (Touched, Pulled): the tests of
// storage.Collector (metadata_collect.go) check them.
var cmpOpts = []cmp.Option{
	cmpopts.EquateEmpty(),
	cmpopts.IgnoreFields(storage.Blob{}, "Touched"),
	cmpopts.IgnoreFields(storage.Manifest{}, "Touched", "Pulled"),
}

func wantErr(t *testing.T, what string, err, target error) {
	t.Helper()
	if !errors.Is(err, target) {
		t.Fatalf("%s: got error %v, want %v", what, err, target)
	}
}

func must(t *testing.T, what string, err error) {
	t.Helper()
	if err != nil {
		t.Fatalf("%s: %v", what, err)
	}
}

// implements returns s as the capability T, or fails the test saying why
// the store must have it.
func implements[T any](t *testing.T, s any, why string) T {
	t.Helper()
	c, ok := s.(T)
	if !ok {
		t.Fatalf("%T does not implement %v: %s", s, reflect.TypeFor[T](), why)
	}
	return c
}

func testBlobRecord(t *testing.T, s storage.Metadata) {
	ctx := t.Context()
	d := dg("blob")
	_, err := s.GetBlob(ctx, d)
	wantErr(t, "GetBlob before PutBlob", err, storage.ErrNotFound)

	b := storage.Blob{Digest: d, Size: 1234, Key: storage.UploadKey("first"), Created: created}
	stored, err := s.PutBlob(ctx, b)
	must(t, "PutBlob", err)
	if diff := cmp.Diff(b, stored, cmpOpts...); diff != "" {
		t.Fatalf("PutBlob of a new record returned (-want +got):\n%s", diff)
	}
	got, err := s.GetBlob(ctx, d)
	must(t, "GetBlob", err)
	if diff := cmp.Diff(b, got, cmpOpts...); diff != "" {
		t.Fatalf("GetBlob (-want +got):\n%s", diff)
	}
	// A second PutBlob (an upload of the same bytes that lost the race) is
	// not an error, keeps the first record and returns it, key included.
	stored, err = s.PutBlob(ctx, storage.Blob{Digest: d, Size: 1234, Key: storage.UploadKey("second"), Created: created.Add(time.Hour)})
	must(t, "PutBlob again", err)
	if diff := cmp.Diff(b, stored, cmpOpts...); diff != "" {
		t.Fatalf("second PutBlob returned another record than the stored one (-want +got):\n%s", diff)
	}
	got, err = s.GetBlob(ctx, d)
	must(t, "GetBlob after second PutBlob", err)
	if diff := cmp.Diff(b, got, cmpOpts...); diff != "" {
		t.Fatalf("second PutBlob changed the record (-want +got):\n%s", diff)
	}
	// A record without a key reads back without one; its object key is the
	// content-addressed one.
	d2 := dg("blob-nokey")
	_, err = s.PutBlob(ctx, storage.Blob{Digest: d2, Size: 1, Created: created})
	must(t, "PutBlob without key", err)
	got, err = s.GetBlob(ctx, d2)
	must(t, "GetBlob without key", err)
	if got.Key != "" || got.ObjectKey() != storage.BlobKey(d2) {
		t.Fatalf("record without key: Key %q, ObjectKey %q; want \"\" and %q", got.Key, got.ObjectKey(), storage.BlobKey(d2))
	}
}

// record stores the global record of b (PutBlob), which LinkBlob requires.
func record(t *testing.T, s storage.Metadata, b storage.Blob) {
	t.Helper()
	_, err := s.PutBlob(t.Context(), b)
	must(t, "PutBlob "+b.Digest.String(), err)
}

func testBlobLink(t *testing.T, s storage.Metadata) {
	ctx := t.Context()
	d := dg("layer")
	_, err := s.StatBlob(ctx, imgA, d)
	wantErr(t, "StatBlob before LinkBlob", err, storage.ErrNotFound)
	wantErr(t, "UnlinkBlob before LinkBlob", s.UnlinkBlob(ctx, imgA, d), storage.ErrNotFound)

	b := storage.Blob{Digest: d, Size: 42, Key: storage.UploadKey("layer-upload"), Created: created}
	// A link never points at a missing record (collect.go: a purge deleting
	// the record must not race a new link to it).
	wantErr(t, "LinkBlob without a record", s.LinkBlob(ctx, imgA, b), storage.ErrNotFound)
	_, err = s.StatBlob(ctx, imgA, d)
	wantErr(t, "StatBlob after LinkBlob without a record", err, storage.ErrNotFound)

	record(t, s, b)
	must(t, "LinkBlob", s.LinkBlob(ctx, imgA, b))
	must(t, "LinkBlob again", s.LinkBlob(ctx, imgA, b))
	got, err := s.StatBlob(ctx, imgA, d)
	must(t, "StatBlob", err)
	if diff := cmp.Diff(b, got, cmpOpts...); diff != "" {
		t.Fatalf("StatBlob: the link must carry the record, key included (one read serves a blob GET) (-want +got):\n%s", diff)
	}
	_, err = s.StatBlob(ctx, imgB, d)
	wantErr(t, "StatBlob in another image", err, storage.ErrNotFound)

	must(t, "UnlinkBlob", s.UnlinkBlob(ctx, imgA, d))
	_, err = s.StatBlob(ctx, imgA, d)
	wantErr(t, "StatBlob after UnlinkBlob", err, storage.ErrNotFound)
	wantErr(t, "UnlinkBlob twice", s.UnlinkBlob(ctx, imgA, d), storage.ErrNotFound)
}

// manifest returns a manifest with every field set, its body derived from name.
func manifest(name string, subject digest.Digest) storage.Manifest {
	body := []byte(fmt.Sprintf(`{"schemaVersion":2,"name":%q}`+"\x00\xff", name))
	return storage.Manifest{
		Digest:       digest.FromBytes(body),
		MediaType:    ocispec.MediaTypeImageManifest,
		Size:         int64(len(body)),
		Body:         body,
		Blobs:        []digest.Digest{dg(name + "-config"), dg(name + "-layer1"), dg(name + "-layer0")},
		Subject:      subject,
		ArtifactType: "application/vnd.example." + name,
		Annotations:  map[string]string{"org.example.name": name, "empty": ""},
		Created:      created,
	}
}

func testManifest(t *testing.T, s storage.Metadata) {
	ctx := t.Context()
	m := manifest("m", "")
	_, err := s.GetManifest(ctx, imgA, m.Digest)
	wantErr(t, "GetManifest before PutManifest", err, storage.ErrNotFound)

	must(t, "PutManifest", s.PutManifest(ctx, imgA, m))
	got, err := s.GetManifest(ctx, imgA, m.Digest)
	must(t, "GetManifest", err)
	if diff := cmp.Diff(m, got, cmpOpts...); diff != "" {
		t.Fatalf("GetManifest (-want +got):\n%s", diff)
	}
	_, err = s.GetManifest(ctx, imgB, m.Digest)
	wantErr(t, "GetManifest in another image", err, storage.ErrNotFound)

	// An index stored in S3: Body nil, BodyKey set, Children listed.
	idx := storage.Manifest{
		Digest:    dg("index"),
		MediaType: ocispec.MediaTypeImageIndex,
		Size:      400_000,
		BodyKey:   storage.ManifestKey(dg("index")),
		Children:  []digest.Digest{m.Digest, dg("other-platform")},
		Created:   created,
	}
	must(t, "PutManifest index", s.PutManifest(ctx, imgA, idx))
	must(t, "PutManifest index again", s.PutManifest(ctx, imgA, idx))
	got, err = s.GetManifest(ctx, imgA, idx.Digest)
	must(t, "GetManifest index", err)
	if diff := cmp.Diff(idx, got, cmpOpts...); diff != "" {
		t.Fatalf("GetManifest index (-want +got):\n%s", diff)
	}
	if got.Body != nil {
		t.Fatalf("GetManifest index: Body = %d bytes, want nil", len(got.Body))
	}
	page, err := s.ListImages(ctx, "", 0)
	must(t, "ListImages", err)
	if diff := cmp.Diff([]string{imgA.String()}, page.Items); diff != "" || page.More {
		t.Fatalf("ListImages after two PutManifest: More=%v (-want +got):\n%s", page.More, diff)
	}
}

// testManifestLargeBody stores the largest body the registry keeps inline
// (350 KB; README, Architecture: Where data lives): it must fit in one item.
func testManifestLargeBody(t *testing.T, s storage.Metadata) {
	ctx := t.Context()
	body := bytes.Repeat([]byte("0123456789abcdef"), 350_000/16)
	m := storage.Manifest{
		Digest: digest.FromBytes(body), MediaType: ocispec.MediaTypeImageManifest,
		Size: int64(len(body)), Body: body, Created: created,
	}
	must(t, "PutManifest 350 KB", s.PutManifest(ctx, imgA, m))
	got, err := s.GetManifest(ctx, imgA, m.Digest)
	must(t, "GetManifest 350 KB", err)
	if !bytes.Equal(got.Body, body) {
		t.Fatalf("GetManifest 350 KB: body of %d bytes differs", len(got.Body))
	}
}

func testTags(t *testing.T, s storage.Metadata) {
	ctx := t.Context()
	d1, d2, d3 := dg("one"), dg("two"), dg("three")
	_, err := s.ResolveTag(ctx, imgA, "latest")
	wantErr(t, "ResolveTag before PutTag", err, storage.ErrNotFound)
	wantErr(t, "DeleteTag before PutTag", s.DeleteTag(ctx, imgA, "latest"), storage.ErrNotFound)

	resolve := func(tag string, want digest.Digest) {
		t.Helper()
		got, err := s.ResolveTag(ctx, imgA, tag)
		must(t, "ResolveTag "+tag, err)
		if got != want {
			t.Fatalf("ResolveTag %s = %s, want %s", tag, got, want)
		}
	}
	must(t, "PutTag", s.PutTag(ctx, imgA, "latest", d1, storage.TagOverwrite))
	resolve("latest", d1)
	must(t, "PutTag overwrite", s.PutTag(ctx, imgA, "latest", d2, storage.TagOverwrite))
	resolve("latest", d2)
	must(t, "PutTag create-only, same digest", s.PutTag(ctx, imgA, "latest", d2, storage.TagCreateOnly))
	wantErr(t, "PutTag create-only, other digest", s.PutTag(ctx, imgA, "latest", d3, storage.TagCreateOnly), storage.ErrConflict)
	resolve("latest", d2)
	must(t, "PutTag create-only, new tag", s.PutTag(ctx, imgA, "v1", d3, storage.TagCreateOnly))
	resolve("v1", d3)
	_, err = s.ResolveTag(ctx, imgB, "latest")
	wantErr(t, "ResolveTag in another image", err, storage.ErrNotFound)

	must(t, "DeleteTag", s.DeleteTag(ctx, imgA, "latest"))
	_, err = s.ResolveTag(ctx, imgA, "latest")
	wantErr(t, "ResolveTag after DeleteTag", err, storage.ErrNotFound)
	wantErr(t, "DeleteTag twice", s.DeleteTag(ctx, imgA, "latest"), storage.ErrNotFound)
	resolve("v1", d3)
	// A deleted tag can be created again under create-only.
	must(t, "PutTag create-only after delete", s.PutTag(ctx, imgA, "latest", d3, storage.TagCreateOnly))
	resolve("latest", d3)
}

// byteOrder returns names sorted by their bytes (Go's string order, which is
// also DynamoDB's sort-key order).
func byteOrder(names []string) []string {
	out := append([]string(nil), names...)
	sort.Strings(out)
	return out
}

func testTagOrder(t *testing.T, s storage.Metadata) {
	ctx := t.Context()
	page, err := s.ListTags(ctx, imgA, "", 0)
	must(t, "ListTags of an image without tags", err)
	if len(page.Items) != 0 || page.More {
		t.Fatalf("ListTags of an image without tags = %+v, want empty", page)
	}
	tags := []string{"a", "B", "a-1", "a.1", "a_1", "A", "0", "latest", "v1.10", "v1.9", "a1", "_x", "Z-", "a-"}
	for _, tag := range tags {
		must(t, "PutTag "+tag, s.PutTag(ctx, imgA, tag, dg(tag), storage.TagOverwrite))
	}
	must(t, "PutTag in another image", s.PutTag(ctx, imgB, "zz", dg("zz"), storage.TagOverwrite))
	want := byteOrder(tags) // 0 A B Z- _x a a- a-1 a.1 a1 a_1 latest v1.10 v1.9
	page, err = s.ListTags(ctx, imgA, "", 0)
	must(t, "ListTags", err)
	if diff := cmp.Diff(want, page.Items); diff != "" || page.More {
		t.Fatalf("ListTags: More=%v (-want +got):\n%s", page.More, diff)
	}
	page, err = s.ListTags(ctx, imgA, "a-", 3)
	must(t, "ListTags after a-", err)
	if diff := cmp.Diff([]string{"a-1", "a.1", "a1"}, page.Items); diff != "" || !page.More {
		t.Fatalf("ListTags after a-, n=3: More=%v (-want +got):\n%s", page.More, diff)
	}
}

func testTagPagination(t *testing.T, s storage.Metadata) {
	ctx := t.Context()
	var tags []string
	for i := range 23 {
		tags = append(tags, fmt.Sprintf("t%02d", i))
	}
	for _, tag := range tags {
		must(t, "PutTag "+tag, s.PutTag(ctx, imgA, tag, dg(tag), storage.TagOverwrite))
	}
	// Walk all pages of 5 as a client following Link headers does.
	var got []string
	last, pages := "", 0
	for {
		page, err := s.ListTags(ctx, imgA, last, 5)
		must(t, fmt.Sprintf("ListTags last=%q n=5", last), err)
		if pages++; pages > len(tags) {
			t.Fatalf("ListTags n=5: still More after %d pages (is last ignored?)", pages)
		}
		if len(page.Items) > 5 {
			t.Fatalf("ListTags n=5 returned %d items", len(page.Items))
		}
		got = append(got, page.Items...)
		if !page.More {
			break
		}
		if len(page.Items) != 5 {
			t.Fatalf("ListTags n=5: More with %d items", len(page.Items))
		}
		last = page.Items[len(page.Items)-1]
	}
	if diff := cmp.Diff(tags, got); diff != "" || pages != 5 {
		t.Fatalf("paged ListTags: %d pages, want 5 (-want +got):\n%s", pages, diff)
	}
	cases := []struct {
		last     string
		n        int
		want     []string
		wantMore bool
	}{
		{"", 23, tags, false},
		{"", 22, tags[:22], true},
		{"", 1, tags[:1], true},
		{"t21", 1, []string{"t22"}, false},
		{"t22", 5, nil, false},
		{"t05a", 2, []string{"t06", "t07"}, true}, // last need not be a tag
		{"s", 2, []string{"t00", "t01"}, true},
		{"u", 0, nil, false},
		{"t10", 0, tags[11:], false},
	}
	for _, c := range cases {
		page, err := s.ListTags(ctx, imgA, c.last, c.n)
		must(t, fmt.Sprintf("ListTags last=%q n=%d", c.last, c.n), err)
		if diff := cmp.Diff(c.want, page.Items, cmpOpts...); diff != "" || page.More != c.wantMore {
			t.Errorf("ListTags last=%q n=%d: More=%v want %v (-want +got):\n%s", c.last, c.n, page.More, c.wantMore, diff)
		}
	}
}

func testImages(t *testing.T, s storage.Metadata) {
	ctx := t.Context()
	page, err := s.ListImages(ctx, "", 0)
	must(t, "ListImages of an empty store", err)
	if len(page.Items) != 0 || page.More {
		t.Fatalf("ListImages of an empty store = %+v, want empty", page)
	}
	images := []storage.Image{
		{Repo: "local", Name: "b"}, {Repo: "local", Name: "a"}, {Repo: "hub", Name: "library/nginx"},
		{Repo: "local", Name: "a/b"}, {Repo: "local", Name: "a-b"}, {Repo: "docker", Name: "x"},
	}
	var want []string
	for i, img := range images {
		m := manifest(fmt.Sprint("image", i), "")
		must(t, "PutManifest "+img.String(), s.PutManifest(ctx, img, m))
		must(t, "PutManifest again "+img.String(), s.PutManifest(ctx, img, m))
		want = append(want, img.String())
	}
	want = byteOrder(want) // docker/x hub/library/nginx local/a local/a-b local/a/b local/b
	page, err = s.ListImages(ctx, "", 0)
	must(t, "ListImages", err)
	if diff := cmp.Diff(want, page.Items); diff != "" || page.More {
		t.Fatalf("ListImages: More=%v (-want +got):\n%s", page.More, diff)
	}
	page, err = s.ListImages(ctx, "local/a", 2)
	must(t, "ListImages after local/a", err)
	if diff := cmp.Diff([]string{"local/a-b", "local/a/b"}, page.Items); diff != "" || !page.More {
		t.Fatalf("ListImages after local/a, n=2: More=%v (-want +got):\n%s", page.More, diff)
	}
	page, err = s.ListImages(ctx, "local/a/b", 2)
	must(t, "ListImages after local/a/b", err)
	if diff := cmp.Diff([]string{"local/b"}, page.Items); diff != "" || page.More {
		t.Fatalf("ListImages after local/a/b, n=2: More=%v (-want +got):\n%s", page.More, diff)
	}
	// HasImage: what ListImages names, and nothing else (not a prefix, a
	// neighbour or the same name in another repository); an image whose
	// last manifest is deleted is no longer listed.
	for _, c := range []struct {
		img  storage.Image
		want bool
	}{
		{storage.Image{Repo: "local", Name: "a"}, true}, {storage.Image{Repo: "local", Name: "a/b"}, true},
		{storage.Image{Repo: "local", Name: "a/"}, false}, {storage.Image{Repo: "local", Name: "a-"}, false},
		{storage.Image{Repo: "local", Name: "c"}, false}, {storage.Image{Repo: "hub", Name: "x"}, false},
	} {
		got, err := s.HasImage(ctx, c.img)
		must(t, "HasImage "+c.img.String(), err)
		if got != c.want {
			t.Errorf("HasImage %s = %v, want %v", c.img, got, c.want)
		}
	}
	last := storage.Image{Repo: "docker", Name: "x"}
	must(t, "DeleteManifest docker/x", s.DeleteManifest(ctx, last, manifest("image5", "").Digest))
	if got, err := s.HasImage(ctx, last); err != nil || got {
		t.Errorf("HasImage %s after its only manifest was deleted = %v, %v; want false", last, got, err)
	}
}

// sortDescriptors orders descriptors by digest (the contract fixes no order).
func sortDescriptors(ds []ocispec.Descriptor) []ocispec.Descriptor {
	out := append([]ocispec.Descriptor(nil), ds...)
	sort.Slice(out, func(i, j int) bool { return out[i].Digest < out[j].Digest })
	return out
}

func testReferrers(t *testing.T, s storage.Metadata) {
	ctx := t.Context()
	subject := manifest("subject", "")
	must(t, "PutManifest subject", s.PutManifest(ctx, imgA, subject))
	refs, err := s.ListReferrers(ctx, imgA, subject.Digest)
	must(t, "ListReferrers without referrers", err)
	if len(refs) != 0 {
		t.Fatalf("ListReferrers without referrers = %v, want none", refs)
	}
	r1, r2 := manifest("sig", subject.Digest), manifest("sbom", subject.Digest)
	r2.Annotations = nil
	other := manifest("other", dg("another subject"))
	for _, m := range []storage.Manifest{r1, r2, other} {
		must(t, "PutManifest referrer", s.PutManifest(ctx, imgA, m))
	}
	must(t, "PutManifest referrer again", s.PutManifest(ctx, imgA, r1))
	refs, err = s.ListReferrers(ctx, imgA, subject.Digest)
	must(t, "ListReferrers", err)
	want := sortDescriptors([]ocispec.Descriptor{r1.Descriptor(), r2.Descriptor()})
	if diff := cmp.Diff(want, sortDescriptors(refs), cmpOpts...); diff != "" {
		t.Fatalf("ListReferrers (-want +got):\n%s", diff)
	}
	refs, err = s.ListReferrers(ctx, imgB, subject.Digest)
	must(t, "ListReferrers in another image", err)
	if len(refs) != 0 {
		t.Fatalf("ListReferrers in another image = %v, want none", refs)
	}
	// A referrer may be pushed before its subject exists.
	refs, err = s.ListReferrers(ctx, imgA, dg("another subject"))
	must(t, "ListReferrers of an absent subject", err)
	if diff := cmp.Diff([]ocispec.Descriptor{other.Descriptor()}, refs, cmpOpts...); diff != "" {
		t.Fatalf("ListReferrers of an absent subject (-want +got):\n%s", diff)
	}
}

func testDeleteManifest(t *testing.T, s storage.Metadata) {
	ctx := t.Context()
	subject := manifest("subject", "")
	m := manifest("signature", subject.Digest)
	keep := manifest("keep", subject.Digest)
	wantErr(t, "DeleteManifest of an absent manifest", s.DeleteManifest(ctx, imgA, m.Digest), storage.ErrNotFound)
	for _, x := range []storage.Manifest{subject, m, keep} {
		must(t, "PutManifest", s.PutManifest(ctx, imgA, x))
	}
	must(t, "PutManifest in another image", s.PutManifest(ctx, imgB, m))
	for _, tag := range []string{"a", "b", "c"} {
		must(t, "PutTag "+tag, s.PutTag(ctx, imgA, tag, m.Digest, storage.TagOverwrite))
	}
	must(t, "PutTag keep", s.PutTag(ctx, imgA, "keep", keep.Digest, storage.TagOverwrite))
	must(t, "PutTag in another image", s.PutTag(ctx, imgB, "a", m.Digest, storage.TagOverwrite))

	must(t, "DeleteManifest", s.DeleteManifest(ctx, imgA, m.Digest))
	_, err := s.GetManifest(ctx, imgA, m.Digest)
	wantErr(t, "GetManifest after DeleteManifest", err, storage.ErrNotFound)
	for _, tag := range []string{"a", "b", "c"} {
		_, err := s.ResolveTag(ctx, imgA, tag)
		wantErr(t, "ResolveTag "+tag+" after DeleteManifest", err, storage.ErrNotFound)
	}
	page, err := s.ListTags(ctx, imgA, "", 0)
	must(t, "ListTags after DeleteManifest", err)
	if diff := cmp.Diff([]string{"keep"}, page.Items); diff != "" {
		t.Fatalf("ListTags after DeleteManifest (-want +got):\n%s", diff)
	}
	refs, err := s.ListReferrers(ctx, imgA, subject.Digest)
	must(t, "ListReferrers after DeleteManifest", err)
	if diff := cmp.Diff([]ocispec.Descriptor{keep.Descriptor()}, refs, cmpOpts...); diff != "" {
		t.Fatalf("ListReferrers after DeleteManifest (-want +got):\n%s", diff)
	}
	// The other image is untouched.
	if d, err := s.ResolveTag(ctx, imgB, "a"); err != nil || d != m.Digest {
		t.Fatalf("ResolveTag in another image = %s, %v; want %s", d, err, m.Digest)
	}
	if _, err := s.GetManifest(ctx, imgB, m.Digest); err != nil {
		t.Fatalf("GetManifest in another image: %v", err)
	}
	wantErr(t, "DeleteManifest twice", s.DeleteManifest(ctx, imgA, m.Digest), storage.ErrNotFound)
	// Deleting the subject leaves its referrers listed (OCI: they stay).
	must(t, "DeleteManifest subject", s.DeleteManifest(ctx, imgA, subject.Digest))
	refs, err = s.ListReferrers(ctx, imgA, subject.Digest)
	must(t, "ListReferrers after deleting the subject", err)
	if len(refs) != 1 {
		t.Fatalf("ListReferrers after deleting the subject = %v, want the keep manifest", refs)
	}
}
