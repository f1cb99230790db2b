package registry_test

import (
	"bytes"
	"fmt"
	"net/http"
	"slices"
	"strings"
	"testing"

	digest "github.com/opencontainers/go-digest"
	ocispec "github.com/opencontainers/image-spec/specs-go/v1"

	"github.com/airlock-registry/airlock/shared/registry"
	"github.com/airlock-registry/airlock/shared/storage"
)

// TestBodyLimit reproduces the AWS front door: bodies over Deps.MaxBody get
// 413 SIZE_INVALID, nothing is stored, and the session stays usable. The
// refused bodies come at offset 0, with bytes staged just short of a part,
// and after a multipart part exists.
func TestBodyLimit(t *testing.T) {
	const limit = 1 << 20
	e := newEnv(t, func(d *registry.Deps) { d.MaxBody = limit })
	good := pushGood(e)
	data := randBytes(11*limit + 4321)
	d := digest.FromBytes(data)
	mono := "/v2/app/blobs/uploads/?digest=" + d.String()
	runBad(t, e, []badCase{
		{"monolithic POST", "POST", mono, data[:2*limit], nil, 413, registry.CodeSizeInvalid},
		{"streamed monolithic POST", "POST", mono, bytes.NewReader(data), nil, 413, registry.CodeSizeInvalid},
		{"manifest PUT", "PUT", "/v2/app/manifests/bad", data[:limit+1], []string{"Content-Type", ocispec.MediaTypeImageManifest}, 413, registry.CodeSizeInvalid},
	})
	e.assertBlobAbsent("app", d)

	loc := e.startUpload("app", "")
	const chunk = limit / 2
	refuseAt := map[int]bool{0: true, 9 * chunk: true, 19 * chunk: true}
	for off := 0; off < len(data); {
		if refuseAt[off] {
			e.refuseTooBig(loc, data, off, limit)
		}
		n := min(chunk, len(data)-off)
		r := e.do("PATCH", loc, data[off:off+n], "Content-Range", fmt.Sprintf("%d-%d", off, off+n-1))
		wantStatus(t, fmt.Sprintf("PATCH at %d", off), r, http.StatusAccepted)
		off += n
	}
	wantStatus(t, "complete", e.do("PUT", withQuery(loc, "digest="+d.String()), nil), http.StatusCreated)
	if !bytes.Equal(e.pullBlob("app", d), data) {
		t.Fatal("blob pushed in chunks after 413s differs")
	}
	// A body of exactly the limit is accepted.
	exact := randBytes(limit)
	wantStatus(t, "POST at the limit", e.do("POST", "/v2/app/blobs/uploads/?digest="+digest.FromBytes(exact).String(), exact), http.StatusCreated)
	if got := e.tags("app"); !slices.Equal(got, []string{"good"}) {
		t.Errorf("tags = %v", got)
	}
	e.assertManifest("app", "good", good.manifest, ocispec.MediaTypeImageManifest)
}

// refuseTooBig sends every kind of over-limit body to the session loc, which
// has off bytes committed, and checks each is refused without effect.
func (e *env) refuseTooBig(loc string, data []byte, off, limit int) {
	t := e.t
	t.Helper()
	d := digest.FromBytes(data)
	want := "0-0"
	if off > 0 {
		want = fmt.Sprintf("0-%d", off-1)
	}
	cases := []struct {
		name   string
		method string
		body   any
		hdr    []string
	}{
		{"PATCH with Content-Length", "PATCH", data[off : off+limit+1], nil},
		{"streamed PATCH", "PATCH", bytes.NewReader(data[off:]), nil},
		{"ranged PATCH", "PATCH", data[off : off+limit+1], []string{"Content-Range", fmt.Sprintf("%d-%d", off, off+limit)}},
		{"streamed ranged PATCH", "PATCH", bytes.NewReader(data[off : off+limit+1]), []string{"Content-Range", fmt.Sprintf("%d-%d", off, off+limit)}},
		{"PUT with body", "PUT", data[off:], nil},
		{"streamed PUT", "PUT", bytes.NewReader(data[off:]), nil},
	}
	for _, tc := range cases {
		what := fmt.Sprintf("%s at %d", tc.name, off)
		path := loc
		if tc.method == "PUT" {
			path = withQuery(loc, "digest="+d.String())
		}
		r := e.do(tc.method, path, tc.body, tc.hdr...)
		wantErr(t, what, r, http.StatusRequestEntityTooLarge, registry.CodeSizeInvalid)
		if msg := errMessage(r); !strings.Contains(msg, "chunk") || !strings.Contains(msg, "airlock push") {
			t.Errorf("%s: 413 message %q does not name the ways out (chunked PATCH, airlock push)", what, msg)
		}
		st := e.do("GET", loc, nil)
		wantStatus(t, what+": session after 413", st, http.StatusNoContent)
		wantHeader(t, what+": session after 413", st, "Range", want)
		e.assertBlobAbsent("app", d)
	}
}

