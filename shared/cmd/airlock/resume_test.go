package main

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"net/http"
	"os"
	"path/filepath"
	"regexp"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/google/go-containerregistry/pkg/name"
	v1 "github.com/google/go-containerregistry/pkg/v1"
	"github.com/google/go-containerregistry/pkg/v1/empty"
	"github.com/google/go-containerregistry/pkg/v1/mutate"
	"github.com/google/go-containerregistry/pkg/v1/remote"
	"github.com/google/go-containerregistry/pkg/v1/static"
	"github.com/google/go-containerregistry/pkg/v1/types"

	"github.com/airlock-registry/airlock/shared/registry"
)

// oneLayerImage is an image of one layer of n random bytes.
func oneLayerImage(t *testing.T, n int) v1.Image {
	t.Helper()
	img := mutate.MediaType(empty.Image, types.OCIManifestSchema1)
	img = mutate.ConfigMediaType(img, types.OCIConfigJSON)
	img, err := mutate.AppendLayers(img, static.NewLayer(randomBytes(t, n), types.OCILayer))
	if err != nil {
		t.Fatal(err)
	}
	return img
}

// stateFiles reads the resume states under $XDG_CACHE_HOME.
func stateFiles(t *testing.T) []uploadState {
	t.Helper()
	files, _ := filepath.Glob(filepath.Join(os.Getenv("XDG_CACHE_HOME"), "airlock", "uploads", "*.json"))
	var out []uploadState
	for _, f := range files {
		b, err := os.ReadFile(f)
		if err != nil {
			t.Fatal(err)
		}
		var st uploadState
		if err := json.Unmarshal(b, &st); err != nil {
			t.Fatalf("%s: %v", f, err)
		}
		out = append(out, st)
	}
	return out
}

// resumeCase is an isolated test's registry with direct uploads, its S3
// counter, and an OCI layout (dir) of an image of one 30 MiB layer to push
// to dst.
type resumeCase struct {
	reg      *testRegistry
	s3       *s3Counter
	img      v1.Image
	dir, dst string
}

// newResumeCase sets up a resumeCase pushing to repository path (name:tag)
// of the hosted "local".
func newResumeCase(t *testing.T, path string) resumeCase {
	t.Helper()
	c := resumeCase{img: oneLayerImage(t, 30*mib)}
	c.reg, c.s3 = isolatedRegistry(t, true, registry.DirectOptions{})
	c.dir = ociLayout(t, c.img, "1")
	c.dst = c.reg.host + "/local/" + path
	return c
}

// pushCanceled runs push with args and stops it, as a kill would, once S3
// has taken parts parts; the push must end canceled.
func (c resumeCase) pushCanceled(t *testing.T, parts int, args ...string) {
	t.Helper()
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	c.s3.after = func(n int) {
		if n >= parts {
			cancel()
		}
	}
	var out bytes.Buffer
	err := run(ctx, append([]string{"push"}, args...), &out)
	c.s3.after = nil
	if !errors.Is(err, context.Canceled) {
		t.Fatalf("interrupted push %s: %v, want canceled\n%s", strings.Join(args, " "), err, out.String())
	}
}

// interruptedPush runs a push of the layer in 5 MiB parts (6 parts, 2 at a
// time) and stops it once S3 has taken 3 parts; it returns the resume state
// left.
func (c resumeCase) interruptedPush(t *testing.T) uploadState {
	t.Helper()
	c.pushCanceled(t, 3, "--part-size", "5", "--parts", "2", "oci:"+c.dir, c.dst)
	sts := stateFiles(t)
	if len(sts) != 1 || len(sts[0].ETags) < 3 || len(sts[0].ETags) >= 6 || sts[0].PartSize != 5*mib {
		t.Fatalf("resume states after the interruption: %+v", sts)
	}
	return sts[0]
}

