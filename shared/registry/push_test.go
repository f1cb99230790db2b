package registry_test

import (
	"bytes"
	"context"
	"fmt"
	"net/http"
	"slices"
	"sync"
	"testing"

	"github.com/aws/aws-sdk-go-v2/service/dynamodb"
	"github.com/aws/aws-sdk-go-v2/service/s3"
	digest "github.com/opencontainers/go-digest"

	"github.com/airlock-registry/airlock/localdev/harness"
	"github.com/airlock-registry/airlock/shared/awscount"
	"github.com/airlock-registry/airlock/shared/registry"
	"github.com/airlock-registry/airlock/shared/storage"
	"github.com/airlock-registry/airlock/shared/storage/dynamo"
	"github.com/airlock-registry/airlock/shared/storage/s3store"
)

// newCountedEnv is newEnv whose stores count their AWS calls in the returned counter.
func newCountedEnv(t *testing.T, opts ...func(*registry.Deps)) (*env, *awscount.Counter) {
	t.Helper()
	c := &awscount.Counter{}
	ctx := context.Background()
	ddb, table := harness.TestDynamo(t)
	ddb = dynamodb.New(ddb.Options(), func(o *dynamodb.Options) { o.APIOptions = append(slices.Clip(o.APIOptions), c.APIOption()) })
	endpoint, bucket := harness.TestS3(t)
	s3c, err := s3store.NewClient(ctx, s3store.Options{Endpoint: endpoint, Region: harness.Region, AccessKey: harness.AccessKey, SecretKey: harness.SecretKey})
	if err != nil {
		t.Fatal(err)
	}
	s3c = s3.New(s3c.Options(), func(o *s3.Options) { o.APIOptions = append(slices.Clip(o.APIOptions), c.APIOption()) })
	meta, blobs := dynamo.New(ddb, table), s3store.New(s3c, bucket)
	e := newEnv(t, append([]func(*registry.Deps){func(d *registry.Deps) { d.Meta, d.Blobs = meta, blobs }}, opts...)...)
	e.meta, e.blobs, e.s3 = meta, blobs, endpoint
	return e, c
}

// calls counts the AWS calls f makes.
func calls(c *awscount.Counter, f func()) map[string]int {
	c.Reset()
	f()
	return c.Snapshot()
}

func sum(m map[string]int, prefix string) int {
	n := 0
	for k, v := range m {
		if len(k) > len(prefix) && k[:len(prefix)] == prefix {
			n += v
		}
	}
	return n
}

// TestPushCalls pins the AWS calls of each push request (the bench's call
// targets, README, Architecture: Request flows): a small monolithic POST is one PutObject; a staged
// chunk one PutObject, one GetItem and one PutItem; a chunk completing a part
// adds the lease (UpdateItem) and the part; a streamed PATCH stages nothing;
// PUT completes without HEAD, listing or copy; a blob GET is one read.
func TestPushCalls(t *testing.T) {
	e, c := newCountedEnv(t)

	config := randBytes(311)
	got := calls(c, func() {
		wantStatus(t, "POST ?digest=", e.do("POST", "/v2/app/blobs/uploads/?digest="+digest.FromBytes(config).String(), config), http.StatusCreated)
	})
	if sum(got, "S3.") != 1 || got["S3.PutObject"] != 1 {
		t.Errorf("monolithic POST of %d bytes: S3 calls %v, want one PutObject", len(config), got)
	}
	if got["DynamoDB.GetItem"] != 1 || got["DynamoDB.PutItem"] != 2 || sum(got, "DynamoDB.") != 3 {
		t.Errorf("monolithic POST: DynamoDB calls %v, want GetItem (record?), PutItem (record), PutItem (link)", got)
	}

	// Chunked: 21 chunks of 256 KiB (a part at the 20th), the rest in PUT.
	const chunk = 256 << 10
	data := randBytes(21*chunk + 1000)
	d := digest.FromBytes(data)
	loc := e.startUpload("app", "")
	for i := range 21 {
		got := calls(c, func() {
			r := e.do("PATCH", loc, data[i*chunk:(i+1)*chunk], "Content-Range", fmt.Sprintf("%d-%d", i*chunk, (i+1)*chunk-1))
			wantStatus(t, fmt.Sprintf("PATCH %d", i), r, http.StatusAccepted)
		})
		if i == 19 { // 20 × 256 KiB = 5 MiB: a part
			if got["DynamoDB.GetItem"] != 1 || got["DynamoDB.UpdateItem"] != 1 || got["DynamoDB.PutItem"] != 1 ||
				got["S3.PutObject"] != 1 || got["S3.GetObject"] != 19 || got["S3.UploadPart"] != 1 || got["S3.CreateMultipartUpload"] != 1 || sum(got, "S3.") != 22 {
				t.Errorf("PATCH completing a part: calls %v", got)
			}
			continue
		}
		if sum(got, "DynamoDB.") != 2 || got["DynamoDB.GetItem"] != 1 || got["DynamoDB.PutItem"] != 1 || sum(got, "S3.") != 1 || got["S3.PutObject"] != 1 {
			t.Errorf("PATCH %d (staged chunk): calls %v, want GetItem, PutItem and PutObject", i, got)
		}
	}
	got = calls(c, func() {
		r := e.do("PUT", withQuery(loc, "digest="+d.String()), data[21*chunk:], "Content-Range", fmt.Sprintf("%d-%d", 21*chunk, len(data)-1))
		wantStatus(t, "PUT last chunk", r, http.StatusCreated)
	})
	// The staged chunk and the body make the last part: read back once, no staging, no HEAD/LIST/copy.
	if got["S3.PutObject"] != 0 || got["S3.GetObject"] != 1 || got["S3.UploadPart"] != 1 || got["S3.CompleteMultipartUpload"] != 1 || got["S3.DeleteObjects"] != 0 || sum(got, "S3.") != 3 {
		t.Errorf("PUT with the last chunk: S3 calls %v", got)
	}
	if !bytes.Equal(e.pullBlob("app", d), data) {
		t.Fatal("chunked blob differs")
	}

	// Streamed: one PATCH without Content-Range, then an empty PUT.
	data = randBytes(9<<20 + 77)
	d = digest.FromBytes(data)
	loc = e.startUpload("app", "")
	got = calls(c, func() {
		wantStatus(t, "streamed PATCH", e.do("PATCH", loc, bytes.NewReader(data)), http.StatusAccepted)
		wantStatus(t, "PUT", e.do("PUT", withQuery(loc, "digest="+d.String()), nil), http.StatusCreated)
	})
	parts := got["S3.UploadPart"]
	if sum(got, "S3.") != parts+2 || got["S3.CreateMultipartUpload"] != 1 || got["S3.CompleteMultipartUpload"] != 1 {
		t.Errorf("streamed push: S3 calls %v, want CreateMultipartUpload, the parts and CompleteMultipartUpload", got)
	}
	got = calls(c, func() { e.pullBlob("app", d) })
	if sum(got, "S3.") != 0 || got["DynamoDB.GetItem"] != 1 || sum(got, "DynamoDB.") != 1 {
		t.Errorf("blob GET: calls %v, want one GetItem", got)
	}
	b, err := e.meta.GetBlob(t.Context(), d)
	if err != nil || b.Key != storage.UploadKey(uploadID(loc)) {
		t.Errorf("streamed blob recorded as %+v (%v), want the key it was uploaded to, %s", b, err, storage.UploadKey(uploadID(loc)))
	}
}