// TestHeadWithoutS3 shows blob HEAD answers from DynamoDB alone: it works
// even when the S3 object is gone.
func TestHeadWithoutS3(t *testing.T) {
	e := newEnv(t)
	data := randBytes(1234)
	d := e.pushBlob("app", data)
	b, err := e.meta.GetBlob(t.Context(), d)
	if err != nil {
		t.Fatal(err)
	}
	if err := e.blobs.DeleteBlob(t.Context(), b.ObjectKey()); err != nil {
		t.Fatal(err)
	}
	h := e.do("HEAD", "/v2/app/blobs/"+d.String(), nil)
	wantStatus(t, "HEAD", h, http.StatusOK)
	wantHeader(t, "HEAD", h, "Content-Length", "1234")
}

func TestNameBoundaries(t *testing.T) {
	e := newEnv(t)
	ok := []string{
		strings.Repeat("a", 255),
		"local/" + strings.Repeat("b", 249),
		"a__b/c.d/e-f/g---h/0",
		"a/b/c/d/e/f/g/h",
	}
	for _, name := range ok {
		body, _ := e.pushImage(name, "v1", ocispec.MediaTypeImageManifest)
		e.assertManifest(name, "v1", body, ocispec.MediaTypeImageManifest)
	}
	for _, name := range []string{"a___b", "a.-b", "a..b", "-a", "a_", "local/" + strings.Repeat("b", 250), "a/b/", "a:b"} {
		r := e.do("GET", "/v2/"+name+"/tags/list", nil)
		wantErr(t, "name "+name, r, http.StatusBadRequest, registry.CodeNameInvalid)
	}
	if got := len(e.catalog()); got != len(ok) {
		t.Errorf("catalog has %d names, want %d", got, len(ok))
	}
}

// TestManifestContentTypes: parameters on Content-Type, and a manifest body
// without mediaType (optional in OCI) typed by its Content-Type.
func TestManifestContentTypes(t *testing.T) {
	e := newEnv(t)
	oci := ocispec.MediaTypeImageManifest
	cfg := []byte(`{"os":"linux"}`)
	e.pushBlob("app", cfg)
	m := manifestJSON(oci, desc(ocispec.MediaTypeImageConfig, cfg))
	r := e.do("PUT", "/v2/app/manifests/p", m, "Content-Type", oci+"; charset=utf-8")
	wantStatus(t, "PUT with parameters", r, http.StatusCreated)
	e.assertManifest("app", "p", m, oci)
	noMT := []byte(`{"schemaVersion":2,"config":` + string(mustJSON(desc(ocispec.MediaTypeImageConfig, cfg))) + `,"layers":[]}`)
	wantStatus(t, "PUT without mediaType", e.putManifest("app", "n", oci, noMT), http.StatusCreated)
	e.assertManifest("app", "n", noMT, oci)
	// A mediaType in the body serves when Content-Type is absent.
	r = e.do("PUT", "/v2/app/manifests/b", m)
	wantStatus(t, "PUT typed by body", r, http.StatusCreated)
	e.assertManifest("app", "b", m, oci)
}

// TestPutSessionOtherAlgorithm: a session with no bytes completed by a PUT
// carrying the whole body and a sha512 digest.
func TestPutSessionOtherAlgorithm(t *testing.T) {
	e := newEnv(t)
	data := randBytes(storage.MinPartSize + 10)
	d := digest.SHA512.FromBytes(data)
	loc := e.startUpload("app", "")
	wantStatus(t, "PUT sha512", e.do("PUT", withQuery(loc, "digest="+d.String()), data), http.StatusCreated)
	if !bytes.Equal(e.pullBlob("app", d), data) {
		t.Fatal("blob differs")
	}
}
