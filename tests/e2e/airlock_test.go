//go:build e2e

package e2e

import (
	"bufio"
	"fmt"
	"io"
	"log"
	"net/http"
	"net/http/httptest"
	"net/url"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/google/go-containerregistry/pkg/name"
	ggcrregistry "github.com/google/go-containerregistry/pkg/registry"
	v1 "github.com/google/go-containerregistry/pkg/v1"
	"github.com/google/go-containerregistry/pkg/v1/remote"
)

var (
	cliOnce sync.Once
	cliBin  string
	cliErr  error
)

// airlockCLI builds shared/cmd/airlock into <root>/bin/airlock once.
func airlockCLI(t testing.TB) string {
	t.Helper()
	cliOnce.Do(func() {
		cliBin = filepath.Join(binDir, "airlock")
		cmd := exec.Command("go", "build", "-o", cliBin, "./shared/cmd/airlock")
		cmd.Dir = rootDir
		if out, err := cmd.CombinedOutput(); err != nil {
			cliErr = fmt.Errorf("go build ./shared/cmd/airlock: %v\n%s", err, out)
		}
	})
	if cliErr != nil {
		t.Fatal(cliErr)
	}
	return cliBin
}

// uploadOpens counts upload POSTs (new sessions and mounts).
func uploadOpens(hs []hit) (opens, mounts int) {
	return len(filterHits(hs, isUploadOpen)), len(filterHits(hs, isMountHit))
}

// cliEnv isolates the CLI: no Docker credentials, its own resume states.
func cliEnv(t testing.TB, extra ...string) []string {
	return append([]string{"DOCKER_CONFIG=" + t.TempDir(), "XDG_CACHE_HOME=" + t.TempDir()}, extra...)
}

var summaryRE = regexp.MustCompile(`pushed \S+@(sha256:[0-9a-f]{64}): (\d+) blobs uploaded \((\d+) bytes \(\S+ MiB\) to S3 in (\d+) parts, (\d+) bytes \(\S+ MiB\) through the registry\), (\d+) present, (\d+) mounted`)

// summary is the CLI's last line, parsed.
type summary struct {
	digest                                               string
	uploaded, s3Bytes, parts, regBytes, present, mounted int64
}

func parseSummary(t testing.TB, out string) summary {
	t.Helper()
	m := summaryRE.FindStringSubmatch(out)
	if m == nil {
		t.Fatalf("no summary line in the CLI's output:\n%s", tail(out, 30))
	}
	n := func(i int) int64 { v, _ := strconv.ParseInt(m[i], 10, 64); return v }
	return summary{digest: m[1], uploaded: n(2), s3Bytes: n(3), parts: n(4), regBytes: n(5), present: n(6), mounted: n(7)}
}

