//go:build e2e

package e2e

import (
	"encoding/json"
	"path/filepath"
	"runtime"
	"strings"
	"testing"
	"time"
)

// TestIngressImage: `make image` builds the upload ingress's FROM scratch
// image with the real Docker daemon (dockerd 20.10 started by the test,
// named by DOCKER_HOST): one layer, entrypoint /ingress, non-root, the
// configuration in AIRLOCK_CONFIG; its binary starts (-version, -help). With
// no daemon answering, the script starts a temporary one itself and leaves
// dist/ingress/image.tar, which loads into another daemon.
func TestIngressImage(t *testing.T) {
	d := startDockerd(t, "") // skips without dockerd or root
	const image = "airlock-ingress:e2e"
	arch := runtime.GOARCH
	start := time.Now()
	out, err := runMake(t, d.env, "image", "IMAGE="+image, "IMAGE_ARCH="+arch)
	if err != nil {
		t.Fatalf("make image: %v\n%s", err, out)
	}
	t.Logf("make image with the test's dockerd in %s:\n%s", time.Since(start).Round(time.Millisecond), out)
	if strings.Contains(out, "temporary dockerd") {
		t.Errorf("make image started a temporary dockerd although DOCKER_HOST names a running one:\n%s", out)
	}
	var inspect []struct {
		Os, Architecture string
		Config           struct {
			Entrypoint, Cmd, Env []string
			User                 string
		}
		RootFS struct{ Layers []string }
	}
	raw := d.mustDocker(t, time.Minute, "image", "inspect", image)
	if err := json.Unmarshal([]byte(raw), &inspect); err != nil || len(inspect) != 1 {
		t.Fatalf("docker image inspect %s: %v\n%s", image, err, raw)
	}
	img := inspect[0]
	if img.Os != "linux" || img.Architecture != arch {
		t.Errorf("image platform %s/%s, want linux/%s", img.Os, img.Architecture, arch)
	}
	if strings.Join(img.Config.Entrypoint, " ") != "/ingress" {
		t.Errorf("entrypoint %q, want [/ingress]", img.Config.Entrypoint)
	}
	if img.Config.User == "" || strings.HasPrefix(img.Config.User, "0") {
		t.Errorf("image user %q, want a non-root one", img.Config.User)
	}
	if !strings.Contains(strings.Join(img.Config.Env, " "), "AIRLOCK_CONFIG=file:/airlock.yaml") {
		t.Errorf("image env %q lacks AIRLOCK_CONFIG=file:/airlock.yaml", img.Config.Env)
	}
	// FROM scratch: the two COPYs are the only layers (binary, configuration).
	if len(img.RootFS.Layers) != 2 {
		t.Errorf("image has %d layers, want 2 (FROM scratch + the binary + the configuration)", len(img.RootFS.Layers))
	}
	out = d.mustDocker(t, time.Minute, "run", "--rm", "--network", "none", image, "-version")
	if !strings.HasPrefix(strings.TrimSpace(out), "airlock-ingress ") {
		t.Errorf("docker run %s -version: %q, want airlock-ingress <version>", image, out)
	}
	out = d.mustDocker(t, time.Minute, "run", "--rm", "--network", "none", image, "-help")
	if !strings.Contains(out, "Usage: ingress") || !strings.Contains(out, "AIRLOCK_TABLE") {
		t.Errorf("docker run %s -help: %q lacks the usage", image, out)
	}
	// Without the stack's environment the server refuses to start, saying what is missing.
	out, err = d.docker(t, time.Minute, "run", "--rm", "--network", "none", image)
	if err == nil || !strings.Contains(out, "AIRLOCK_TABLE is not set") {
		t.Errorf("docker run %s without AIRLOCK_TABLE: %v %q, want a failure naming AIRLOCK_TABLE", image, err, out)
	}

	t.Run("temporary-dockerd", func(t *testing.T) {
		sock := filepath.Join(t.TempDir(), "none.sock")
		out, err := runMake(t, []string{"DOCKER_HOST=unix://" + sock}, "image", "IMAGE=airlock-ingress:tmp", "IMAGE_ARCH="+arch)
		if err != nil {
			t.Fatalf("make image without a daemon: %v\n%s", err, out)
		}
		if !strings.Contains(out, "started a temporary dockerd") {
			t.Errorf("make image without a daemon does not say it started a temporary one:\n%s", out)
		}
		tarPath := filepath.Join(rootDir, "dist", "ingress", "image.tar")
		d.mustDocker(t, 2*time.Minute, "load", "-i", tarPath)
		out = d.mustDocker(t, time.Minute, "run", "--rm", "--network", "none", "airlock-ingress:tmp", "-version")
		if !strings.HasPrefix(strings.TrimSpace(out), "airlock-ingress ") {
			t.Errorf("the loaded image's -version: %q", out)
		}
	})
}

// runMake runs make TARGET in the repository root with env added last.
func runMake(t testing.TB, env []string, args ...string) (string, error) {
	t.Helper()
	out, dur, err := execIn(rootDir, 10*time.Minute, nil, "env", append(append([]string{"-u", "MAKEFLAGS", "-u", "MFLAGS", "-u", "MAKELEVEL"}, env...), append([]string{"make", "--no-print-directory"}, args...)...)...)
	t.Logf("$ %s make %s (%s)", strings.Join(env, " "), strings.Join(args, " "), dur)
	return out, err
}
