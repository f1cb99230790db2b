package registry_test

import (
	"bytes"
	"encoding/json"
	"fmt"
	"net/http"
	"slices"
	"strings"
	"testing"

	digest "github.com/opencontainers/go-digest"
	ocispec "github.com/opencontainers/image-spec/specs-go/v1"

	"github.com/airlock-registry/airlock/shared/registry"
)

// badCase is one request that must be refused.
type badCase struct {
	name   string
	method string
	path   string
	body   any
	hdr    []string
	status int
	code   registry.Code
}

func runBad(t *testing.T, e *env, cases []badCase) {
	t.Helper()
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			e := e.sub(t)
			r := e.do(tc.method, tc.path, tc.body, tc.hdr...)
			wantErr(t, tc.name, r, tc.status, tc.code)
		})
	}
}

// goodState is what a bad-input test pushes first and checks last.
type goodState struct {
	manifest []byte
	layer    digest.Digest
	layerB   []byte
}

func pushGood(e *env) goodState {
	layer := randBytes(3000)
	cfg := []byte(`{"os":"linux"}`)
	e.pushBlob("app", cfg)
	ld := e.pushBlob("app", layer)
	m := manifestJSON(ocispec.MediaTypeImageManifest, desc(ocispec.MediaTypeImageConfig, cfg), desc(ocispec.MediaTypeImageLayerGzip, layer))
	wantStatus(e.t, "push good", e.putManifest("app", "good", ocispec.MediaTypeImageManifest, m), http.StatusCreated)
	return goodState{manifest: m, layer: ld, layerB: layer}
}

// check asserts that only the good image is stored and that it is served.
func (g goodState) check(e *env) {
	e.t.Helper()
	if got := e.tags("app"); !slices.Equal(got, []string{"good"}) {
		e.t.Errorf("tags after bad input = %v, want [good]", got)
	}
	if got := e.catalog(); !slices.Equal(got, []string{"local/app"}) {
		e.t.Errorf("catalog after bad input = %v, want [local/app]", got)
	}
	e.assertManifest("app", "good", g.manifest, ocispec.MediaTypeImageManifest)
	if !bytes.Equal(e.pullBlob("app", g.layer), g.layerB) {
		e.t.Error("good layer no longer served")
	}
}

