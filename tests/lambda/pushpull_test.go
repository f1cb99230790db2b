package lambda_test

import (
	"context"
	"crypto/rand"
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"runtime"
	"sort"
	"strconv"
	"strings"
	"testing"
	"time"

	digest "github.com/opencontainers/go-digest"
	"github.com/opencontainers/image-spec/specs-go"
	ocispec "github.com/opencontainers/image-spec/specs-go/v1"
)

const image = "lambda/app" // the default repository (infra/airlock.yaml: the group docker, writing to local) takes it

func randBytes(n int) []byte {
	b := make([]byte, n)
	_, _ = rand.Read(b)
	return b
}

// startUpload opens an upload session and returns its Location and the
// OCI-Chunk-Max-Length it announced.
func startUpload(t *testing.T) (string, int64) {
	t.Helper()
	return suite.fn.startUpload(t, image)
}

func (fn *function) startUpload(t *testing.T, image string) (string, int64) {
	t.Helper()
	r := fn.do(t, request{method: "POST", target: "/v2/" + image + "/blobs/uploads/"})
	wantStatus(t, "POST upload", r, http.StatusAccepted)
	loc := r.header("Location")
	if !strings.HasPrefix(loc, "/v2/"+image+"/blobs/uploads/") {
		t.Fatalf("POST upload: Location %q is not an upload session of %s", loc, image)
	}
	maxLen, err := strconv.ParseInt(r.header("OCI-Chunk-Max-Length"), 10, 64)
	if err != nil || maxLen <= 0 {
		t.Fatalf("POST upload: OCI-Chunk-Max-Length = %q, want the function's body limit", r.header("OCI-Chunk-Max-Length"))
	}
	if minLen, err := strconv.ParseInt(r.header("OCI-Chunk-Min-Length"), 10, 64); err != nil || minLen <= 0 || minLen > maxLen {
		t.Fatalf("POST upload: OCI-Chunk-Min-Length = %q, want 1..%d", r.header("OCI-Chunk-Min-Length"), maxLen)
	}
	return loc, maxLen
}

// patch sends one chunk at off and checks the 202 and its Range.
func patch(t *testing.T, loc string, off int64, chunk []byte) string {
	t.Helper()
	return suite.fn.patch(t, image, loc, off, chunk)
}

func (fn *function) patch(t *testing.T, image, loc string, off int64, chunk []byte) string {
	t.Helper()
	r := fn.do(t, request{method: "PATCH", target: loc, body: chunk, header: []string{
		"Content-Type", "application/octet-stream",
		"Content-Range", fmt.Sprintf("%d-%d", off, off+int64(len(chunk))-1)}})
	wantStatus(t, "PATCH", r, http.StatusAccepted)
	wantHeader(t, "PATCH", r, "Range", fmt.Sprintf("0-%d", off+int64(len(chunk))-1))
	next := r.header("Location")
	if !strings.HasPrefix(next, "/v2/"+image+"/blobs/uploads/") {
		t.Fatalf("PATCH: Location %q is not the upload session", next)
	}
	return next
}

// finish completes an upload with PUT ?digest= and checks the 201.
func finish(t *testing.T, loc string, d digest.Digest) {
	t.Helper()
	suite.fn.finish(t, image, loc, d)
}

func (fn *function) finish(t *testing.T, image, loc string, d digest.Digest) {
	t.Helper()
	sep := "?"
	if strings.Contains(loc, "?") {
		sep = "&"
	}
	r := fn.do(t, request{method: "PUT", target: loc + sep + "digest=" + d.String()})
	wantStatus(t, "PUT upload", r, http.StatusCreated)
	wantHeader(t, "PUT upload", r, "Location", "/v2/"+image+"/blobs/"+d.String())
	wantHeader(t, "PUT upload", r, "Docker-Content-Digest", d.String())
}

// pushMonolithic uploads a blob with POST ?digest= and its body.
func pushMonolithic(t *testing.T, name string, b []byte) digest.Digest {
	t.Helper()
	return suite.fn.pushMonolithic(t, name, b)
}