func TestResumeInterruptedPush(t *testing.T) {
	c := newResumeCase(t, "resume/app:1")

	st := c.interruptedPush(t)
	first := c.reg.count.get()
	sentBefore := c.s3.sentBytes()

	out := cli(t, "push", "--part-size", "7", "--parts", "2", "oci:"+c.dir, c.dst) // the recorded plan wins over --part-size
	again := c.reg.count.get()
	resent := c.s3.sentBytes() - sentBefore
	layer := int64(30 * mib)
	recorded := int64(len(st.ETags)) * 5 * mib
	if resent != layer-recorded {
		t.Errorf("the resumed push sent %d bytes to S3, want %d (30 MiB less the %d parts recorded)\n%s", resent, layer-recorded, len(st.ETags), out)
	}
	// The layer's session was reused (no new session for it; the config's
	// small blob may take one), with one ask for fresh part URLs.
	if again.partAsks-first.partAsks != 1 || again.completions != 1 || again.sessions-first.sessions > 1 {
		t.Errorf("registry requests: first run %+v, then %+v", first, again)
	}
	if !strings.Contains(out, "resuming (") || !regexp.MustCompile(`resumed: \d+ parts`).MatchString(out) {
		t.Errorf("the output does not say it resumed:\n%s", out)
	}
	if sts := stateFiles(t); len(sts) != 0 {
		t.Errorf("resume state left after the push: %+v", sts)
	}
	checkPulled(t, c.dst, c.img)
}

// TestResumeSessionGone: the recorded session was cancelled meanwhile; the
// push says so and starts over.
func TestResumeSessionGone(t *testing.T) {
	c := newResumeCase(t, "resume/gone:1")
	st := c.interruptedPush(t)
	req, _ := http.NewRequest(http.MethodDelete, st.Location, nil)
	res, err := http.DefaultClient.Do(req)
	if err != nil || res.StatusCode != http.StatusNoContent {
		t.Fatalf("cancel the session: %v %v", res, err)
	}
	res.Body.Close()
	before := c.s3.sentBytes()
	out := cli(t, "push", "--part-size", "5", "oci:"+c.dir, c.dst)
	if got := c.s3.sentBytes() - before; got != 30*mib {
		t.Errorf("sent %d bytes after the session was gone, want all %d", got, 30*mib)
	}
	if !strings.Contains(out, "cannot be resumed") || !strings.Contains(out, "BLOB_UPLOAD_UNKNOWN") {
		t.Errorf("the output does not say why it started over:\n%s", out)
	}
	checkPulled(t, c.dst, c.img)
}

func TestNoResume(t *testing.T) {
	c := newResumeCase(t, "x:1")
	c.pushCanceled(t, 1, "--no-resume", "--part-size", "5", "oci:"+c.dir, c.dst)
	if sts := stateFiles(t); len(sts) != 0 {
		t.Errorf("--no-resume wrote states: %+v", sts)
	}
}

func TestMountFrom(t *testing.T) {
	reg := authRegistry(t)
	isolate(t)
	writeDockerConfig(t, aliceLogin(reg.host))
	s3 := countS3(t)
	img := testImage(t)
	dir := ociLayout(t, img, "1")
	cli(t, "push", "--part-size", "5", "oci:"+dir, reg.host+"/team-a/base:1")
	before, parts := reg.count.get(), s3.total()

	// The mount needs pull on team-a/base in alice's token: the CLI asks for it.
	out := cli(t, "push", "--mount-from", "team-a/nothing-here", "--mount-from", "team-a/base", "oci:"+dir, reg.host+"/team-a/app:1")
	c := reg.count.get()
	if c.mounts-before.mounts != 8 || c.sessions-before.sessions != 8 || c.deletes-before.deletes != 4 || c.partAsks != before.partAsks || c.monolithic != before.monolithic || s3.total() != parts {
		t.Errorf("mounting 4 blobs (the first source has none): before %+v, after %+v, parts %d → %d", before, c, parts, s3.total())
	}
	if n := strings.Count(out, "mounted from team-a/base"); n != 4 {
		t.Errorf("%d blobs mounted, want 4:\n%s", n, out)
	}
	checkPulled(t, reg.host+"/team-a/app:1", img)
}

