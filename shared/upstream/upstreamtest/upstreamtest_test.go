package upstreamtest

import (
	"encoding/json"
	"errors"
	"io"
	"net/http"
	"net/url"
	"strings"
	"testing"
	"time"

	"github.com/google/go-containerregistry/pkg/authn"
	"github.com/google/go-containerregistry/pkg/name"
	v1 "github.com/google/go-containerregistry/pkg/v1"
	"github.com/google/go-containerregistry/pkg/v1/random"
	"github.com/google/go-containerregistry/pkg/v1/remote"
	"github.com/google/go-containerregistry/pkg/v1/remote/transport"
	"github.com/google/go-containerregistry/pkg/v1/types"
	"github.com/google/go-containerregistry/pkg/v1/validate"
)

// noRetry makes ggcr give up at the first failure instead of backing off
// for seconds.
var noRetry = remote.WithRetryBackoff(remote.Backoff{Steps: 1})

// pull pulls ref with ggcr like crane does: the manifest, then every blob
// once, verifying each against its digest.
func pull(t *testing.T, ref string, opts ...remote.Option) (v1.Image, error) {
	t.Helper()
	r, err := name.ParseReference(ref)
	if err != nil {
		t.Fatal(err)
	}
	img, err := remote.Image(r, opts...)
	if err != nil {
		return nil, err
	}
	if _, err := img.RawConfigFile(); err != nil {
		return nil, err
	}
	layers, err := img.Layers()
	if err != nil {
		return nil, err
	}
	for _, l := range layers {
		rc, err := l.Compressed()
		if err != nil {
			return nil, err
		}
		_, err = io.Copy(io.Discard, rc)
		rc.Close()
		if err != nil {
			return nil, err
		}
	}
	return img, nil
}

// get sends one request with a fresh connection and returns the response
// and its body.
func get(t *testing.T, method, u string, hdr ...string) (*http.Response, string) {
	t.Helper()
	req, err := http.NewRequest(method, u, nil)
	if err != nil {
		t.Fatal(err)
	}
	for i := 0; i+1 < len(hdr); i += 2 {
		req.Header.Set(hdr[i], hdr[i+1])
	}
	c := &http.Client{
		Transport:     &http.Transport{DisableKeepAlives: true},
		CheckRedirect: func(*http.Request, []*http.Request) error { return http.ErrUseLastResponse },
		Timeout:       5 * time.Second,
	}
	resp, err := c.Do(req)
	if err != nil {
		t.Fatalf("%s %s: %v", method, u, err)
	}
	defer resp.Body.Close()
	b, err := io.ReadAll(resp.Body)
	if err != nil {
		t.Fatalf("%s %s: reading body: %v", method, u, err)
	}
	return resp, string(b)
}

// errCode returns the first error code of a distribution-spec error body.
func errCode(t *testing.T, body string) string {
	t.Helper()
	var e struct{ Errors []struct{ Code string } }
	if err := json.Unmarshal([]byte(body), &e); err != nil || len(e.Errors) == 0 {
		t.Fatalf("not an error body: %q (%v)", body, err)
	}
	return e.Errors[0].Code
}

// statusOf returns the HTTP status of a ggcr error, or 0.
func statusOf(err error) int {
	var te *transport.Error
	if errors.As(err, &te) {
		return te.StatusCode
	}
	return 0
}

