//go:build e2e

package e2e

import (
	"archive/tar"
	"io"
	"io/fs"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"sort"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/google/go-containerregistry/pkg/authn"
	v1 "github.com/google/go-containerregistry/pkg/v1"
	"github.com/google/go-containerregistry/pkg/v1/remote"
)

// lambdaMaxBody is the api function's body limit on AWS (functions/api):
// the largest request body API Gateway + Lambda pass (6 MB invoke payload,
// base64), localdev's -max-body in the tests of that limit.
const lambdaMaxBody = 4706379

// ingressConfig: hosted "local", auth on (admin's password in $authAdminEnv).
const ingressConfig = `default: local
repositories:
  - {name: local, kind: hosted}
auth:
  adminPasswordEnv: ` + authAdminEnv + `
`

// ingressSetup starts localdev with the AWS body limit and an upload
// ingress, each listener behind a body-counting front (the front door and
// the load balancer).
func ingressSetup(t *testing.T) (main, ingress *countingFront, reg *registry) {
	t.Helper()
	port := strconv.Itoa(freePort(t))
	ingress = startFront(t, "http://127.0.0.1:"+port)
	reg = startRegistry(t, registryOpts{MaxBody: lambdaMaxBody, Config: ingressConfig,
		Env:  []string{authAdminEnv + "=" + authAdminPW},
		Args: []string{"-ingress-addr", "127.0.0.1:" + port, "-ingress-url", ingress.URL}})
	main = startFront(t, reg.URL)
	if !strings.Contains(reg.log.String(), "upload ingress on http://127.0.0.1:"+port+" as "+ingress.URL) {
		t.Errorf("localdev's ready line does not name the ingress:\n%s", tail(reg.log.String(), 5))
	}
	return main, ingress, reg
}

// checkIngressPush checks what one client's push did: no body over the limit
// on the front door, which saw the upload POSTs and none of their PATCH/PUT
// bodies; the layer bytes (at least layer bytes) went to the ingress.
func checkIngressPush(t *testing.T, who string, onMain, onIngress []hit, layer int64) {
	t.Helper()
	t.Logf("%s: front door saw:\n%s\ningress saw:\n%s", who, fmtHits(onMain), fmtHits(onIngress))
	posts := 0
	for _, h := range onMain {
		if h.Body > lambdaMaxBody {
			t.Errorf("%s: %s %s sent %d body bytes to the front door (limit %d)", who, h.Method, h.Path, h.Body, lambdaMaxBody)
		}
		if isUploadBody(h) {
			t.Errorf("%s: %s %s went to the front door, not to the ingress", who, h.Method, h.Path)
		}
		if isUploadOpen(h) && h.Status == http.StatusAccepted {
			posts++
		}
	}
	if posts == 0 {
		t.Errorf("%s: no upload POST answered 202 on the front door", who)
	}
	var sent int64
	for _, h := range onIngress {
		if !isUploadBody(h) {
			t.Errorf("%s: %s %s on the ingress: only upload PATCH/PUT were expected there", who, h.Method, h.Path)
		}
		if h.Status >= 300 {
			t.Errorf("%s: %s %s on the ingress answered %d", who, h.Method, h.Path, h.Status)
		}
		sent += h.Body
	}
	if sent < layer {
		t.Errorf("%s: the ingress received %d body bytes, less than the %d-byte layer", who, sent, layer)
	}
	auth := false
	for _, h := range onIngress {
		auth = auth || h.Auth
	}
	t.Logf("%s sent an Authorization header to the ingress: %v", who, auth)
}

