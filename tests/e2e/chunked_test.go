//go:build e2e

package e2e

import (
	"maps"
	"net/http"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"testing"
	"time"
)

// chunkLimit is the largest body the chunked-push test's localdev accepts: below
// 5 MiB, as behind API Gateway + Lambda (6 MB, base64), so only chunks pass.
const (
	chunkLimit = 5_000_000
	chunkSize  = 4 * mib
)

// TestRegctlChunked pushes the ≥ 60 MiB image with regctl in chunks of 4 MiB
// to a localdev that accepts no request body above 5,000,000 bytes, through a
// front that measures each request, and pulls it back with the same digest.
func TestRegctlChunked(t *testing.T) {
	t.Parallel()
	reg := startRegistry(t, registryOpts{MaxBody: chunkLimit})
	f := startFront(t, reg.URL)
	host := f.Host
	work := t.TempDir()
	img := bigImage(t, bigLayers, bigLayerSize)
	size := imageSize(t, img)
	want := digestOf(t, img)
	src := filepath.Join(work, "src")
	writeLayout(t, src, img, "v1")

	regctl := tool(t, "regctl")
	env := regctlEnv(t, host, "--blob-chunk", "4194304", "--blob-max", "4194304")
	ref := host + "/local/regctl/chunked:v1"
	m := f.mark()
	start := time.Now()
	mustRun(t, 5*time.Minute, env, regctl, "image", "copy", "ocidir://"+src+":v1", ref)
	pushTime := time.Since(start)
	t.Logf("regctl chunked push %s", mibps(size, pushTime))

	patches, patchMax, putMax := 0, int64(0), int64(0)
	codes := map[int]int{}
	chunkMin, chunkMax := "", "" // of the upload POSTs
	for _, h := range f.since(m) {
		codes[h.Status]++
		switch h.Method {
		case http.MethodPatch:
			patches++
			patchMax = max(patchMax, h.Body)
		case http.MethodPut:
			putMax = max(putMax, h.Body)
		case http.MethodPost:
			if v := h.Header.Get("OCI-Chunk-Min-Length"); v != "" {
				chunkMin = v
			}
			if v := h.Header.Get("OCI-Chunk-Max-Length"); v != "" {
				chunkMax = v
			}
		}
	}
	statuses := fmtStatuses(codes)
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