func (fn *function) pushMonolithic(t *testing.T, name string, b []byte) digest.Digest {
	t.Helper()
	d := digest.FromBytes(b)
	r := fn.do(t, request{method: "POST", target: "/v2/" + name + "/blobs/uploads/?digest=" + d.String(), body: b,
		header: []string{"Content-Type", "application/octet-stream"}})
	wantStatus(t, "POST ?digest=", r, http.StatusCreated)
	wantHeader(t, "POST ?digest=", r, "Location", "/v2/"+name+"/blobs/"+d.String())
	wantHeader(t, "POST ?digest=", r, "Docker-Content-Digest", d.String())
	return d
}

// fetchPresigned GETs a presigned URL from the blob store.
func fetchPresigned(t *testing.T, loc string) []byte {
	t.Helper()
	if !strings.HasPrefix(loc, suite.s3.Endpoint+"/") || !strings.Contains(loc, "X-Amz-Signature=") {
		t.Fatalf("Location %q is not a presigned URL of the S3 endpoint %s", loc, suite.s3.Endpoint)
	}
	res, err := http.Get(loc)
	if err != nil {
		t.Fatal(err)
	}
	defer res.Body.Close()
	b, err := io.ReadAll(res.Body)
	if err != nil || res.StatusCode != http.StatusOK {
		t.Fatalf("GET presigned URL: %d %v %.200s", res.StatusCode, err, b)
	}
	return b
}

func manifestOf(cfg, layer []byte, annotations map[string]string) []byte {
	m := ocispec.Manifest{Versioned: specs.Versioned{SchemaVersion: 2}, MediaType: ocispec.MediaTypeImageManifest,
		Config:      ocispec.Descriptor{MediaType: ocispec.MediaTypeImageConfig, Digest: digest.FromBytes(cfg), Size: int64(len(cfg))},
		Layers:      []ocispec.Descriptor{{MediaType: ocispec.MediaTypeImageLayerGzip, Digest: digest.FromBytes(layer), Size: int64(len(layer))}},
		Annotations: annotations}
	b, err := json.Marshal(m)
	if err != nil {
		panic(err)
	}
	return b
}