// TestIngress: localdev with the AWS body limit (4706379 bytes) and an
// upload ingress, auth on. docker push (dockerd 20.10), crane, skopeo,
// containerd 1.6's ctr and podman 4.3 push an image with a 20 MiB layer
// through the limited listener: its upload POST hands the upload to the
// ingress, which takes the layer without a token (docker, crane and ctr send
// none to another host). ctr sends each blob as one PUT, podman as one PATCH
// and an empty PUT. Without the ingress docker's push fails and prints the
// 413 naming both ways out.
func TestIngress(t *testing.T) {
	t.Parallel()
	const layer = 20 * mib
	front, ingress, _ := ingressSetup(t)
	img := smallDockerImage(t, 1, layer)
	tarPath := filepath.Join(t.TempDir(), "image.tar")
	writeDockerTarball(t, tarPath, "e2e/ingress:1", img)
	want := digestOf(t, img)
	host := front.Host

	t.Run("crane", func(t *testing.T) {
		env := craneAs(t, host, "admin", authAdminPW)
		m, mi := front.mark(), ingress.mark()
		start := time.Now()
		mustRun(t, 5*time.Minute, env, tool(t, "crane"), "push", "--insecure", tarPath, host+"/local/ingress/crane:1")
		t.Logf("crane push of a 20 MiB layer via the ingress in %s", time.Since(start).Round(time.Millisecond))
		checkIngressPush(t, "crane", front.since(m), ingress.since(mi), layer)
		out := mustRun(t, time.Minute, env, tool(t, "crane"), "digest", "--insecure", host+"/local/ingress/crane:1")
		if strings.TrimSpace(out) != want.String() {
			t.Fatalf("crane digest after push: %s, want %s", out, want)
		}
	})

	t.Run("skopeo", func(t *testing.T) {
		skopeo, err := exec.LookPath("skopeo")
		if err != nil {
			t.Skipf("skopeo not installed (apt-get install skopeo): %v", err)
		}
		policy := filepath.Join(t.TempDir(), "policy.json")
		if err := os.WriteFile(policy, []byte(`{"default":[{"type":"insecureAcceptAnything"}]}`), 0o644); err != nil {
			t.Fatal(err)
		}
		// An OCI image (skopeo reads no Docker media types from a layout):
		// --preserve-digests keeps the digest.
		oci := bigImage(t, 1, layer)
		src := filepath.Join(t.TempDir(), "layout")
		writeLayout(t, src, oci, "1")
		ref := "docker://" + host + "/local/ingress/skopeo:1"
		m, mi := front.mark(), ingress.mark()
		start := time.Now()
		mustRun(t, 5*time.Minute, nil, skopeo, "--policy", policy, "copy", "--preserve-digests", "--dest-tls-verify=false",
			"--dest-creds", "admin:"+authAdminPW, "oci:"+src+":1", ref)
		t.Logf("skopeo push of a 20 MiB layer via the ingress in %s", time.Since(start).Round(time.Millisecond))
		checkIngressPush(t, "skopeo", front.since(m), ingress.since(mi), layer)
		env := craneAs(t, host, "admin", authAdminPW)
		out := mustRun(t, time.Minute, env, tool(t, "crane"), "digest", "--insecure", host+"/local/ingress/skopeo:1")
		if w := digestOf(t, oci); strings.TrimSpace(out) != w.String() {
			t.Fatalf("crane digest after skopeo push: %s, want %s", out, w)
		}
	})

	t.Run("containerd", func(t *testing.T) {
		c := startContainerd(t) // skips without containerd, ctr or root
		// An OCI archive of the same image (manifest bytes kept, so the same
		// digest), imported under the push's name without unpacking.
		dir := filepath.Join(t.TempDir(), "layout")
		writeLayout(t, dir, img, "1")
		archive := filepath.Join(t.TempDir(), "oci.tar")
		tarDir(t, dir, archive)
		ref := host + "/local/ingress/ctr:1"
		c.mustRun(t, "ingress", "images", "import", "--no-unpack", "--base-name", host+"/local/ingress/ctr", archive)
		if ls := c.mustRun(t, "ingress", "images", "ls"); !strings.Contains(ls, ref) || !strings.Contains(ls, want.String()) {
			t.Fatalf("ctr images import: %s with digest %s not listed:\n%s", ref, want, ls)
		}
		m, mi := front.mark(), ingress.mark()
		start := time.Now()
		out, err := c.run(t, 5*time.Minute, "ingress", "images", "push", "--plain-http", "--user", "admin:"+authAdminPW, ref)
		t.Logf("ctr push of a 20 MiB layer via the ingress in %s", time.Since(start).Round(time.Millisecond))
		if err != nil {
			t.Fatalf("ctr images push %s: %v\n%s", ref, err, out)
		}
		onMain, onIngress := front.since(m), ingress.since(mi)
		checkIngressPush(t, "ctr", onMain, onIngress, layer)
		// containerd 1.6 sends each blob as one PUT with the whole body
		// (?digest=) to the POST's Location: no PATCH.
		mf, err := img.Manifest()
		if err != nil {
			t.Fatal(err)
		}
		checkUploadShape(t, "ctr", onIngress, mf, func(n int64) string { return "PUT " + strconv.FormatInt(n, 10) })
		checkPulled(t, "ctr", ref, img, want)
	})

	t.Run("podman", func(t *testing.T) {
		p := podmanIn(t) // skips without podman or root
		// podman load stores the layers uncompressed and its push compresses
		// them again (new layer and manifest digests): the config and its
		// diff IDs stay.
		p.must(t, 2*time.Minute, "load", "-i", tarPath)
		ref := host + "/local/ingress/podman:1"
		digestFile := filepath.Join(t.TempDir(), "digest")
		m, mi := front.mark(), ingress.mark()
		start := time.Now()
		p.must(t, 5*time.Minute, "push", "--tls-verify=false", "--creds", "admin:"+authAdminPW,
			"--digestfile", digestFile, "e2e/ingress:1", "docker://"+ref)
		t.Logf("podman push of a 20 MiB layer via the ingress in %s", time.Since(start).Round(time.Millisecond))
		onMain, onIngress := front.since(m), ingress.since(mi)
		checkIngressPush(t, "podman", onMain, onIngress, layer)
		b, err := os.ReadFile(digestFile)
		if err != nil {
			t.Fatalf("podman push --digestfile: %v", err)
		}
		pushed, err := v1.NewHash(strings.TrimSpace(string(b)))
		if err != nil {
			t.Fatalf("podman push --digestfile %q: %v", b, err)
		}
		got := pullAs(t, ref)
		if d := digestOf(t, got); d != pushed {
			t.Fatalf("pulled %s: manifest digest %s, podman pushed %s", ref, d, pushed)
		}
		// podman (containers/image) sends each blob as one PATCH with the
		// whole body, then a PUT ?digest= without one.
		mf, err := got.Manifest()
		if err != nil {
			t.Fatal(err)
		}
		checkUploadShape(t, "podman", onIngress, mf, func(n int64) string { return "PATCH " + strconv.FormatInt(n, 10) + ", PUT 0" })
		wc, _ := img.ConfigName()
		gc, _ := got.ConfigName()
		if wc != gc {
			t.Errorf("pulled %s: config %s, want the loaded image's %s", ref, gc, wc)
		}
		assertSameLayers(t, "pulled "+ref, img, got, "diff ID", v1.Layer.DiffID)
	})

	t.Run("docker", func(t *testing.T) {
		d := startDockerd(t, "") // skips without dockerd or root
		d.env = append(d.env, "DOCKER_CONFIG="+t.TempDir())
		if out, err := runStdin(t, time.Minute, d.env, authAdminPW, d.cli, "login", host, "-u", "admin", "--password-stdin"); err != nil {
			t.Fatalf("docker login %s: %v\n%s", host, err, out)
		}
		ref := host + "/local/ingress/docker:1"
		d.mustDocker(t, 2*time.Minute, "load", "-i", tarPath)
		d.mustDocker(t, time.Minute, "tag", "e2e/ingress:1", ref)
		m, mi := front.mark(), ingress.mark()
		start := time.Now()
		out := d.mustDocker(t, 5*time.Minute, "push", ref)
		t.Logf("docker push of a 20 MiB layer via the ingress in %s", time.Since(start).Round(time.Millisecond))
		checkIngressPush(t, "docker", front.since(m), ingress.since(mi), layer)
		mm := pushDigest.FindStringSubmatch(out)
		if mm == nil {
			t.Fatalf("no digest in docker push output:\n%s", out)
		}
		d.mustDocker(t, time.Minute, "rmi", ref, "e2e/ingress:1")
		out = d.mustDocker(t, 5*time.Minute, "pull", ref)
		if p := pullDigest.FindStringSubmatch(out); p == nil || p[1] != mm[1] {
			t.Fatalf("docker pull digest %v, pushed %s:\n%s", p, mm[1], out)
		}

		// Without an ingress the same push fails with the 413 naming both ways out.
		plain := startRegistry(t, registryOpts{MaxBody: lambdaMaxBody})
		ref2 := plain.Host + "/local/ingress/docker:1"
		d.mustDocker(t, time.Minute, "tag", ref, ref2)
		out, err := d.docker(t, 5*time.Minute, "push", ref2)
		if err == nil {
			t.Fatalf("docker push of a 20 MiB layer without an ingress succeeded through the %d-byte limit:\n%s", lambdaMaxBody, out)
		}
		t.Logf("docker push without the ingress (countdown lines cut):\n%s", cutCountdown(out))
		for _, w := range []string{"size invalid: ", strconv.Itoa(lambdaMaxBody), "airlock push", "upload ingress", "UploadIngress=fargate"} {
			if !strings.Contains(out, w) {
				t.Errorf("docker push without the ingress: the output lacks %q", w)
			}
		}
	})
}

