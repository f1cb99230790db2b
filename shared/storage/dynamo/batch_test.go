package dynamo_test

import (
	"bytes"
	"encoding/json"
	"fmt"
	"hash/crc32"
	"io"
	"net/http"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"testing"

	"github.com/aws/aws-sdk-go-v2/aws"
	awshttp "github.com/aws/aws-sdk-go-v2/aws/transport/http"
	"github.com/aws/aws-sdk-go-v2/service/dynamodb"
	"github.com/aws/aws-sdk-go-v2/service/dynamodb/types"
	"github.com/google/go-cmp/cmp"
	"github.com/google/go-cmp/cmp/cmpopts"
	digest "github.com/opencontainers/go-digest"

	"github.com/airlock-registry/airlock/shared/storage"
	"github.com/airlock-registry/airlock/shared/storage/dynamo"
)

// hookClient sends requests through inner, counts them, and hands each
// response to after (when set) with the request's operation
// ("BatchGetItem", from X-Amz-Target) and body; after may replace it.
type hookClient struct {
	inner aws.HTTPClient
	n     atomic.Int64
	mu    sync.Mutex
	after func(op string, req []byte, res *http.Response) (*http.Response, error)
}

func (c *hookClient) Do(r *http.Request) (*http.Response, error) {
	c.n.Add(1)
	var body []byte
	if r.Body != nil {
		var err error
		if body, err = io.ReadAll(r.Body); err != nil {
			return nil, err
		}
		r.Body = io.NopCloser(bytes.NewReader(body))
	}
	res, err := c.inner.Do(r)
	c.mu.Lock()
	after := c.after
	c.mu.Unlock()
	if err != nil || after == nil {
		return res, err
	}
	_, op, _ := strings.Cut(r.Header.Get("X-Amz-Target"), ".")
	return after(op, body, res)
}

func (c *hookClient) setAfter(f func(op string, req []byte, res *http.Response) (*http.Response, error)) {
	c.mu.Lock()
	defer c.mu.Unlock()
	c.after = f
}

// calls returns how many API calls fn made.
func (c *hookClient) calls(t *testing.T, what string, fn func() error) int64 {
	t.Helper()
	before := c.n.Load()
	if err := fn(); err != nil {
		t.Fatalf("%s: %v", what, err)
	}
	return c.n.Load() - before
}

// hookedStores returns a Store whose calls go through a hookClient (no SDK
// retries) and a plain Store on the same table.
func hookedStores(t *testing.T) (*dynamo.Store, *hookClient, *dynamo.Store, *dynamodb.Client, string) {
	db, table := testDynamo(t)
	hc := &hookClient{inner: awshttp.NewBuildableClient()}
	hooked := dynamodb.New(db.Options(), func(o *dynamodb.Options) {
		o.HTTPClient = hc
		o.RetryMaxAttempts = 1
	})
	return dynamo.New(hooked, table), hc, dynamo.New(db, table), db, table
}

