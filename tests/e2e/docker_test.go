//go:build e2e

package e2e

import (
	"context"
	"net"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"
)

// dockerd is a Docker daemon started by a test, with its own data and exec
// roots and socket.
type dockerd struct {
	cli  string   // docker CLI path
	env  []string // DOCKER_HOST=unix://...
	cmd  *exec.Cmd
	done chan struct{}
	log  string
}

// dockerCLI prefers Debian's CLI (same version as the daemon, 20.10).
func dockerCLI() (string, error) {
	if _, err := os.Stat("/usr/bin/docker"); err == nil {
		return "/usr/bin/docker", nil
	}
	return exec.LookPath("docker")
}

// startDockerd starts dockerd as root with the vfs storage driver, no
// networking set-up, and mirror (if not "") as its registry mirror; it is
// stopped by pid at cleanup. Skips with a reason when dockerd or root is missing.
func startDockerd(t *testing.T, mirror string) *dockerd {
	t.Helper()
	bin, err := exec.LookPath("dockerd")
	if err != nil {
		t.Skipf("dockerd not installed (apt-get install docker.io): %v", err)
	}
	cli, err := dockerCLI()
	if err != nil {
		t.Skipf("docker CLI not installed: %v", err)
	}
	if os.Geteuid() != 0 {
		t.Skipf("dockerd needs root; running as uid %d", os.Geteuid())
	}
	// A short dir: the unix socket path must stay under 108 bytes.
	dir, err := os.MkdirTemp("", "e2e-dockerd-")
	if err != nil {
		t.Fatal(err)
	}
	sock := filepath.Join(dir, "sock")
	logPath := filepath.Join(dir, "dockerd.log")
	args := []string{
		"--data-root", filepath.Join(dir, "root"),
		"--exec-root", filepath.Join(dir, "exec"),
		"--pidfile", filepath.Join(dir, "pid"),
		"-H", "unix://" + sock,
		"--storage-driver", "vfs",
		"--iptables=false", "--ip-masq=false", "--bridge=none",
		"--config-file", writeDaemonJSON(t, dir),
	}
	if mirror != "" {
		args = append(args, "--registry-mirror", mirror)
	}
	logf, err := os.Create(logPath)
	if err != nil {
		t.Fatal(err)
	}
	cmd := exec.Command(bin, args...)
	cmd.Stdout, cmd.Stderr = logf, logf
	cmd.SysProcAttr = &syscall.SysProcAttr{Setpgid: true, Pdeathsig: syscall.SIGTERM}
	start := time.Now()
	if err := cmd.Start(); err != nil {
		t.Fatalf("start dockerd: %v", err)
	}
	d := &dockerd{cli: cli, env: []string{"DOCKER_HOST=unix://" + sock}, cmd: cmd, done: make(chan struct{}), log: logPath}
	go func() { _ = cmd.Wait(); _ = logf.Close(); close(d.done) }()
	t.Cleanup(func() {
		d.stop(t)
		if !t.Failed() {
			_ = os.RemoveAll(dir)
		} else {
			t.Logf("dockerd dir kept: %s", dir)
		}
	})

	hc := &http.Client{Transport: &http.Transport{DialContext: func(ctx context.Context, _, _ string) (net.Conn, error) {
		return (&net.Dialer{}).DialContext(ctx, "unix", sock)
	}}, Timeout: 2 * time.Second}
	deadline := time.Now().Add(60 * time.Second)
	for {
		resp, err := hc.Get("http://docker/_ping")
		if err == nil {
			resp.Body.Close()
			if resp.StatusCode == 200 {
				break
			}
		}
		select {
		case <-d.done:
			t.Fatalf("dockerd exited: %v\n%s", cmd.ProcessState, readTail(logPath))
		default:
		}
		if time.Now().After(deadline) {
			t.Fatalf("dockerd not up after 60s:\n%s", readTail(logPath))
		}
		time.Sleep(200 * time.Millisecond)
	}
	t.Logf("dockerd up in %s (mirror %q)", time.Since(start).Round(time.Millisecond), mirror)
	return d
}

// writeDaemonJSON writes an empty daemon config so /etc/docker/daemon.json of
// the machine, if any, does not apply.
func writeDaemonJSON(t testing.TB, dir string) string {
	p := filepath.Join(dir, "daemon.json")
	if err := os.WriteFile(p, []byte("{}\n"), 0o644); err != nil {
		t.Fatal(err)
	}
	return p
}