// checkUploadShape checks how the ingress got the blobs of manifest mf:
// each upload session (one Location) carries one blob, its requests in
// order as shape(blob size) says, e.g. "PUT 352" or "PATCH 352, PUT 0".
func checkUploadShape(t *testing.T, who string, onIngress []hit, mf *v1.Manifest, shape func(size int64) string) {
	t.Helper()
	var order []string
	seq := map[string][]string{}
	for _, h := range onIngress {
		if _, ok := seq[h.Path]; !ok {
			order = append(order, h.Path)
		}
		seq[h.Path] = append(seq[h.Path], h.Method+" "+strconv.FormatInt(h.Body, 10))
	}
	var got, want []string
	for _, p := range order {
		got = append(got, strings.Join(seq[p], ", "))
	}
	want = append(want, shape(mf.Config.Size))
	for _, l := range mf.Layers {
		want = append(want, shape(l.Size))
	}
	sort.Strings(got)
	sort.Strings(want)
	if strings.Join(got, "; ") != strings.Join(want, "; ") {
		t.Errorf("%s: upload sessions on the ingress %q, want one per blob %q", who, got, want)
	}
}

// checkPulled pulls ref as admin, re-hashing every layer, and checks it is
// img (manifest digest want, same config and layers).
func checkPulled(t *testing.T, who, ref string, img v1.Image, want v1.Hash) {
	t.Helper()
	got := pullAs(t, ref)
	if d := digestOf(t, got); d != want {
		t.Fatalf("%s: pulled %s: manifest digest %s, want %s", who, ref, d, want)
	}
	assertSameImage(t, who+": pulled "+ref, img, got)
}