func TestPullAnonymousAndCounters(t *testing.T) {
	u := New(t)
	if !strings.HasPrefix(u.URL, "http://127.0.0.1:") || u.Host() != strings.TrimPrefix(u.URL, "http://") {
		t.Fatalf("URL %q Host %q", u.URL, u.Host())
	}
	img := u.PushImage(t, "library/alpine", "3", 2, 2048)
	if len(img.Layers) != 2 || img.MediaType != types.DockerManifestSchema2 || img.Ref != u.Host()+"/library/alpine:3" {
		t.Fatalf("pushed %+v", img)
	}
	if n := len(u.Requests()); n != 0 {
		t.Fatalf("content helpers were recorded: %d requests", n)
	}

	got, err := pull(t, img.Ref, remote.WithAuth(authn.Anonymous))
	if err != nil {
		t.Fatal(err)
	}
	if d, _ := got.Digest(); d.String() != img.Digest {
		t.Fatalf("pulled %s, pushed %s", d, img.Digest)
	}
	if n := u.Count("GET", "ping"); n != 1 {
		t.Errorf("pings %d", n)
	}
	if n := u.ManifestGets(); n != 1 {
		t.Errorf("manifest GETs %d", n)
	}
	for _, d := range img.Blobs() {
		if n := u.BlobGets(d); n != 1 {
			t.Errorf("BlobGets(%s) = %d", d, n)
		}
	}
	if n := u.Count("GET", "blob"); n != 3 {
		t.Errorf("blob GETs %d", n)
	}
	if n := u.Count("", ""); n != len(u.Requests()) {
		t.Errorf("Count(\"\", \"\") %d, %d requests", n, len(u.Requests()))
	}
	for _, r := range u.Requests() {
		if r.Status != http.StatusOK {
			t.Errorf("%s %s: status %d", r.Method, r.Path, r.Status)
		}
	}

	// Rate-limit headers and ETag: GETs spend, HEADs do not.
	mf := u.URL + "/v2/library/alpine/manifests/3"
	resp, body := get(t, "GET", mf)
	if resp.Header.Get("ratelimit-limit") != "100;w=21600" || resp.Header.Get("ratelimit-remaining") != "98;w=21600" {
		t.Errorf("rate-limit headers %v", resp.Header)
	}
	if resp.Header.Get("ETag") != `"`+img.Digest+`"` || body != string(img.Manifest) {
		t.Errorf("ETag %q, body %q", resp.Header.Get("ETag"), body)
	}
	resp, _ = get(t, "HEAD", mf)
	if resp.Header.Get("ratelimit-remaining") != "98;w=21600" || u.RateLimitRemaining() != 98 {
		t.Errorf("HEAD: remaining %q, RateLimitRemaining %d", resp.Header.Get("ratelimit-remaining"), u.RateLimitRemaining())
	}
	if n := u.Count("HEAD", "manifest"); n != 1 {
		t.Errorf("manifest HEADs %d", n)
	}

	// Other kinds.
	get(t, "GET", u.URL+"/v2/library/alpine/tags/list")
	get(t, "GET", u.URL+"/v2/library/alpine/referrers/"+img.Digest)
	get(t, "GET", u.URL+"/v2/_catalog")
	if u.Count("GET", "tags") != 1 || u.Count("GET", "referrers") != 1 || u.Count("GET", "other") != 1 {
		t.Errorf("tags %d referrers %d other %d", u.Count("GET", "tags"), u.Count("GET", "referrers"), u.Count("GET", "other"))
	}

	u.Reset()
	if len(u.Requests()) != 0 || u.ManifestGets() != 0 || u.RateLimitRemaining() != 100 {
		t.Errorf("after Reset: %d requests, %d manifest GETs, remaining %d", len(u.Requests()), u.ManifestGets(), u.RateLimitRemaining())
	}
}

func TestClassify(t *testing.T) {
	for _, c := range []struct{ path, kind, repo, ref string }{
		{"/v2/", "ping", "", ""},
		{"/v2", "ping", "", ""},
		{"/token", "token", "", ""},
		{"/v2/library/alpine/manifests/3.19", "manifest", "library/alpine", "3.19"},
		{"/v2/a/b/c/manifests/sha256:abc", "manifest", "a/b/c", "sha256:abc"},
		{"/v2/x/blobs/sha256:abc", "blob", "x", "sha256:abc"},
		{"/v2/x/blobs/uploads/", "other", "x", ""},
		{"/v2/x/y/blobs/uploads/1234", "other", "x/y", ""},
		{"/v2/x/tags/list", "tags", "x", ""},
		{"/v2/x/referrers/sha256:abc", "referrers", "x", "sha256:abc"},
		{"/v2/_catalog", "other", "", ""},
		{"/", "other", "", ""},
	} {
		kind, repo, ref := classify(c.path)
		if kind != c.kind || repo != c.repo || ref != c.ref {
			t.Errorf("classify(%q) = %q %q %q, want %q %q %q", c.path, kind, repo, ref, c.kind, c.repo, c.ref)
		}
	}
}

