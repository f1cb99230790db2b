package registry_test

import (
	"bytes"
	"net/http"
	"strconv"
	"testing"
	"time"

	digest "github.com/opencontainers/go-digest"

	"github.com/airlock-registry/airlock/shared/registry"
)

func TestBase(t *testing.T) {
	e := newEnv(t)
	for _, m := range []string{"GET", "HEAD"} {
		for _, p := range []string{"/v2/", "/v2"} {
			r := e.do(m, p, nil)
			wantStatus(t, m+" "+p, r, http.StatusOK)
			wantHeader(t, m+" "+p, r, "Content-Type", "application/json")
			if m == "GET" && string(r.Body) != "{}" {
				t.Errorf("GET %s body = %q, want {}", p, r.Body)
			}
		}
	}
	wantErr(t, "POST /v2/", e.do("POST", "/v2/", nil), http.StatusMethodNotAllowed, registry.CodeUnsupported)
	wantErr(t, "GET /v1/", e.do("GET", "/v1/", nil), http.StatusNotFound, registry.CodeNameUnknown)
	wantErr(t, "GET /v2/app/nothing", e.do("GET", "/v2/app/nothing", nil), http.StatusNotFound, registry.CodeUnsupported) // no endpoint, not an unknown name
	wantErr(t, "PUT tags list", e.do("PUT", "/v2/app/tags/list", nil), http.StatusMethodNotAllowed, registry.CodeUnsupported)
	wantErr(t, "POST blob", e.do("POST", "/v2/app/blobs/"+digest.FromString("x").String(), nil), http.StatusMethodNotAllowed, registry.CodeUnsupported)
}

func TestBlobPullHeadDelete(t *testing.T) {
	e := newEnv(t)
	data := randBytes(70_000)
	d := e.pushBlob("local/team/app", data)
	path := "/v2/local/team/app/blobs/" + d.String()

	tests := []struct {
		name    string
		method  string
		hdr     []string
		status  int
		headers map[string]string
	}{
		{"HEAD gives size from metadata", "HEAD", nil, http.StatusOK, map[string]string{
			"Content-Length": strconv.Itoa(len(data)), "Docker-Content-Digest": d.String(), "ETag": `"` + d.String() + `"`}},
		{"GET redirects", "GET", nil, http.StatusTemporaryRedirect, map[string]string{
			"Docker-Content-Digest": d.String(), "ETag": `"` + d.String() + `"`}},
		{"GET If-None-Match quoted", "GET", []string{"If-None-Match", `"` + d.String() + `"`}, http.StatusNotModified, map[string]string{
			"Docker-Content-Digest": d.String(), "ETag": `"` + d.String() + `"`}},
		{"HEAD If-None-Match", "HEAD", []string{"If-None-Match", `"` + d.String() + `"`}, http.StatusNotModified, nil},
		{"GET If-None-Match other", "GET", []string{"If-None-Match", `"` + digest.FromString("x").String() + `"`}, http.StatusTemporaryRedirect, nil},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			e := e.sub(t)
			r := e.do(tc.method, path, nil, tc.hdr...)
			wantStatus(t, tc.name, r, tc.status)
			for k, v := range tc.headers {
				wantHeader(t, tc.name, r, k, v)
			}
			if tc.status == http.StatusNotModified && len(r.Body) != 0 {
				t.Errorf("304 with a body: %q", r.Body)
			}
		})
	}

	if got := e.pullBlob("local/team/app", d); !bytes.Equal(got, data) {
		t.Fatalf("presigned GET returned %d bytes that differ from the %d pushed", len(got), len(data))
	}
	// The link is per image: another image does not see the blob.
	e.assertBlobAbsent("local/other", d)
	e.assertBlobAbsent("other/team/app", d)

	r := e.do("DELETE", path, nil)
	wantStatus(t, "DELETE blob", r, http.StatusAccepted)
	e.assertBlobAbsent("local/team/app", d)
	wantErr(t, "DELETE blob again", e.do("DELETE", path, nil), http.StatusNotFound, registry.CodeBlobUnknown)
}

func TestBlobUnknown(t *testing.T) {
	e := newEnv(t)
	d := digest.FromString("never pushed")
	e.assertBlobAbsent("app", d)
	wantErr(t, "DELETE unknown blob", e.do("DELETE", "/v2/app/blobs/"+d.String(), nil), http.StatusNotFound, registry.CodeBlobUnknown)
}

// TestBlobDedupe pushes the same bytes into two images: both see them, and
// deleting one link leaves the other.
func TestBlobDedupe(t *testing.T) {
	e := newEnv(t)
	data := randBytes(5000)
	d := e.pushBlob("a", data)
	e.pushBlob("b", data)
	wantStatus(t, "DELETE a's blob", e.do("DELETE", "/v2/a/blobs/"+d.String(), nil), http.StatusAccepted)
	e.assertBlobAbsent("a", d)
	if got := e.pullBlob("b", d); !bytes.Equal(got, data) {
		t.Fatal("b's copy differs after deleting a's link")
	}
}

// TestPresignTTL: the redirect honours Deps.PresignTTL (S3 refuses the URL after it).
func TestPresignTTL(t *testing.T) {
	e := newEnv(t, func(d *registry.Deps) { d.PresignTTL = time.Second })
	data := randBytes(100)
	d := e.pushBlob("app", data)
	r := e.do("GET", "/v2/app/blobs/"+d.String(), nil)
	wantStatus(t, "GET", r, http.StatusTemporaryRedirect)
	time.Sleep(2500 * time.Millisecond)
	res, err := http.Get(r.Header.Get("Location"))
	if err != nil {
		t.Fatal(err)
	}
	res.Body.Close()
	if res.StatusCode != http.StatusForbidden {
		t.Errorf("expired presigned URL answered %d, want 403", res.StatusCode)
	}
	// A fresh redirect works.
	if !bytes.Equal(e.pullBlob("app", d), data) {
		t.Error("fresh presigned URL failed")
	}
}
