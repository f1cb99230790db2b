//go:build e2e

package e2e

import (
	"crypto/rand"
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/airlock-registry/airlock/shared/config"
)

// purgeReport is the part of the admin API's purge report (package purge's
// Report) the test reads.
type purgeReport struct {
	Task   string `json:"task"`
	DryRun bool   `json:"dryRun"`
	Pass   string `json:"pass"`
	// Count is how many items went; Deleted lists the first 100 of them,
	// List names the bucket object that lists all of them.
	Count   int    `json:"count"`
	Listed  string `json:"listed"`
	List    string `json:"list"`
	Deleted []struct {
		Kind  string   `json:"kind"`
		ID    string   `json:"id"`
		Image string   `json:"image"`
		Keys  []string `json:"keys"`
		Bytes int64    `json:"bytes"`
	} `json:"deleted"`
	Bytes   int64          `json:"bytes"`
	Skipped map[string]int `json:"skipped"`
	Errors  []string       `json:"errors"`
	More    bool           `json:"more"`
}

// items returns the report's deleted items as sorted "kind id image" lines.
func (r purgeReport) items() []string {
	var out []string
	for _, it := range r.Deleted {
		out = append(out, strings.TrimSpace(it.Kind+" "+it.ID+" "+it.Image))
	}
	slices.Sort(out)
	return out
}

// runPurge asks the admin API to run task now and returns its report.
func runPurge(t testing.TB, reg *registry, task string, dry bool) purgeReport {
	t.Helper()
	resp, body := do(t, http.MethodPost, fmt.Sprintf("%s/airlock/api/purge?task=%s&dryRun=%t", reg.URL, task, dry), nil, nil)
	if resp.StatusCode != http.StatusOK {
		t.Fatalf("POST /airlock/api/purge?task=%s&dryRun=%t: %s %s", task, dry, resp.Status, body)
	}
	var rep purgeReport
	if err := json.Unmarshal(body, &rep); err != nil {
		t.Fatalf("purge report: %v\n%s", err, body)
	}
	t.Logf("purge %s dryRun=%t pass %s: %d deleted (listed %s, all in %s), %d bytes, skipped %v, errors %v, more %t", task, dry, rep.Pass, rep.Count, rep.Listed, rep.List, rep.Bytes, rep.Skipped, rep.Errors, rep.More)
	if len(rep.Errors) > 0 {
		t.Errorf("purge %s dryRun=%t reported errors: %v", task, dry, rep.Errors)
	}
	if rep.Count != len(rep.Deleted) || rep.Listed != fmt.Sprintf("%d of %d", len(rep.Deleted), rep.Count) || (rep.Count > 0) != (rep.List != "") {
		t.Fatalf("purge %s dryRun=%t: count %d, %d listed (%q), list %q: want every item of this small registry listed, and the list's key", task, dry, rep.Count, len(rep.Deleted), rep.Listed, rep.List)
	}
	return rep
}

// runPass runs task until its pass ends (a pass cut into runs continues)
// and returns the runs' reports joined.
func runPass(t testing.TB, reg *registry, task string, dry bool) purgeReport {
	t.Helper()
	all := runPurge(t, reg, task, dry)
	for i := 0; all.More; i++ {
		if i == 20 {
			t.Fatalf("%s dryRun=%t still reports more after 21 runs", task, dry)
		}
		next := runPurge(t, reg, task, dry)
		if next.Pass != all.Pass {
			t.Fatalf("%s dryRun=%t: run of pass %s after one of pass %s; want the pass continued", task, dry, next.Pass, all.Pass)
		}
		all.Deleted = append(all.Deleted, next.Deleted...)
		all.Bytes += next.Bytes
		all.More = next.More
	}
	return all
}

// schema2 is the part of an image manifest the test reads.
type schema2 struct {
	Config struct {
		Digest string `json:"digest"`
	} `json:"config"`
	Layers []struct {
		Digest string `json:"digest"`
	} `json:"layers"`
}

