//go:build e2e

package e2e

import (
	"io"
	"maps"
	"net/http"
	"net/http/httptest"
	"net/http/httputil"
	"net/url"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"
)

// chunkLimit is the largest body the chunked-push test's localdev accepts: below
// 5 MiB, as behind API Gateway + Lambda (6 MB, base64), so only chunks pass.
const (
	chunkLimit = 5_000_000
	chunkSize  = 4 * mib
)

// wireLog records what went through the recording proxy.
type wireLog struct {
	mu        sync.Mutex
	patches   int
	patchMax  int64
	putMax    int64
	bodyTotal int64
	statuses  map[int]int
	chunkMin  string // OCI-Chunk-Min-Length of the upload POSTs
	chunkMax  string // OCI-Chunk-Max-Length of the upload POSTs
}

// countingBody counts the bytes a request body yields.
type countingBody struct {
	io.ReadCloser
	n int64
}

func (c *countingBody) Read(p []byte) (int, error) {
	n, err := c.ReadCloser.Read(p)
	c.n += int64(n)
	return n, err
}

// recordingProxy starts a reverse proxy to target that measures every request
// body (PATCH chunks, PUT bodies) and counts response statuses.
func recordingProxy(t testing.TB, target string) (*httptest.Server, *wireLog) {
	t.Helper()
	u, err := url.Parse(target)
	if err != nil {
		t.Fatal(err)
	}
	wl := &wireLog{statuses: map[int]int{}}
	rp := httputil.NewSingleHostReverseProxy(u)
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		cb := &countingBody{ReadCloser: r.Body}
		if r.Body != nil && r.Body != http.NoBody {
			r.Body = cb
		}
		sw := &statusWriter{ResponseWriter: w, code: 200}
		rp.ServeHTTP(sw, r)
		wl.mu.Lock()
		defer wl.mu.Unlock()
		wl.statuses[sw.code]++
		wl.bodyTotal += cb.n
		switch r.Method {
		case http.MethodPatch:
			wl.patches++
			wl.patchMax = max(wl.patchMax, cb.n)
		case http.MethodPut:
			wl.putMax = max(wl.putMax, cb.n)
		case http.MethodPost:
			if v := sw.Header().Get("OCI-Chunk-Min-Length"); v != "" {
				wl.chunkMin = v
			}
			if v := sw.Header().Get("OCI-Chunk-Max-Length"); v != "" {
				wl.chunkMax = v
			}
		}
	}))
	t.Cleanup(srv.Close)
	return srv, wl
}

// statusWriter remembers the status code written.
type statusWriter struct {
	http.ResponseWriter
	code int
}

func (s *statusWriter) WriteHeader(code int) {
	s.code = code
	s.ResponseWriter.WriteHeader(code)
}

func (s *statusWriter) Flush() {
	if f, ok := s.ResponseWriter.(http.Flusher); ok {
		f.Flush()
	}
}

// TestRegctlChunked pushes the ≥ 60 MiB image with regctl in chunks of 4 MiB
// to a localdev that accepts no request body above 5,000,000 bytes, through a
// proxy that measures each request, and pulls it back with the same digest.
func TestRegctlChunked(t *testing.T) {
	t.Parallel()
	reg := startRegistry(t, registryOpts{MaxBody: chunkLimit})
	proxy, wl := recordingProxy(t, reg.URL)
	host := strings.TrimPrefix(proxy.URL, "http://")
	work := t.TempDir()
	img := bigImage(t, bigLayers, bigLayerSize)
	size := imageSize(t, img)
	want := digestOf(t, img)
	src := filepath.Join(work, "src")
	writeLayout(t, src, img, "v1")

	regctl := tool(t, "regctl")
	env := regctlEnv(t, host, "--blob-chunk", "4194304", "--blob-max", "4194304")
	ref := host + "/local/regctl/chunked:v1"
	start := time.Now()
	mustRun(t, 5*time.Minute, env, regctl, "image", "copy", "ocidir://"+src+":v1", ref)
	pushTime := time.Since(start)
	t.Logf("regctl chunked push %s", mibps(size, pushTime))

	wl.mu.Lock()
	patches, patchMax, putMax, statuses := wl.patches, wl.patchMax, wl.putMax, fmtStatuses(wl.statuses)
	chunkMin, chunkMax := wl.chunkMin, wl.chunkMax
	wl.mu.Unlock()
	t.Logf("wire: %d PATCH requests, largest PATCH body %d bytes, largest PUT body %d bytes, statuses %s; "+
		"upload POST said OCI-Chunk-Min-Length %q, OCI-Chunk-Max-Length %q",
		patches, patchMax, putMax, statuses, chunkMin, chunkMax)
	if patchMax > chunkSize || putMax > chunkSize {
		t.Errorf("a request body exceeded the 4 MiB chunk: PATCH %d, PUT %d "+
			"(regctl raises its chunk to the registry's OCI-Chunk-Min-Length, here %q)", patchMax, putMax, chunkMin)
	}
	if minPatches := int(size / chunkSize); patches < minPatches {
		t.Errorf("%d PATCH requests for %d bytes, want ≥ %d (chunks of 4 MiB)", patches, size, minPatches)
	}

	got := strings.TrimSpace(mustRun(t, time.Minute, env, regctl, "image", "digest", ref))
	if got != want.String() {
		t.Fatalf("regctl image digest = %q, want %s", got, want)
	}
	assertManifestDigest(t, reg, "local/regctl/chunked", "v1", want)
	out := filepath.Join(work, "out")
	start = time.Now()
	mustRun(t, 5*time.Minute, env, regctl, "image", "copy", ref, "ocidir://"+out+":v1")
	t.Logf("regctl pull %s", mibps(size, time.Since(start)))
	assertSameImage(t, "regctl chunked round trip", img, readLayout(t, out))
}

// fmtStatuses formats status counts as "200=3 202=1".
func fmtStatuses(m map[int]int) string {
	var parts []string
	for _, c := range slices.Sorted(maps.Keys(m)) {
		parts = append(parts, strconv.Itoa(c)+"="+strconv.Itoa(m[c]))
	}
	return strings.Join(parts, " ")
}
