package registry_test

import (
	"encoding/json"
	"net/http"
	"net/http/httptest"
	"strconv"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"github.com/google/go-containerregistry/pkg/v1/empty"
	"github.com/google/go-containerregistry/pkg/v1/mutate"
	"github.com/google/go-containerregistry/pkg/v1/static"
	"github.com/google/go-containerregistry/pkg/v1/types"

	"github.com/airlock-registry/airlock/shared/registry"
	"github.com/airlock-registry/airlock/shared/storage/memstore"
	"github.com/airlock-registry/airlock/shared/upstream/upstreamtest"
)

// TestProxyMirror: a proxy as the default repository serves unprefixed
// names (Docker's registry-mirrors); containerd's ?ns=<registry> selects the
// proxy of that registry; another registry without one is refused.
func TestProxyMirror(t *testing.T) {
	up := upstreamtest.New(t)
	img := up.PushImage(t, "library/alpine", "3", 1, 100)
	e := newProxyEnv(t, up, "")
	mirror := newProxyEnv(t, up, "", func(d *registry.Deps) {
		d.Config = mustConfig(t, sprintf("default: hub\nrepositories:\n- {name: local, kind: hosted}\n- {name: hub, kind: proxy, remote: %q}\n", up.URL))
	})
	mirror.pull("library/alpine", "3", img)

	// ?ns= names the upstream's host: the proxy takes the unprefixed name.
	r := e.do(http.MethodGet, "/v2/library/alpine/manifests/3?ns="+up.Host(), "Accept", string(img.MediaType))
	if r.Status != http.StatusOK || r.Header.Get("Docker-Content-Digest") != img.Digest {
		t.Errorf("?ns=%s: %s", up.Host(), r)
	}
	// Another registry without a proxy of it: refused, whatever the name
	// (unprefixed, or prefixed with a repository of this registry), so that
	// no image of this registry is served as quay.io's; containerd goes on
	// to quay.io itself.
	for _, name := range []string{"library/alpine", "hub/library/alpine", "local/alpine"} {
		r = e.do(http.MethodGet, "/v2/"+name+"/manifests/3?ns=quay.io")
		if r.Status != http.StatusNotFound || errCode(r) != registry.CodeNameUnknown || !strings.Contains(r.String(), "remote: https://quay.io") {
			t.Errorf("%s ?ns=quay.io: %s, want 404 NAME_UNKNOWN naming the proxy to add", name, r)
		}
	}
	r = mirror.do(http.MethodGet, "/v2/library/alpine/manifests/3?ns=QUAY.IO")
	if r.Status != http.StatusNotFound || errCode(r) != registry.CodeNameUnknown {
		t.Errorf("?ns=QUAY.IO through the hub-default mirror: %s, want 404 NAME_UNKNOWN (not Docker Hub's alpine)", r)
	}
	// Docker Hub is what unprefixed names mean: without a Docker Hub proxy
	// (up is not Docker Hub) ?ns=docker.io resolves as without ns.
	r = mirror.do(http.MethodGet, "/v2/library/alpine/manifests/3?ns=docker.io", "Accept", string(img.MediaType))
	if r.Status != http.StatusOK || r.Header.Get("Docker-Content-Digest") != img.Digest {
		t.Errorf("?ns=docker.io through the hub-default mirror: %s", r)
	}
	r = e.do(http.MethodGet, "/v2/library/alpine/manifests/3?ns=docker.io")
	if r.Status != http.StatusNotFound || errCode(r) != registry.CodeManifestUnknown {
		t.Errorf("?ns=docker.io with the hosted default: %s, want the hosted default's 404", r)
	}
}

