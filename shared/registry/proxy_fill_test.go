package registry_test

import (
	"crypto/sha256"
	"encoding/hex"
	"io"
	"net/http"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/airlock-registry/airlock/shared/registry"
	"github.com/airlock-registry/airlock/shared/upstream/upstreamtest"
)

// TestProxySlowFillRetry: a fill past the budget answers 503 + Retry-After
// (onTimeout: retry) and is handed to proxyfetch, which resumes it where it
// stopped (a ranged GET: the bytes already fetched are not fetched again)
// and caches the blob; the client's retry then gets the usual 307.
func TestProxySlowFillRetry(t *testing.T) {
	up := upstreamtest.New(t)
	img := up.PushImage(t, "app", "v1", 1, 12<<20) // two parts and a tail
	e := newProxyEnv(t, up, "  fill: {budget: 2s, onTimeout: retry}\n")
	up.SetFault(upstreamtest.FaultSlowBlobs(5 * time.Second))
	layer := img.Layers[0]
	start := time.Now()
	r := e.do(http.MethodGet, "/v2/hub/app/blobs/"+layer)
	if r.Status != http.StatusServiceUnavailable || string(errCode(r)) != "UNAVAILABLE" || r.Header.Get("Retry-After") == "" {
		t.Fatalf("fill past the budget: %s %v, want 503 UNAVAILABLE with Retry-After", r, r.Header)
	}
	if d := time.Since(start); d > 4*time.Second {
		t.Errorf("the answer took %s; the budget is 2s", d)
	}
	e.handoffs.Wait()
	if len(e.jobs) != 1 {
		t.Fatalf("%d fills handed to proxyfetch, want 1", len(e.jobs))
	}
	got, r := e.pullBlob("/v2/hub/app/blobs/" + layer)
	if got != layer {
		t.Fatalf("after proxyfetch: %q %s", got, r)
	}
	var gets []upstreamtest.Request
	for _, q := range up.Requests() {
		if q.Kind == "blob" && q.Method == http.MethodGet {
			gets = append(gets, q)
		}
	}
	// The resume asks for exactly the bytes after the parked offset (none
	// may have arrived within the budget on a loaded machine: then all).
	off := e.parkedAt[0]
	t.Logf("parked at byte %d of %d", off, 12<<20)
	wantRange := ""
	if off > 0 {
		wantRange = "bytes=" + strconv.FormatInt(off, 10) + "-"
	}
	if len(gets) != 2 || gets[0].Range != "" || !strings.HasPrefix(gets[1].Range, wantRange) || (off > 0) != (gets[1].Range != "") {
		t.Errorf("upstream blob GETs %+v: want the first whole and the resume from byte %d", gets, off)
	}
	// The parked state is gone: nothing pending.
	st := e.do(http.MethodGet, "/airlock/api/proxies")
	if !strings.Contains(string(st.Body), `"pendingFills":0`) {
		t.Errorf("admin status after the fill: %s", st)
	}
}

// TestProxySlowFillRedirect: with onTimeout: redirect the client is sent to
// the upstream's own blob URL (its CDN here) once the budget is spent.
func TestProxySlowFillRedirect(t *testing.T) {
	up := upstreamtest.New(t, upstreamtest.WithBlobRedirect())
	img := up.PushImage(t, "app", "v1", 1, 6<<20)
	e := newProxyEnv(t, up, "  fill: {budget: 1s, onTimeout: redirect}\n")
	up.SetFault(upstreamtest.FaultSlowBlobs(3 * time.Second))
	layer := img.Layers[0]
	r := e.do(http.MethodGet, "/v2/hub/app/blobs/"+layer)
	loc := r.Header.Get("Location")
	if r.Status != http.StatusTemporaryRedirect || !strings.HasPrefix(loc, up.CDNURL) {
		t.Fatalf("fill past the budget: %s Location %q, want 307 to the CDN %s", r, loc, up.CDNURL)
	}
	up.SetFault(upstreamtest.FaultNone)
	res, err := http.Get(loc)
	if err != nil {
		t.Fatal(err)
	}
	h := sha256.New()
	_, _ = io.Copy(h, res.Body)
	res.Body.Close()
	if got := "sha256:" + hex.EncodeToString(h.Sum(nil)); got != layer {
		t.Errorf("the redirect serves %s, want %s", got, layer)
	}
	e.handoffs.Wait() // proxyfetch still fills the cache
	if got, r := e.pullBlob("/v2/hub/app/blobs/" + layer); got != layer {
		t.Errorf("after proxyfetch: %q %s", got, r)
	}
}

// TestProxyScheduledRetry: a parked fill whose hand-off was lost (no
// proxyfetch invoke) is resumed by the schedule (Set.RetryFills), and a
// second run finds nothing left to do.
func TestProxyScheduledRetry(t *testing.T) {
	up := upstreamtest.New(t)
	img := up.PushImage(t, "app", "v1", 1, 6<<20)
	e := newProxyEnv(t, up, "  fill: {budget: 1s}\n", func(d *registry.Deps) { d.Proxy.Handoff = nil })
	up.SetFault(upstreamtest.FaultSlowBlobs(3 * time.Second))
	layer := img.Layers[0]
	if r := e.do(http.MethodGet, "/v2/hub/app/blobs/"+layer); r.Status != http.StatusServiceUnavailable {
		t.Fatalf("fill past the budget: %s", r)
	}
	if r := e.do(http.MethodGet, "/airlock/api/proxies"); !strings.Contains(string(r.Body), `"pendingFills":1`) {
		t.Errorf("admin status with a parked fill: %s", r)
	}
	up.SetFault(upstreamtest.FaultNone)
	n, err := e.reg.Repositories().RetryFills(t.Context())
	if err != nil || n != 1 {
		t.Fatalf("RetryFills: %d fills run (%v), want 1", n, err)
	}
	if got, r := e.pullBlob("/v2/hub/app/blobs/" + layer); got != layer {
		t.Errorf("blob after the scheduled retry: %q %s", got, r)
	}
	if n, err := e.reg.Repositories().RetryFills(t.Context()); err != nil || n != 0 {
		t.Errorf("second RetryFills: %d fills run (%v), want 0", n, err)
	}
	if n := up.BlobGets(layer); n != 2 {
		t.Errorf("upstream blob GETs: %d, want 2 (the first, cut by the budget, and the ranged resume)", n)
	}
}
