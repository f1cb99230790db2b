//go:build e2e

package e2e

import (
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"net/url"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	v1 "github.com/google/go-containerregistry/pkg/v1"
	"github.com/google/go-containerregistry/pkg/v1/empty"
	"github.com/google/go-containerregistry/pkg/v1/layout"
	"github.com/google/go-containerregistry/pkg/v1/mutate"
	"github.com/google/go-containerregistry/pkg/v1/static"
	"github.com/google/go-containerregistry/pkg/v1/types"
)

// proxyMaxAge is metadataMaxAge of the proxy "hub" in TestProxy: short, so the
// test can wait it out.
const proxyMaxAge = 3 * time.Second

// slowRate is the byte rate of the slow front's blob bodies.
const slowRate = 4 * mib

// layeredImage returns an OCI image with one uncompressed random tar layer per
// size (random, so incompressible).
func layeredImage(t testing.TB, sizes ...int64) v1.Image {
	t.Helper()
	img := mutate.MediaType(empty.Image, types.OCIManifestSchema1)
	img = mutate.ConfigMediaType(img, types.OCIConfigJSON)
	var adds []mutate.Addendum
	for i, size := range sizes {
		l := static.NewLayer(randomTar(t, fmt.Sprintf("layer%d.bin", i), size), types.OCIUncompressedLayer)
		adds = append(adds, mutate.Addendum{Layer: l, History: v1.History{CreatedBy: fmt.Sprintf("e2e proxy layer %d", i)}})
	}
	img, err := mutate.Append(img, adds...)
	if err != nil {
		t.Fatal(err)
	}
	return withPlatform(t, img)
}

// platformImage returns img with the config's architecture set to arch.
func platformImage(t testing.TB, img v1.Image, arch string) v1.Image {
	t.Helper()
	cf, err := img.ConfigFile()
	if err != nil {
		t.Fatal(err)
	}
	cf = cf.DeepCopy()
	cf.Architecture = arch
	img, err = mutate.ConfigFile(img, cf)
	if err != nil {
		t.Fatal(err)
	}
	return img
}

// blobDigests returns the config digest and the layer digests of img.
func blobDigests(t testing.TB, img v1.Image) []v1.Hash {
	t.Helper()
	m, err := img.Manifest()
	if err != nil {
		t.Fatal(err)
	}
	out := []v1.Hash{m.Config.Digest}
	for _, l := range m.Layers {
		out = append(out, l.Digest)
	}
	return out
}

// pushImage writes img as an OCI layout and pushes it to ref with crane.
func pushImage(t testing.TB, img v1.Image, ref string) {
	t.Helper()
	dir := filepath.Join(t.TempDir(), "layout")
	writeLayout(t, dir, img, "push")
	mustRun(t, 2*time.Minute, nil, tool(t, "crane"), "push", "--insecure", dir, ref)
}

// cranePull pulls ref as an OCI layout with crane and checks it is img.
func cranePull(t testing.TB, ref string, img v1.Image) {
	t.Helper()
	out := filepath.Join(t.TempDir(), "pull")
	mustRun(t, 2*time.Minute, nil, tool(t, "crane"), "pull", "--insecure", "--format", "oci", ref, out)
	assertSameImage(t, "crane pull "+ref, img, readLayout(t, out))
}

// proxyConfig is the downstream Airlock's configuration: a hosted repository,
// the proxy "hub" of front1 (the default, so Docker's registry-mirror works),
// the proxy "flaky" of front2 (taken down by the upstream-down test) and the
// proxy "slow" of the slow front (a fill budget of 1s).
func proxyConfig(front1, front2, slow string) string {
	return fmt.Sprintf(`default: hub
repositories:
  - name: local
    kind: hosted
  - name: hub
    kind: proxy
    remote: %s
    metadataMaxAge: %s
    negativeCacheTTL: 1m
    fill: {budget: 20s, onTimeout: retry}
  - name: flaky
    kind: proxy
    remote: %s
    metadataMaxAge: 0s
    negativeCacheTTL: 1m
    fill: {budget: 20s, onTimeout: retry}
  - name: slow
    kind: proxy
    remote: %s
    fill: {budget: 1s, onTimeout: retry}
`, front1, proxyMaxAge, front2, slow)
}

// errorBody is the OCI error envelope.
type errorBody struct {
	Errors []struct {
		Code    string `json:"code"`
		Message string `json:"message"`
	} `json:"errors"`
}

func parseErrors(t testing.TB, b []byte) errorBody {
	t.Helper()
	var e errorBody
	if err := json.Unmarshal(b, &e); err != nil || len(e.Errors) == 0 {
		t.Fatalf("not an OCI error envelope (%v): %s", err, b)
	}
	return e
}

const manifestAccept = "application/vnd.oci.image.manifest.v1+json, application/vnd.oci.image.index.v1+json, " +
	"application/vnd.docker.distribution.manifest.v2+json, application/vnd.docker.distribution.manifest.list.v2+json"