func TestBadNamesTagsDigests(t *testing.T) {
	e := newEnv(t)
	good := pushGood(e)
	m := good.manifest
	mt := []string{"Content-Type", ocispec.MediaTypeImageManifest}
	long := strings.Repeat("a", 256)
	hex := digest.FromString("x").Encoded()
	blob := []byte("some bytes")
	bd := digest.FromBytes(blob).String()
	cases := []badCase{
		// names
		{"dot-dot", "GET", "/v2/../x/tags/list", nil, nil, 400, registry.CodeNameInvalid},
		{"dot-dot inside", "PUT", "/v2/app/../x/manifests/bad", m, mt, 400, registry.CodeNameInvalid},
		{"dot", "PUT", "/v2/a/./b/manifests/bad", m, mt, 400, registry.CodeNameInvalid},
		{"empty component", "GET", "/v2/a//b/tags/list", nil, nil, 400, registry.CodeNameInvalid},
		{"upper case", "PUT", "/v2/App/manifests/bad", m, mt, 400, registry.CodeNameInvalid},
		{"upper case upload", "POST", "/v2/local/App/blobs/uploads/", nil, nil, 400, registry.CodeNameInvalid},
		{"trailing separator", "GET", "/v2/app-/tags/list", nil, nil, 400, registry.CodeNameInvalid},
		{"256 characters", "PUT", "/v2/" + long + "/manifests/bad", m, mt, 400, registry.CodeNameInvalid},
		{"256 characters with prefix", "POST", "/v2/local/" + long[:250] + "/blobs/uploads/?digest=" + bd, blob, nil, 400, registry.CodeNameInvalid},
		{"escaped slash", "PUT", "/v2/local%2Fx/manifests/bad", m, mt, 400, registry.CodeNameInvalid},
		{"escaped letter", "GET", "/v2/%61pp/tags/list", nil, nil, 400, registry.CodeNameInvalid},
		{"escaped dot-dot", "GET", "/v2/%2E%2E/app/tags/list", nil, nil, 400, registry.CodeNameInvalid},
		{"no name", "GET", "/v2//tags/list", nil, nil, 400, registry.CodeNameInvalid},
		// tags
		{"tag starting with dash", "PUT", "/v2/app/manifests/-bad", m, mt, 400, registry.CodeManifestInvalid},
		{"tag starting with dot", "PUT", "/v2/app/manifests/.bad", m, mt, 400, registry.CodeManifestInvalid},
		{"tag of 129 characters", "PUT", "/v2/app/manifests/" + strings.Repeat("t", 129), m, mt, 400, registry.CodeManifestInvalid},
		{"tag with !", "PUT", "/v2/app/manifests/bad!", m, mt, 400, registry.CodeManifestInvalid},
		{"tag with ~", "GET", "/v2/app/manifests/~bad", nil, nil, 400, registry.CodeManifestInvalid},
		// digests
		{"blob digest not hex", "GET", "/v2/app/blobs/sha256:xyz", nil, nil, 400, registry.CodeDigestInvalid},
		{"blob digest short", "HEAD", "/v2/app/blobs/sha256:" + hex[:63], nil, nil, 400, ""},
		{"blob digest upper hex", "GET", "/v2/app/blobs/sha256:" + strings.ToUpper(hex), nil, nil, 400, registry.CodeDigestInvalid},
		{"blob digest without algorithm", "GET", "/v2/app/blobs/" + hex, nil, nil, 400, registry.CodeDigestInvalid},
		{"blob md5", "GET", "/v2/app/blobs/md5:" + hex[:32], nil, nil, 400, registry.CodeDigestInvalid},
		{"blob sha384", "GET", "/v2/app/blobs/sha384:" + strings.Repeat("ab", 48), nil, nil, 400, registry.CodeDigestInvalid},
		{"delete blob bad digest", "DELETE", "/v2/app/blobs/sha256:zz", nil, nil, 400, registry.CodeDigestInvalid},
		{"manifest digest not hex", "GET", "/v2/app/manifests/sha256:xyz", nil, nil, 400, registry.CodeDigestInvalid},
		{"manifest md5", "PUT", "/v2/app/manifests/md5:" + hex[:32], m, mt, 400, registry.CodeDigestInvalid},
		{"manifest sha384", "PUT", "/v2/app/manifests/sha384:" + strings.Repeat("ab", 48), m, mt, 400, registry.CodeDigestInvalid},
		{"manifest digest mismatch", "PUT", "/v2/app/manifests/" + digest.FromString("other").String(), m, mt, 400, registry.CodeDigestInvalid},
		{"monolithic md5", "POST", "/v2/app/blobs/uploads/?digest=md5:" + hex[:32], blob, nil, 400, registry.CodeDigestInvalid},
		{"monolithic sha384", "POST", "/v2/app/blobs/uploads/?digest=sha384:" + strings.Repeat("ab", 48), blob, nil, 400, registry.CodeDigestInvalid},
		{"monolithic garbage", "POST", "/v2/app/blobs/uploads/?digest=garbage", blob, nil, 400, registry.CodeDigestInvalid},
		{"monolithic mismatch", "POST", "/v2/app/blobs/uploads/?digest=" + digest.FromString("other").String(), blob, nil, 400, registry.CodeDigestInvalid},
		{"digest-algorithm sha384", "POST", "/v2/app/blobs/uploads/?digest-algorithm=sha384", nil, nil, 400, registry.CodeDigestInvalid},
		{"digest-algorithm md5", "POST", "/v2/app/blobs/uploads/?digest-algorithm=md5", nil, nil, 400, registry.CodeDigestInvalid},
		{"mount md5", "POST", "/v2/app/blobs/uploads/?mount=md5:" + hex[:32] + "&from=other/x", nil, nil, 400, registry.CodeDigestInvalid},
		{"referrers md5", "GET", "/v2/app/referrers/md5:" + hex[:32], nil, nil, 400, registry.CodeDigestInvalid},
	}
	runBad(t, e, cases)
	e.assertBlobAbsent("app", digest.FromBytes(blob))
	e.assertBlobAbsent("app", digest.FromString("other"))
	good.check(e)
}