// TestAirlockCLI drives bin/airlock against a localdev that takes no request
// body above 4,706,379 bytes (API Gateway + Lambda), through a front that
// records every request the registry gets.
func TestAirlockCLI(t *testing.T) {
	t.Parallel()
	cli := airlockCLI(t)
	reg := startRegistry(t, registryOpts{MaxBody: lambdaMaxBody})
	f := startFront(t, reg.URL)
	crane := tool(t, "crane")

	// 3 layers, one of 60 MiB, from an OCI layout: the layers go to S3 by
	// presigned part URLs, the registry never gets a body above the limit.
	img := layeredImage(t, 60*mib, 6*mib, 100<<10)
	dir := filepath.Join(t.TempDir(), "layout")
	writeLayout(t, dir, img, "v1")
	big := int64(0)
	if ls, err := img.Layers(); err == nil {
		big, _ = ls[0].Size()
	}

	t.Run("direct-60MiB", func(t *testing.T) {
		m := f.mark()
		ref := f.Host + "/local/cli/app:v1"
		out := mustRun(t, 5*time.Minute, cliEnv(t), cli, "push", "oci:"+dir+":v1", ref)
		hs := f.since(m)
		largest, total := bodies(hs)
		if largest > lambdaMaxBody {
			t.Errorf("the registry got a body of %d bytes, above the limit %d", largest, lambdaMaxBody)
		}
		s := parseSummary(t, out)
		layers := imageSize(t, img) - s.regBytes
		if s.s3Bytes != layers || s.s3Bytes < big || s.parts < 5 || s.uploaded != 4 {
			t.Errorf("summary %+v: want the layers ≥ 1 MiB (%d bytes) sent to S3", s, layers)
		}
		if total > 1<<20 {
			t.Errorf("the registry got %d body bytes in all: layer bytes went through it", total)
		}
		for _, h := range hs {
			if h.Status == http.StatusRequestEntityTooLarge {
				t.Errorf("413 for %s %s", h.Method, h.Path)
			}
		}
		t.Logf("registry: %d requests, %d body bytes in all, largest %d; S3: %d bytes in %d parts", len(hs), total, largest, s.s3Bytes, s.parts)
		if got := strings.TrimSpace(mustRun(t, time.Minute, nil, crane, "digest", "--insecure", ref)); got != digestOf(t, img).String() {
			t.Errorf("crane digest %s, want %s", got, digestOf(t, img))
		}
		out2 := filepath.Join(t.TempDir(), "pulled")
		mustRun(t, 5*time.Minute, nil, crane, "pull", "--insecure", "--format", "oci", ref, out2)
		assertSameImage(t, "crane pull of the CLI's push", img, readLayout(t, out2))
	})

	t.Run("skip-existing", func(t *testing.T) {
		m := f.mark()
		out := mustRun(t, 5*time.Minute, cliEnv(t), cli, "push", "oci:"+dir, f.Host+"/local/cli/app:v2")
		hs := f.since(m)
		if opens, _ := uploadOpens(hs); opens != 0 {
			t.Errorf("the second push opened %d uploads, want none", opens)
		}
		s := parseSummary(t, out)
		if s.uploaded != 0 || s.present != 4 || s.s3Bytes != 0 || s.regBytes != 0 {
			t.Errorf("second push: %+v, want 4 present, 0 bytes", s)
		}
		assertSameImage(t, "second push", img, pullImage(t, f.Host+"/local/cli/app:v2"))
	})

	t.Run("mount-from", func(t *testing.T) {
		m := f.mark()
		out := mustRun(t, 5*time.Minute, cliEnv(t), cli, "push", "--mount-from", "local/cli/app", "oci:"+dir, f.Host+"/local/cli/other:v1")
		opens, mounts := uploadOpens(f.since(m))
		s := parseSummary(t, out)
		if opens != 4 || mounts != 4 || s.mounted != 4 || s.s3Bytes != 0 || s.regBytes != 0 {
			t.Errorf("push with --mount-from: %d opens, %d mounts, %+v; want 4 mounts, no bytes", opens, mounts, s)
		}
		assertSameImage(t, "mounted push", img, pullImage(t, f.Host+"/local/cli/other:v1"))
	})

	t.Run("copy", func(t *testing.T) {
		up := httptest.NewServer(ggcrregistry.New(ggcrregistry.Logger(log.New(io.Discard, "", 0))))
		t.Cleanup(up.Close)
		src := strings.TrimPrefix(up.URL, "http://") + "/upstream/app:v1"
		sr, _ := name.ParseReference(src)
		cimg := layeredImage(t, 12*mib, 50<<10)
		if err := remote.Write(sr, cimg); err != nil {
			t.Fatal(err)
		}
		m := f.mark()
		out := mustRun(t, 5*time.Minute, cliEnv(t), cli, "copy", src, f.Host+"/local/cli/copied:v1")
		if largest, _ := bodies(f.since(m)); largest > lambdaMaxBody {
			t.Errorf("copy: a body of %d bytes reached the registry", largest)
		}
		if s := parseSummary(t, out); s.s3Bytes < 12*mib {
			t.Errorf("copy: %+v, want the 12 MiB layer sent to S3", s)
		}
		assertSameImage(t, "copy from another registry", cimg, pullImage(t, f.Host+"/local/cli/copied:v1"))
	})

	t.Run("resume", func(t *testing.T) { cliResume(t, cli, f, img, dir) })
	t.Run("docker", func(t *testing.T) { cliDocker(t, cli, f) })
}