// pullAs is pullImage as admin.
func pullAs(t testing.TB, ref string) v1.Image {
	t.Helper()
	return pullImage(t, ref, remote.WithAuth(&authn.Basic{Username: "admin", Password: authAdminPW}))
}

// tarDir writes the files under dir into a tar archive at path (names
// relative to dir), as `ctr images import` reads an OCI layout.
func tarDir(t testing.TB, dir, path string) {
	t.Helper()
	f, err := os.Create(path)
	if err != nil {
		t.Fatal(err)
	}
	tw := tar.NewWriter(f)
	err = filepath.WalkDir(dir, func(p string, e fs.DirEntry, err error) error {
		if err != nil || p == dir {
			return err
		}
		info, err := e.Info()
		if err != nil {
			return err
		}
		h, err := tar.FileInfoHeader(info, "")
		if err != nil {
			return err
		}
		h.Name, _ = filepath.Rel(dir, p)
		if e.IsDir() {
			h.Name += "/"
		}
		if err := tw.WriteHeader(h); err != nil {
			return err
		}
		if e.IsDir() {
			return nil
		}
		src, err := os.Open(p)
		if err != nil {
			return err
		}
		defer src.Close()
		_, err = io.Copy(tw, src)
		return err
	})
	if err == nil {
		err = tw.Close()
	}
	if cerr := f.Close(); err == nil {
		err = cerr
	}
	if err != nil {
		t.Fatalf("tar %s: %v", dir, err)
	}
}

// podman runs Debian's podman as root on its own storage (vfs, under a
// temporary directory) with its own auth file and no systemd.
type podman struct {
	bin  string
	args []string
	env  []string
}

// podmanIn skips with a reason without podman or root.
func podmanIn(t *testing.T) *podman {
	t.Helper()
	bin, err := exec.LookPath("podman")
	if err != nil {
		t.Skipf("podman not installed (apt-get install podman): %v", err)
	}
	if os.Geteuid() != 0 {
		t.Skipf("podman on its own root storage needs root; running as uid %d", os.Geteuid())
	}
	dir, err := os.MkdirTemp("", "e2e-podman-") // short: runroot socket paths
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = os.RemoveAll(dir) })
	for _, d := range []string{"root", "run", "tmp"} {
		if err := os.Mkdir(filepath.Join(dir, d), 0o700); err != nil {
			t.Fatal(err)
		}
	}
	if err := os.WriteFile(filepath.Join(dir, "auth.json"), []byte(`{"auths":{}}`), 0o600); err != nil {
		t.Fatal(err)
	}
	return &podman{bin: bin,
		args: []string{"--root", filepath.Join(dir, "root"), "--runroot", filepath.Join(dir, "run"),
			"--storage-driver", "vfs", "--tmpdir", filepath.Join(dir, "tmp"),
			"--cgroup-manager", "cgroupfs", "--events-backend", "file"},
		env: []string{"REGISTRY_AUTH_FILE=" + filepath.Join(dir, "auth.json"), "TMPDIR=" + filepath.Join(dir, "tmp")}}
}

func (p *podman) must(t testing.TB, timeout time.Duration, args ...string) string {
	t.Helper()
	return mustRun(t, timeout, p.env, p.bin, append(append([]string(nil), p.args...), args...)...)
}
