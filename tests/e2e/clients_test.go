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
	"regexp"
	"strings"
	"testing"
	"time"

	v1 "github.com/google/go-containerregistry/pkg/v1"
)

// bigLayers and bigLayerSize give the ≥ 60 MiB image the clients push.
const (
	bigLayers    = 3
	bigLayerSize = 20 * mib
)

// mibps formats a throughput.
func mibps(n int64, d time.Duration) string {
	return fmt.Sprintf("%.1f MiB in %s (%.1f MiB/s)", float64(n)/mib, d.Round(time.Millisecond), float64(n)/mib/d.Seconds())
}

// TestClients pushes and pulls a random 3-layer image of ≥ 60 MiB with crane,
// regctl, oras and skopeo against one localdev whose body limit is large
// (as behind the upload ingress), and checks identical digests come back.
func TestClients(t *testing.T) {
	t.Parallel()
	reg := startRegistry(t, registryOpts{MaxBody: 512 * mib})
	work := t.TempDir()
	img := bigImage(t, bigLayers, bigLayerSize)
	size := imageSize(t, img)
	want := digestOf(t, img)
	src := filepath.Join(work, "src")
	writeLayout(t, src, img, "v1")
	t.Logf("image %s: %d layers, %.1f MiB", want, bigLayers, float64(size)/mib)

	t.Run("crane", func(t *testing.T) {
		crane := tool(t, "crane")
		ref := reg.Host + "/local/crane/app:v1"
		start := time.Now()
		mustRun(t, 5*time.Minute, nil, crane, "push", "--insecure", src, ref)
		t.Logf("crane push %s", mibps(size, time.Since(start)))
		got := strings.TrimSpace(mustRun(t, time.Minute, nil, crane, "digest", "--insecure", ref))
		if got != want.String() {
			t.Fatalf("crane digest %s = %q, want %s", ref, got, want)
		}
		out := filepath.Join(work, "crane-out")
		start = time.Now()
		mustRun(t, 5*time.Minute, nil, crane, "pull", "--insecure", "--format", "oci", ref, out)
		t.Logf("crane pull %s", mibps(size, time.Since(start)))
		assertSameImage(t, "crane pull", img, readLayout(t, out))
		assertManifestDigest(t, reg, "local/crane/app", "v1", want)
	})

	t.Run("blob-redirect", func(t *testing.T) {
		// Layer bytes never flow through the registry: GET answers 307 to a
		// presigned URL on another host (README, Architecture: Request flows),
		// which serves the bytes.
		m, err := img.Manifest()
		if err != nil {
			t.Fatal(err)
		}
		l := m.Layers[0]
		resp, body := do(t, http.MethodGet, reg.URL+"/v2/local/crane/app/blobs/"+l.Digest.String(), nil, nil)
		if resp.StatusCode != http.StatusTemporaryRedirect {
			t.Fatalf("GET blob: %s, want 307; %s", resp.Status, body)
		}
		loc, err := url.Parse(resp.Header.Get("Location"))
		if err != nil || loc.Host == "" {
			t.Fatalf("GET blob: Location %q is not an absolute URL (%v)", resp.Header.Get("Location"), err)
		}
		if loc.Host == reg.Host || strings.HasSuffix(loc.Hostname(), "."+strings.Split(reg.Host, ":")[0]) {
			t.Fatalf("presigned URL host %s is the registry's host %s", loc.Host, reg.Host)
		}
		start := time.Now()
		s3resp, err := http.Get(loc.String())
		if err != nil {
			t.Fatalf("GET presigned URL: %v", err)
		}
		defer s3resp.Body.Close()
		if s3resp.StatusCode != http.StatusOK {
			b, _ := io.ReadAll(io.LimitReader(s3resp.Body, 4096))
			t.Fatalf("GET presigned URL: %s %s", s3resp.Status, b)
		}
		got, n, err := v1.SHA256(s3resp.Body)
		if err != nil {
			t.Fatal(err)
		}
		if got != l.Digest || n != l.Size {
			t.Fatalf("presigned URL served %d bytes with digest %s, want %d bytes %s", n, got, l.Size, l.Digest)
		}
		t.Logf("blob GET: 307 to %s://%s, %s straight from S3", loc.Scheme, loc.Host, mibps(n, time.Since(start)))
	})

	t.Run("regctl", func(t *testing.T) {
		regctl := tool(t, "regctl")
		env := regctlEnv(t, reg.Host)
		ref := reg.Host + "/local/regctl/app:v1"
		start := time.Now()
		mustRun(t, 5*time.Minute, env, regctl, "image", "copy", "ocidir://"+src+":v1", ref)
		t.Logf("regctl push %s", mibps(size, time.Since(start)))
		got := strings.TrimSpace(mustRun(t, time.Minute, env, regctl, "image", "digest", ref))
		if got != want.String() {
			t.Fatalf("regctl image digest %s = %q, want %s", ref, got, want)
		}
		out := filepath.Join(work, "regctl-out")
		start = time.Now()
		mustRun(t, 5*time.Minute, env, regctl, "image", "copy", ref, "ocidir://"+out+":v1")
		t.Logf("regctl pull %s", mibps(size, time.Since(start)))
		assertSameImage(t, "regctl pull", img, readLayout(t, out))
	})

	t.Run("oras", func(t *testing.T) {
		oras := tool(t, "oras")
		files := mkdir(t, work, "oras-files")
		var names []string
		var total int64
		digests := map[string]v1.Hash{}
		for i := 0; i < bigLayers; i++ {
			n := fmt.Sprintf("file%d.bin", i)
			b := randomTar(t, n, bigLayerSize) // random bytes; the tar framing is incidental
			if err := os.WriteFile(filepath.Join(files, n), b, 0o644); err != nil {
				t.Fatal(err)
			}
			names = append(names, n)
			total += int64(len(b))
			digests[n] = fileDigest(t, filepath.Join(files, n))
		}
		ref := reg.Host + "/local/oras/files:v1"
		start := time.Now()
		cmd := exec.Command(oras, append([]string{"push", "--plain-http", ref}, names...)...)
		cmd.Dir = files
		pushOut, err := cmd.CombinedOutput()
		if err != nil {
			t.Fatalf("oras push: %v\n%s", err, pushOut)
		}
		t.Logf("oras push %s", mibps(total, time.Since(start)))
		m := regexp.MustCompile(`Digest: (sha256:[0-9a-f]{64})`).FindSubmatch(pushOut)
		if m == nil {
			t.Fatalf("no digest in oras push output:\n%s", pushOut)
		}
		pushed := string(m[1])
		desc := mustRun(t, time.Minute, nil, oras, "manifest", "fetch", "--plain-http", "--descriptor", ref)
		var d v1.Descriptor
		if err := json.Unmarshal([]byte(desc), &d); err != nil {
			t.Fatalf("oras manifest fetch --descriptor: %v\n%s", err, desc)
		}
		if d.Digest.String() != pushed {
			t.Fatalf("oras manifest digest %s, pushed %s", d.Digest, pushed)
		}
		out := mkdir(t, work, "oras-out")
		start = time.Now()
		mustRun(t, 5*time.Minute, nil, oras, "pull", "--plain-http", "-o", out, ref)
		t.Logf("oras pull %s", mibps(total, time.Since(start)))
		for _, n := range names {
			if got := fileDigest(t, filepath.Join(out, n)); got != digests[n] {
				t.Fatalf("oras pull %s: digest %s, want %s", n, got, digests[n])
			}
		}
		h, _ := v1.NewHash(pushed)
		assertManifestDigest(t, reg, "local/oras/files", "v1", h)
	})

	t.Run("skopeo", func(t *testing.T) {
		skopeo, err := exec.LookPath("skopeo")
		if err != nil {
			t.Skipf("skopeo not installed (apt-get install skopeo): %v", err)
		}
		policy := filepath.Join(work, "policy.json")
		if err := os.WriteFile(policy, []byte(`{"default":[{"type":"insecureAcceptAnything"}]}`), 0o644); err != nil {
			t.Fatal(err)
		}
		ref := "docker://" + reg.Host + "/local/skopeo/app:v1"
		start := time.Now()
		mustRun(t, 5*time.Minute, nil, skopeo, "--policy", policy, "copy", "--preserve-digests", "--dest-tls-verify=false", "oci:"+src+":v1", ref)
		t.Logf("skopeo push %s", mibps(size, time.Since(start)))
		raw := mustRun(t, time.Minute, nil, skopeo, "inspect", "--tls-verify=false", "--raw", ref)
		if got, _, _ := v1.SHA256(strings.NewReader(raw)); got != want {
			t.Fatalf("skopeo inspect --raw: manifest digest %s, want %s", got, want)
		}
		out := filepath.Join(work, "skopeo-out")
		start = time.Now()
		mustRun(t, 5*time.Minute, nil, skopeo, "--policy", policy, "copy", "--preserve-digests", "--src-tls-verify=false", ref, "oci:"+out+":v1")
		t.Logf("skopeo pull %s", mibps(size, time.Since(start)))
		assertSameImage(t, "skopeo pull", img, readLayout(t, out))
	})
}