// TestConcurrentPartChunks races two chunks that each complete a part at the
// same offset: one wins, and the part in S3 is the winner's (the loser never
// wrote the part, as it did not hold the lease).
func TestConcurrentPartChunks(t *testing.T) {
	e := newEnv(t)
	for round := range 3 {
		head := randBytes(4 << 20)
		loc := e.startUpload("race", "")
		loc = e.patchChunks(loc, head, []int{len(head)})
		bodies := [][]byte{randBytes(2 << 20), randBytes(2 << 20)}
		win := e.racePatches(t, round, loc, len(head), bodies)
		all := append(append([]byte{}, head...), bodies[win]...)
		d := digest.FromBytes(all)
		wantStatus(t, "PUT", e.do("PUT", withQuery(loc, "digest="+d.String()), nil), http.StatusCreated)
		if !bytes.Equal(e.pullBlob("race", d), all) {
			t.Fatalf("round %d: blob is not the winning chunk", round)
		}
	}
}

// TestSameBlobRaceKeepsOneObject completes two sessions of the same bytes at
// once: both link the one recorded blob, and the loser's object is deleted.
func TestSameBlobRaceKeepsOneObject(t *testing.T) {
	e := newEnv(t)
	data := randBytes(storage.MinPartSize + 777)
	d := digest.FromBytes(data)
	locs := []string{e.startUpload("one", ""), e.startUpload("two", "")}
	for _, loc := range locs {
		wantStatus(t, "PATCH", e.do("PATCH", loc, bytes.NewReader(data)), http.StatusAccepted)
	}
	var wg sync.WaitGroup
	res := make([]resp, 2)
	for i := range 2 {
		wg.Go(func() { res[i] = e.do("PUT", withQuery(locs[i], "digest="+d.String()), nil) })
	}
	wg.Wait()
	for i := range 2 {
		wantStatus(t, "PUT", res[i], http.StatusCreated)
	}
	b, err := e.meta.GetBlob(t.Context(), d)
	if err != nil {
		t.Fatal(err)
	}
	exist := 0
	for _, loc := range locs {
		key := storage.UploadKey(uploadID(loc))
		ok, err := e.blobs.BlobExists(t.Context(), key)
		if err != nil {
			t.Fatal(err)
		}
		if ok {
			exist++
			if key != b.Key {
				t.Errorf("object %s kept, but the record names %s", key, b.Key)
			}
		}
	}
	if exist != 1 {
		t.Errorf("%d upload objects remain for one blob, want 1 (the loser's deleted)", exist)
	}
	for _, name := range []string{"one", "two"} {
		if !bytes.Equal(e.pullBlob(name, d), data) {
			t.Fatalf("%s: blob differs", name)
		}
	}
}