func TestBadManifests(t *testing.T) {
	e := newEnv(t)
	good := pushGood(e)
	oci, idx := ocispec.MediaTypeImageManifest, ocispec.MediaTypeImageIndex
	cfg := []byte(`{"os":"linux","bad":1}`)
	e.pushBlob("app", cfg)
	cd := desc(ocispec.MediaTypeImageConfig, cfg)
	missing := desc(ocispec.MediaTypeImageLayer, []byte("never pushed"))
	elsewhere := []byte("only in another image")
	e.pushBlob("other/img", elsewhere)
	ok := manifestJSON(oci, cd)
	put := func(name, ct string, body []byte, code registry.Code) badCase {
		return badCase{name, "PUT", "/v2/app/manifests/bad", body, []string{"Content-Type", ct}, 400, code}
	}
	cases := []badCase{
		put("not JSON", oci, []byte("this is not json"), registry.CodeManifestInvalid),
		put("empty body", oci, []byte{}, registry.CodeManifestInvalid),
		put("JSON array", oci, []byte(`[1,2]`), registry.CodeManifestInvalid),
		put("truncated JSON", oci, ok[:len(ok)-1], registry.CodeManifestInvalid),
		put("wrong media type", "text/plain", ok, registry.CodeManifestInvalid),
		put("schema 1 media type", "application/vnd.docker.distribution.manifest.v1+prettyjws", ok, registry.CodeManifestInvalid),
		put("mediaType mismatches Content-Type", mtDockerManifest, ok, registry.CodeManifestInvalid),
		put("index body sent as manifest", oci, indexJSON(idx, desc(oci, good.manifest)), registry.CodeManifestInvalid),
		put("schemaVersion 1", oci, bytes.Replace(ok, []byte(`"schemaVersion":2`), []byte(`"schemaVersion":1`), 1), registry.CodeManifestInvalid),
		put("schemaVersion missing", oci, bytes.Replace(ok, []byte(`"schemaVersion":2,`), nil, 1), registry.CodeManifestInvalid),
		put("no config", oci, []byte(`{"schemaVersion":2,"mediaType":"`+oci+`","layers":[]}`), registry.CodeManifestInvalid),
		put("bad layer digest", oci, bytes.Replace(manifestJSON(oci, cd, missing), []byte(missing.Digest.Encoded()), []byte("zz"), 1), registry.CodeManifestInvalid),
		put("layer without mediaType", oci, manifestJSON(oci, cd, ocispec.Descriptor{Digest: good.layer, Size: 3000}), registry.CodeManifestInvalid),
		put("negative size", oci, manifestJSON(oci, cd, ocispec.Descriptor{MediaType: ocispec.MediaTypeImageLayer, Digest: good.layer, Size: -1}), registry.CodeManifestInvalid),
		put("index with layers", idx, []byte(`{"schemaVersion":2,"mediaType":"`+idx+`","manifests":[],"layers":[]}`), registry.CodeManifestInvalid),
		put("missing layer", oci, manifestJSON(oci, cd, missing), registry.CodeManifestBlobUnknown),
		put("missing config", oci, manifestJSON(oci, missing), registry.CodeManifestBlobUnknown),
		put("layer only in another image", oci, manifestJSON(oci, cd, desc(ocispec.MediaTypeImageLayer, elsewhere)), registry.CodeManifestBlobUnknown),
		put("index of a missing manifest", idx, indexJSON(idx, desc(oci, ok)), registry.CodeManifestBlobUnknown),
		put("docker list of a missing manifest", mtDockerList, indexJSON(mtDockerList, desc(mtDockerManifest, ok)), registry.CodeManifestBlobUnknown),
		{"no Content-Type and no mediaType", "PUT", "/v2/app/manifests/bad",
			bytes.Replace(ok, []byte(`"mediaType":"`+oci+`",`), nil, 1), nil, 400, registry.CodeManifestInvalid},
		{"layer blob as manifest by digest", "GET", "/v2/app/manifests/" + good.layer.String(), nil, nil, 404, registry.CodeManifestUnknown},
	}
	runBad(t, e, cases)
	wantErr(t, "HEAD bad", e.do("HEAD", "/v2/app/manifests/bad", nil), http.StatusNotFound, "")
	good.check(e)
}