func getManifest(t testing.TB, reg *registry, image, ref string) schema2 {
	t.Helper()
	resp, body := do(t, http.MethodGet, reg.URL+"/v2/"+image+"/manifests/"+ref, nil, map[string]string{"Accept": manifestAccept})
	if resp.StatusCode != http.StatusOK {
		t.Fatalf("GET /v2/%s/manifests/%s: %s %s", image, ref, resp.Status, body)
	}
	var m schema2
	if err := json.Unmarshal(body, &m); err != nil {
		t.Fatalf("manifest %s:%s: %v\n%s", image, ref, err, body)
	}
	return m
}

// blobURL returns the presigned S3 URL a blob GET redirects to.
func blobURL(t testing.TB, reg *registry, image, d string) string {
	t.Helper()
	resp, body := do(t, http.MethodGet, reg.URL+"/v2/"+image+"/blobs/"+d, nil, nil)
	if resp.StatusCode != http.StatusTemporaryRedirect || resp.Header.Get("Location") == "" {
		t.Fatalf("GET /v2/%s/blobs/%s: %s %s; want a 307 to S3", image, d, resp.Status, body)
	}
	return resp.Header.Get("Location")
}

// getStatus GETs u (a presigned S3 URL) and returns the status.
func getStatus(t testing.TB, u string) int {
	t.Helper()
	resp, err := http.Get(u)
	if err != nil {
		t.Fatalf("GET %s: %v", u, err)
	}
	_, _ = io.Copy(io.Discard, resp.Body)
	resp.Body.Close()
	return resp.StatusCode
}

func writeRandom(t testing.TB, path string, n int) {
	t.Helper()
	b := make([]byte, n)
	if _, err := rand.Read(b); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(path, b, 0o644); err != nil {
		t.Fatal(err)
	}
}

