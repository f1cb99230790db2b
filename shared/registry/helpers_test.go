package registry_test

import (
	"bytes"
	"context"
	"crypto/rand"
	"encoding/json"
	"fmt"
	"io"
	"log/slog"
	"net/http"
	"net/http/httptest"
	"os"
	"strings"
	"sync"
	"testing"

	digest "github.com/opencontainers/go-digest"
	"github.com/opencontainers/image-spec/specs-go"
	ocispec "github.com/opencontainers/image-spec/specs-go/v1"

	"github.com/airlock-registry/airlock/localdev/harness"
	"github.com/airlock-registry/airlock/shared/config"
	"github.com/airlock-registry/airlock/shared/registry"
	"github.com/airlock-registry/airlock/shared/storage"
	"github.com/airlock-registry/airlock/shared/storage/dynamo"
	"github.com/airlock-registry/airlock/shared/storage/s3store"
)

func TestMain(m *testing.M) {
	code := m.Run()
	harness.StopAll()
	os.Exit(code)
}

// testConfig has one repository per deployment policy; "local" is the default.
const testConfig = `
default: local
repositories:
- {name: local, kind: hosted}
- {name: other, kind: hosted}
- {name: strict, kind: hosted, policy: disable-redeploy}
- {name: relaxed, kind: hosted, policy: disable-redeploy-except-latest}
- {name: ro, kind: hosted, policy: read-only}
`

// Media types used by the tests.
const (
	mtDockerManifest = "application/vnd.docker.distribution.manifest.v2+json"
	mtDockerList     = "application/vnd.docker.distribution.manifest.list.v2+json"
	mtDockerConfig   = "application/vnd.docker.container.image.v1+json"
	mtDockerLayer    = "application/vnd.docker.image.rootfs.diff.tar.gzip"
)

// env is one registry handler served over HTTP, backed by a fresh table and
// bucket in the local emulators.
type env struct {
	t     *testing.T
	deps  registry.Deps
	srv   *httptest.Server
	meta  storage.Metadata
	blobs storage.Blobs
	// s3 is the S3 endpoint presigned URLs must point at.
	s3 string
}

// noRedirect is the client every test request goes through: it shows 307s.
var noRedirect = &http.Client{CheckRedirect: func(*http.Request, []*http.Request) error { return http.ErrUseLastResponse }}

// newEnv builds a registry with testConfig; opts adjust its Deps.
func newEnv(t *testing.T, opts ...func(*registry.Deps)) *env {
	t.Helper()
	ddb, table := harness.TestDynamo(t)
	endpoint, bucket := harness.TestS3(t)
	s3c, err := s3store.NewClient(context.Background(), s3store.Options{
		Endpoint: endpoint, Region: harness.Region, AccessKey: harness.AccessKey, SecretKey: harness.SecretKey,
	})
	if err != nil {
		t.Fatalf("s3 client: %v", err)
	}
	e := &env{t: t, meta: dynamo.New(ddb, table), blobs: s3store.New(s3c, bucket), s3: endpoint}
	e.deps = registry.Deps{Meta: e.meta, Blobs: e.blobs, Config: mustConfig(t, testConfig),
		Logger: slog.New(slog.NewTextHandler(t.Output(), &slog.HandlerOptions{Level: slog.LevelWarn}))}
	for _, o := range opts {
		o(&e.deps)
	}
	e.serve()
	return e
}

func (e *env) serve() {
	reg, err := registry.New(e.deps)
	if err != nil {
		e.t.Fatalf("registry.New: %v", err)
	}
	e.srv = httptest.NewServer(reg)
	e.t.Cleanup(e.srv.Close)
}

// withConfig returns a second registry over the same stores with another configuration.
func (e *env) withConfig(doc string) *env {
	e2 := *e
	e2.deps.Config = mustConfig(e.t, doc)
	e2.serve()
	return &e2
}

// sub returns e reporting to t (a subtest).
func (e *env) sub(t *testing.T) *env {
	c := *e
	c.t = t
	return &c
}

func mustConfig(t *testing.T, doc string) *config.Config {
	t.Helper()
	c, err := config.Parse([]byte(doc))
	if err != nil {
		t.Fatalf("config: %v", err)
	}
	return c
}

