package registry_test

import (
	"encoding/json"
	"net/http"
	"strings"
	"testing"
	"time"

	"github.com/airlock-registry/airlock/shared/storage"
	"github.com/airlock-registry/airlock/shared/upstream/upstreamtest"
	digest "github.com/opencontainers/go-digest"
)

// TestProxyUpstreamTrouble: with the upstream down, resetting, answering
// 503 or 429, cached content is still served (a stale tag with a Warning),
// uncached content fails with the right status and code — never
// MANIFEST_UNKNOWN — and all works again once the upstream is back.
func TestProxyUpstreamTrouble(t *testing.T) {
	for _, c := range []struct {
		name   string
		fault  upstreamtest.Fault
		status int
		code   string
	}{
		{"down", upstreamtest.FaultDown, http.StatusServiceUnavailable, "UNAVAILABLE"},
		{"reset", upstreamtest.FaultReset, http.StatusServiceUnavailable, "UNAVAILABLE"},
		{"503", upstreamtest.FaultStatus(http.StatusServiceUnavailable), http.StatusServiceUnavailable, "UNAVAILABLE"},
		{"hang", upstreamtest.FaultHang, http.StatusGatewayTimeout, "UNAVAILABLE"},
		{"429", upstreamtest.FaultTooManyRequests("42"), http.StatusTooManyRequests, "TOOMANYREQUESTS"},
	} {
		t.Run(c.name, func(t *testing.T) {
			t.Parallel()
			up := upstreamtest.New(t)
			cached := up.PushImage(t, "app", "v1", 2, 2000)
			other := up.PushImage(t, "app", "v2", 2, 2000)
			e := newProxyEnv(t, up, "  metadataMaxAge: 0s\n  negativeCacheTTL: 0s\n")
			e.pull("hub/app", "v1", cached)

			up.SetFault(c.fault)
			// Cached: by tag (stale: revalidation fails) and by digest.
			r := e.do(http.MethodGet, "/v2/hub/app/manifests/v1", "Accept", string(cached.MediaType))
			if r.Status != http.StatusOK || r.Header.Get("Docker-Content-Digest") != cached.Digest {
				t.Fatalf("cached tag with the upstream %s: %s", c.name, r)
			}
			if w := r.Header.Get("Warning"); !strings.HasPrefix(w, "110 ") || !strings.Contains(w, up.URL) {
				t.Errorf("stale tag served without a Warning 110 naming the upstream: %q", w)
			}
			e.pull("hub/app", cached.Digest, cached)
			// Uncached: the right error, and a blob of the uncached image too.
			for _, path := range []string{"/v2/hub/app/manifests/v2", "/v2/hub/app/blobs/" + other.Layers[0]} {
				r = e.do(http.MethodGet, path, "Accept", string(other.MediaType))
				if r.Status != c.status || string(errCode(r)) != c.code {
					t.Errorf("uncached %s with the upstream %s: %s, want %d %s", path, c.name, r, c.status, c.code)
				}
				if c.code == "TOOMANYREQUESTS" && r.Header.Get("Retry-After") != "42" {
					t.Errorf("429 without the upstream's Retry-After: %v", r.Header)
				}
				if !strings.Contains(string(r.Body), up.URL) {
					t.Errorf("error does not name the upstream: %s", r)
				}
			}
			// Back to normal (after any auto-block back-off).
			up.SetFault(upstreamtest.FaultNone)
			e.clock.Advance(time.Hour)
			e.pull("hub/app", "v2", other)
		})
	}
}