// TestCopyWithinRegistryMounts: a copy between repositories of one registry
// mounts every blob, no bytes move.
func TestCopyWithinRegistryMounts(t *testing.T) {
	reg, s3 := isolatedRegistry(t, true, registry.DirectOptions{})
	img := testImage(t)
	r, _ := name.ParseReference(reg.host + "/local/src/app:1")
	if err := remote.Write(r, img); err != nil {
		t.Fatal(err)
	}
	before := reg.count.get()
	out := cli(t, "copy", reg.host+"/local/src/app:1", reg.host+"/local/dst/app:1")
	c := reg.count.get()
	if c.mounts-before.mounts != 4 || c.sessions-before.sessions != 4 || s3.total() != 0 || c.monolithic != before.monolithic {
		t.Errorf("copy within the registry: %+v → %+v, %d parts", before, c, s3.total())
	}
	if !strings.Contains(out, "0 blobs uploaded") || !strings.Contains(out, "4 mounted") {
		t.Errorf("summary:\n%s", out)
	}
	checkPulled(t, reg.host+"/local/dst/app:1", img)
}

// TestCredentialHelper: credentials from a docker-credential-* helper named
// by the Docker config's credHelpers (and credsStore), as docker login with
// a helper leaves them.
func TestCredentialHelper(t *testing.T) {
	reg := authRegistry(t)
	bin := t.TempDir()
	// The helper protocol: "get" reads the server URL on stdin, prints JSON.
	helper := "#!/bin/sh\n[ \"$1\" = get ] || exit 1\nread url\necho \"$url\" >> " + filepath.Join(bin, "asked") +
		"\necho '{\"ServerURL\":\"'$url'\",\"Username\":\"alice\",\"Secret\":\"alice-password-1234\"}'\n"
	if err := os.WriteFile(filepath.Join(bin, "docker-credential-airlocktest"), []byte(helper), 0o755); err != nil {
		t.Fatal(err)
	}
	t.Setenv("PATH", bin+string(os.PathListSeparator)+os.Getenv("PATH"))
	dir := ociLayout(t, testImage(t), "1")
	for i, doc := range []string{
		`{"credHelpers":{"` + reg.host + `":"airlocktest"}}`,
		`{"credsStore":"airlocktest"}`,
	} {
		isolate(t)
		writeDockerConfig(t, doc)
		_ = os.Remove(filepath.Join(bin, "asked"))
		cli(t, "push", "--quiet", "oci:"+dir, reg.host+"/team-a/helper:"+string(rune('1'+i)))
		asked, _ := os.ReadFile(filepath.Join(bin, "asked"))
		if !strings.Contains(string(asked), reg.host) {
			t.Errorf("config %s: the helper was not asked for %s (asked: %q)", doc, reg.host, asked)
		}
	}
}

// TestCredentialHelperMissing: a Docker config naming a helper that is not
// on PATH fails before any request, saying where the config is and the
// ways out.
func TestCredentialHelperMissing(t *testing.T) {
	reg := authRegistry(t)
	dir := ociLayout(t, oneLayerImage(t, 1000), "1")
	isolate(t)
	writeDockerConfig(t, `{"credsStore":"airlock-absent"}`)
	var out bytes.Buffer
	err := run(context.Background(), []string{"push", "oci:" + dir, reg.host + "/team-a/x:1"}, &out)
	if err == nil {
		t.Fatal("push with a missing credential helper succeeded")
	}
	for _, want := range []string{"docker-credential-airlock-absent", filepath.Join(os.Getenv("DOCKER_CONFIG"), "config.json"), "docker login " + reg.host} {
		if !strings.Contains(err.Error(), want) {
			t.Errorf("missing helper: %v\nwant it to name %q", err, want)
		}
	}
	if c := reg.count.get(); c.sessions != 0 {
		t.Errorf("%d upload sessions opened without credentials", c.sessions)
	}
}