func TestTokenAnonymous(t *testing.T) {
	u := New(t, WithToken("", ""))
	img := u.PushImage(t, "library/alpine", "3", 1, 512)
	u.PushImage(t, "other/repo", "1", 1, 512)

	// The challenges, as a client sees them.
	resp, body := get(t, "GET", u.URL+"/v2/")
	if resp.StatusCode != 401 || resp.Header.Get("WWW-Authenticate") != `Bearer realm="`+u.URL+`/token",service="upstreamtest"` {
		t.Fatalf("/v2/: %d %q", resp.StatusCode, resp.Header.Get("WWW-Authenticate"))
	}
	if errCode(t, body) != "UNAUTHORIZED" {
		t.Errorf("body %q", body)
	}
	resp, _ = get(t, "GET", u.URL+"/v2/library/alpine/manifests/3")
	want := `Bearer realm="` + u.URL + `/token",service="upstreamtest",scope="repository:library/alpine:pull"`
	if resp.StatusCode != 401 || resp.Header.Get("WWW-Authenticate") != want {
		t.Fatalf("manifest: %d %q", resp.StatusCode, resp.Header.Get("WWW-Authenticate"))
	}

	// A token for library/alpine opens library/alpine only.
	_, body = get(t, "GET", u.URL+"/token?service=upstreamtest&scope="+url.QueryEscape("repository:library/alpine:pull"))
	var tok struct {
		Token       string `json:"token"`
		AccessToken string `json:"access_token"`
		ExpiresIn   int    `json:"expires_in"`
	}
	if err := json.Unmarshal([]byte(body), &tok); err != nil || tok.Token == "" || tok.AccessToken != tok.Token || tok.ExpiresIn != 300 {
		t.Fatalf("token response %q: %v", body, err)
	}
	bearer := "Bearer " + tok.Token
	if resp, _ := get(t, "GET", u.URL+"/v2/library/alpine/manifests/3", "Authorization", bearer); resp.StatusCode != 200 {
		t.Errorf("with token: %d", resp.StatusCode)
	}
	if resp, _ := get(t, "GET", u.URL+"/v2/", "Authorization", bearer); resp.StatusCode != 200 {
		t.Errorf("ping with token: %d", resp.StatusCode)
	}
	resp, _ = get(t, "GET", u.URL+"/v2/other/repo/manifests/1", "Authorization", bearer)
	if resp.StatusCode != 401 || !strings.Contains(resp.Header.Get("WWW-Authenticate"), `scope="repository:other/repo:pull"`) {
		t.Errorf("other repo with alpine's token: %d %q", resp.StatusCode, resp.Header.Get("WWW-Authenticate"))
	}
	if resp, _ := get(t, "GET", u.URL+"/v2/library/alpine/manifests/3", "Authorization", "Bearer forged"); resp.StatusCode != 401 {
		t.Errorf("forged token: %d", resp.StatusCode)
	}
	u.RevokeTokens()
	if resp, _ := get(t, "GET", u.URL+"/v2/library/alpine/manifests/3", "Authorization", bearer); resp.StatusCode != 401 {
		t.Errorf("revoked token: %d", resp.StatusCode)
	}

	// End to end with ggcr, anonymously.
	u.Reset()
	if _, err := pull(t, img.Ref, remote.WithAuth(authn.Anonymous)); err != nil {
		t.Fatal(err)
	}
	if u.Count("GET", "token") != 1 || u.ManifestGets() != 1 || u.BlobGets(img.Layers[0]) != 1 {
		t.Errorf("token GETs %d, manifest GETs %d, layer GETs %d", u.Count("GET", "token"), u.ManifestGets(), u.BlobGets(img.Layers[0]))
	}
	for _, r := range u.Requests() {
		if r.Kind == "manifest" && !strings.HasPrefix(r.Authorization, "Bearer ") {
			t.Errorf("manifest GET without bearer token: %+v", r)
		}
	}

	// Anonymous tokens do not push.
	ref, _ := name.ParseReference(u.Ref("library/alpine", "pushed"))
	if err := remote.Write(ref, img.Image, noRetry); statusOf(err) != 401 {
		t.Errorf("anonymous push: %v", err)
	}
}

func TestTokenBasic(t *testing.T) {
	u := New(t, WithToken("alice", "s3cret"))
	img := u.PushImage(t, "alice/app", "v1", 1, 512)
	good := remote.WithAuth(&authn.Basic{Username: "alice", Password: "s3cret"})
	if _, err := pull(t, img.Ref, good); err != nil {
		t.Fatal(err)
	}
	u.Reset()
	_, err := pull(t, img.Ref, remote.WithAuth(&authn.Basic{Username: "alice", Password: "wrong"}), noRetry)
	if statusOf(err) != 401 {
		t.Errorf("wrong password: %v", err)
	}
	if u.Count("GET", "token") != 1 || u.ManifestGets() != 0 {
		t.Errorf("wrong password: %d token GETs, %d manifest GETs", u.Count("GET", "token"), u.ManifestGets())
	}
	if _, err := pull(t, img.Ref, remote.WithAuth(authn.Anonymous), noRetry); statusOf(err) != 401 {
		t.Errorf("anonymous: %v", err)
	}
	resp, body := get(t, "GET", u.URL+"/token?service=upstreamtest&scope=repository:alice/app:pull")
	if resp.StatusCode != 401 || errCode(t, body) != "UNAUTHORIZED" {
		t.Errorf("token without credentials: %d %q", resp.StatusCode, body)
	}

	// Authenticated tokens push, over the wire.
	ref, _ := name.ParseReference(u.Ref("alice/app", "v2"))
	if err := remote.Write(ref, img.Image, good); err != nil {
		t.Fatalf("push with credentials: %v", err)
	}
	if _, err := pull(t, ref.String(), good); err != nil {
		t.Fatal(err)
	}
}