// TestBadRanges sends chunks that do not continue the upload.
func TestBadRanges(t *testing.T) {
	e := newEnv(t)
	good := pushGood(e)
	data := randBytes(3000)
	loc := e.startUpload("app", "")
	e.patchChunks(loc, data[:1000], []int{1000})
	cr := func(s string) []string { return []string{"Content-Range", s} }
	cases := []struct {
		name  string
		body  []byte
		rng   string
		noHdr bool // the Range header is not required
	}{
		{"gap", data[1001:2000], "1001-1999", false},
		{"overlap", data[500:1500], "500-1499", false},
		{"replay", data[:1000], "0-999", false},
		{"body shorter than range", data[1000:1500], "1000-1999", true},
		{"body longer than range", data[1000:2000], "1000-1499", true},
		{"garbage", data[1000:2000], "bytes=abc", true},
		{"end before start", data[1000:2000], "1000-900", true},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			e := e.sub(t)
			r := e.do("PATCH", loc, tc.body, cr(tc.rng)...)
			wantErr(t, tc.name, r, http.StatusRequestedRangeNotSatisfiable, registry.CodeBlobUploadInvalid)
			if !tc.noHdr {
				wantHeader(t, tc.name, r, "Range", "0-999")
			}
			st := e.do("GET", loc, nil)
			wantStatus(t, "status after "+tc.name, st, http.StatusNoContent)
			wantHeader(t, "status after "+tc.name, st, "Range", "0-999")
		})
	}
	// A PUT whose range does not continue the upload is refused too.
	r := e.do("PUT", withQuery(loc, "digest="+digest.FromBytes(data).String()), data[2000:], cr("2000-2999")...)
	wantErr(t, "PUT with a gap", r, http.StatusRequestedRangeNotSatisfiable, registry.CodeBlobUploadInvalid)
	wantHeader(t, "PUT with a gap", r, "Range", "0-999")
	e.assertBlobAbsent("app", digest.FromBytes(data))
	// The session continues from where it was.
	r = e.do("PATCH", loc, data[1000:2000], cr("1000-1999")...)
	wantStatus(t, "continue", r, http.StatusAccepted)
	r = e.do("PUT", withQuery(loc, "digest="+digest.FromBytes(data).String()), data[2000:], cr("2000-2999")...)
	wantStatus(t, "complete", r, http.StatusCreated)
	if !bytes.Equal(e.pullBlob("app", digest.FromBytes(data)), data) {
		t.Fatal("blob differs after refused chunks")
	}
	good.check(e)
}

func TestDigestMismatchOnPut(t *testing.T) {
	e := newEnv(t)
	good := pushGood(e)
	data := randBytes(7000)
	wrong := digest.FromString("something else")
	loc := e.startUpload("app", "")
	e.patchChunks(loc, data[:4000], []int{4000})
	r := e.do("PUT", withQuery(loc, "digest="+wrong.String()), data[4000:], "Content-Range", "4000-6999")
	wantErr(t, "PUT with the wrong digest", r, http.StatusBadRequest, registry.CodeDigestInvalid)
	e.assertBlobAbsent("app", wrong)
	e.assertBlobAbsent("app", digest.FromBytes(data))
	// Streamed PATCH then PUT with the wrong digest.
	loc = e.startUpload("app", "")
	wantStatus(t, "streamed PATCH", e.do("PATCH", loc, bytes.NewReader(data)), http.StatusAccepted)
	wantErr(t, "PUT wrong digest", e.do("PUT", withQuery(loc, "digest="+wrong.String()), nil), http.StatusBadRequest, registry.CodeDigestInvalid)
	e.assertBlobAbsent("app", wrong)
	e.assertBlobAbsent("app", digest.FromBytes(data))
	// A manifest cannot reference what was refused.
	m := manifestJSON(ocispec.MediaTypeImageManifest, desc(ocispec.MediaTypeImageLayer, data))
	wantErr(t, "manifest over a refused blob", e.putManifest("app", "bad", ocispec.MediaTypeImageManifest, m), http.StatusBadRequest, registry.CodeManifestBlobUnknown)
	good.check(e)
}