// cliResume kills `airlock push` (SIGKILL) once 3 parts of the 60 MiB layer
// are sent, runs it again, and checks it completes the same session,
// sending fewer bytes to S3 than a fresh push does.
func cliResume(t *testing.T, cli string, f *countingFront, img v1.Image, dir string) {
	env := cliEnv(t)
	ref := f.Host + "/local/cli/resumed:v1"
	ls, _ := img.Layers()
	bigDigest, _ := ls[0].Digest()
	bigSize, _ := ls[0].Size()
	partRE := regexp.MustCompile(`^` + regexp.QuoteMeta(bigDigest.String()[:7+12]) + ` (\d+)/` + strconv.FormatInt(bigSize, 10) + `$`)

	m := f.mark()
	cmd := exec.Command(cli, "push", "--part-size", "5", "--parts", "1", "--jobs", "1", "oci:"+dir, ref)
	cmd.Env = append(os.Environ(), env...)
	cmd.SysProcAttr = &syscall.SysProcAttr{Pdeathsig: syscall.SIGKILL}
	stderr, err := cmd.StderrPipe()
	if err != nil {
		t.Fatal(err)
	}
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	var first strings.Builder
	parts, killed := 0, false
	sc := bufio.NewScanner(stderr)
	for sc.Scan() {
		first.WriteString(sc.Text() + "\n")
		if partRE.MatchString(sc.Text()) {
			if parts++; parts == 3 && !killed {
				_ = cmd.Process.Signal(syscall.SIGKILL)
				killed = true
			}
		}
	}
	werr := cmd.Wait()
	if !killed || werr == nil {
		t.Fatalf("the push was not killed after 3 parts (parts seen %d, exit %v):\n%s", parts, werr, first.String())
	}
	t.Logf("killed after %d parts of the 60 MiB layer (exit %v)", parts, werr)
	firstHits := f.since(m)
	m += len(firstHits)
	sessions := map[string]bool{}
	for _, h := range firstHits {
		if loc := h.Header.Get("Location"); isUploadOpen(h) && loc != "" {
			u, _ := url.Parse(loc)
			sessions[u.Path] = true
		}
	}

	out := mustRun(t, 5*time.Minute, env, cli, "push", "--part-size", "5", "--parts", "1", "oci:"+dir, ref)
	s := parseSummary(t, out)
	again := f.since(m)
	reused := false
	for _, h := range again {
		if h.Method == http.MethodPut && strings.Contains(h.Query, "airlock-complete=1") && strings.Contains(h.Query, bigDigest.Hex) {
			reused = sessions[h.Path] && h.Status == http.StatusCreated
		}
	}
	if !reused {
		t.Errorf("the rerun did not complete the 60 MiB layer on the killed run's session %v", sessions)
	}
	if !regexp.MustCompile(`resumed: ([3-9]|1\d) parts`).MatchString(out) {
		t.Errorf("the rerun does not say it resumed ≥ 3 parts:\n%s", tail(out, 20))
	}

	fresh := parseSummary(t, mustRun(t, 5*time.Minute, cliEnv(t), cli, "push", "--part-size", "5", "oci:"+dir, f.Host+"/local/cli/fresh:v1"))
	if s.s3Bytes >= fresh.s3Bytes || s.s3Bytes > bigSize-3*5*mib+imageSize(t, img)-bigSize {
		t.Errorf("the resumed push sent %d bytes to S3, a fresh one %d: want at least the 3 parts (15 MiB) fewer", s.s3Bytes, fresh.s3Bytes)
	}
	t.Logf("resumed push: %d bytes to S3; fresh push: %d", s.s3Bytes, fresh.s3Bytes)
	assertSameImage(t, "resumed push", img, pullImage(t, f.Host+"/local/cli/resumed:v1"))
}

// cliDocker pushes an image of the real Docker daemon: from its `docker
// save` tarball and straight from the daemon (docker-daemon:), then pulls
// it back with docker (same image ID).
func cliDocker(t *testing.T, cli string, f *countingFront) {
	d := startDockerd(t, "")
	d.load(t, "e2e/cli:1", 2, 8*mib)
	id := strings.TrimSpace(d.mustDocker(t, time.Minute, "image", "inspect", "--format", "{{.Id}}", "e2e/cli:1"))
	tarPath := filepath.Join(t.TempDir(), "saved.tar")
	d.mustDocker(t, 2*time.Minute, "save", "-o", tarPath, "e2e/cli:1")

	m := f.mark()
	archive := parseSummary(t, mustRun(t, 5*time.Minute, cliEnv(t), cli, "push", "docker-archive:"+tarPath, f.Host+"/local/cli/docker:archive"))
	if largest, _ := bodies(f.since(m)); largest > lambdaMaxBody {
		t.Errorf("docker-archive push: a body of %d bytes reached the registry", largest)
	}
	if archive.s3Bytes < 8*mib {
		t.Errorf("docker-archive push: %+v, want the 8 MiB layers sent to S3", archive)
	}
	daemon := parseSummary(t, mustRun(t, 5*time.Minute, cliEnv(t, d.env...), cli, "push", "docker-daemon:e2e/cli:1", f.Host+"/local/cli/docker:daemon"))
	if daemon.digest != archive.digest {
		t.Errorf("docker-daemon: pushed %s, docker-archive of the same image %s", daemon.digest, archive.digest)
	}
	if daemon.present != 3 {
		t.Errorf("docker-daemon push: %+v, want the 3 blobs present (same repository's blobs)", daemon)
	}
	pulled := pullImage(t, f.Host+"/local/cli/docker:daemon")
	if cfg, _ := pulled.ConfigName(); cfg.String() != id {
		t.Errorf("pushed config %s, docker's image ID %s", cfg, id)
	}
	d.mustDocker(t, time.Minute, "rmi", "e2e/cli:1") // the pulls below download the layers
	for _, tag := range []string{"archive", "daemon"} {
		ref := f.Host + "/local/cli/docker:" + tag
		d.mustDocker(t, 2*time.Minute, "pull", ref)
		if got := strings.TrimSpace(d.mustDocker(t, time.Minute, "image", "inspect", "--format", "{{.Id}}", ref)); got != id {
			t.Errorf("docker pull %s: image ID %s, want %s", ref, got, id)
		}
	}
	// An image the daemon does not have: docker save's message.
	out, err := run(t, time.Minute, cliEnv(t, d.env...), cli, "push", "docker-daemon:e2e/none:1", f.Host+"/local/cli/none:1")
	if err == nil || !strings.Contains(out, "docker save e2e/none:1") {
		t.Errorf("push of a missing daemon image: %v\n%s", err, out)
	}
}