// TestProxy chains two Airlocks (NEXUS-13363: a proxy whose remote is another
// registry of the same kind): "upstream" is a localdev with a hosted
// repository, reached through counting reverse proxies; "mirror" is a
// localdev whose default repository "hub" proxies the upstream through front1,
// "flaky" through front2 (closed by the last subtest) and "slow" through a
// front that serves blob bodies at 4 MiB/s. Real clients (crane, skopeo,
// dockerd with --registry-mirror) pull through the mirror, and what each front
// recorded shows what reached the upstream. Every subtest uses images of its
// own, so any one runs alone (-run 'TestProxy$/<name>'); upstream-down stays last.
func TestProxy(t *testing.T) {
	t.Parallel()
	start := time.Now()
	upstream := startRegistry(t, registryOpts{})
	front1 := startFront(t, upstream.URL)
	front2 := startFront(t, upstream.URL)
	slowFront := startFrontRate(t, upstream.URL, slowRate)
	mirror := startRegistry(t, registryOpts{Config: proxyConfig(front1.URL, front2.URL, slowFront.URL)})
	t.Logf("upstream %s behind %s (hub) and %s (flaky); mirror %s; started in %s",
		upstream.URL, front1.URL, front2.URL, mirror.URL, time.Since(start).Round(time.Millisecond))
	crane := tool(t, "crane")

	t.Run("chain", func(t *testing.T) {
		img := layeredImage(t, 512*1024, 3*mib, 7*mib) // the last one is above a 5 MiB part
		want := digestOf(t, img)
		blobs := blobDigests(t, img)
		pushImage(t, img, upstream.Host+"/local/chain/app:v1")
		mustRun(t, time.Minute, nil, crane, "tag", "--insecure", upstream.Host+"/local/chain/app:v1", "v2")
		tags := []string{"v1", "v2"}

		// Pull 1: the mirror fills its cache; every blob crosses once.
		m := front1.mark()
		t0 := time.Now()
		for _, tag := range tags {
			cranePull(t, mirror.Host+"/hub/chain/app:"+tag, img)
		}
		t.Logf("pull 1 (cold) of %d tags in %s", len(tags), time.Since(t0).Round(time.Millisecond))
		hs := front1.since(m)
		t.Logf("upstream saw during pull 1:\n%s", fmtHits(hs))
		for _, d := range blobs {
			got := filterHits(hs, func(h hit) bool { return isBlobHit(h) && strings.HasSuffix(h.Path, "/blobs/"+d.String()) })
			if len(got) != 1 || got[0].Method != http.MethodGet || got[0].Status != http.StatusTemporaryRedirect {
				t.Errorf("pull 1: upstream saw for blob %s:\n%s\nwant exactly one GET answered 307", d, fmtHits(got))
			}
		}
		for _, tag := range tags {
			got := filterHits(hs, func(h hit) bool { return h.Path == "/v2/chain/app/manifests/"+tag })
			if len(got) != 1 || got[0].Method != http.MethodGet || got[0].Status != http.StatusOK {
				t.Errorf("pull 1: upstream saw for manifest %s:\n%s\nwant exactly one GET answered 200", tag, fmtHits(got))
			}
		}
		if n := len(filterHits(hs, func(h hit) bool { return isManifestHit(h) || isBlobHit(h) })); n != len(blobs)+len(tags) {
			t.Errorf("pull 1: %d manifest and blob requests reached the upstream, want %d (one per blob, one per tag)", n, len(blobs)+len(tags))
		}

		// Admin refresh, then pull 2 within metadataMaxAge: nothing but the
		// refresh's HEAD reaches the upstream.
		var refreshed time.Time
		for _, tag := range tags {
			m := front1.mark()
			resp, body := do(t, http.MethodPost, mirror.URL+"/airlock/api/proxies/hub/refresh?name=chain/app&tag="+tag, nil, nil)
			refreshed = time.Now()
			if resp.StatusCode != http.StatusOK {
				t.Fatalf("POST refresh %s: %s %s", tag, resp.Status, body)
			}
			var doc struct{ Name, Tag, Digest string }
			if err := json.Unmarshal(body, &doc); err != nil || doc.Digest != want.String() || doc.Name != "hub/chain/app" {
				t.Errorf("POST refresh %s: %s (%v); want name hub/chain/app, digest %s", tag, body, err, want)
			}
			hs := filterHits(front1.since(m), func(h hit) bool { return isManifestHit(h) || isBlobHit(h) })
			if len(hs) != 1 || hs[0].Method != http.MethodHead || hs[0].Path != "/v2/chain/app/manifests/"+tag ||
				(hs[0].Status != http.StatusNotModified && hs[0].Status != http.StatusOK) {
				t.Errorf("refresh %s: upstream saw:\n%s\nwant exactly one manifest HEAD answered 304 (or 200)", tag, fmtHits(hs))
			}

			m = front1.mark()
			cranePull(t, mirror.Host+"/hub/chain/app:"+tag, img)
			if age := time.Since(refreshed); age >= proxyMaxAge {
				t.Fatalf("pull 2 of %s ended %s after the refresh, past metadataMaxAge %s: too slow to check the cache (not a product failure)", tag, age, proxyMaxAge)
			}
			hs = filterHits(front1.since(m), func(h hit) bool { return isManifestHit(h) || isBlobHit(h) })
			if len(hs) != 0 {
				t.Errorf("pull 2 of %s within metadataMaxAge: upstream saw:\n%s\nwant no manifest or blob request", tag, fmtHits(hs))
			}
		}

		// Pull 3, once metadataMaxAge is over: one manifest HEAD per tag
		// (304: unchanged), no body crosses.
		time.Sleep(time.Until(refreshed.Add(proxyMaxAge + 500*time.Millisecond)))
		m = front1.mark()
		for _, tag := range tags {
			cranePull(t, mirror.Host+"/hub/chain/app:"+tag, img)
		}
		hs = front1.since(m)
		t.Logf("upstream saw during pull 3 (after metadataMaxAge):\n%s", fmtHits(hs))
		if b := filterHits(hs, isBlobHit); len(b) != 0 {
			t.Errorf("pull 3: blob requests reached the upstream:\n%s\nwant none (all cached)", fmtHits(b))
		}
		for _, tag := range tags {
			got := filterHits(hs, func(h hit) bool { return h.Path == "/v2/chain/app/manifests/"+tag })
			if len(got) != 1 || got[0].Method != http.MethodHead || (got[0].Status != http.StatusNotModified && got[0].Status != http.StatusOK) {
				t.Errorf("pull 3: upstream saw for manifest %s:\n%s\nwant exactly one HEAD answered 304 or 200", tag, fmtHits(got))
			}
		}
		if got := filterHits(hs, isManifestHit); len(got) != len(tags) {
			t.Errorf("pull 3: %d manifest requests reached the upstream, want %d:\n%s", len(got), len(tags), fmtHits(got))
		}

		// Conditional requests to the mirror.
		for _, ref := range []string{"v1", want.String()} {
			resp, body := do(t, http.MethodGet, mirror.URL+"/v2/hub/chain/app/manifests/"+ref, nil,
				map[string]string{"Accept": manifestAccept, "If-None-Match": `"` + want.String() + `"`})
			if resp.StatusCode != http.StatusNotModified || len(body) != 0 || resp.Header.Get("Docker-Content-Digest") != want.String() {
				t.Errorf("GET manifest %s with If-None-Match %s: %s, %d body bytes, Docker-Content-Digest %q; want 304, no body, %s",
					ref, want, resp.Status, len(body), resp.Header.Get("Docker-Content-Digest"), want)
			}
		}
		layer := blobs[len(blobs)-1]
		resp, body := do(t, http.MethodGet, mirror.URL+"/v2/hub/chain/app/blobs/"+layer.String(), nil,
			map[string]string{"If-None-Match": `"` + layer.String() + `"`})
		if resp.StatusCode != http.StatusNotModified || len(body) != 0 {
			t.Errorf("GET blob %s with If-None-Match: %s, %d body bytes; want 304, no body", layer, resp.Status, len(body))
		}
		resp, body = do(t, http.MethodGet, mirror.URL+"/v2/hub/chain/app/blobs/"+layer.String(), nil, nil)
		loc, err := url.Parse(resp.Header.Get("Location"))
		if resp.StatusCode != http.StatusTemporaryRedirect || err != nil || loc.Host == "" || loc.Host == mirror.Host || loc.Host == front1.Host {
			t.Fatalf("GET blob %s: %s, Location %q (%v); want 307 to a presigned URL of the mirror's S3: %s", layer, resp.Status, resp.Header.Get("Location"), err, body)
		}
		s3resp, err := http.Get(loc.String())
		if err != nil {
			t.Fatalf("GET presigned URL: %v", err)
		}
		got, n, err := v1.SHA256(s3resp.Body)
		s3resp.Body.Close()
		if err != nil || s3resp.StatusCode != http.StatusOK || got != layer {
			t.Errorf("presigned URL %s: %s, %d bytes, digest %s (%v); want 200 with blob %s", loc.Host, s3resp.Status, n, got, err, layer)
		}

		// The proxy is the default repository: names without "hub/" go to it.
		if d := strings.TrimSpace(mustRun(t, time.Minute, nil, crane, "digest", "--insecure", mirror.Host+"/chain/app:v1")); d != want.String() {
			t.Errorf("crane digest %s/chain/app:v1 (default repository) = %q, want %s", mirror.Host, d, want)
		}

		// The same bytes under another name at the upstream: the mirror links
		// the blobs it stores after a HEAD; no bytes cross again.
		mustRun(t, time.Minute, nil, crane, "copy", "--insecure", upstream.Host+"/local/chain/app:v1", upstream.Host+"/local/chain/copy:v1")
		m = front1.mark()
		cranePull(t, mirror.Host+"/hub/chain/copy:v1", img)
		hs = front1.since(m)
		if got := filterHits(hs, func(h hit) bool { return isBlobHit(h) && h.Method != http.MethodHead }); len(got) != 0 {
			t.Errorf("pull of the same image under another name: upstream saw blob requests other than HEAD:\n%s", fmtHits(got))
		}
		if got := filterHits(hs, func(h hit) bool { return isBlobHit(h) && h.Method == http.MethodHead }); len(got) != len(blobs) {
			t.Errorf("pull of the same image under another name: %d blob HEADs reached the upstream, want %d (one per blob):\n%s", len(got), len(blobs), fmtHits(hs))
		}

		// The tag list through the proxy.
		if ls := strings.Fields(mustRun(t, time.Minute, nil, crane, "ls", "--insecure", mirror.Host+"/hub/chain/app")); strings.Join(ls, ",") != "v1,v2" {
			t.Errorf("crane ls through the proxy: %q, want [v1 v2]", ls)
		}

		// The tag moves upstream: within metadataMaxAge the mirror keeps
		// serving what it checked; a refresh (as an expired check would)
		// follows the move: one HEAD (200, the new digest), the new manifest
		// by digest, then only the new blobs.
		img2 := layeredImage(t, 256*1024, 1*mib)
		want2 := digestOf(t, img2)
		resp, body = do(t, http.MethodPost, mirror.URL+"/airlock/api/proxies/hub/refresh?name=chain/app&tag=v2", nil, nil)
		refreshed = time.Now()
		if resp.StatusCode != http.StatusOK || !strings.Contains(string(body), want.String()) {
			t.Fatalf("refresh v2: %s %s; want 200 naming %s", resp.Status, body, want)
		}
		pushImage(t, img2, upstream.Host+"/local/chain/app:v2")
		d := strings.TrimSpace(mustRun(t, time.Minute, nil, crane, "digest", "--insecure", mirror.Host+"/hub/chain/app:v2"))
		if age := time.Since(refreshed); age >= proxyMaxAge {
			t.Fatalf("crane digest ended %s after the refresh, past metadataMaxAge %s: too slow to check (not a product failure)", age, proxyMaxAge)
		}
		if d != want.String() {
			t.Errorf("crane digest of v2 within metadataMaxAge after the tag moved upstream: %s, want the cached %s", d, want)
		}
		m = front1.mark()
		resp, body = do(t, http.MethodPost, mirror.URL+"/airlock/api/proxies/hub/refresh?name=chain/app&tag=v2", nil, nil)
		if resp.StatusCode != http.StatusOK || !strings.Contains(string(body), want2.String()) {
			t.Errorf("refresh v2 after the move: %s %s; want 200 naming %s", resp.Status, body, want2)
		}
		hs = filterHits(front1.since(m), isManifestHit)
		t.Logf("upstream saw during the refresh of the moved tag:\n%s", fmtHits(hs))
		if len(hs) != 2 || hs[0].Method != http.MethodHead || hs[0].Status != http.StatusOK ||
			hs[1].Method != http.MethodGet || hs[1].Path != "/v2/chain/app/manifests/"+want2.String() || hs[1].Status != http.StatusOK {
			t.Errorf("refresh of a moved tag: upstream saw:\n%s\nwant HEAD v2 -> 200, then GET of the new manifest by digest -> 200", fmtHits(hs))
		}
		m = front1.mark()
		cranePull(t, mirror.Host+"/hub/chain/app:v2", img2)
		hs = filterHits(front1.since(m), func(h hit) bool { return isBlobHit(h) || isManifestHit(h) })
		for _, d := range blobDigests(t, img2) {
			got := filterHits(hs, func(h hit) bool { return strings.HasSuffix(h.Path, "/blobs/"+d.String()) })
			if len(got) != 1 || got[0].Method != http.MethodGet {
				t.Errorf("pull of the moved tag: upstream saw for blob %s:\n%s\nwant one GET", d, fmtHits(got))
			}
		}
		if len(hs) != len(blobDigests(t, img2)) {
			t.Errorf("pull of the moved tag: upstream saw:\n%s\nwant only one GET per new blob", fmtHits(hs))
		}
		cranePull(t, mirror.Host+"/hub/chain/app:v1", img) // v1 did not move
	})

	t.Run("concurrent-fill", func(t *testing.T) {
		img := layeredImage(t, 6*mib)
		mf, err := img.Manifest()
		if err != nil {
			t.Fatal(err)
		}
		layer, size := mf.Layers[0].Digest, mf.Layers[0].Size
		pushImage(t, img, upstream.Host+"/local/fill/app:v1")
		blobURL := mirror.URL + "/v2/hub/fill/app/blobs/" + layer.String()

		// HEAD of a blob the mirror does not have: answered from the
		// upstream's HEAD, nothing is fetched.
		m := front1.mark()
		code, h := headStatus(t, blobURL)
		if code != http.StatusOK || h.Get("Content-Length") != fmt.Sprint(size) {
			t.Errorf("HEAD uncached blob: %d, Content-Length %q; want 200 with the size %d", code, h.Get("Content-Length"), size)
		}
		if hs := filterHits(front1.since(m), isBlobHit); len(hs) != 1 || hs[0].Method != http.MethodHead || hs[0].Status != http.StatusOK {
			t.Errorf("HEAD uncached blob: upstream saw:\n%s\nwant one HEAD answered 200", fmtHits(hs))
		}

		const n = 8
		m = front1.mark()
		type answer struct {
			status int
			loc    string
			err    error
		}
		answers := make([]answer, n)
		var wg sync.WaitGroup
		c := &http.Client{CheckRedirect: func(*http.Request, []*http.Request) error { return http.ErrUseLastResponse }, Timeout: time.Minute}
		t0 := time.Now()
		for i := range n {
			wg.Go(func() {
				resp, err := c.Get(blobURL)
				if err != nil {
					answers[i].err = err
					return
				}
				b, _ := io.ReadAll(resp.Body)
				resp.Body.Close()
				answers[i] = answer{status: resp.StatusCode, loc: resp.Header.Get("Location")}
				if resp.StatusCode != http.StatusTemporaryRedirect {
					answers[i].err = fmt.Errorf("%s: %s", resp.Status, b)
				}
			})
		}
		wg.Wait()
		t.Logf("%d concurrent GETs of an uncached 6 MiB blob answered in %s", n, time.Since(t0).Round(time.Millisecond))
		for i, a := range answers {
			if a.err != nil || a.status != http.StatusTemporaryRedirect {
				t.Errorf("GET %d: %d %v; want 307", i, a.status, a.err)
			}
		}
		hs := filterHits(front1.since(m), isBlobHit)
		if len(hs) != 1 || hs[0].Method != http.MethodGet {
			t.Errorf("%d concurrent GETs: upstream saw:\n%s\nwant exactly one blob GET (one fill)", n, fmtHits(hs))
		}
		if answers[0].loc != "" {
			resp, err := http.Get(answers[0].loc)
			if err != nil {
				t.Fatal(err)
			}
			got, n, err := v1.SHA256(resp.Body)
			resp.Body.Close()
			if err != nil || got != layer || n != size {
				t.Errorf("presigned URL served %d bytes with digest %s (%v), want %d bytes %s", n, got, err, size, layer)
			}
		}
	})

	t.Run("skopeo", func(t *testing.T) {
		skopeo, err := exec.LookPath("skopeo")
		if err != nil {
			t.Skipf("skopeo not installed (apt-get install skopeo): %v", err)
		}
		img := layeredImage(t, 1*mib, 2*mib)
		want := digestOf(t, img)
		pushImage(t, img, upstream.Host+"/local/skopeo/app:v1")
		work := t.TempDir()
		policy := filepath.Join(work, "policy.json")
		if err := os.WriteFile(policy, []byte(`{"default":[{"type":"insecureAcceptAnything"}]}`), 0o644); err != nil {
			t.Fatal(err)
		}
		ref := "docker://" + mirror.Host + "/hub/skopeo/app:v1"
		out := filepath.Join(work, "out")
		m := front1.mark()
		// --preserve-digests: without it skopeo gzips the uncompressed layers
		// into the OCI layout (so would it from a hosted repository).
		mustRun(t, 2*time.Minute, nil, skopeo, "--policy", policy, "copy", "--preserve-digests", "--src-tls-verify=false", ref, "oci:"+out+":v1")
		assertSameImage(t, "skopeo copy through the proxy", img, readLayout(t, out))
		for _, d := range blobDigests(t, img) {
			got := filterHits(front1.since(m), func(h hit) bool { return h.Method == http.MethodGet && strings.HasSuffix(h.Path, "/blobs/"+d.String()) })
			if len(got) != 1 {
				t.Errorf("skopeo copy: upstream saw for blob %s:\n%s\nwant one GET", d, fmtHits(got))
			}
		}
		js := mustRun(t, time.Minute, nil, skopeo, "inspect", "--tls-verify=false", ref)
		var doc struct {
			Digest       string
			Architecture string
			Layers       []string
		}
		if err := json.Unmarshal([]byte(js), &doc); err != nil {
			t.Fatalf("skopeo inspect: %v\n%s", err, js)
		}
		if doc.Digest != want.String() || doc.Architecture != "amd64" || len(doc.Layers) != 2 {
			t.Errorf("skopeo inspect: digest %s, architecture %q, %d layers; want %s, amd64, 2", doc.Digest, doc.Architecture, len(doc.Layers), want)
		}
		raw := mustRun(t, time.Minute, nil, skopeo, "inspect", "--tls-verify=false", "--raw", ref)
		if got, _, _ := v1.SHA256(strings.NewReader(raw)); got != want {
			t.Errorf("skopeo inspect --raw: manifest digest %s, want %s", got, want)
		}
	})

	t.Run("push-denied", func(t *testing.T) {
		img := layeredImage(t, 64*1024)
		dir := filepath.Join(t.TempDir(), "layout")
		writeLayout(t, dir, img, "v1")
		m := front1.mark()
		for _, ref := range []string{mirror.Host + "/hub/pushed/app:v1", mirror.Host + "/pushed/app:v1"} {
			out, err := run(t, 2*time.Minute, nil, crane, "push", "--insecure", dir, ref)
			if err == nil {
				t.Errorf("crane push %s to a proxy succeeded:\n%s", ref, out)
				continue
			}
			if !strings.Contains(out, "DENIED") || !strings.Contains(out, "hosted repository") {
				t.Errorf("crane push %s: output lacks DENIED and a pointer to a hosted repository:\n%s", ref, out)
			}
		}
		if w := filterHits(front1.since(m), func(h hit) bool { return h.Method != http.MethodGet && h.Method != http.MethodHead }); len(w) != 0 {
			t.Errorf("a push to the proxy sent writes upstream:\n%s", fmtHits(w))
		}
		resp, body := do(t, http.MethodPost, mirror.URL+"/v2/hub/pushed/app/blobs/uploads/", nil, nil)
		if resp.StatusCode != http.StatusForbidden || parseErrors(t, body).Errors[0].Code != "DENIED" {
			t.Errorf("POST upload to the proxy: %s %s; want 403 DENIED", resp.Status, body)
		} else {
			t.Logf("POST upload to the proxy: %s %s", resp.Status, body)
		}
	})

	t.Run("proxy-of-proxy", func(t *testing.T) {
		// A third Airlock whose default repository proxies the mirror: a
		// proxy whose remote is itself a proxy (front3 counts what the
		// mirror is asked).
		front3 := startFront(t, mirror.URL)
		edge := startRegistry(t, registryOpts{Config: fmt.Sprintf(`default: up
repositories:
  - name: up
    kind: proxy
    remote: %s
    metadataMaxAge: 0s
`, front3.URL)})
		img := layeredImage(t, 1*mib, 6*mib)
		want := digestOf(t, img)
		blobs := blobDigests(t, img)
		pushImage(t, img, upstream.Host+"/local/chain3/app:v1")

		m1, m3 := front1.mark(), front3.mark()
		cranePull(t, edge.Host+"/chain3/app:v1", img) // edge: up -> mirror: hub (default) -> upstream: local (default)
		for _, c := range []struct {
			name string
			hs   []hit
		}{{"upstream (front1)", front1.since(m1)}, {"mirror (front3)", front3.since(m3)}} {
			t.Logf("%s saw during the first pull:\n%s", c.name, fmtHits(c.hs))
			for _, d := range blobs {
				got := filterHits(c.hs, func(h hit) bool { return isBlobHit(h) && strings.HasSuffix(h.Path, "/blobs/"+d.String()) })
				if len(got) != 1 || got[0].Method != http.MethodGet || got[0].Status != http.StatusTemporaryRedirect {
					t.Errorf("%s saw for blob %s:\n%s\nwant exactly one GET answered 307", c.name, d, fmtHits(got))
				}
			}
			if got := filterHits(c.hs, isManifestHit); len(got) != 1 || got[0].Method != http.MethodGet || got[0].Status != http.StatusOK {
				t.Errorf("%s saw manifest requests:\n%s\nwant one GET answered 200", c.name, fmtHits(got))
			}
		}

		// Refresh the mirror's tag (its metadataMaxAge starts again), then
		// pull again: the edge (metadataMaxAge 0s) revalidates with the
		// mirror, which answers from its cache; nothing reaches the upstream.
		resp, body := do(t, http.MethodPost, mirror.URL+"/airlock/api/proxies/hub/refresh?name=chain3/app&tag=v1", nil, nil)
		refreshed := time.Now()
		if resp.StatusCode != http.StatusOK || !strings.Contains(string(body), want.String()) {
			t.Fatalf("refresh at the mirror: %s %s", resp.Status, body)
		}
		m1, m3 = front1.mark(), front3.mark()
		cranePull(t, edge.Host+"/chain3/app:v1", img)
		if age := time.Since(refreshed); age >= proxyMaxAge {
			t.Fatalf("second pull ended %s after the refresh, past the mirror's metadataMaxAge %s: too slow to check (not a product failure)", age, proxyMaxAge)
		}
		if hs := filterHits(front1.since(m1), func(h hit) bool { return isManifestHit(h) || isBlobHit(h) }); len(hs) != 0 {
			t.Errorf("second pull through two proxies: the upstream saw:\n%s\nwant nothing (the mirror's tag is fresh)", fmtHits(hs))
		}
		hs := filterHits(front3.since(m3), func(h hit) bool { return isManifestHit(h) || isBlobHit(h) })
		if len(hs) != 1 || hs[0].Method != http.MethodHead || (hs[0].Status != http.StatusNotModified && hs[0].Status != http.StatusOK) {
			t.Errorf("second pull through two proxies: the mirror saw:\n%s\nwant one manifest HEAD answered 304 (or 200)", fmtHits(hs))
		}
	})

	t.Run("slow-fill", func(t *testing.T) {
		// A blob the slow front serves at ~4 MiB/s outlives the proxy's 1s
		// fill budget: the client gets 503 UNAVAILABLE with Retry-After, the
		// fill continues in the background from where it stopped (a ranged
		// GET), and a later GET gets the 307.
		img := layeredImage(t, 12*mib)
		mf, err := img.Manifest()
		if err != nil {
			t.Fatal(err)
		}
		layer, size := mf.Layers[0].Digest, mf.Layers[0].Size
		pushImage(t, img, upstream.Host+"/local/slow/app:v1")
		blobURL := mirror.URL + "/v2/slow/slow/app/blobs/" + layer.String()

		m := slowFront.mark()
		t0 := time.Now()
		resp, body := do(t, http.MethodGet, blobURL, nil, nil)
		t.Logf("first GET: %s after %s: %s", resp.Status, time.Since(t0).Round(time.Millisecond), body)
		if resp.StatusCode != http.StatusServiceUnavailable || parseErrors(t, body).Errors[0].Code != "UNAVAILABLE" || resp.Header.Get("Retry-After") == "" {
			t.Fatalf("GET of a blob whose fill outlives the budget: %s, Retry-After %q, %s; want 503 UNAVAILABLE with Retry-After",
				resp.Status, resp.Header.Get("Retry-After"), body)
		}
		var loc string
		for deadline := time.Now().Add(60 * time.Second); ; {
			resp, body = do(t, http.MethodGet, blobURL, nil, nil)
			if resp.StatusCode == http.StatusTemporaryRedirect {
				loc = resp.Header.Get("Location")
				break
			}
			if resp.StatusCode != http.StatusServiceUnavailable || time.Now().After(deadline) {
				t.Fatalf("GET while the fill runs: %s %s; want 503 and then 307 within 60s", resp.Status, body)
			}
			time.Sleep(500 * time.Millisecond)
		}
		t.Logf("blob filled %s after the first GET", time.Since(t0).Round(time.Millisecond))
		s3resp, err := http.Get(loc)
		if err != nil {
			t.Fatal(err)
		}
		got, n, err := v1.SHA256(s3resp.Body)
		s3resp.Body.Close()
		if err != nil || got != layer || n != size {
			t.Errorf("presigned URL served %d bytes with digest %s (%v), want %d bytes %s", n, got, err, size, layer)
		}
		hs := filterHits(slowFront.since(m), func(h hit) bool { return isBlobHit(h) && h.Method == http.MethodGet })
		t.Logf("slow front saw:\n%s", fmtHits(hs))
		if len(hs) < 2 || hs[0].Range != "" || !strings.HasPrefix(hs[len(hs)-1].Range, "bytes=") || hs[len(hs)-1].Range == "bytes=0-" {
			t.Errorf("the fill did not continue with a ranged GET from where it stopped:\n%s", fmtHits(hs))
		}
		for _, h := range hs[1:] {
			if h.Range == "" {
				t.Errorf("a fill started again from byte 0:\n%s", fmtHits(hs))
				break
			}
		}
	})

	t.Run("docker-mirror", func(t *testing.T) {
		d := startDockerd(t, mirror.URL) // skips without dockerd or root
		img := smallDockerImage(t, 2, 2*mib)
		want := digestOf(t, img)
		cfgDigest, err := img.ConfigName()
		if err != nil {
			t.Fatal(err)
		}
		// Docker asks a mirror for docker.io's library/e2eimg; the upstream's
		// default (hosted) repository takes that name.
		pushImage(t, img, upstream.Host+"/library/e2eimg:1")
		assertManifestDigestStr(t, upstream, "local/library/e2eimg", "1", want.String())

		m := front1.mark()
		t0 := time.Now()
		out := d.mustDocker(t, 5*time.Minute, "pull", "e2eimg:1")
		t.Logf("docker pull e2eimg:1 through the mirror in %s", time.Since(t0).Round(time.Millisecond))
		if mm := pullDigest.FindStringSubmatch(out); mm == nil || mm[1] != want.String() {
			t.Fatalf("docker pull e2eimg:1 digest %v, want %s (from the upstream through the mirror):\n%s", mm, want, out)
		}
		if id := strings.TrimSpace(d.mustDocker(t, time.Minute, "image", "inspect", "--format", "{{.Id}}", "e2eimg:1")); id != cfgDigest.String() {
			t.Errorf("docker image ID %s, want the config digest %s", id, cfgDigest)
		}
		if rd := d.repoDigests(t, "e2eimg:1"); !strings.Contains(rd, "e2eimg@"+want.String()) {
			t.Errorf("RepoDigests %s do not name %s", rd, want)
		}
		hs := front1.since(m)
		t.Logf("upstream saw during docker pull:\n%s", fmtHits(hs))
		for _, dg := range blobDigests(t, img) {
			got := filterHits(hs, func(h hit) bool {
				return h.Method == http.MethodGet && h.Path == "/v2/library/e2eimg/blobs/"+dg.String()
			})
			if len(got) != 1 || got[0].Status != http.StatusTemporaryRedirect {
				t.Errorf("docker pull: upstream saw for blob %s:\n%s\nwant one GET answered 307", dg, fmtHits(got))
			}
		}

		// Pulled again after rmi: the bytes come from the mirror's cache.
		d.mustDocker(t, time.Minute, "rmi", "e2eimg:1")
		m = front1.mark()
		out = d.mustDocker(t, 5*time.Minute, "pull", "e2eimg:1")
		if mm := pullDigest.FindStringSubmatch(out); mm == nil || mm[1] != want.String() {
			t.Fatalf("second docker pull digest %v, want %s:\n%s", mm, want, out)
		}
		if got := filterHits(front1.since(m), func(h hit) bool { return isBlobHit(h) && h.Method == http.MethodGet }); len(got) != 0 {
			t.Errorf("second docker pull: blob GETs reached the upstream:\n%s", fmtHits(got))
		}

		// A multi-platform image (a manifest list, as Docker Hub serves):
		// docker takes the list by tag and the linux/amd64 child by digest;
		// the other platform's manifest and blobs are never fetched.
		amd := smallDockerImage(t, 1, 1*mib)
		arm := platformImage(t, smallDockerImage(t, 1, 1*mib), "arm64")
		idx := mutate.AppendManifests(mutate.IndexMediaType(empty.Index, types.DockerManifestList),
			mutate.IndexAddendum{Add: amd, Descriptor: v1.Descriptor{Platform: &v1.Platform{OS: "linux", Architecture: "amd64"}}},
			mutate.IndexAddendum{Add: arm, Descriptor: v1.Descriptor{Platform: &v1.Platform{OS: "linux", Architecture: "arm64"}}})
		idxDigest, err := idx.Digest()
		if err != nil {
			t.Fatal(err)
		}
		dir := filepath.Join(t.TempDir(), "index")
		lp, err := layout.Write(dir, empty.Index)
		if err != nil {
			t.Fatal(err)
		}
		if err := lp.AppendIndex(idx); err != nil {
			t.Fatal(err)
		}
		mustRun(t, 2*time.Minute, nil, tool(t, "crane"), "push", "--insecure", dir, upstream.Host+"/library/e2emulti:1")
		m = front1.mark()
		out = d.mustDocker(t, 5*time.Minute, "pull", "e2emulti:1")
		if mm := pullDigest.FindStringSubmatch(out); mm == nil || mm[1] != idxDigest.String() {
			t.Fatalf("docker pull e2emulti:1 digest %v, want the manifest list %s:\n%s", mm, idxDigest, out)
		}
		amdCfg, _ := amd.ConfigName()
		if id := strings.TrimSpace(d.mustDocker(t, time.Minute, "image", "inspect", "--format", "{{.Id}}", "e2emulti:1")); id != amdCfg.String() {
			t.Errorf("docker image ID of e2emulti:1 %s, want the linux/amd64 config %s", id, amdCfg)
		}
		hs = front1.since(m)
		t.Logf("upstream saw during docker pull of the manifest list:\n%s", fmtHits(hs))
		amdDigest, armDigest := digestOf(t, amd), digestOf(t, arm)
		if got := filterHits(hs, func(h hit) bool { return strings.HasSuffix(h.Path, "/manifests/"+amdDigest.String()) }); len(got) != 1 || got[0].Status != http.StatusOK {
			t.Errorf("docker pull of a manifest list: upstream saw for the amd64 manifest:\n%s\nwant one GET answered 200", fmtHits(got))
		}
		for _, dg := range append([]v1.Hash{armDigest}, blobDigests(t, arm)...) {
			if got := filterHits(hs, func(h hit) bool { return strings.HasSuffix(h.Path, "/"+dg.String()) }); len(got) != 0 {
				t.Errorf("docker pull of a manifest list fetched %s of the arm64 image:\n%s", dg, fmtHits(got))
			}
		}
		for _, dg := range blobDigests(t, amd) {
			if got := filterHits(hs, func(h hit) bool {
				return h.Method == http.MethodGet && strings.HasSuffix(h.Path, "/blobs/"+dg.String())
			}); len(got) != 1 {
				t.Errorf("docker pull of a manifest list: upstream saw for amd64 blob %s:\n%s\nwant one GET", dg, fmtHits(got))
			}
		}
	})

	// Last: front2 goes down for good.
	t.Run("upstream-down", func(t *testing.T) {
		cached := layeredImage(t, 1*mib, 1*mib)
		never := layeredImage(t, 1*mib)
		pushImage(t, cached, upstream.Host+"/local/down/app:v1")
		pushImage(t, never, upstream.Host+"/local/down/never:v1")
		want := digestOf(t, cached)

		// containerd's ?ns=<registry> picks the proxy of that registry.
		m1, m2 := front1.mark(), front2.mark()
		resp, body := do(t, http.MethodGet, mirror.URL+"/v2/down/app/manifests/v1?ns="+front2.Host, nil, map[string]string{"Accept": manifestAccept})
		if resp.StatusCode != http.StatusOK || resp.Header.Get("Docker-Content-Digest") != want.String() {
			t.Errorf("GET manifest ?ns=%s: %s %s; want 200 %s", front2.Host, resp.Status, body, want)
		}
		if got := filterHits(front2.since(m2), isManifestHit); len(got) != 1 || got[0].Path != "/v2/down/app/manifests/v1" {
			t.Errorf("?ns=%s: front2 saw:\n%s\nwant the manifest GET (proxy flaky)", front2.Host, fmtHits(got))
		}
		if got := filterHits(front1.since(m1), isManifestHit); len(got) != 0 {
			t.Errorf("?ns=%s: front1 (proxy hub, the default) saw:\n%s\nwant nothing", front2.Host, fmtHits(got))
		}

		cranePull(t, mirror.Host+"/flaky/down/app:v1", cached)
		front2.down()
		t.Logf("front2 %s is down", front2.URL)

		// Cached: still served (metadataMaxAge 0s: the tag check fails, the
		// cached copy is served with a Warning).
		resp, body = do(t, http.MethodGet, mirror.URL+"/v2/flaky/down/app/manifests/v1", nil, map[string]string{"Accept": manifestAccept})
		if resp.StatusCode != http.StatusOK || resp.Header.Get("Docker-Content-Digest") != want.String() {
			t.Errorf("GET cached manifest with the upstream down: %s %s; want 200 %s", resp.Status, body, want)
		}
		if w := resp.Header.Get("Warning"); !strings.HasPrefix(w, "110 ") {
			t.Errorf("GET cached manifest with the upstream down: Warning %q, want a 110 (stale) warning", w)
		} else {
			t.Logf("stale manifest served with Warning: %s", w)
		}
		cranePull(t, mirror.Host+"/flaky/down/app:v1", cached)

		// Never pulled: 503 UNAVAILABLE naming the upstream.
		resp, body = do(t, http.MethodGet, mirror.URL+"/v2/flaky/down/never/manifests/v1", nil, map[string]string{"Accept": manifestAccept})
		e := parseErrors(t, body).Errors[0]
		if resp.StatusCode != http.StatusServiceUnavailable || e.Code != "UNAVAILABLE" || !strings.Contains(e.Message, front2.URL) ||
			!(strings.Contains(e.Message, "unreachable") || strings.Contains(e.Message, "blocked")) {
			t.Errorf("GET uncached manifest with the upstream down: %s %s; want 503 UNAVAILABLE naming %s as unreachable", resp.Status, body, front2.URL)
		} else {
			t.Logf("uncached manifest: %s %s", resp.Status, e.Message)
		}
		out, err := run(t, 2*time.Minute, nil, crane, "pull", "--insecure", "--format", "oci", mirror.Host+"/flaky/down/never:v1", filepath.Join(t.TempDir(), "never"))
		if err == nil {
			t.Fatalf("crane pull of an uncached image with the upstream down succeeded:\n%s", out)
		}
		if !(strings.Contains(out, "UNAVAILABLE") || strings.Contains(out, "unreachable")) || !strings.Contains(out, front2.URL) {
			t.Errorf("crane pull of an uncached image with the upstream down: output lacks UNAVAILABLE/unreachable and %s:\n%s", front2.URL, out)
		}

		// The admin API shows the failures of flaky and none of hub.
		resp, body = do(t, http.MethodGet, mirror.URL+"/airlock/api/proxies", nil, nil)
		var st struct {
			Proxies []struct {
				Name     string `json:"name"`
				Remote   string `json:"remote"`
				Failures int    `json:"consecutiveFailures"`
				Blocked  bool   `json:"blocked"`
			} `json:"proxies"`
		}
		if err := json.Unmarshal(body, &st); err != nil || resp.StatusCode != http.StatusOK {
			t.Fatalf("GET /airlock/api/proxies: %s %s (%v)", resp.Status, body, err)
		}
		t.Logf("GET /airlock/api/proxies: %s", body)
		for _, p := range st.Proxies {
			switch p.Name {
			case "flaky":
				if p.Failures < 1 || p.Remote != front2.URL {
					t.Errorf("proxy flaky: %+v; want consecutiveFailures >= 1, remote %s", p, front2.URL)
				}
			case "hub":
				if p.Failures != 0 || p.Blocked {
					t.Errorf("proxy hub: %+v; want no failures", p)
				}
			}
		}
		// hub (front1, up) is unaffected.
		cranePull(t, mirror.Host+"/hub/down/app:v1", cached)
	})
	t.Logf("TestProxy took %s", time.Since(start).Round(time.Millisecond))
}