func TestProgressBars(t *testing.T) {
	var buf bytes.Buffer
	b := &bars{w: &buf, width: 100, rows: map[v1.Hash]*row{}}
	big := v1.Hash{Algorithm: "sha256", Hex: strings.Repeat("a", 64)}
	other := v1.Hash{Algorithm: "sha256", Hex: strings.Repeat("c", 64)}
	small := v1.Hash{Algorithm: "sha256", Hex: strings.Repeat("b", 64)}
	b.sent(big, 60*mib, 15*mib)
	b.sent(other, 10*mib, 5*mib)
	b.state(small, 1024, "skipped (present)")
	b.draw()
	// A finished blob is a line above; the blobs in flight are bars.
	want := "\r\x1b[2Ksha256:bbbbbbbbbbbb [========================]     1.0/1.0 KiB skipped (present)\n" +
		"\r\x1b[2Ksha256:aaaaaaaaaaaa [======>                 ]    15.0/60.0 MiB uploading\n" +
		"\r\x1b[2Ksha256:cccccccccccc [============>           ]     5.0/10.0 MiB uploading\n"
	if got := buf.String(); got != want {
		t.Errorf("first frame:\n%q\nwant\n%q", got, want)
	}
	buf.Reset()
	b.logf("a message")
	b.sent(big, 60*mib, 45*mib)
	b.state(big, 60*mib, "done")
	b.state(other, 10*mib, "done")
	b.draw()
	// Up over the 2 bars; the message and the 2 finished lines replace them.
	if got := buf.String(); !strings.HasPrefix(got, "\x1b[2A\r\x1b[2Ka message\n\r\x1b[2Ksha256:aaaaaaaaaaaa [========================]    60.0/60.0 MiB done\n") ||
		!strings.HasSuffix(got, "10.0/10.0 MiB done\n") {
		t.Errorf("second frame: %q", got)
	}
	buf.Reset()
	b.sent(small, 1000, 1) // a row again, then gone: its line is cleared
	b.draw()
	b.state(small, 1000, "done")
	buf.Reset()
	b.draw()
	if got := buf.String(); !strings.HasPrefix(got, "\x1b[1A") || !strings.Contains(got, "done\n") {
		t.Errorf("third frame: %q", got)
	}
	// Not a terminal: plain lines.
	if _, ok := newProgress(&buf, false).(*lines); !ok {
		t.Error("progress on a buffer is not plain lines")
	}
}

// TestVerificationFailed: a layout blob damaged after it was written (same
// size, the old digest): the CLI's own hash stops it before the completion;
// without that check the registry's asynchronous verification refuses it
// and the push fails saying so, without waiting out verifyWait.
func TestVerificationFailed(t *testing.T) {
	reg, _ := isolatedRegistry(t, true, registry.DirectOptions{VerifyInline: -1})
	img := oneLayerImage(t, 12*mib)
	dir := ociLayout(t, img, "1")
	ls, _ := img.Layers()
	d, _ := ls[0].Digest()
	path := filepath.Join(dir, "blobs", d.Algorithm, d.Hex)
	b, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	b[len(b)/2] ^= 0xff
	if err := os.WriteFile(path, b, 0o644); err != nil {
		t.Fatal(err)
	}
	// The CLI hashes what it reads and stops before the completion.
	before := reg.count.get()
	var out bytes.Buffer
	err = run(context.Background(), []string{"push", "--part-size", "5", "oci:" + dir, reg.host + "/local/bad:1"}, &out)
	if err == nil || !strings.Contains(err.Error(), "damaged") || !strings.Contains(err.Error(), d.String()) {
		t.Fatalf("push of a damaged blob: %v\n%s", err, out.String())
	}
	if c := reg.count.get(); c.completions != before.completions || c.deletes != before.deletes+1 {
		t.Errorf("registry requests %+v → %+v: want no completion, the session cancelled", before, c)
	}

	// Without that check, the registry's verification refuses it.
	checkSource = false
	old := verifyWait
	verifyWait = time.Hour // the failure must end the wait, not the deadline
	t.Cleanup(func() { verifyWait, checkSource = old, true })
	out.Reset()
	err = run(context.Background(), []string{"push", "--part-size", "5", "oci:" + dir, reg.host + "/local/bad:1"}, &out)
	if err == nil || !strings.Contains(err.Error(), "verification failed") || !strings.Contains(err.Error(), d.String()) {
		t.Fatalf("push of a damaged blob: %v\n%s", err, out.String())
	}
	if !strings.Contains(out.String(), "verifying") {
		t.Errorf("the push did not wait for an asynchronous verification:\n%s", out.String())
	}
	res, err := http.Head("http://" + reg.host + "/v2/local/bad/blobs/" + d.String())
	if err != nil || res.StatusCode != http.StatusNotFound {
		t.Errorf("HEAD of the refused blob: %v %v, want 404", res, err)
	}
	if sts := stateFiles(t); len(sts) != 0 {
		t.Errorf("resume state left: %+v", sts)
	}
}