// resp is a response with its body read.
type resp struct {
	Status int
	Header http.Header
	Body   []byte
}

func (r resp) String() string {
	b := r.Body
	if len(b) > 400 {
		b = b[:400]
	}
	return fmt.Sprintf("%d %s", r.Status, b)
}

// do sends a request to the registry. hdr holds header name/value pairs. A
// nil body sends none; body may be []byte (with Content-Length) or an
// io.Reader (streamed without Content-Length).
func (e *env) do(method, path string, body any, hdr ...string) resp {
	e.t.Helper()
	var rd io.Reader
	length := int64(0)
	switch b := body.(type) {
	case nil:
	case []byte:
		rd, length = bytes.NewReader(b), int64(len(b))
	case string:
		rd, length = strings.NewReader(b), int64(len(b))
	case io.Reader:
		rd, length = b, -1
	default:
		e.t.Fatalf("do: body of type %T", body)
	}
	req, err := http.NewRequest(method, e.srv.URL+path, rd)
	if err != nil {
		e.t.Fatalf("request %s %s: %v", method, path, err)
	}
	req.ContentLength = length
	for i := 0; i+1 < len(hdr); i += 2 {
		req.Header.Add(hdr[i], hdr[i+1])
	}
	return e.send(req)
}

func (e *env) send(req *http.Request) resp {
	e.t.Helper()
	res, err := noRedirect.Do(req)
	if err != nil {
		e.t.Fatalf("%s %s: %v", req.Method, req.URL, err)
	}
	defer res.Body.Close()
	b, err := io.ReadAll(res.Body)
	if err != nil {
		e.t.Fatalf("%s %s: read body: %v", req.Method, req.URL, err)
	}
	r := resp{Status: res.StatusCode, Header: res.Header, Body: b}
	if v := r.Header.Get("Docker-Distribution-API-Version"); v != "registry/2.0" {
		e.t.Errorf("%s %s: Docker-Distribution-API-Version = %q, want registry/2.0", req.Method, req.URL.Path, v)
	}
	if r.Status >= 400 {
		if ct := r.Header.Get("Content-Type"); ct != "application/json" {
			e.t.Errorf("%s %s: error %d has Content-Type %q, want application/json", req.Method, req.URL.Path, r.Status, ct)
		}
		if req.Method != http.MethodHead && errCode(r) == "" {
			e.t.Errorf("%s %s: error %d without an OCI error envelope: %s", req.Method, req.URL.Path, r.Status, b)
		}
	}
	return r
}

// errCode returns the first error code of an OCI error envelope ("" if none).
func errCode(r resp) registry.Code {
	var env struct {
		Errors []struct {
			Code    registry.Code `json:"code"`
			Message string        `json:"message"`
		} `json:"errors"`
	}
	if json.Unmarshal(r.Body, &env) != nil || len(env.Errors) == 0 || env.Errors[0].Message == "" {
		return ""
	}
	return env.Errors[0].Code
}

// errMessage returns the first error message of an OCI error envelope.
func errMessage(r resp) string {
	var env struct {
		Errors []struct {
			Message string `json:"message"`
		} `json:"errors"`
	}
	_ = json.Unmarshal(r.Body, &env)
	if len(env.Errors) == 0 {
		return ""
	}
	return env.Errors[0].Message
}

func wantStatus(t *testing.T, what string, r resp, status int) {
	t.Helper()
	if r.Status != status {
		t.Fatalf("%s: got %s, want status %d", what, r, status)
	}
}

// wantErr checks status and OCI error code (code "" for HEAD: no body).
func wantErr(t *testing.T, what string, r resp, status int, code registry.Code) {
	t.Helper()
	if r.Status != status {
		t.Errorf("%s: got %s, want %d %s", what, r, status, code)
		return
	}
	if code != "" && errCode(r) != code {
		t.Errorf("%s: got code %q (%s), want %s", what, errCode(r), r.Body, code)
	}
}

func wantHeader(t *testing.T, what string, r resp, name, want string) {
	t.Helper()
	if got := r.Header.Get(name); got != want {
		t.Errorf("%s: %s = %q, want %q", what, name, got, want)
	}
}

