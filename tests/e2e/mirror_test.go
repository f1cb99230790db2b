//go:build e2e

package e2e

import (
	"net/http"
	"net/url"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"
)

// TestContainerdMirrorNS: containerd configured (hosts.toml) to pull the
// images of another registry through Airlock as a mirror sends ?ns=<that
// registry>. Airlock has no proxy of it but holds an image of the same name
// in its default repository: it must answer 404 (not serve its own image as
// the other registry's), and containerd then pulls from the registry
// itself. Before the fix the mirror's same-named image was pulled.
func TestContainerdMirrorNS(t *testing.T) {
	t.Parallel()
	c := startContainerd(t)                    // skips without containerd, ctr or root
	other := startRegistry(t, registryOpts{})  // "another registry" (its default: local)
	mirror := startRegistry(t, registryOpts{}) // Airlock as the mirror, no proxy of other
	front := startFront(t, mirror.URL)

	real := smallDockerImage(t, 2, 64*1024)
	impostor := smallDockerImage(t, 2, 64*1024)
	pushImage(t, real, other.Host+"/team/app:1")
	pushImage(t, impostor, mirror.Host+"/team/app:1") // same name in the mirror's default repository

	hosts := t.TempDir()
	dir := filepath.Join(hosts, other.Host)
	if err := os.MkdirAll(dir, 0o755); err != nil {
		t.Fatal(err)
	}
	toml := "server = \"" + other.URL + "\"\n\n[host.\"" + front.URL + "\"]\n  capabilities = [\"pull\", \"resolve\"]\n"
	if err := os.WriteFile(filepath.Join(dir, "hosts.toml"), []byte(toml), 0o644); err != nil {
		t.Fatal(err)
	}
	ref := other.Host + "/team/app:1"
	m := front.mark()
	out, err := c.run(t, 2*time.Minute, "mirror", "images", "pull", "--hosts-dir", hosts, "--snapshotter", "native", ref)
	hs := front.since(m)
	t.Logf("the mirror saw during ctr pull %s:\n%s", ref, fmtHits(hs))
	if err != nil {
		t.Fatalf("ctr images pull --hosts-dir %s: %v\n%s", ref, err, out)
	}
	ls := c.mustRun(t, "mirror", "images", "ls")
	if want := digestOf(t, real).String(); !strings.Contains(ls, want) {
		t.Errorf("ctr pulled %s with another digest than the registry's %s (impostor %s):\n%s", ref, want, digestOf(t, impostor), ls)
	}
	asked := filterHits(hs, func(h hit) bool {
		q, _ := url.ParseQuery(h.Query)
		return q.Get("ns") == other.Host
	})
	if len(filterHits(asked, isManifestHit)) == 0 {
		t.Fatalf("containerd did not ask the mirror with ?ns=%s (hosts.toml not used?):\n%s", other.Host, fmtHits(hs))
	}
	for _, h := range asked {
		if h.Status != http.StatusNotFound {
			t.Errorf("the mirror answered %s %s?%s with %d, want 404 (no proxy of %s)", h.Method, h.Path, h.Query, h.Status, other.Host)
		}
	}
}