// TestProxyAutoBlock: repeated failures block the remote for a growing
// back-off (only the cache is used, no upstream call), visible in the admin
// status; once the back-off has passed, a success clears it.
func TestProxyAutoBlock(t *testing.T) {
	up := upstreamtest.New(t)
	img := up.PushImage(t, "app", "v1", 1, 100)
	e := newProxyEnv(t, up, "  negativeCacheTTL: 0s\n")
	up.SetFault(upstreamtest.FaultStatus(http.StatusBadGateway))
	for i := range 3 { // BlockAfter defaults to 3
		if r := e.do(http.MethodGet, "/v2/hub/app/manifests/v1"); r.Status != http.StatusServiceUnavailable {
			t.Fatalf("failure %d: %s", i+1, r)
		}
	}
	up.Reset()
	r := e.do(http.MethodGet, "/v2/hub/app/manifests/v1")
	if r.Status != http.StatusServiceUnavailable || !strings.Contains(string(r.Body), "blocked") || r.Header.Get("Retry-After") == "" {
		t.Errorf("blocked remote: %s %v, want 503 saying blocked, with Retry-After", r, r.Header)
	}
	if n := len(up.Requests()); n != 0 {
		t.Errorf("a blocked remote was asked %d times", n)
	}
	st := e.do(http.MethodGet, "/airlock/api/proxies")
	var doc struct {
		Proxies []struct {
			Name     string `json:"name"`
			Failures int    `json:"consecutiveFailures"`
			Blocked  bool   `json:"blocked"`
		} `json:"proxies"`
	}
	if err := json.Unmarshal(st.Body, &doc); err != nil || len(doc.Proxies) != 1 || !doc.Proxies[0].Blocked || doc.Proxies[0].Failures != 3 {
		t.Errorf("admin status: %s (%v)", st, err)
	}
	up.SetFault(upstreamtest.FaultNone)
	if r := e.do(http.MethodGet, "/v2/hub/app/manifests/v1"); r.Status != http.StatusServiceUnavailable {
		t.Errorf("still within the back-off: %s", r)
	}
	e.clock.Advance(61 * time.Second) // BlockBase is 1m in newProxyEnv
	e.pull("hub/app", "v1", img)
	st = e.do(http.MethodGet, "/airlock/api/proxies")
	if !strings.Contains(string(st.Body), `"consecutiveFailures":0`) || !strings.Contains(string(st.Body), `"blocked":false`) {
		t.Errorf("admin status after recovery: %s", st)
	}
}

// TestProxyCorruptUpstream: bytes that do not match their digest are never
// cached nor served; a later correct upstream works.
func TestProxyCorruptUpstream(t *testing.T) {
	for _, size := range []int64{3000, 7 << 20} { // one PutObject; multipart
		up := upstreamtest.New(t)
		img := up.PushImage(t, "app", "v1", 1, size)
		e := newProxyEnv(t, up, "")
		up.SetFault(upstreamtest.FaultCorruptBlobs)
		layer := img.Layers[0]
		got, r := e.pullBlob("/v2/hub/app/blobs/" + layer)
		if got != "" || r.Status != http.StatusBadGateway || !strings.Contains(string(r.Body), "nothing was cached") {
			t.Fatalf("corrupt blob of %d bytes: %q %s, want 502 saying nothing was cached", size, got, r)
		}
		d := digest.Digest(layer)
		if _, err := e.store.GetBlob(t.Context(), d); err == nil {
			t.Errorf("corrupt bytes were recorded as blob %s", d)
		}
		if _, err := e.store.StatBlob(t.Context(), storage.Image{Repo: "hub", Name: "app"}, d); err == nil {
			t.Errorf("corrupt bytes were linked as blob %s", d)
		}
		up.SetFault(upstreamtest.FaultNone)
		e.pull("hub/app", "v1", img)
	}
}

// TestProxyNegativeCache: "not found upstream" is a 404 MANIFEST_UNKNOWN
// saying so, remembered for negativeCacheTTL (no upstream call meanwhile).
func TestProxyNegativeCache(t *testing.T) {
	up := upstreamtest.New(t)
	e := newProxyEnv(t, up, "  negativeCacheTTL: 1m\n")
	r := e.do(http.MethodGet, "/v2/hub/nope/manifests/v1")
	if r.Status != http.StatusNotFound || errCode(r) != "MANIFEST_UNKNOWN" || !strings.Contains(string(r.Body), "upstream") {
		t.Fatalf("unknown upstream: %s", r)
	}
	up.Reset()
	if r := e.do(http.MethodGet, "/v2/hub/nope/manifests/v1"); r.Status != http.StatusNotFound {
		t.Fatalf("second miss: %s", r)
	}
	if n := len(up.Requests()); n != 0 {
		t.Errorf("a remembered miss asked the upstream %d times", n)
	}
	img := up.PushImage(t, "nope", "v1", 1, 10)
	e.clock.Advance(2 * time.Minute)
	e.pull("hub/nope", "v1", img)
}