// TestProxyTags: tags/list merges the remote's tags with the cached ones
// (a tag deleted upstream stays, and keeps serving its cached copy), pages
// with n/last, and falls back to the cache when the remote is down.
func TestProxyTags(t *testing.T) {
	up := upstreamtest.New(t)
	gone := up.PushImage(t, "app", "gone", 1, 100)
	up.PushImage(t, "app", "a", 1, 100)
	up.PushImage(t, "app", "b", 1, 100)
	e := newProxyEnv(t, up, "  metadataMaxAge: 0s\n")
	e.pull("hub/app", "gone", gone)
	up.DeleteTag(t, "app", "gone")

	tags := func(q string) []string {
		r := e.do(http.MethodGet, "/v2/hub/app/tags/list"+q)
		var doc struct{ Tags []string }
		if r.Status != http.StatusOK || json.Unmarshal(r.Body, &doc) != nil {
			t.Fatalf("tags/list%s: %s", q, r)
		}
		return doc.Tags
	}
	if got := strings.Join(tags(""), ","); got != "a,b,gone" {
		t.Errorf("tags: %s, want a,b,gone", got)
	}
	if got := strings.Join(tags("?n=1&last=a"), ","); got != "b" {
		t.Errorf("tags after a, n=1: %s, want b", got)
	}
	r := e.do(http.MethodGet, "/v2/hub/app/manifests/gone", "Accept", string(gone.MediaType))
	if r.Status != http.StatusOK || r.Header.Get("Warning") == "" {
		t.Errorf("a tag deleted upstream: %s %v, want the cached copy with a Warning", r, r.Header)
	}
	up.SetFault(upstreamtest.FaultDown)
	if got := strings.Join(tags(""), ","); got != "gone" {
		t.Errorf("tags with the upstream down: %s, want the cached gone", got)
	}
}

// TestProxyRefresh: the admin call revalidates one tag now, whatever
// metadataMaxAge says.
func TestProxyRefresh(t *testing.T) {
	up := upstreamtest.New(t)
	v1 := up.PushImage(t, "app", "latest", 1, 100)
	e := newProxyEnv(t, up, "  metadataMaxAge: 24h\n")
	e.pull("hub/app", "latest", v1)
	v2 := up.PushImage(t, "app", "latest", 1, 100)
	e.pull("hub/app", "latest", v1) // still fresh: the old digest
	r := e.do(http.MethodPost, "/airlock/api/proxies/hub/refresh?name=app&tag=latest")
	if r.Status != http.StatusOK || !strings.Contains(string(r.Body), v2.Digest) {
		t.Fatalf("refresh: %s, want the new digest %s", r, v2.Digest)
	}
	e.pull("hub/app", "latest", v2)
	for _, c := range []struct{ method, path string }{
		{http.MethodPost, "/airlock/api/proxies/local/refresh?name=app&tag=latest"},
		{http.MethodPost, "/airlock/api/proxies/hub/refresh?name=APP&tag=latest"},
		{http.MethodPost, "/airlock/api/proxies/hub/refresh?name=app"},
		{http.MethodGet, "/airlock/api/proxies/hub/refresh?name=app&tag=latest"},
	} {
		if r := e.do(c.method, c.path); r.Status/100 != 4 {
			t.Errorf("%s %s: %s, want a 4xx", c.method, c.path, r)
		}
	}
}

// TestProxyHeadAndConditional: a blob HEAD answers from the remote without
// filling the cache; cached manifests and blobs answer If-None-Match with 304.
func TestProxyHeadAndConditional(t *testing.T) {
	up := upstreamtest.New(t)
	img := up.PushImage(t, "app", "v1", 1, 5000)
	e := newProxyEnv(t, up, "")
	layer := img.Layers[0]
	r := e.do(http.MethodHead, "/v2/hub/app/blobs/"+layer)
	ls, _ := img.Image.Layers()
	size, _ := ls[0].Size()
	if r.Status != http.StatusOK || r.Header.Get("Content-Length") != strconv.FormatInt(size, 10) {
		t.Errorf("HEAD of an uncached blob: %s %v", r, r.Header)
	}
	if n := up.BlobGets(layer); n != 0 {
		t.Errorf("a HEAD fetched the blob %d times", n)
	}
	e.pull("hub/app", "v1", img)
	for p, etag := range map[string]string{"/v2/hub/app/manifests/v1": img.Digest, "/v2/hub/app/blobs/" + layer: layer} {
		if r := e.do(http.MethodGet, p, "If-None-Match", `"`+etag+`"`); r.Status != http.StatusNotModified {
			t.Errorf("conditional GET %s: %s, want 304", p, r)
		}
	}
}