// regctlEnv gives regctl its own HOME (config) with plain http for host and
// returns the environment to run it with.
func regctlEnv(t testing.TB, host string, extra ...string) []string {
	t.Helper()
	home := t.TempDir()
	env := []string{"HOME=" + home}
	args := append([]string{"registry", "set", "--tls", "disabled"}, extra...)
	mustRun(t, time.Minute, env, tool(t, "regctl"), append(args, host)...)
	return env
}

// assertManifestDigest checks HEAD /v2/<image>/manifests/<tag> answers 200
// with Docker-Content-Digest want.
func assertManifestDigest(t testing.TB, reg *registry, image, tag string, want v1.Hash) {
	t.Helper()
	code, h := headStatus(t, reg.URL+"/v2/"+image+"/manifests/"+tag,
		"application/vnd.oci.image.manifest.v1+json",
		"application/vnd.oci.image.index.v1+json",
		"application/vnd.docker.distribution.manifest.v2+json",
		"application/vnd.docker.distribution.manifest.list.v2+json")
	if code != 200 {
		t.Fatalf("HEAD %s:%s: %d", image, tag, code)
	}
	if got := h.Get("Docker-Content-Digest"); got != want.String() {
		t.Fatalf("HEAD %s:%s: Docker-Content-Digest %q, want %s", image, tag, got, want)
	}
}