// TestPushPull pushes a small image in chunks and pulls it back, every
// request an API Gateway v2 event through the emulator.
func TestPushPull(t *testing.T) {
	ping := suite.fn.invoke(t, testdataEvent(t, "get-v2-base.json"))
	wantStatus(t, "GET /v2/", ping, http.StatusOK)
	if string(ping.body()) != "{}" {
		t.Fatalf("GET /v2/: body %q", ping.body())
	}

	layer := randBytes(300 << 10)
	ld := digest.FromBytes(layer)
	loc, _ := startUpload(t)
	loc = patch(t, loc, 0, layer[:200<<10])
	loc = patch(t, loc, 200<<10, layer[200<<10:])
	finish(t, loc, ld)

	cfg := []byte(`{"architecture":"amd64","os":"linux","rootfs":{"type":"layers","diff_ids":[]}}`)
	pushMonolithic(t, image, cfg)

	head := do(t, request{method: "HEAD", target: "/v2/" + image + "/blobs/" + ld.String()})
	wantStatus(t, "HEAD blob", head, http.StatusOK)
	wantHeader(t, "HEAD blob", head, "Content-Length", strconv.Itoa(len(layer)))
	wantHeader(t, "HEAD blob", head, "Docker-Content-Digest", ld.String())

	man := manifestOf(cfg, layer, nil)
	md := digest.FromBytes(man)
	put := do(t, request{method: "PUT", target: "/v2/" + image + "/manifests/v1", body: man,
		header: []string{"Content-Type", ocispec.MediaTypeImageManifest}})
	wantStatus(t, "PUT manifest", put, http.StatusCreated)
	wantHeader(t, "PUT manifest", put, "Location", "/v2/"+image+"/manifests/"+md.String())
	wantHeader(t, "PUT manifest", put, "Docker-Content-Digest", md.String())

	mhead := do(t, request{method: "HEAD", target: "/v2/" + image + "/manifests/v1",
		header: []string{"Accept", ocispec.MediaTypeImageManifest}})
	wantStatus(t, "HEAD manifest", mhead, http.StatusOK)
	wantHeader(t, "HEAD manifest", mhead, "Content-Length", strconv.Itoa(len(man)))
	wantHeader(t, "HEAD manifest", mhead, "Docker-Content-Digest", md.String())
	if len(mhead.body()) != 0 {
		t.Fatalf("HEAD manifest has a body of %d bytes", len(mhead.body()))
	}

	// A docker pull's GET: several Accept values, comma-joined by API Gateway.
	get := suite.fn.invoke(t, testdataEvent(t, "get-tag-multi-accept.json"))
	wantStatus(t, "GET manifest (testdata)", get, http.StatusOK)
	wantHeader(t, "GET manifest", get, "Content-Type", ocispec.MediaTypeImageManifest)
	wantHeader(t, "GET manifest", get, "Docker-Content-Digest", md.String())
	if string(get.body()) != string(man) {
		t.Fatalf("GET manifest: body %q, want %q", get.body(), man)
	}
	byDigest := do(t, request{method: "GET", target: "/v2/" + image + "/manifests/" + md.String(),
		header: []string{"Accept", "application/vnd.docker.distribution.manifest.v2+json", "Accept", ocispec.MediaTypeImageManifest}})
	wantStatus(t, "GET manifest by digest", byDigest, http.StatusOK)

	tags := suite.fn.invoke(t, testdataEvent(t, "get-tags-list-query.json"))
	wantStatus(t, "GET tags/list?n=10&last= (testdata)", tags, http.StatusOK)
	var list struct {
		Name string   `json:"name"`
		Tags []string `json:"tags"`
	}
	if err := json.Unmarshal(tags.body(), &list); err != nil || list.Name != image || len(list.Tags) != 1 || list.Tags[0] != "v1" {
		t.Fatalf("tags/list: %s (%v)", tags, err)
	}

	for _, b := range [][]byte{layer, cfg} {
		d := digest.FromBytes(b)
		r := do(t, request{method: "GET", target: "/v2/" + image + "/blobs/" + d.String()})
		wantStatus(t, "GET blob "+d.String(), r, http.StatusTemporaryRedirect)
		if got := fetchPresigned(t, r.header("Location")); digest.FromBytes(got) != d {
			t.Fatalf("presigned GET of %s served %d bytes with digest %s", d, len(got), digest.FromBytes(got))
		}
	}

	// Asked of the hosted repository itself: through the default group, a
	// miss goes on to the Docker Hub proxy (503 when it is unreachable).
	missing := do(t, request{method: "GET", target: "/v2/local/" + image + "/blobs/" + digest.FromString("absent").String()})
	wantStatus(t, "GET absent blob", missing, http.StatusNotFound)
	if !strings.Contains(missing.Body, "BLOB_UNKNOWN") || !strings.HasPrefix(missing.header("Content-Type"), "application/json") {
		t.Fatalf("GET absent blob: %s", missing)
	}
}

// TestColdStart starts a fresh function and reports the bootstrap's size,
// the Init Duration of the emulator's REPORT line, and the wall time of the
// first invoke (process start, Go init, configuration, AWS clients and one
// request) against a warm one.
func TestColdStart(t *testing.T) {
	ctx := context.Background()
	fn, err := startFunction(ctx, suite.rie, suite.bootstrap, nil)
	if err != nil {
		t.Fatal(err)
	}
	defer fn.stop()
	ev := testdataEvent(t, "get-v2-base.json")
	var times []time.Duration
	for i := 0; i < 6; i++ {
		t0 := time.Now()
		r := fn.invoke(t, ev)
		times = append(times, time.Since(t0))
		if r.StatusCode != http.StatusOK {
			t.Fatalf("GET /v2/ #%d: %s", i, r)
		}
	}
	d := fn.initDuration()
	if d == "" {
		t.Fatalf("no REPORT line with Init Duration in the emulator's output:\n%s", tail(fn.out.String(), 2000))
	}
	warm := times[1:]
	sort.Slice(warm, func(i, j int) bool { return warm[i] < warm[j] })
	if times[0] > 10*time.Second {
		t.Fatalf("first invoke took %v", times[0])
	}
	t.Logf("bootstrap (host %s, -s -w): %d bytes (%.1f MiB); emulator Init Duration: %s; first invoke %v, warm median %v",
		runtime.GOARCH, suite.bootstrapSize, float64(suite.bootstrapSize)/(1<<20), d,
		times[0].Round(time.Microsecond), warm[len(warm)/2].Round(time.Microsecond))
}