func randBytes(n int) []byte {
	b := make([]byte, n)
	_, _ = rand.Read(b)
	return b
}

// pushBlob uploads data monolithically (POST ?digest=) into name.
func (e *env) pushBlob(name string, data []byte) digest.Digest {
	e.t.Helper()
	d := digest.FromBytes(data)
	r := e.do("POST", "/v2/"+name+"/blobs/uploads/?digest="+d.String(), data)
	wantStatus(e.t, "push blob", r, http.StatusCreated)
	return d
}

// startUpload opens a session and returns its Location path.
func (e *env) startUpload(name string, query string) string {
	e.t.Helper()
	r := e.do("POST", "/v2/"+name+"/blobs/uploads/"+query, nil)
	wantStatus(e.t, "start upload", r, http.StatusAccepted)
	loc := r.Header.Get("Location")
	if !strings.HasPrefix(loc, "/v2/"+name+"/blobs/uploads/") {
		e.t.Fatalf("start upload: Location %q", loc)
	}
	return loc
}

// withQuery appends a query parameter to a Location that may have one.
func withQuery(loc, kv string) string {
	if strings.Contains(loc, "?") {
		return loc + "&" + kv
	}
	return loc + "?" + kv
}

func desc(mt string, data []byte) ocispec.Descriptor {
	return ocispec.Descriptor{MediaType: mt, Digest: digest.FromBytes(data), Size: int64(len(data))}
}

func mustJSON(v any) []byte {
	b, err := json.Marshal(v)
	if err != nil {
		panic(err)
	}
	return b
}

// manifestJSON is an image manifest of media type mt over cfg and layers.
func manifestJSON(mt string, cfg ocispec.Descriptor, layers ...ocispec.Descriptor) []byte {
	return mustJSON(ocispec.Manifest{Versioned: specs.Versioned{SchemaVersion: 2}, MediaType: mt, Config: cfg, Layers: layers})
}

// indexJSON is an index of media type mt over children.
func indexJSON(mt string, children ...ocispec.Descriptor) []byte {
	return mustJSON(ocispec.Index{Versioned: specs.Versioned{SchemaVersion: 2}, MediaType: mt, Manifests: children})
}

// pushImage pushes a random config and layer and an image manifest of media
// type mt tagged tag (by digest when tag is ""). It returns the manifest.
func (e *env) pushImage(name, tag, mt string) ([]byte, digest.Digest) {
	e.t.Helper()
	cfgMT, layerMT := ocispec.MediaTypeImageConfig, ocispec.MediaTypeImageLayerGzip
	if mt == mtDockerManifest {
		cfgMT, layerMT = mtDockerConfig, mtDockerLayer
	}
	cfg := []byte(fmt.Sprintf(`{"architecture":"amd64","os":"linux","n":%q}`, rand.Text()))
	layer := randBytes(1000)
	e.pushBlob(name, cfg)
	e.pushBlob(name, layer)
	body := manifestJSON(mt, desc(cfgMT, cfg), desc(layerMT, layer))
	ref := tag
	if ref == "" {
		ref = digest.FromBytes(body).String()
	}
	r := e.putManifest(name, ref, mt, body)
	wantStatus(e.t, "push manifest", r, http.StatusCreated)
	return body, digest.FromBytes(body)
}

func (e *env) putManifest(name, ref, mt string, body []byte) resp {
	e.t.Helper()
	return e.do("PUT", "/v2/"+name+"/manifests/"+ref, body, "Content-Type", mt)
}

// tags returns the whole tag list of name (nil when the name is unknown).
func (e *env) tags(name string) []string {
	e.t.Helper()
	r := e.do("GET", "/v2/"+name+"/tags/list", nil)
	if r.Status == http.StatusNotFound {
		return nil
	}
	wantStatus(e.t, "tags list", r, http.StatusOK)
	var l struct {
		Name string   `json:"name"`
		Tags []string `json:"tags"`
	}
	if err := json.Unmarshal(r.Body, &l); err != nil {
		e.t.Fatalf("tags list: %v: %s", err, r.Body)
	}
	return l.Tags
}