// syncBuffer is a bytes.Buffer safe for a writer and a reader at once.
type syncBuffer struct {
	mu sync.Mutex
	b  bytes.Buffer
}

func (s *syncBuffer) Write(p []byte) (int, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.b.Write(p)
}

func (s *syncBuffer) String() string {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.b.String()
}

// Two pushes of the same blob to the same repository at once: the second
// waits for the first's lock instead of sharing its resume state, then
// finds the blob present; the layer goes to S3 once.
func TestConcurrentPushesOfOneBlob(t *testing.T) {
	c := newResumeCase(t, "twice/app:1")
	var second syncBuffer
	secondDone := make(chan error, 1)
	started := false
	c.s3.after = func(n int) {
		if started {
			return
		}
		started = true // the first push has sent a part and holds the lock
		go func() {
			secondDone <- run(context.Background(), []string{"push", "oci:" + c.dir, c.dst}, &second)
		}()
		for i := 0; !strings.Contains(second.String(), "waiting (another airlock push"); i++ {
			if i == 3000 {
				t.Errorf("the second push did not wait for the first:\n%s", second.String())
				return
			}
			time.Sleep(20 * time.Millisecond)
		}
	}
	first := cli(t, "push", "--part-size", "5", "--parts", "2", "oci:"+c.dir, c.dst)
	c.s3.after = nil
	if err := <-secondDone; err != nil {
		t.Fatalf("second push: %v\n%s", err, second.String())
	}
	if got, want := c.s3.sentBytes(), int64(30*mib); got != want {
		t.Errorf("S3 took %d bytes from both pushes, want %d (the layer once)\nfirst:\n%s\nsecond:\n%s", got, want, first, second.String())
	}
	if !regexp.MustCompile(`0 blobs uploaded .*, [12] present`).MatchString(second.String()) {
		t.Errorf("the second push should find every blob present:\n%s", second.String())
	}
	if sts := stateFiles(t); len(sts) != 0 {
		t.Errorf("resume states left: %+v", sts)
	}
	checkPulled(t, c.dst, c.img)
}

// A --state-dir the CLI cannot use (here a regular file) fails the push
// with a message naming the ways out, before anything is sent to S3.
func TestStateDirUnusable(t *testing.T) {
	c := newResumeCase(t, "statedir/app:1")
	file := filepath.Join(t.TempDir(), "not-a-dir")
	if err := os.WriteFile(file, nil, 0o600); err != nil {
		t.Fatal(err)
	}
	var out bytes.Buffer
	err := run(context.Background(), []string{"push", "--state-dir", file, "oci:" + c.dir, c.dst}, &out)
	if err == nil || !strings.Contains(err.Error(), "resume state:") || !strings.Contains(err.Error(), "--no-resume") {
		t.Fatalf("push with --state-dir a file: %v, want a resume state error naming --state-dir and --no-resume\n%s", err, out.String())
	}
	if n := c.s3.total(); n != 0 {
		t.Errorf("%d part PUTs reached S3 before the state error", n)
	}
	// --no-resume takes no lock and writes no state: the same push works.
	cli(t, "push", "--state-dir", file, "--no-resume", "oci:"+c.dir, c.dst)
	checkPulled(t, c.dst, c.img)
}