func TestBlobRedirect(t *testing.T) {
	u := New(t, WithToken("alice", "s3cret"), WithBlobRedirect())
	if !strings.HasPrefix(u.CDNURL, "http://localhost:") {
		t.Fatalf("CDNURL %q", u.CDNURL)
	}
	img := u.PushImage(t, "alice/app", "v1", 2, 4096)
	if _, err := pull(t, img.Ref, remote.WithAuth(&authn.Basic{Username: "alice", Password: "s3cret"})); err != nil {
		t.Fatal(err)
	}
	if n := u.Count("GET", "cdn"); n != 3 {
		t.Errorf("CDN GETs %d, want 3", n)
	}
	if n := u.CDNAuthLeaks(); n != 0 {
		t.Errorf("ggcr sent Authorization to the CDN %d times", n)
	}
	for _, d := range img.Blobs() {
		if n := u.BlobGets(d); n != 1 {
			t.Errorf("BlobGets(%s) = %d", d, n)
		}
	}
	for _, r := range u.Requests() {
		if r.Kind == "blob" && r.Status != http.StatusTemporaryRedirect {
			t.Errorf("blob GET answered %d", r.Status)
		}
	}

	// On the wire: 307 to an unguessable CDN path; HEAD is not redirected.
	_, body := get(t, "GET", u.URL+"/token?scope=repository:alice/app:pull", "Authorization", "Basic "+basic("alice", "s3cret"))
	var tok struct{ Token string }
	_ = json.Unmarshal([]byte(body), &tok)
	blob := u.URL + "/v2/alice/app/blobs/" + img.Layers[0]
	resp, _ := get(t, "GET", blob, "Authorization", "Bearer "+tok.Token)
	loc := resp.Header.Get("Location")
	if resp.StatusCode != 307 || !strings.HasPrefix(loc, u.CDNURL+"/cdn/") || strings.Contains(loc, img.Layers[0]) {
		t.Fatalf("blob GET: %d Location %q", resp.StatusCode, loc)
	}
	if resp, _ := get(t, "HEAD", blob, "Authorization", "Bearer "+tok.Token); resp.StatusCode != 200 || resp.ContentLength <= 4096 {
		t.Errorf("blob HEAD: %d length %d", resp.StatusCode, resp.ContentLength)
	}
	resp, _ = get(t, "GET", u.CDNURL+"/cdn/"+strings.Repeat("0", 32))
	if resp.StatusCode != 404 {
		t.Errorf("guessed CDN path: %d", resp.StatusCode)
	}
	// A client that does leak is caught.
	resp, body = get(t, "GET", loc, "Authorization", "Bearer "+tok.Token, "Range", "bytes=0-9")
	if resp.StatusCode != 206 || len(body) != 10 || u.CDNAuthLeaks() != 1 {
		t.Errorf("leaking ranged GET: %d, %d bytes, %d leaks", resp.StatusCode, len(body), u.CDNAuthLeaks())
	}
	if n := u.BlobGets(img.Layers[0]); n != 2 {
		t.Errorf("BlobGets after a ranged CDN GET = %d", n)
	}
}

func basic(user, pass string) string {
	r, _ := http.NewRequest("GET", "/", nil)
	r.SetBasicAuth(user, pass)
	return strings.TrimPrefix(r.Header.Get("Authorization"), "Basic ")
}