// TestBatchCallCounts pins the batch reads to one BatchGetItem per call (of
// up to 100 distinct keys), none when every key is over DynamoDB's limits,
// and prices SearchImages and DeleteManifest's catalog check.
func TestBatchCallCounts(t *testing.T) {
	s, hc, plain, _, _ := hookedStores(t)
	ctx := t.Context()
	layer := digest.FromString("layer")
	m := storage.Manifest{Digest: digest.FromString("m"), MediaType: "application/vnd.oci.image.manifest.v1+json", Size: 2, Body: []byte("{}")}
	if _, err := plain.PutBlob(ctx, storage.Blob{Digest: layer, Size: 5}); err != nil { // LinkBlob needs the record
		t.Fatal(err)
	}
	var imgs []storage.Image
	for i := range 150 {
		img := storage.Image{Repo: "local", Name: fmt.Sprintf("img%03d", i)}
		imgs = append(imgs, img)
		if i%10 == 0 {
			for _, err := range []error{
				plain.PutTag(ctx, img, "latest", m.Digest, storage.TagOverwrite),
				plain.LinkBlob(ctx, img, storage.Blob{Digest: layer, Size: 5}),
				plain.PutManifest(ctx, img, m),
			} {
				if err != nil {
					t.Fatal(err)
				}
			}
		}
	}
	big := storage.Image{Repo: "local", Name: strings.Repeat("a", 3000)}
	dups := []storage.Image{imgs[0], imgs[1], imgs[0], big, imgs[10], imgs[10], imgs[0]}
	batch := func(imgs []storage.Image, tag string, d digest.Digest) []func() error {
		return []func() error{
			func() error { _, err := s.ResolveTags(ctx, imgs, tag); return err },
			func() error { _, _, err := s.StatBlobs(ctx, imgs, d); return err },
			func() error { _, err := s.HasManifests(ctx, imgs, d); return err },
		}
	}
	bigDigest := digest.Digest("sha256:" + strings.Repeat("0", 3000))
	cases := []struct {
		what string
		want int64
		fns  []func() error
	}{
		{"1 image", 1, batch(imgs[:1], "latest", layer)},
		{"7 images, repeated and oversized", 1, batch(dups, "latest", layer)},
		{"100 distinct images", 1, batch(imgs[:100], "latest", layer)},
		{"200 images, 100 distinct", 1, batch(append(imgs[:100:100], imgs[:100]...), "latest", layer)},
		{"150 distinct images", 2, batch(imgs, "latest", layer)},
		{"oversized images only", 0, batch([]storage.Image{big, big}, "latest", layer)},
		{"oversized tag and digest", 0, batch(imgs[:5], strings.Repeat("t", 2000), bigDigest)},
		{"no image", 0, batch(nil, "latest", layer)},
		{"SearchImages of a small catalog", 1, []func() error{
			func() error { _, err := s.SearchImages(ctx, "IMG1", 0); return err },
			func() error { _, err := s.SearchImages(ctx, "img1", 3); return err },
		}},
	}
	for _, c := range cases {
		for i, fn := range c.fns {
			if got := hc.calls(t, c.what, fn); got != c.want {
				t.Errorf("%s (call %d): %d DynamoDB calls, want %d", c.what, i, got, c.want)
			}
		}
	}

	// DeleteManifest of a manifest with one tag, not the image's last:
	// get, list tags, delete tag, delete manifest, get catalog entry, query manifests.
	img := imgs[0]
	m2 := storage.Manifest{Digest: digest.FromString("m2"), MediaType: m.MediaType, Size: 2, Body: []byte("{}")}
	if err := plain.PutManifest(ctx, img, m2); err != nil {
		t.Fatal(err)
	}
	if got := hc.calls(t, "DeleteManifest", func() error { return s.DeleteManifest(ctx, img, m.Digest) }); got != 6 {
		t.Errorf("DeleteManifest of a tagged manifest, not the last: %d DynamoDB calls, want 6", got)
	}
	// The last one, untagged: get, list tags, delete, get entry, query, delete entry.
	if got := hc.calls(t, "DeleteManifest last", func() error { return s.DeleteManifest(ctx, img, m2.Digest) }); got != 6 {
		t.Errorf("DeleteManifest of the last manifest: %d DynamoDB calls, want 6", got)
	}
}

// TestBatchUnprocessedKeys: keys a BatchGetItem leaves unprocessed are
// asked for again, and the answers merged.
func TestBatchUnprocessedKeys(t *testing.T) {
	s, hc, plain, _, table := hookedStores(t)
	ctx := t.Context()
	var imgs []storage.Image
	for i := range 10 {
		img := storage.Image{Repo: "local", Name: fmt.Sprintf("u%d", i)}
		imgs = append(imgs, img, img) // each twice
		if err := plain.PutTag(ctx, img, "latest", digest.FromString(img.Name), storage.TagOverwrite); err != nil {
			t.Fatal(err)
		}
	}
	imgs = append(imgs, storage.Image{Repo: "local", Name: "untagged"})
	var rewrites atomic.Int64
	hc.setAfter(func(op string, _ []byte, res *http.Response) (*http.Response, error) {
		if op != "BatchGetItem" || rewrites.Add(1) > 2 {
			return res, nil
		}
		return leaveUnprocessed(t, res, table)
	})
	var got []digest.Digest
	n := hc.calls(t, "ResolveTags", func() (err error) { got, err = s.ResolveTags(ctx, imgs, "latest"); return err })
	if n != 3 {
		t.Errorf("ResolveTags, half the keys left unprocessed twice: %d calls, want 3", n)
	}
	var want []digest.Digest
	for _, img := range imgs {
		d, err := plain.ResolveTag(ctx, img, "latest")
		if err != nil {
			d = ""
		}
		want = append(want, d)
	}
	if diff := cmp.Diff(want, got); diff != "" {
		t.Fatalf("ResolveTags with unprocessed keys (-want +got):\n%s", diff)
	}
}

