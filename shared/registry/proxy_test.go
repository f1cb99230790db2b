package registry_test

import (
	"context"
	"net/http"
	"strings"
	"sync"
	"testing"
	"time"

	digest "github.com/opencontainers/go-digest"

	"github.com/airlock-registry/airlock/shared/storage"
	"github.com/airlock-registry/airlock/shared/upstream/upstreamtest"
)

// TestProxyPullTwice: after one pull through the proxy, a second pull asks
// the upstream nothing (within metadataMaxAge); past it, one HEAD per tag
// and still no bodies. The upstream is Docker-Hub-like: bearer tokens, blob
// GETs redirected to a CDN on another host, which never sees credentials.
func TestProxyPullTwice(t *testing.T) {
	up := upstreamtest.New(t, upstreamtest.WithToken("", ""), upstreamtest.WithBlobRedirect())
	img := up.PushImage(t, "team/app", "v1", 3, 4096)
	e := newProxyEnv(t, up, "  metadataMaxAge: 1h\n")

	e.pull("hub/team/app", "v1", img)
	for _, d := range img.Blobs() {
		if n := up.BlobGets(d); n != 1 {
			t.Errorf("cold pull: upstream served blob %s %d times, want 1", d, n)
		}
	}
	if n := up.ManifestGets(); n != 1 {
		t.Errorf("cold pull: %d manifest GETs upstream, want 1", n)
	}
	if n := up.CDNAuthLeaks(); n != 0 {
		t.Errorf("the CDN received %d requests with an Authorization header (remote credentials leaked)", n)
	}

	up.Reset()
	e.pull("hub/team/app", "v1", img)
	if n := len(up.Requests()); n != 0 {
		t.Errorf("warm pull within metadataMaxAge: %d upstream requests, want 0: %+v", n, up.Requests())
	}

	e.clock.Advance(2 * time.Hour)
	up.Reset()
	e.pull("hub/team/app", "v1", img)
	if n := up.Count(http.MethodHead, "manifest"); n != 1 {
		t.Errorf("pull past metadataMaxAge: %d manifest HEADs, want 1: %+v", n, up.Requests())
	}
	if n := up.Count(http.MethodGet, "manifest") + up.Count(http.MethodGet, "blob") + up.Count(http.MethodGet, "cdn"); n != 0 {
		t.Errorf("pull past metadataMaxAge: %d GETs of manifests or blobs, want 0: %+v", n, up.Requests())
	}
	// Checked again just now: the next pull asks nothing.
	up.Reset()
	e.pull("hub/team/app", "v1", img)
	if n := len(up.Requests()); n != 0 {
		t.Errorf("pull after a revalidation: %d upstream requests, want 0", n)
	}
}

// TestProxyRevalidate: a tag moved upstream is seen once metadataMaxAge
// has passed (0s: on every pull), the new manifest fetched by digest and the
// tag moved; an unchanged tag costs one HEAD (answered 304 here).
func TestProxyRevalidate(t *testing.T) {
	up := upstreamtest.New(t)
	v1 := up.PushImage(t, "app", "latest", 1, 1000)
	e := newProxyEnv(t, up, "  metadataMaxAge: 0s\n")
	e.pull("hub/app", "latest", v1)

	up.Reset()
	e.pull("hub/app", "latest", v1)
	if up.Count(http.MethodHead, "manifest") != 1 || up.ManifestGets() != 0 {
		t.Errorf("unchanged tag with metadataMaxAge 0: want 1 HEAD and no GET: %+v", up.Requests())
	}
	if up.NotModified() != 1 {
		t.Errorf("the revalidating HEAD was not conditional (no 304): %+v", up.Requests())
	}

	v2 := up.PushImage(t, "app", "latest", 1, 1000)
	up.Reset()
	e.pull("hub/app", "latest", v2)
	if up.ManifestGets() != 1 {
		t.Errorf("moved tag: want 1 manifest GET (by digest): %+v", up.Requests())
	}
	// The old manifest stays pullable by digest without asking.
	up.Reset()
	if r := e.do(http.MethodGet, "/v2/hub/app/manifests/"+v1.Digest, "Accept", string(v1.MediaType)); r.Status != http.StatusOK {
		t.Errorf("old manifest by digest: %s", r)
	}
	if n := len(up.Requests()); n != 0 {
		t.Errorf("a cached manifest by digest asked the upstream %d times", n)
	}
}