// stop sends SIGTERM to dockerd by its pid, waits up to 30 s, then kills its
// process group (its managed containerd).
func (d *dockerd) stop(t testing.TB) {
	_ = d.cmd.Process.Signal(syscall.SIGTERM)
	select {
	case <-d.done:
	case <-time.After(30 * time.Second):
		t.Logf("dockerd ignored SIGTERM for 30s; killing")
	}
	_ = syscall.Kill(-d.cmd.Process.Pid, syscall.SIGKILL)
	<-d.done
	if t.Failed() {
		t.Logf("dockerd log:\n%s", readTail(d.log))
	}
}

func readTail(p string) string {
	b, err := os.ReadFile(p)
	if err != nil {
		return err.Error()
	}
	return tail(string(b), 60)
}

// docker runs the CLI against this daemon.
func (d *dockerd) docker(t testing.TB, timeout time.Duration, args ...string) (string, error) {
	t.Helper()
	return run(t, timeout, d.env, d.cli, args...)
}

// mustDocker runs the CLI and fails the test on error.
func (d *dockerd) mustDocker(t testing.TB, timeout time.Duration, args ...string) string {
	t.Helper()
	return mustRun(t, timeout, d.env, d.cli, args...)
}

// load builds a docker-save tarball of img tagged ref and `docker load`s it.
func (d *dockerd) load(t testing.TB, ref string, n int, size int64) {
	t.Helper()
	img := smallDockerImage(t, n, size)
	tarPath := filepath.Join(t.TempDir(), "image.tar")
	writeDockerTarball(t, tarPath, ref, img)
	d.mustDocker(t, 2*time.Minute, "load", "-i", tarPath)
}

// repoDigests returns `docker image inspect`'s RepoDigests of ref.
func (d *dockerd) repoDigests(t testing.TB, ref string) string {
	t.Helper()
	return strings.TrimSpace(d.mustDocker(t, time.Minute, "image", "inspect", "--format", "{{json .RepoDigests}}", ref))
}

var pushDigest = regexp.MustCompile(`digest: (sha256:[0-9a-f]{64}) size: \d+`)
var pullDigest = regexp.MustCompile(`Digest: (sha256:[0-9a-f]{64})`)