func TestUnknownSessions(t *testing.T) {
	e := newEnv(t)
	good := pushGood(e)
	data := randBytes(1000)
	loc := e.startUpload("app", "")
	e.patchChunks(loc, data[:500], []int{500})
	id := uploadID(loc)
	d := digest.FromBytes(data).String()
	var cases []badCase
	for _, p := range []string{"/v2/app/blobs/uploads/0123456789abcdef0123456789abcdef", "/v2/other/blobs/uploads/" + id, "/v2/local/app/x/blobs/uploads/" + id, "/v2/other/app/blobs/uploads/" + id} {
		cases = append(cases,
			badCase{"PATCH " + p, "PATCH", p, data[500:], []string{"Content-Range", "500-999"}, 404, registry.CodeBlobUploadUnknown},
			badCase{"streamed PATCH " + p, "PATCH", p, bytes.NewReader(data[500:]), nil, 404, registry.CodeBlobUploadUnknown},
			badCase{"PUT " + p, "PUT", p + "?digest=" + d, data[500:], nil, 404, registry.CodeBlobUploadUnknown},
			badCase{"GET " + p, "GET", p, nil, nil, 404, registry.CodeBlobUploadUnknown},
			badCase{"DELETE " + p, "DELETE", p, nil, nil, 404, registry.CodeBlobUploadUnknown},
		)
	}
	runBad(t, e, cases)
	// The session in its own image is untouched and completes.
	st := e.do("GET", loc, nil)
	wantStatus(t, "status", st, http.StatusNoContent)
	wantHeader(t, "status", st, "Range", "0-499")
	wantStatus(t, "complete", e.do("PUT", withQuery(loc, "digest="+d), data[500:], "Content-Range", "500-999"), http.StatusCreated)
	e.assertBlobAbsent("other", digest.FromBytes(data))
	e.assertBlobAbsent("other/app", digest.FromBytes(data))
	good.check(e)
}

// TestOversizedKeys: request values longer than a DynamoDB key may be (2 KB
// partition, 1 KB sort key) must not reach the store as keys and fail with 500.
func TestOversizedKeys(t *testing.T) {
	e := newEnv(t)
	e.pushImage("app", "ab", ocispec.MediaTypeImageManifest)
	long := strings.Repeat("a", 3000)
	for _, m := range []string{"GET", "PATCH", "PUT", "DELETE"} {
		p := "/v2/app/blobs/uploads/" + long
		if m == "PUT" {
			p += "?digest=" + digest.FromString("x").String()
		}
		wantErr(t, m+" long upload id", e.do(m, p, []byte("x")), http.StatusNotFound, registry.CodeBlobUploadUnknown)
	}
	// A long last is answered correctly ("ab" sorts after "aaa…") or refused with 400.
	for _, c := range []struct{ path, field, want string }{
		{"/v2/app/tags/list?last=" + long, "tags", "ab"},
		{"/v2/_catalog?last=local/" + long, "repositories", "local/app"},
	} {
		r := e.do("GET", c.path, nil)
		switch r.Status {
		case http.StatusBadRequest:
		case http.StatusOK:
			if !strings.Contains(string(r.Body), `"`+c.want+`"`) {
				t.Errorf("GET %.40s…: %s, want %q listed", c.path, r.Body, c.want)
			}
		default:
			t.Errorf("GET %.40s…: got %s, want 200 or 400", c.path, r)
		}
	}
}

// TestSearchPageOverflow: a page number whose offset overflows an int is
// past the last page: an empty page (never page 1 again, never a crash).
func TestSearchPageOverflow(t *testing.T) {
	e := newEnv(t)
	e.pushImage("team/app", "1", ocispec.MediaTypeImageManifest)
	for _, q := range []string{
		"q=app&n=2&page=4611686018427387905", // (page-1)*n = 2^63: negative
		"q=app&n=64&page=288230376151711745", // (page-1)*n = 2^64: 0, page 1
		"q=app&page=9223372036854775807",     // the largest page
	} {
		r := e.do("GET", "/v1/search?"+q, nil)
		var doc searchDoc
		if r.Status != http.StatusOK || json.Unmarshal(r.Body, &doc) != nil || doc.NumResults != 1 || len(doc.Results) != 0 {
			t.Errorf("search %s: %s, want 200 with 1 result in all and none on this page", q, r)
		}
	}
}