// catalog returns the whole catalog.
func (e *env) catalog() []string {
	e.t.Helper()
	r := e.do("GET", "/v2/_catalog", nil)
	wantStatus(e.t, "catalog", r, http.StatusOK)
	var c struct {
		Repositories []string `json:"repositories"`
	}
	if err := json.Unmarshal(r.Body, &c); err != nil {
		e.t.Fatalf("catalog: %v: %s", err, r.Body)
	}
	return c.Repositories
}

// pullBlob GETs a blob, checks the 307 to S3 and fetches the presigned URL.
func (e *env) pullBlob(name string, d digest.Digest) []byte {
	e.t.Helper()
	r := e.do("GET", "/v2/"+name+"/blobs/"+d.String(), nil)
	wantStatus(e.t, "get blob", r, http.StatusTemporaryRedirect)
	wantHeader(e.t, "get blob", r, "Docker-Content-Digest", d.String())
	loc := r.Header.Get("Location")
	if !strings.HasPrefix(loc, e.s3+"/") || strings.HasPrefix(loc, e.srv.URL) {
		e.t.Fatalf("get blob: Location %q is not on the S3 endpoint %s", loc, e.s3)
	}
	res, err := http.Get(loc)
	if err != nil {
		e.t.Fatalf("fetch presigned URL: %v", err)
	}
	defer res.Body.Close()
	b, err := io.ReadAll(res.Body)
	if err != nil || res.StatusCode != http.StatusOK {
		e.t.Fatalf("fetch presigned URL: %d %v %.300s", res.StatusCode, err, b)
	}
	return b
}

// assertBlobAbsent checks HEAD and GET of a blob answer 404 BLOB_UNKNOWN.
func (e *env) assertBlobAbsent(name string, d digest.Digest) {
	e.t.Helper()
	wantErr(e.t, "HEAD absent blob", e.do("HEAD", "/v2/"+name+"/blobs/"+d.String(), nil), http.StatusNotFound, "")
	wantErr(e.t, "GET absent blob", e.do("GET", "/v2/"+name+"/blobs/"+d.String(), nil), http.StatusNotFound, registry.CodeBlobUnknown)
}

// assertManifest checks GET of name:ref returns exactly body.
func (e *env) assertManifest(name, ref string, body []byte, mt string) {
	e.t.Helper()
	r := e.do("GET", "/v2/"+name+"/manifests/"+ref, nil, "Accept", mt)
	wantStatus(e.t, "get manifest "+ref, r, http.StatusOK)
	if !bytes.Equal(r.Body, body) {
		e.t.Fatalf("get manifest %s: body differs (%d bytes, want %d)", ref, len(r.Body), len(body))
	}
	wantHeader(e.t, "get manifest "+ref, r, "Content-Type", mt)
	wantHeader(e.t, "get manifest "+ref, r, "Docker-Content-Digest", digest.FromBytes(body).String())
}

// racePatches sends one PATCH per body at once, all at byte start of the
// session at loc, and returns the index of the one that won: exactly one must
// get 202 and every other 416 BLOB_UPLOAD_INVALID with a Range header.
func (e *env) racePatches(t *testing.T, round int, loc string, start int, bodies [][]byte) int {
	t.Helper()
	res := make([]resp, len(bodies))
	var wg sync.WaitGroup
	for i := range bodies {
		wg.Go(func() {
			res[i] = e.do("PATCH", loc, bodies[i], "Content-Range", fmt.Sprintf("%d-%d", start, start+len(bodies[i])-1))
		})
	}
	wg.Wait()
	win := -1
	for i, r := range res {
		switch r.Status {
		case http.StatusAccepted:
			if win >= 0 {
				t.Fatalf("round %d: two PATCHes at offset %d were accepted", round, start)
			}
			win = i
		case http.StatusRequestedRangeNotSatisfiable:
			wantErr(t, "losing PATCH", r, http.StatusRequestedRangeNotSatisfiable, registry.CodeBlobUploadInvalid)
			if r.Header.Get("Range") == "" {
				t.Errorf("round %d: 416 without a Range header", round)
			}
		default:
			t.Fatalf("round %d: PATCH %d got %s, want 202 or 416", round, i, r)
		}
	}
	if win < 0 {
		t.Fatalf("round %d: no PATCH won: %v", round, res)
	}
	return win
}
