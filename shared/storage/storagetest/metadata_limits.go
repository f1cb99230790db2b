package storagetest

import (
	"encoding/json"
	"fmt"
	"strings"
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"
	digest "github.com/opencontainers/go-digest"
	ocispec "github.com/opencontainers/image-spec/specs-go/v1"

	"github.com/airlock-registry/airlock/shared/storage"
)

// testManifestManyBlobs stores a manifest of ~1,500 layers whose body is just
// under the registry's inline limit (350 KB): body and digest list together
// exceed DynamoDB's 400 KB item limit unless the store packs them.
func testManifestManyBlobs(t *testing.T, s storage.Metadata) {
	ctx := t.Context()
	var layers []ocispec.Descriptor
	var blobs []digest.Digest
	var body []byte
	for i := 0; len(body) < 330_000; i++ {
		d := digest.FromBytes(fmt.Append(nil, i))
		layers = append(layers, ocispec.Descriptor{MediaType: ocispec.MediaTypeImageLayerGzip, Digest: d, Size: int64(i) * 1_234_567})
		blobs = append(blobs, d)
		if i%100 == 99 {
			var err error
			body, err = json.Marshal(ocispec.Manifest{MediaType: ocispec.MediaTypeImageManifest, Config: layers[0], Layers: layers[1:]})
			must(t, "marshal manifest", err)
		}
	}
	if len(body) > 350_000 {
		t.Fatalf("test manifest is %d bytes, want 330–350 KB", len(body))
	}
	m := storage.Manifest{
		Digest: digest.FromBytes(body), MediaType: ocispec.MediaTypeImageManifest,
		Size: int64(len(body)), Body: body, Blobs: blobs, Created: created,
	}
	must(t, fmt.Sprintf("PutManifest of %d bytes with %d blobs", len(body), len(blobs)), s.PutManifest(ctx, imgA, m))
	got, err := s.GetManifest(ctx, imgA, m.Digest)
	must(t, "GetManifest", err)
	if diff := cmp.Diff(m, got, cmpOpts...); diff != "" {
		t.Fatalf("GetManifest of a manifest with many blobs differs (-want +got):\n%.2000s", diff)
	}
	// An index with as many children, its body in S3.
	idx := storage.Manifest{
		Digest: dg("big index"), MediaType: ocispec.MediaTypeImageIndex, Size: 500_000,
		BodyKey: storage.ManifestKey(dg("big index")), Children: blobs, Created: created,
	}
	must(t, "PutManifest of an index with many children", s.PutManifest(ctx, imgA, idx))
	got, err = s.GetManifest(ctx, imgA, idx.Digest)
	must(t, "GetManifest index", err)
	if diff := cmp.Diff(idx, got, cmpOpts...); diff != "" {
		t.Fatalf("GetManifest of an index with many children differs (-want +got):\n%.2000s", diff)
	}
}

// testOversizedKeys: names, tags, digests and upload IDs longer than any
// store can key by are simply absent (the registry answers 404, never 500),
// and a listing may start after any string.
func testOversizedKeys(t *testing.T, s storage.Metadata) {
	ctx := t.Context()
	long := strings.Repeat("a", 3000)
	bigImg := storage.Image{Repo: "local", Name: long}
	bigDigest := digest.Digest("sha256:" + strings.Repeat("0", 3000))

	_, err := s.GetUpload(ctx, long)
	wantErr(t, "GetUpload of a 3000-byte id", err, storage.ErrNotFound)
	_, err = s.AcquireUpload(ctx, long, 0, "lease", time.Now().Add(time.Minute))
	wantErr(t, "AcquireUpload of a 3000-byte id", err, storage.ErrNotFound)
	must(t, "DeleteUpload of a 3000-byte id", s.DeleteUpload(ctx, long))
	_, err = s.ResolveTag(ctx, imgA, long)
	wantErr(t, "ResolveTag of a 3000-byte tag", err, storage.ErrNotFound)
	wantErr(t, "DeleteTag of a 3000-byte tag", s.DeleteTag(ctx, imgA, long), storage.ErrNotFound)
	_, err = s.ResolveTag(ctx, bigImg, "latest")
	wantErr(t, "ResolveTag in an image with a 3000-byte name", err, storage.ErrNotFound)
	_, err = s.StatBlob(ctx, bigImg, dg("x"))
	wantErr(t, "StatBlob in an image with a 3000-byte name", err, storage.ErrNotFound)
	wantErr(t, "UnlinkBlob in an image with a 3000-byte name", s.UnlinkBlob(ctx, bigImg, dg("x")), storage.ErrNotFound)
	_, err = s.GetManifest(ctx, imgA, bigDigest)
	wantErr(t, "GetManifest of a 3000-byte digest", err, storage.ErrNotFound)
	wantErr(t, "DeleteManifest of a 3000-byte digest", s.DeleteManifest(ctx, imgA, bigDigest), storage.ErrNotFound)
	_, err = s.GetBlob(ctx, bigDigest)
	wantErr(t, "GetBlob of a 3000-byte digest", err, storage.ErrNotFound)
	refs, err := s.ListReferrers(ctx, imgA, bigDigest)
	must(t, "ListReferrers of a 3000-byte digest", err)
	if len(refs) != 0 {
		t.Fatalf("ListReferrers of a 3000-byte digest = %v, want none", refs)
	}
	page, err := s.ListTags(ctx, bigImg, "", 0)
	must(t, "ListTags of an image with a 3000-byte name", err)
	if len(page.Items) != 0 || page.More {
		t.Fatalf("ListTags of an image with a 3000-byte name = %+v, want empty", page)
	}

	for _, tag := range []string{"t1", "t2", "t3"} {
		must(t, "PutTag "+tag, s.PutTag(ctx, imgA, tag, dg(tag), storage.TagOverwrite))
	}
	page, err = s.ListTags(ctx, imgA, "t1"+long, 0)
	must(t, "ListTags after a 3000-byte last", err)
	if diff := cmp.Diff([]string{"t2", "t3"}, page.Items); diff != "" || page.More {
		t.Fatalf("ListTags after t1+3000 bytes: More=%v (-want +got):\n%s", page.More, diff)
	}
	for _, img := range []storage.Image{{Repo: "local", Name: "a"}, {Repo: "local", Name: "b"}} {
		must(t, "PutManifest "+img.String(), s.PutManifest(ctx, img, manifest(img.Name, "")))
	}
	page, err = s.ListImages(ctx, "local/a"+long, 1)
	must(t, "ListImages after a 3000-byte last", err)
	if diff := cmp.Diff([]string{"local/b"}, page.Items); diff != "" || page.More {
		t.Fatalf("ListImages after local/a+3000 bytes: More=%v (-want +got):\n%s", page.More, diff)
	}
}