// TestDocker drives the real Docker daemon (Debian's docker.io, dockerd 20.10)
// against localdev: push/rmi/pull by host, pull through --registry-mirror,
// and a push over the body limit that must fail with the registry's 413 and
// leave nothing behind.
func TestDocker(t *testing.T) {
	t.Parallel()
	reg := startRegistry(t, registryOpts{MaxBody: 512 * mib})
	d := startDockerd(t, reg.URL)

	t.Run("push-rmi-pull", func(t *testing.T) {
		ref := reg.Host + "/local/x:1"
		d.load(t, ref, 3, 4*mib)
		start := time.Now()
		out := d.mustDocker(t, 5*time.Minute, "push", ref)
		t.Logf("docker push 3 x 4 MiB layers in %s", time.Since(start).Round(time.Millisecond))
		m := pushDigest.FindStringSubmatch(out)
		if m == nil {
			t.Fatalf("no digest in docker push output:\n%s", out)
		}
		pushed := m[1]
		assertManifestDigestStr(t, reg, "local/x", "1", pushed)
		d.mustDocker(t, time.Minute, "rmi", ref)
		if _, err := d.docker(t, time.Minute, "image", "inspect", ref); err == nil {
			t.Fatalf("%s still present after docker rmi", ref)
		}
		start = time.Now()
		out = d.mustDocker(t, 5*time.Minute, "pull", ref)
		t.Logf("docker pull in %s", time.Since(start).Round(time.Millisecond))
		if m := pullDigest.FindStringSubmatch(out); m == nil || m[1] != pushed {
			t.Fatalf("docker pull digest %v, pushed %s:\n%s", m, pushed, out)
		}
		if rd := d.repoDigests(t, ref); !strings.Contains(rd, reg.Host+"/local/x@"+pushed) {
			t.Fatalf("RepoDigests %s do not name %s", rd, pushed)
		}
	})

	t.Run("registry-mirror", func(t *testing.T) {
		// library/alpine names no repository, so it lands in the default one.
		crane := tool(t, "crane")
		img := smallDockerImage(t, 2, 2*mib)
		tarPath := filepath.Join(t.TempDir(), "alpine.tar")
		writeDockerTarball(t, tarPath, "alpine:3", img)
		mustRun(t, 2*time.Minute, nil, crane, "push", "--insecure", tarPath, reg.Host+"/library/alpine:3")
		want := digestOf(t, img).String()
		assertManifestDigestStr(t, reg, "library/alpine", "3", want)
		assertManifestDigestStr(t, reg, "local/library/alpine", "3", want)

		start := time.Now()
		out := d.mustDocker(t, 5*time.Minute, "pull", "alpine:3")
		t.Logf("docker pull alpine:3 through the mirror in %s", time.Since(start).Round(time.Millisecond))
		if m := pullDigest.FindStringSubmatch(out); m == nil || m[1] != want {
			t.Fatalf("docker pull alpine:3 digest %v, want %s (served by the mirror):\n%s", m, want, out)
		}
		if rd := d.repoDigests(t, "alpine:3"); !strings.Contains(rd, "alpine@"+want) {
			t.Fatalf("RepoDigests %s do not name %s", rd, want)
		}
	})

	t.Run("push-over-limit", func(t *testing.T) {
		const limit = 1 * mib
		small := startRegistry(t, registryOpts{MaxBody: limit})
		// Layers under the limit push fine through the same limit (docker
		// streams each layer as one PATCH without Content-Length).
		okRef := small.Host + "/local/small:1"
		d.load(t, okRef, 2, 256*1024)
		out := d.mustDocker(t, 5*time.Minute, "push", okRef)
		m := pushDigest.FindStringSubmatch(out)
		if m == nil {
			t.Fatalf("no digest in docker push output:\n%s", out)
		}
		assertManifestDigestStr(t, small, "local/small", "1", m[1])

		ref := small.Host + "/local/big:1"
		d.load(t, ref, 1, 3*mib) // random, so gzip leaves it ≈ 3 MiB > 1 MiB
		start := time.Now()
		out, err := d.docker(t, 5*time.Minute, "push", ref)
		t.Logf("docker push over the limit ended in %s", time.Since(start).Round(time.Millisecond))
		if err == nil {
			t.Fatalf("docker push of a 3 MiB layer to a registry limited to %d bytes succeeded:\n%s", limit, out)
		}
		// docker prints an OCI error as "<code in words>: <message>".
		if !strings.Contains(out, "size invalid: ") || !strings.Contains(out, strconv.Itoa(limit)) {
			t.Fatalf("docker push output lacks the registry's SIZE_INVALID error naming the %d-byte limit:\n%s", limit, out)
		}
		t.Logf("docker push output (countdown lines cut):\n%s", cutCountdown(out))
		code, _ := headStatus(t, small.URL+"/v2/local/big/manifests/1", "application/vnd.docker.distribution.manifest.v2+json")
		if code != http.StatusNotFound {
			t.Fatalf("HEAD manifest after the failed push: %d, want 404", code)
		}
		// The blob docker streamed has a digest only docker knew (it gzips on
		// the fly); TestBodyLimitRaw checks HEAD 404 for such a blob by digest.
	})
}

// cutCountdown drops the "Retrying in N seconds" lines docker push prints
// while it waits between attempts.
func cutCountdown(out string) string {
	var lines []string
	for _, l := range strings.Split(out, "\n") {
		if !strings.Contains(l, "Retrying in") {
			lines = append(lines, l)
		}
	}
	return strings.Join(lines, "\n")
}

// assertManifestDigestStr is assertManifestDigest with a digest string.
func assertManifestDigestStr(t testing.TB, reg *registry, image, tag, want string) {
	t.Helper()
	code, h := headStatus(t, reg.URL+"/v2/"+image+"/manifests/"+tag,
		"application/vnd.oci.image.manifest.v1+json",
		"application/vnd.docker.distribution.manifest.v2+json")
	if code != 200 || h.Get("Docker-Content-Digest") != want {
		t.Fatalf("HEAD %s:%s: %d, Docker-Content-Digest %q, want 200 %s", image, tag, code, h.Get("Docker-Content-Digest"), want)
	}
}