// TestProxyForeignLayers: a foreign layer the remote does not serve is
// fetched from its URL when the allow-list fully matches it, and refused
// otherwise.
func TestProxyForeignLayers(t *testing.T) {
	layerBytes := []byte("a foreign layer's bytes, served by a vendor's server")
	var served atomic.Int32
	vendor := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		served.Add(1)
		_, _ = w.Write(layerBytes)
	}))
	t.Cleanup(vendor.Close)
	l := static.NewLayer(layerBytes, types.DockerForeignLayer)
	ld, _ := l.Digest()
	img, err := mutate.Append(empty.Image, mutate.Addendum{Layer: l, MediaType: types.DockerForeignLayer, URLs: []string{vendor.URL + "/layers/" + ld.Hex}})
	if err != nil {
		t.Fatal(err)
	}
	img = mutate.MediaType(img, types.DockerManifestSchema2)
	up := upstreamtest.New(t)
	pushed := up.Push(t, "win", "1", img)

	allowed := newProxyEnv(t, up, "  foreignLayers:\n    enabled: true\n    allow: ['"+strings.ReplaceAll(vendor.URL, ".", `\.`)+"/layers/.*']\n")
	refused := newProxyEnv(t, up, "  foreignLayers:\n    enabled: true\n    allow: ['https://mcr\\.microsoft\\.com/.*']\n")
	for _, e := range []*proxyEnv{allowed, refused} {
		r := e.do(http.MethodGet, "/v2/hub/win/manifests/1", "Accept", string(pushed.MediaType))
		if r.Status != http.StatusOK {
			t.Fatalf("manifest with a foreign layer: %s", r)
		}
	}
	if got, r := allowed.pullBlob("/v2/hub/win/blobs/" + ld.String()); got != ld.String() {
		t.Errorf("allowed foreign layer: %q %s", got, r)
	}
	if served.Load() != 1 {
		t.Errorf("vendor served the foreign layer %d times, want 1", served.Load())
	}
	r := refused.do(http.MethodGet, "/v2/hub/win/blobs/"+ld.String())
	if r.Status != http.StatusNotFound || errCode(r) != registry.CodeBlobUnknown || !strings.Contains(string(r.Body), "not allowed") {
		t.Errorf("disallowed foreign layer: %s, want 404 BLOB_UNKNOWN saying the URL is not allowed", r)
	}
	if served.Load() != 1 {
		t.Errorf("a disallowed foreign URL was fetched")
	}
}

// TestProxyOfAirlock: the seed bug's chain — a proxy in front of another
// Airlock's hosted repository: the second pull downloads nothing, and past
// metadataMaxAge the hosted Airlock answers the conditional HEAD with 304.
func TestProxyOfAirlock(t *testing.T) {
	st := memstore.New()
	t.Cleanup(func() { st.Close() })
	hosted, err := registry.New(registry.Deps{Meta: st, Blobs: st, Config: mustConfig(t, "default: local\nrepositories:\n- {name: local, kind: hosted}\n")})
	if err != nil {
		t.Fatal(err)
	}
	var mu atomicLog
	front := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		rec := &statusRecorder{ResponseWriter: w, status: 200}
		hosted.ServeHTTP(rec, r)
		mu.add(r.Method+" "+r.URL.Path, rec.status)
	}))
	t.Cleanup(front.Close)
	// Push an image to the hosted Airlock through a go-containerregistry-backed fixture's content.
	src := upstreamtest.New(t)
	img := src.PushImage(t, "team/app", "v1", 2, 3000)
	copyImage(t, img, front.URL+"/v2/team/app")

	e := newProxyEnv(t, &upstreamtest.Upstream{URL: front.URL}, "  metadataMaxAge: 1m\n")
	e.pull("hub/team/app", "v1", img)
	mu.reset()
	e.pull("hub/team/app", "v1", img)
	if n := len(mu.all()); n != 0 {
		t.Errorf("warm pull through a proxy of Airlock: %d upstream requests: %v", n, mu.all())
	}
	e.clock.Advance(2 * time.Minute)
	e.pull("hub/team/app", "v1", img)
	got := mu.all()
	if len(got) != 1 || !strings.HasPrefix(got[0], "HEAD /v2/team/app/manifests/v1 304") {
		t.Errorf("revalidation past metadataMaxAge: %v, want one HEAD answered 304", got)
	}
}