// TestContentRangeOverflow: a Content-Range ending near the int64 limit is
// refused for what it is (past the largest blob), not with a length that
// overflowed and a 1000-byte body said to be empty; the session is unchanged.
func TestContentRangeOverflow(t *testing.T) {
	e := newEnv(t)
	data := randBytes(1000)
	d := digest.FromBytes(data).String()
	loc := e.startUpload("app", "")
	for _, c := range []struct{ method, rng string }{
		{"PATCH", "0-9223372036854775807"}, // end-start+1 overflows
		{"PATCH", "0-9223372036854775806"}, // end-start+2 overflows
		{"PUT", "0-9223372036854775806"},
	} {
		p := loc
		if c.method == "PUT" {
			p = withQuery(loc, "digest="+d)
		}
		r := e.do(c.method, p, data, "Content-Range", c.rng)
		wantErr(t, c.method+" "+c.rng, r, http.StatusRequestedRangeNotSatisfiable, registry.CodeBlobUploadInvalid)
		if m := errMessage(r); !strings.Contains(m, "at most 5 TiB") || strings.Contains(m, "body has 0") {
			t.Errorf("%s %s: message %q, want it to name the largest blob (5 TiB)", c.method, c.rng, m)
		}
	}
	wantHeader(t, "status", e.do("GET", loc, nil), "Range", "0-0")
	wantStatus(t, "complete", e.do("PUT", withQuery(loc, "digest="+d), data, "Content-Range", "0-999"), http.StatusCreated)
}

// TestSearchQueryNotUTF8: a q that is not UTF-8 is refused as such, not as
// too long.
func TestSearchQueryNotUTF8(t *testing.T) {
	e := newEnv(t)
	r := e.do("GET", "/v1/search?q=%ff", nil)
	wantErr(t, "q=%ff", r, http.StatusBadRequest, registry.CodeUnsupported)
	if m := errMessage(r); !strings.Contains(m, "UTF-8") {
		t.Errorf("q=%%ff: message %q, want it to say q is not UTF-8", m)
	}
}

// TestMethodNotAllowed: a 405 carries the Allow header listing the methods
// the endpoint takes (RFC 9110, 15.5.6), and its message lists them too.
func TestMethodNotAllowed(t *testing.T) {
	e := newEnv(t)
	loc := e.startUpload("app", "")
	d := "sha256:" + strings.Repeat("a", 64)
	for _, c := range []struct{ method, path, allow string }{
		{"POST", "/v2/", "GET, HEAD"},
		{"POST", "/v2/_catalog", "GET, HEAD"},
		{"POST", "/v1/search", "GET, HEAD"},
		{"POST", "/v2/app/manifests/1", "GET, HEAD, PUT, DELETE"},
		{"PATCH", "/v2/app/blobs/" + d, "GET, HEAD, DELETE"},
		{"GET", "/v2/app/blobs/uploads/", "POST"},
		{"OPTIONS", loc, "GET, HEAD, PATCH, PUT, DELETE, POST"},
		{"PUT", "/v2/app/tags/list", "GET, HEAD"},
		{"DELETE", "/v2/app/referrers/" + d, "GET, HEAD"},
		{"POST", "/airlock/api/browse/repositories", "GET, HEAD"},
		{"POST", "/airlock/api/proxies", "GET, HEAD"},
		{"GET", "/airlock/api/purge", "POST"},
	} {
		r := e.do(c.method, c.path, nil)
		wantErr(t, c.method+" "+c.path, r, http.StatusMethodNotAllowed, registry.CodeUnsupported)
		wantHeader(t, c.method+" "+c.path, r, "Allow", c.allow)
		if m := errMessage(r); !strings.Contains(m, "("+c.allow+")") {
			t.Errorf("%s %s: message %q, want it to list %s", c.method, c.path, m, c.allow)
		}
	}
}

// TestUnknownAdminEndpoint: a path under /airlock/api/ that is no endpoint
// is 404 naming the endpoints there are, every one of them.
func TestUnknownAdminEndpoint(t *testing.T) {
	e := newEnv(t)
	for _, p := range []string{"/airlock/api/", "/airlock/api/nope", "/airlock/api/purge/blob-gc"} {
		r := e.do("POST", p, nil)
		wantErr(t, p, r, http.StatusNotFound, registry.CodeNameUnknown)
		m := errMessage(r)
		for _, want := range []string{"/airlock/api/proxies", "/airlock/api/purge?task=", "/airlock/api/users", "/airlock/api/keys/rotate", "/airlock/api/browse/"} {
			if !strings.Contains(m, want) {
				t.Errorf("POST %s: message %q does not name %s", p, m, want)
			}
		}
	}
}