// leaveUnprocessed rewrites a BatchGetItem response so that half its items
// (at least one) are returned as unprocessed keys instead.
func leaveUnprocessed(t *testing.T, res *http.Response, table string) (*http.Response, error) {
	body, err := io.ReadAll(res.Body)
	res.Body.Close()
	if err != nil {
		return nil, err
	}
	var out struct {
		Responses       map[string][]map[string]any `json:"Responses"`
		UnprocessedKeys map[string]map[string]any   `json:"UnprocessedKeys"`
	}
	if err := json.Unmarshal(body, &out); err != nil {
		t.Errorf("decode BatchGetItem response %.200s: %v", body, err)
		return nil, err
	}
	items := out.Responses[table]
	keep := len(items) / 2
	var keys []map[string]any
	for _, it := range items[keep:] {
		keys = append(keys, map[string]any{"pk": it["pk"], "sk": it["sk"]})
	}
	out.Responses[table] = items[:keep]
	out.UnprocessedKeys = map[string]map[string]any{table: {"Keys": keys}}
	body, err = json.Marshal(out)
	if err != nil {
		return nil, err
	}
	res.Body = io.NopCloser(bytes.NewReader(body))
	res.ContentLength = int64(len(body))
	res.Header.Set("Content-Length", strconv.Itoa(len(body)))
	res.Header.Set("X-Amz-Crc32", strconv.FormatUint(uint64(crc32.ChecksumIEEE(body)), 10))
	return res, nil
}

// cmpOptsEmpty treats nil and empty slices alike.
var cmpOptsEmpty = cmpopts.EquateEmpty()

// TestSearchPaging: SearchImages follows Query pages until it has n names
// (the filter runs after Limit, so pages may hold no match), and finds
// catalog entries written before they had a name attribute.
func TestSearchPaging(t *testing.T) {
	s, _, _, db, table := hookedStores(t)
	dynamo.SetSearchPage(s, 2)
	ctx := t.Context()
	var all, hits []string
	for i := range 15 {
		name := fmt.Sprintf("s%02d", i)
		if i%4 == 3 {
			name += "-hit"
		}
		img := storage.Image{Repo: "local", Name: name}
		m := storage.Manifest{Digest: digest.FromString(name), MediaType: "application/vnd.oci.image.manifest.v1+json", Size: 2, Body: []byte("{}")}
		if err := s.PutManifest(ctx, img, m); err != nil {
			t.Fatal(err)
		}
		all = append(all, img.String())
		if i%4 == 3 {
			hits = append(hits, img.String())
		}
	}
	// An entry as written before catalog items had attributes.
	legacy := "local/s07-legacy-hit"
	_, err := db.PutItem(ctx, &dynamodb.PutItemInput{TableName: aws.String(table), Item: map[string]types.AttributeValue{
		"pk": &types.AttributeValueMemberS{Value: "CATALOG"}, "sk": &types.AttributeValueMemberS{Value: legacy},
	}})
	if err != nil {
		t.Fatal(err)
	}
	hits = append(hits[:2], append([]string{legacy}, hits[2:]...)...) // s03 s07 legacy s11
	all = append(all[:8], append([]string{legacy}, all[8:]...)...)
	for _, c := range []struct {
		q    string
		n    int
		want []string
	}{
		{"HIT", 0, hits}, {"hit", 1, hits[:1]}, {"hit", 3, hits[:3]}, {"hit", 4, hits}, {"hit", 9, hits},
		{"legacy", 0, []string{legacy}}, {"LEGACY", 1, []string{legacy}},
		{"", 0, all}, {"", 5, all[:5]}, {"local/", 16, all}, {"nope", 3, nil},
	} {
		got, err := s.SearchImages(ctx, c.q, c.n)
		if err != nil {
			t.Fatal(err)
		}
		if diff := cmp.Diff(c.want, got, cmpOptsEmpty); diff != "" {
			t.Errorf("SearchImages %q n=%d with pages of 2 (-want +got):\n%s", c.q, c.n, diff)
		}
	}
}