// TestProxyConcurrentColdPull: 20 clients pulling one uncached image at
// once get identical bytes, and the upstream serves each blob exactly once.
func TestProxyConcurrentColdPull(t *testing.T) {
	up := upstreamtest.New(t, upstreamtest.WithToken("", ""), upstreamtest.WithBlobRedirect())
	img := up.PushImage(t, "big/app", "1", 3, 6<<20) // over one part: the multipart path
	up.SetFault(upstreamtest.FaultSlowBlobs(300 * time.Millisecond))
	e := newProxyEnv(t, up, "  fill: {budget: 30s}\n")
	var wg sync.WaitGroup
	for range 20 {
		wg.Go(func() { e.pull("hub/big/app", "1", img) })
	}
	wg.Wait()
	for _, d := range img.Blobs() {
		if n := up.BlobGets(d); n != 1 {
			t.Errorf("blob %s: %d upstream GETs for 20 concurrent pulls, want exactly 1", d, n)
		}
	}
	// The manifest too: one GET of the remote's pull quota for the burst.
	if n := up.ManifestGets(); n != 1 {
		t.Errorf("%d upstream manifest GETs for 20 concurrent cold pulls, want 1", n)
	}
}

// TestProxyRefusesPush: a proxy takes no writes; the message names where to push.
func TestProxyRefusesPush(t *testing.T) {
	up := upstreamtest.New(t)
	e := newProxyEnv(t, up, "")
	for _, c := range []struct{ method, path string }{
		{http.MethodPost, "/v2/hub/app/blobs/uploads/"},
		{http.MethodPut, "/v2/hub/app/manifests/v1"},
		{http.MethodDelete, "/v2/hub/app/manifests/v1"},
		{http.MethodDelete, "/v2/hub/app/blobs/sha256:" + strings.Repeat("a", 64)},
	} {
		r := e.do(c.method, c.path)
		if r.Status != http.StatusForbidden || !strings.Contains(string(r.Body), `"DENIED"`) || !strings.Contains(string(r.Body), "local") {
			t.Errorf("%s %s: %s, want 403 DENIED naming the hosted repository local", c.method, c.path, r)
		}
	}
}

// TestProxyRevalidateEvictedManifest: a cached tag whose manifest is gone
// (evicted by the purge while the tag, written after its cut, stayed) is
// fetched again by digest when the remote confirms the tag, instead of
// answering MANIFEST_UNKNOWN.
func TestProxyRevalidateEvictedManifest(t *testing.T) {
	up := upstreamtest.New(t)
	v1 := up.PushImage(t, "app", "latest", 1, 1000)
	e := newProxyEnv(t, up, "  metadataMaxAge: 0s\n")
	e.pull("hub/app", "latest", v1)
	img := storage.Image{Repo: "hub", Name: "app"}
	if err := e.store.DeleteManifest(context.Background(), img, digest.Digest(v1.Digest)); err != nil {
		t.Fatal(err)
	}
	if err := e.store.PutTagCheck(context.Background(), img, "latest", storage.TagCheck{Digest: digest.Digest(v1.Digest), Checked: e.clock.Now()}); err != nil {
		t.Fatal(err)
	}
	up.Reset()
	e.pull("hub/app", "latest", v1)
	if up.Count(http.MethodHead, "manifest") != 1 || up.ManifestGets() != 1 {
		t.Errorf("confirmed tag without its manifest: want 1 HEAD and 1 GET by digest: %+v", up.Requests())
	}
	if _, err := e.store.GetManifest(context.Background(), img, digest.Digest(v1.Digest)); err != nil {
		t.Errorf("the manifest is not cached again: %v", err)
	}
}