// TestPurgeDocker runs blob-gc against images the real Docker daemon built
// and pushed: localdev runs with localdev/airlock.yaml (hosted local, the
// group docker) and -purge-clock-ahead 25h, so the default 24h grace has
// passed for everything pushed. Images a and b share one layer and have one
// unique layer each; after b's manifest is deleted, blob-gc deletes exactly
// b's links, its unique layer's and its config's records (and their S3
// objects), the dry run predicts it, a second dry run finds nothing, and a
// is pulled back by docker from local and through the group.
func TestPurgeDocker(t *testing.T) {
	t.Parallel()
	start := time.Now()
	cfgPath := filepath.Join(rootDir, "localdev", "airlock.yaml")
	cfgDoc, err := os.ReadFile(cfgPath)
	if err != nil {
		t.Fatal(err)
	}
	cfg, err := config.Parse(cfgDoc)
	if err != nil {
		t.Fatalf("%s: %v", cfgPath, err)
	}
	group := ""
	for _, r := range cfg.Repositories {
		if r.Name == "docker" && r.Kind == config.KindGroup {
			group = r.Name
		}
	}
	if !slices.ContainsFunc(cfg.Repositories, func(r config.Repository) bool { return r.Name == "local" && r.Kind == config.KindHosted }) {
		t.Fatalf("%s has no hosted repository local", cfgPath)
	}
	if g := cfg.Purge.BlobGraceOrDefault(); g >= 25*time.Hour {
		t.Fatalf("%s: purge.blobGrace %s; the test moves the purge's clock 25h ahead, want a grace below that", cfgPath, g)
	}
	reg := startRegistry(t, registryOpts{Config: string(cfgDoc), Args: []string{"-purge-clock-ahead", "25h", "-purge-every", "0"}})
	d := startDockerd(t, "")

	// Two images built by dockerd's classic builder: the first COPY is the
	// same step for both (the build cache gives one layer), the second
	// copies a file of each image's own.
	ctxDir := t.TempDir()
	writeRandom(t, filepath.Join(ctxDir, "shared.bin"), 512*1024)
	for _, n := range []string{"a", "b"} {
		writeRandom(t, filepath.Join(ctxDir, n+".bin"), 256*1024)
		df := fmt.Sprintf("FROM scratch\nCOPY shared.bin /shared.bin\nCOPY %s.bin /%s.bin\n", n, n)
		if err := os.WriteFile(filepath.Join(ctxDir, "Dockerfile."+n), []byte(df), 0o644); err != nil {
			t.Fatal(err)
		}
	}
	refA, refB := reg.Host+"/local/gc/a:1", reg.Host+"/local/gc/b:1"
	digests := map[string]string{}
	for n, ref := range map[string]string{"a": refA, "b": refB} {
		mustRun(t, 3*time.Minute, append(d.env, "DOCKER_BUILDKIT=0"), d.cli, "build", "-f", filepath.Join(ctxDir, "Dockerfile."+n), "-t", ref, ctxDir)
	}
	for _, ref := range []string{refA, refB} { // a first: b's push may mount the shared layer
		out := d.mustDocker(t, 3*time.Minute, "push", ref)
		m := pushDigest.FindStringSubmatch(out)
		if m == nil {
			t.Fatalf("docker push %s printed no digest:\n%s", ref, out)
		}
		digests[ref] = m[1]
	}
	ma, mb := getManifest(t, reg, "local/gc/a", "1"), getManifest(t, reg, "local/gc/b", "1")
	if len(ma.Layers) != 2 || len(mb.Layers) != 2 || ma.Layers[0].Digest != mb.Layers[0].Digest ||
		ma.Layers[1].Digest == mb.Layers[1].Digest || ma.Config.Digest == mb.Config.Digest {
		t.Fatalf("built images: a %+v, b %+v; want 2 layers each, the first shared, the second and the configs distinct", ma, mb)
	}
	shared, uniqA, uniqB, cfgA, cfgB := ma.Layers[0].Digest, ma.Layers[1].Digest, mb.Layers[1].Digest, ma.Config.Digest, mb.Config.Digest
	t.Logf("a %s: config %s, layers shared %s, own %s", digests[refA], cfgA, shared, uniqA)
	t.Logf("b %s: config %s, layers shared %s, own %s", digests[refB], cfgB, shared, uniqB)

	// The S3 objects, by the presigned URLs the registry gives now.
	urlUniqB, urlCfgB := blobURL(t, reg, "local/gc/b", uniqB), blobURL(t, reg, "local/gc/b", cfgB)
	urlShared, urlUniqA := blobURL(t, reg, "local/gc/a", shared), blobURL(t, reg, "local/gc/a", uniqA)
	for _, u := range []string{urlUniqB, urlCfgB, urlShared, urlUniqA} {
		if code := getStatus(t, u); code != http.StatusOK {
			t.Fatalf("GET %s (presigned, before the purge): %d, want 200", u, code)
		}
	}

	resp, body := do(t, http.MethodDelete, reg.URL+"/v2/local/gc/b/manifests/"+digests[refB], nil, nil)
	if resp.StatusCode != http.StatusAccepted {
		t.Fatalf("DELETE /v2/local/gc/b/manifests/%s: %s %s; want 202", digests[refB], resp.Status, body)
	}
	if code, _ := headStatus(t, reg.URL+"/v2/local/gc/b/manifests/1", manifestAccept); code != http.StatusNotFound {
		t.Fatalf("HEAD /v2/local/gc/b/manifests/1 after the delete by digest: %d, want 404", code)
	}

	dry := runPass(t, reg, "blob-gc", true)
	wet := runPass(t, reg, "blob-gc", false)
	if !strings.HasPrefix(dry.Pass, "dry-") || wet.Pass == dry.Pass {
		t.Errorf("dry pass %q, real pass %q: want a dry pass of its own", dry.Pass, wet.Pass)
	}
	for _, it := range wet.Deleted {
		t.Logf("deleted: %s %s %s keys %v bytes %d", it.Kind, it.ID, it.Image, it.Keys, it.Bytes)
	}
	want := []string{
		"blob " + cfgB,
		"blob " + uniqB,
		"link " + cfgB + " local/gc/b",
		"link " + shared + " local/gc/b",
		"link " + uniqB + " local/gc/b",
	}
	slices.Sort(want)
	if got := wet.items(); !slices.Equal(got, want) {
		t.Errorf("blob-gc deleted:\n  %s\nwant exactly b's links, and the records of b's own layer and config:\n  %s",
			strings.Join(got, "\n  "), strings.Join(want, "\n  "))
	}
	if got, wantDry := dry.items(), wet.items(); !slices.Equal(got, wantDry) {
		t.Errorf("the dry run predicted:\n  %s\nthe real run deleted:\n  %s", strings.Join(got, "\n  "), strings.Join(wantDry, "\n  "))
	}
	for _, it := range wet.Deleted { // a record's delete names its object
		if it.Kind == "blob" && (len(it.Keys) != 1 || it.Bytes <= 0) {
			t.Errorf("deleted record %s: keys %v, bytes %d; want its one object and its size", it.ID, it.Keys, it.Bytes)
		}
	}
	if again := runPass(t, reg, "blob-gc", true); len(again.Deleted) != 0 {
		t.Errorf("a dry run after the real one would delete:\n  %s\nwant nothing", strings.Join(again.items(), "\n  "))
	}

	// What remains: b's own objects are gone from S3, a's are not.
	for _, c := range []struct {
		what, url string
		want      int
	}{{"b's own layer", urlUniqB, 404}, {"b's config", urlCfgB, 404}, {"the shared layer", urlShared, 200}, {"a's own layer", urlUniqA, 200}} {
		if code := getStatus(t, c.url); code != c.want {
			t.Errorf("GET of %s's S3 object (presigned before the purge): %d, want %d", c.what, code, c.want)
		}
	}
	for _, c := range []struct {
		image, d string
		want     int
	}{{"local/gc/b", uniqB, 404}, {"local/gc/b", cfgB, 404}, {"local/gc/b", shared, 404}, {"local/gc/a", shared, 200}, {"local/gc/a", uniqA, 200}, {"local/gc/a", cfgA, 200}} {
		if code, _ := headStatus(t, reg.URL+"/v2/"+c.image+"/blobs/"+c.d); code != c.want {
			t.Errorf("HEAD /v2/%s/blobs/%s after the purge: %d, want %d", c.image, c.d, code, c.want)
		}
	}

	// docker pulls a back completely: every layer from the registry.
	pull := func(ref string) {
		t.Helper()
		d.mustDocker(t, time.Minute, "rmi", ref)
		if out := strings.TrimSpace(d.mustDocker(t, time.Minute, "image", "ls", "-a", "-q")); out != "" {
			t.Fatalf("images left in dockerd before pulling %s: %s", ref, out)
		}
		out := d.mustDocker(t, 3*time.Minute, "pull", ref)
		if m := pullDigest.FindStringSubmatch(out); m == nil || m[1] != digests[refA] {
			t.Errorf("docker pull %s: digest %v, want %s:\n%s", ref, m, digests[refA], out)
		}
		if n := strings.Count(out, "Pull complete"); n != 2 {
			t.Errorf("docker pull %s: %d layers pulled, want 2:\n%s", ref, n, out)
		}
		if id := strings.TrimSpace(d.mustDocker(t, time.Minute, "image", "inspect", "--format", "{{.Id}}", ref)); id != cfgA {
			t.Errorf("docker image inspect %s: Id %s, want %s (a's config)", ref, id, cfgA)
		}
	}
	d.mustDocker(t, time.Minute, "rmi", refB)
	pull(refA)
	if group == "" {
		t.Logf("%s has no group docker: the pull through a group is not tried", cfgPath)
	} else {
		d.mustDocker(t, time.Minute, "tag", refA, reg.Host+"/"+group+"/gc/a:1")
		d.mustDocker(t, time.Minute, "rmi", refA)
		pull(reg.Host + "/" + group + "/gc/a:1")
	}
	t.Logf("TestPurgeDocker took %s", time.Since(start).Round(time.Millisecond))
}