// TestCatalogDeleteRace drives the interleavings of dropFromCatalog that a
// racing PutManifest could break: the push lands entirely between the
// delete's read of the catalog entry and its query of manifests, and
// entirely between that query and the conditional delete (which must then
// lose on the token). A token-less entry (written before tokens) is removed.
func TestCatalogDeleteRace(t *testing.T) {
	s, hc, plain, db, table := hookedStores(t)
	ctx := t.Context()
	mf := func(name string) storage.Manifest {
		return storage.Manifest{Digest: digest.FromString(name), MediaType: "application/vnd.oci.image.manifest.v1+json", Size: 2, Body: []byte("{}")}
	}
	listed := func(img storage.Image) bool {
		t.Helper()
		page, err := plain.ListImages(ctx, "", 0)
		if err != nil {
			t.Fatal(err)
		}
		for _, n := range page.Items {
			if n == img.String() {
				return true
			}
		}
		return false
	}
	for _, c := range []struct {
		name  string
		match func(op string, req []byte) bool
	}{
		{"push after reading the entry", func(op string, req []byte) bool {
			return op == "GetItem" && bytes.Contains(req, []byte(`"S":"CATALOG"`))
		}},
		{"push after querying manifests", func(op string, req []byte) bool {
			return op == "Query" && bytes.Contains(req, []byte(`"S":"M#"`))
		}},
	} {
		img := storage.Image{Repo: "local", Name: "race-" + strings.ReplaceAll(c.name, " ", "-")}
		old, fresh := mf(c.name+" old"), mf(c.name+" new")
		if err := plain.PutManifest(ctx, img, old); err != nil {
			t.Fatal(err)
		}
		var pushed atomic.Bool
		hc.setAfter(func(op string, req []byte, res *http.Response) (*http.Response, error) {
			if c.match(op, req) && !pushed.Swap(true) {
				if err := plain.PutManifest(ctx, img, fresh); err != nil {
					t.Errorf("%s: PutManifest: %v", c.name, err)
				}
			}
			return res, nil
		})
		if err := s.DeleteManifest(ctx, img, old.Digest); err != nil {
			t.Fatalf("%s: DeleteManifest: %v", c.name, err)
		}
		hc.setAfter(nil)
		if !pushed.Load() {
			t.Fatalf("%s: the hook never ran (request shapes changed?)", c.name)
		}
		if _, err := plain.GetManifest(ctx, img, fresh.Digest); err != nil {
			t.Fatalf("%s: GetManifest of the pushed manifest: %v", c.name, err)
		}
		if !listed(img) {
			t.Fatalf("%s: %s has a manifest but its catalog entry was removed", c.name, img)
		}
	}

	// An entry without a token goes with the last manifest.
	img := storage.Image{Repo: "local", Name: "legacy"}
	m := mf("legacy")
	if err := plain.PutManifest(ctx, img, m); err != nil {
		t.Fatal(err)
	}
	_, err := db.PutItem(ctx, &dynamodb.PutItemInput{TableName: aws.String(table), Item: map[string]types.AttributeValue{
		"pk": &types.AttributeValueMemberS{Value: "CATALOG"}, "sk": &types.AttributeValueMemberS{Value: img.String()},
	}})
	if err != nil {
		t.Fatal(err)
	}
	if err := plain.DeleteManifest(ctx, img, m.Digest); err != nil {
		t.Fatal(err)
	}
	if listed(img) {
		t.Fatalf("a token-less catalog entry stayed after the image's last manifest was deleted")
	}
}