// TestGroupPushMissingBlobRemoteDown: a manifest pushed through a group
// that references a blob no member stores, while the proxy member's remote
// is down, is 503 (the proxy may have it: retry) saying which blob was
// looked up and where, not only that the upstream is unreachable.
func TestGroupPushMissingBlobRemoteDown(t *testing.T) {
	e := newEnv(t)
	e.deps.Config = mustConfig(t, deadProxyGroup("docker"))
	e.serve()
	cfg := []byte(`{"os":"linux"}`)
	e.pushBlob("docker/team/app", cfg)
	missing := desc(ocispec.MediaTypeImageLayer, []byte("never pushed"))
	m := manifestJSON(ocispec.MediaTypeImageManifest, desc(ocispec.MediaTypeImageConfig, cfg), missing)
	for i := range 4 { // the 4th finds the remote blocked after 3 failures
		r := e.putManifest("docker/team/app", "v1", ocispec.MediaTypeImageManifest, m)
		wantErr(t, "manifest over a missing blob, remote down", r, http.StatusServiceUnavailable, registry.CodeUnavailable)
		if msg := errMessage(r); !strings.Contains(msg, missing.Digest.String()) || !strings.Contains(msg, "local/team/app") || !strings.Contains(msg, "127.0.0.1:1") {
			t.Errorf("push %d: message %q: want the blob, the image pushed to and the unreachable upstream", i+1, msg)
		}
	}
	if got := e.tags("local/team/app"); len(got) != 0 {
		t.Errorf("tags after the refused push: %v", got)
	}
}

// TestDescriptorSizeMismatch: a config or layer descriptor whose size is not
// the stored blob's is 400 MANIFEST_INVALID naming the descriptor, the size
// given and the size stored (clients trust descriptor sizes: containerd
// would fail the pull later), and nothing is stored.
func TestDescriptorSizeMismatch(t *testing.T) {
	e := memEnv(t)
	cfg, layer := []byte(`{"os":"linux"}`), randBytes(3000)
	e.pushBlob("app", cfg)
	e.pushBlob("app", layer)
	cd, ld := desc(ocispec.MediaTypeImageConfig, cfg), desc(ocispec.MediaTypeImageLayerGzip, layer)
	short, big := ld, cd
	short.Size, big.Size = 2999, 1<<40
	for _, v := range []struct {
		what, where string
		d           digest.Digest
		body        []byte
		given, size int64
	}{
		{"layer size too small", "layers[1]", ld.Digest, manifestJSON(ocispec.MediaTypeImageManifest, cd, ld, short), 2999, 3000},
		{"config size too big", "config", cd.Digest, manifestJSON(ocispec.MediaTypeImageManifest, big, ld), 1 << 40, int64(len(cfg))},
	} {
		r := e.putManifest("app", "v1", ocispec.MediaTypeImageManifest, v.body)
		wantErr(t, v.what, r, http.StatusBadRequest, registry.CodeManifestInvalid)
		msg := errMessage(r)
		for _, want := range []string{v.where, v.d.String(), fmt.Sprint(v.given), fmt.Sprint(v.size)} {
			if !strings.Contains(msg, want) {
				t.Errorf("%s: message %q does not name %s", v.what, msg, want)
			}
		}
	}
	if got := e.tags("app"); len(got) != 0 {
		t.Errorf("tags after the refused pushes: %v", got)
	}
	wantStatus(t, "the right sizes", e.putManifest("app", "v1", ocispec.MediaTypeImageManifest, manifestJSON(ocispec.MediaTypeImageManifest, cd, ld)), http.StatusCreated)
}

// TestUnknownRegistryEndpoint: a /v2/ path that is no endpoint of the
// distribution spec is 404 UNSUPPORTED (not NAME_UNKNOWN: no repository
// is unknown) naming the endpoints that exist.
func TestUnknownRegistryEndpoint(t *testing.T) {
	e := memEnv(t)
	for _, p := range []string{"/v2/foo/bar/baz", "/v2/x/blobs/uploads/a/b/c", "/v2/x/tags", "/v2/x/manifests/", "/v2/_catalog/x"} {
		for _, m := range []string{"GET", "PUT"} {
			r := e.do(m, p, nil)
			wantErr(t, m+" "+p, r, http.StatusNotFound, registry.CodeUnsupported)
			msg := errMessage(r)
			for _, want := range []string{p, "/v2/<name>/manifests/<reference>", "/v2/<name>/blobs/<digest>", "/v2/<name>/blobs/uploads/", "/v2/<name>/tags/list", "/v2/<name>/referrers/<digest>", "/v2/_catalog"} {
				if !strings.Contains(msg, want) {
					t.Errorf("%s %s: message %q does not name %s", m, p, msg, want)
				}
			}
		}
	}
}