func TestNotModifiedAndRetag(t *testing.T) {
	u := New(t)
	img := u.PushImage(t, "library/alpine", "3", 1, 256)
	mf := u.URL + "/v2/library/alpine/manifests/3"
	for _, inm := range []string{`"` + img.Digest + `"`, img.Digest, `W/"x", "` + img.Digest + `"`} {
		resp, body := get(t, "GET", mf, "If-None-Match", inm)
		if resp.StatusCode != 304 || body != "" || resp.Header.Get("Docker-Content-Digest") != img.Digest || resp.Header.Get("ETag") != `"`+img.Digest+`"` {
			t.Errorf("If-None-Match %s: %d %q %v", inm, resp.StatusCode, body, resp.Header)
		}
	}
	if resp, _ := get(t, "HEAD", u.URL+"/v2/library/alpine/manifests/"+img.Digest, "If-None-Match", img.Digest); resp.StatusCode != 304 {
		t.Errorf("HEAD by digest: %d", resp.StatusCode)
	}
	if u.NotModified() != 4 || u.ManifestGets() != 0 || u.RateLimitRemaining() != 100 {
		t.Errorf("NotModified %d, ManifestGets %d, remaining %d", u.NotModified(), u.ManifestGets(), u.RateLimitRemaining())
	}
	if r := u.Requests()[0]; r.IfNoneMatch != `"`+img.Digest+`"` || r.Status != 304 {
		t.Errorf("recorded %+v", r)
	}

	// The tag moves: the old digest no longer matches.
	img2 := u.Retag(t, "library/alpine", "3", u.PushImage(t, "library/alpine", "tmp", 1, 256).Image)
	resp, body := get(t, "GET", mf, "If-None-Match", `"`+img.Digest+`"`)
	if resp.StatusCode != 200 || resp.Header.Get("Docker-Content-Digest") != img2.Digest || body != string(img2.Manifest) {
		t.Errorf("after Retag: %d %s", resp.StatusCode, resp.Header.Get("Docker-Content-Digest"))
	}
	if u.ManifestGets() != 1 {
		t.Errorf("ManifestGets %d", u.ManifestGets())
	}
}

func TestFail401OnHEAD(t *testing.T) {
	u := New(t)
	img := u.PushImage(t, "x", "t", 1, 128)
	u.Fail401OnHEAD(true)
	byDigest := u.URL + "/v2/x/manifests/" + img.Digest
	if resp, body := get(t, "HEAD", byDigest); resp.StatusCode != 401 {
		t.Errorf("HEAD by digest: %d %q", resp.StatusCode, body)
	}
	if resp, _ := get(t, "HEAD", u.URL+"/v2/x/manifests/t"); resp.StatusCode != 200 {
		t.Errorf("HEAD by tag: %d", resp.StatusCode)
	}
	if resp, _ := get(t, "GET", byDigest); resp.StatusCode != 200 {
		t.Errorf("GET by digest: %d", resp.StatusCode)
	}
	ref, _ := name.ParseReference(u.Ref("x", img.Digest))
	if _, err := remote.Head(ref, noRetry); statusOf(err) != 401 {
		t.Errorf("remote.Head: %v", err)
	}
	u.Fail401OnHEAD(false)
	if _, err := remote.Head(ref, noRetry); err != nil {
		t.Errorf("remote.Head after Fail401OnHEAD(false): %v", err)
	}
}

func TestPushIndexDeleteTagDeleteBlob(t *testing.T) {
	u := New(t)
	a, _ := random.Image(256, 1)
	b, _ := random.Image(256, 1)
	idx := u.PushIndex(t, "multi", "latest", a, b)
	if idx.MediaType != types.DockerManifestList || len(idx.Images) != 2 {
		t.Fatalf("index %+v", idx)
	}
	ref, _ := name.ParseReference(idx.Ref)
	got, err := remote.Index(ref)
	if err != nil {
		t.Fatal(err)
	}
	if err := validate.Index(got); err != nil {
		t.Fatal(err)
	}
	im, _ := got.IndexManifest()
	if d, _ := got.Digest(); d.String() != idx.Digest || len(im.Manifests) != 2 ||
		im.Manifests[1].Platform.Architecture != "arm64" || im.Manifests[1].Digest.String() != idx.Images[1].Digest {
		t.Errorf("pulled index %s %+v", d, im.Manifests)
	}

	u.DeleteTag(t, "multi", "latest")
	if resp, _ := get(t, "GET", u.URL+"/v2/multi/manifests/latest"); resp.StatusCode != 404 {
		t.Errorf("deleted tag: %d", resp.StatusCode)
	}
	if resp, _ := get(t, "GET", u.URL+"/v2/multi/manifests/"+idx.Digest); resp.StatusCode != 200 {
		t.Errorf("index by digest after DeleteTag: %d", resp.StatusCode)
	}
	layer := idx.Images[0].Layers[0]
	u.DeleteBlob(t, layer)
	if resp, _ := get(t, "GET", u.URL+"/v2/multi/blobs/"+layer); resp.StatusCode != 404 {
		t.Errorf("deleted blob: %d", resp.StatusCode)
	}
}
