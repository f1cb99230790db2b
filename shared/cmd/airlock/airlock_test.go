package main

import (
	"bytes"
	"context"
	"crypto/rand"
	"encoding/base64"
	"errors"
	"flag"
	"io"
	"log"
	"log/slog"
	"net/http"
	"net/http/httptest"
	"net/url"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/google/go-containerregistry/pkg/authn"
	"github.com/google/go-containerregistry/pkg/name"
	ggcrregistry "github.com/google/go-containerregistry/pkg/registry"
	v1 "github.com/google/go-containerregistry/pkg/v1"
	"github.com/google/go-containerregistry/pkg/v1/empty"
	"github.com/google/go-containerregistry/pkg/v1/layout"
	"github.com/google/go-containerregistry/pkg/v1/mutate"
	"github.com/google/go-containerregistry/pkg/v1/partial"
	"github.com/google/go-containerregistry/pkg/v1/remote"
	"github.com/google/go-containerregistry/pkg/v1/static"
	"github.com/google/go-containerregistry/pkg/v1/tarball"
	"github.com/google/go-containerregistry/pkg/v1/types"

	"github.com/airlock-registry/airlock/shared/auth"
	"github.com/airlock-registry/airlock/shared/config"
	"github.com/airlock-registry/airlock/shared/registry"
	"github.com/airlock-registry/airlock/shared/storage/memstore"
)

// counts are the requests one test registry saw.
type counts struct {
	sessions    int   // POST /blobs/uploads/ (mounts included)
	mounts      int   // POST /blobs/uploads/?mount=
	deletes     int   // DELETE of a session
	partAsks    int   // POST <location>?size=
	completions int   // PUT ?airlock-complete=1
	monolithic  int   // PUT ?digest= with a body
	maxBody     int64 // largest request body
	// directAuthed counts part asks and completions with an Authorization.
	directAuthed int
}

type counter struct {
	mu sync.Mutex
	counts
}

func (c *counter) get() counts {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.counts
}

// testRegistry is an Airlock registry over memstore, with a hosted "local".
type testRegistry struct {
	host  string // host:port of the registry
	s3    string // host:port of the store's presign server
	count *counter
}

type stripDirect struct{ http.ResponseWriter }

func (w stripDirect) WriteHeader(code int) {
	w.Header().Del("Airlock-Direct-Upload")
	w.ResponseWriter.WriteHeader(code)
}

const testConfig = "default: local\nrepositories:\n- {name: local, kind: hosted}\n- {name: ro, kind: hosted, policy: read-only}\n"

func newRegistry(t *testing.T, direct bool, opts registry.DirectOptions) *testRegistry {
	t.Helper()
	return newRegistryConfig(t, testConfig, direct, opts, nil)
}

// newRegistryConfig is newRegistry with the configuration doc; setup runs
// on the registry before it serves.
func newRegistryConfig(t *testing.T, doc string, direct bool, opts registry.DirectOptions, setup func(*registry.Registry)) *testRegistry {
	t.Helper()
	return newRegistryWrapped(t, doc, direct, opts, setup, nil)
}

// newRegistryWrapped is newRegistryConfig with the registry's handler
// wrapped by wrap (if set; it sees the requests after the counter).
func newRegistryWrapped(t *testing.T, doc string, direct bool, opts registry.DirectOptions, setup func(*registry.Registry), wrap func(http.Handler) http.Handler) *testRegistry {
	t.Helper()
	st := memstore.New()
	t.Cleanup(func() { st.Close() })
	pu, err := st.PresignGet(context.Background(), "x", time.Minute)
	if err != nil {
		t.Fatal(err)
	}
	u, _ := url.Parse(pu)
	cfg, err := config.Parse([]byte(doc))
	if err != nil {
		t.Fatal(err)
	}
	reg, err := registry.New(registry.Deps{Meta: st, Blobs: st, Config: cfg, Direct: opts,
		AuthOptions: auth.Options{BcryptCost: 4},
		Logger:      slog.New(slog.NewTextHandler(t.Output(), &slog.HandlerOptions{Level: slog.LevelWarn}))})
	if err != nil {
		t.Fatal(err)
	}
	if setup != nil {
		setup(reg)
	}
	c := &counter{}
	var h http.Handler = reg
	if wrap != nil {
		h = wrap(reg)
	}
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		q := r.URL.Query()
		c.mu.Lock()
		switch {
		case r.Method == http.MethodPost && strings.HasSuffix(r.URL.Path, "/blobs/uploads/"):
			c.sessions++
			if q.Has("mount") {
				c.mounts++
			}
		case r.Method == http.MethodDelete && strings.Contains(r.URL.Path, "/blobs/uploads/"):
			c.deletes++
		case r.Method == http.MethodPost && q.Has("size"):
			c.partAsks++
			if r.Header.Get("Authorization") != "" {
				c.directAuthed++
			}
		case r.Method == http.MethodPut && q.Has("airlock-complete"):
			c.completions++
			if r.Header.Get("Authorization") != "" {
				c.directAuthed++
			}
		case r.Method == http.MethodPut && q.Has("digest") && r.ContentLength > 0:
			c.monolithic++
		}
		c.maxBody = max(c.maxBody, r.ContentLength)
		c.mu.Unlock()
		if !direct {
			w = stripDirect{w}
		}
		h.ServeHTTP(w, r)
	}))
	t.Cleanup(srv.Close)
	return &testRegistry{host: strings.TrimPrefix(srv.URL, "http://"), s3: u.Host, count: c}
}

// s3Counter counts the part PUTs per host (the CLI's S3 client).
type s3Counter struct {
	mu     sync.Mutex
	hosts  map[string]int
	bytes  int64 // part bytes S3 answered 200 to
	authed int   // requests with an Authorization header
	// after, if set, runs after each part S3 took (its count so far).
	after func(n int)
}

func (s *s3Counter) RoundTrip(r *http.Request) (*http.Response, error) {
	res, err := http.DefaultTransport.RoundTrip(r)
	s.mu.Lock()
	defer s.mu.Unlock()
	if r.Method == http.MethodPut {
		s.hosts[r.URL.Host]++
		if err == nil && res.StatusCode == http.StatusOK {
			s.bytes += r.ContentLength
		}
	}
	if r.Header.Get("Authorization") != "" {
		s.authed++
	}
	if s.after != nil && r.Method == http.MethodPut && err == nil {
		n := 0
		for _, v := range s.hosts {
			n += v
		}
		s.after(n)
	}
	return res, err
}

func (s *s3Counter) sentBytes() int64 {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.bytes
}

func (s *s3Counter) total() int {
	s.mu.Lock()
	defer s.mu.Unlock()
	n := 0
	for _, v := range s.hosts {
		n += v
	}
	return n
}

func countS3(t *testing.T) *s3Counter {
	c := &s3Counter{hosts: map[string]int{}}
	old := s3Client
	s3Client = &http.Client{Transport: c}
	t.Cleanup(func() { s3Client = old })
	return c
}

func randomBytes(t *testing.T, n int) []byte {
	b := make([]byte, n)
	if _, err := rand.Read(b); err != nil {
		t.Fatal(err)
	}
	return b
}

// testImage is a 3-layer image: 12 MiB, 300 KiB and 1 KiB of random bytes.
func testImage(t *testing.T) v1.Image {
	t.Helper()
	img := mutate.MediaType(empty.Image, types.OCIManifestSchema1)
	img = mutate.ConfigMediaType(img, types.OCIConfigJSON)
	var ls []v1.Layer
	for _, n := range []int{12 << 20, 300 << 10, 1 << 10} {
		ls = append(ls, static.NewLayer(randomBytes(t, n), types.OCILayer))
	}
	img, err := mutate.AppendLayers(img, ls...)
	if err != nil {
		t.Fatal(err)
	}
	return img
}

func ociLayout(t *testing.T, img v1.Image, tag string) string {
	t.Helper()
	dir := t.TempDir()
	p, err := layout.Write(dir, empty.Index)
	if err != nil {
		t.Fatal(err)
	}
	if err := p.AppendImage(img, layout.WithAnnotations(map[string]string{"org.opencontainers.image.ref.name": tag})); err != nil {
		t.Fatal(err)
	}
	return dir
}

// cli runs the command line, failing the test on an error.
func cli(t *testing.T, args ...string) string {
	t.Helper()
	var out bytes.Buffer
	if err := run(context.Background(), args, &out); err != nil {
		t.Fatalf("airlock %s: %v\n%s", strings.Join(args, " "), err, out.String())
	}
	return out.String()
}

// checkPulled pulls ref and compares it with want (digests and content).
func checkPulled(t *testing.T, ref string, want v1.Image) {
	t.Helper()
	r, err := name.ParseReference(ref)
	if err != nil {
		t.Fatal(err)
	}
	got, err := remote.Image(r, remote.WithAuthFromKeychain(authn.DefaultKeychain))
	if err != nil {
		t.Fatalf("pull %s: %v", ref, err)
	}
	gd, _ := got.Digest()
	wd, _ := want.Digest()
	if gd != wd {
		t.Fatalf("pulled %s has digest %s, want %s", ref, gd, wd)
	}
	gl, _ := got.Layers()
	wl, _ := want.Layers()
	if len(gl) != len(wl) {
		t.Fatalf("pulled %d layers, want %d", len(gl), len(wl))
	}
	for i := range gl {
		a, _ := gl[i].Digest()
		b, _ := wl[i].Digest()
		if a != b {
			t.Fatalf("layer %d: %s, want %s", i, a, b)
		}
	}
	checkContent(t, got)
}

// checkContent reads every blob of img and checks its digest and size.
func checkContent(t *testing.T, img v1.Image) {
	t.Helper()
	cl, err := partial.ConfigLayer(img)
	if err != nil {
		t.Fatal(err)
	}
	ls, err := img.Layers()
	if err != nil {
		t.Fatal(err)
	}
	for _, l := range append(ls, cl) {
		d, _ := l.Digest()
		size, _ := l.Size()
		rc, err := l.Compressed()
		if err != nil {
			t.Fatalf("blob %s: %v", d, err)
		}
		got, n, err := v1.SHA256(rc)
		rc.Close()
		if err != nil || got != d || n != size {
			t.Fatalf("blob %s: read %d bytes of digest %s (%v), want %d", d, n, got, err, size)
		}
	}
}

func isolate(t *testing.T) {
	t.Setenv("DOCKER_CONFIG", t.TempDir())  // no credentials of the machine
	t.Setenv("XDG_CACHE_HOME", t.TempDir()) // resume states of this test only
}

// isolatedRegistry isolates the test and returns newRegistry's registry and
// the counter of the CLI's S3 requests.
func isolatedRegistry(t *testing.T, direct bool, opts registry.DirectOptions) (*testRegistry, *s3Counter) {
	t.Helper()
	isolate(t)
	reg := newRegistry(t, direct, opts)
	return reg, countS3(t)
}

func TestPushOCILayoutDirect(t *testing.T) {
	reg, s3 := isolatedRegistry(t, true, registry.DirectOptions{})
	img := testImage(t)
	dir := ociLayout(t, img, "1")
	dst := reg.host + "/local/team/app:1"

	out := cli(t, "push", "--part-size", "5", "oci:"+dir+":1", dst)
	c := reg.count.get()
	// 12 MiB in 5 MiB parts: 3 parts, all to the store's host; the two
	// small blobs (300 KiB layer, config) and the 1 KiB layer by PUT.
	if s3.hosts[reg.s3] != 3 || s3.total() != 3 {
		t.Fatalf("part PUTs by host: %v, want 3 to the store %s", s3.hosts, reg.s3)
	}
	if c.sessions != 4 || c.partAsks != 1 || c.completions != 1 || c.monolithic != 3 {
		t.Fatalf("registry requests: %+v", c)
	}
	if c.maxBody > 1<<20 {
		t.Fatalf("the registry got a body of %d bytes: layer bytes went through it", c.maxBody)
	}
	if !strings.Contains(out, "12582912/12582912 done") {
		t.Fatalf("progress lacks the big layer's done line:\n%s", out)
	}
	checkPulled(t, dst, img)

	// Again: every blob is present, none uploaded; the manifest is PUT again.
	out = cli(t, "push", "oci:"+dir, reg.host+"/local/team/app:2")
	if c2 := reg.count.get(); c2.sessions != c.sessions || s3.total() != 3 {
		t.Fatalf("second push uploaded: %+v, parts %v", c2, s3.hosts)
	}
	if n := strings.Count(out, "skipped"); n != 4 {
		t.Fatalf("second push skipped %d blobs, want 4:\n%s", n, out)
	}
	checkPulled(t, reg.host+"/local/team/app:2", img)
}

func TestPushDockerArchiveStandard(t *testing.T) {
	reg, s3 := isolatedRegistry(t, false, registry.DirectOptions{})
	img := testImage(t)
	file := filepath.Join(t.TempDir(), "img.tar")
	tag, _ := name.NewTag("example.com/app:1")
	if err := tarball.WriteToFile(file, tag, img); err != nil {
		t.Fatal(err)
	}
	want, err := tarball.ImageFromPath(file, nil)
	if err != nil {
		t.Fatal(err)
	}
	dst := reg.host + "/local/app:1"
	cli(t, "push", "docker-archive:"+file, dst)
	c := reg.count.get()
	if s3.total() != 0 || c.partAsks != 0 || c.completions != 0 || c.monolithic != 4 {
		t.Fatalf("without the advertisement: registry %+v, S3 %v; want 4 standard PUTs", c, s3.hosts)
	}
	checkPulled(t, dst, want)
}

// TestPushDockerArchiveTag: docker-archive:<file>:<name:tag> picks one
// image of a tarball of several (the tag has colons, and slashes); without
// a tag, or with one the tarball lacks, the error lists its tags.
func TestPushDockerArchiveTag(t *testing.T) {
	reg, _ := isolatedRegistry(t, false, registry.DirectOptions{})
	file := filepath.Join(t.TempDir(), "img.tar")
	ta, _ := name.NewTag("example.com/team/a:1")
	tb, _ := name.NewTag("b:2")
	if err := tarball.MultiRefWriteToFile(file, map[name.Reference]v1.Image{ta: oneLayerImage(t, 1000), tb: oneLayerImage(t, 2000)}); err != nil {
		t.Fatal(err)
	}
	for _, c := range []struct {
		tag name.Tag
		arg string
		dst string
	}{{ta, "example.com/team/a:1", "/local/a:1"}, {tb, "b:2", "/local/b:1"}} {
		cli(t, "push", "--quiet", "docker-archive:"+file+":"+c.arg, reg.host+c.dst)
		want, err := tarball.ImageFromPath(file, &c.tag) // as the tarball holds it
		if err != nil {
			t.Fatal(err)
		}
		checkPulled(t, reg.host+c.dst, want)
	}
	for _, c := range []struct{ suffix, want string }{
		{"", "holds 2 images: name one with docker-archive:" + file + ":<name:tag>"},
		{":b:3", `no image tagged "b:3"`},
	} {
		var out bytes.Buffer
		err := run(context.Background(), []string{"push", "docker-archive:" + file + c.suffix, reg.host + "/local/c:1"}, &out)
		if err == nil || !strings.Contains(err.Error(), c.want) || !strings.Contains(err.Error(), "tags: b:2, example.com/team/a:1") {
			t.Errorf("docker-archive:<file>%s: %v, want %q and the tags", c.suffix, err, c.want)
		}
	}
}

// TestDockerArchiveDamaged: a file that is not a tarball, and a 'docker
// save' tarball cut short, fail before any request, naming the file and
// how to make it again; nothing is pushed.
func TestDockerArchiveDamaged(t *testing.T) {
	reg, _ := isolatedRegistry(t, false, registry.DirectOptions{})
	dir := t.TempDir()
	file := filepath.Join(dir, "img.tar")
	tag, _ := name.NewTag("example.com/app:1")
	if err := tarball.WriteToFile(file, tag, testImage(t)); err != nil {
		t.Fatal(err)
	}
	full, err := os.ReadFile(file)
	if err != nil {
		t.Fatal(err)
	}
	cut := filepath.Join(dir, "cut.tar")
	notTar := filepath.Join(dir, "notes.txt")
	if err := os.WriteFile(cut, full[:len(full)/2], 0o600); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(notTar, []byte("not a tarball\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	for _, f := range []string{cut, notTar} {
		var out bytes.Buffer
		err := run(context.Background(), []string{"push", "docker-archive:" + f, reg.host + "/local/app:1"}, &out)
		if err == nil || !strings.Contains(err.Error(), f) || !strings.Contains(err.Error(), "docker save -o") {
			t.Errorf("push of %s: %v, want an error naming the file and docker save", f, err)
		}
	}
	if c := reg.count.get(); c.sessions != 0 {
		t.Errorf("%d upload sessions opened for damaged archives", c.sessions)
	}
}

func TestCopyFromAnotherRegistry(t *testing.T) {
	isolate(t)
	src := httptest.NewServer(ggcrregistry.New(ggcrregistry.Logger(log.New(io.Discard, "", 0))))
	t.Cleanup(src.Close)
	img := testImage(t)
	srcRef := strings.TrimPrefix(src.URL, "http://") + "/upstream/app:v1"
	r, _ := name.ParseReference(srcRef)
	if err := remote.Write(r, img); err != nil {
		t.Fatal(err)
	}
	// VerifyInline -1: every direct upload is verified asynchronously (202,
	// then HEAD until present).
	reg := newRegistry(t, true, registry.DirectOptions{VerifyInline: -1})
	s3 := countS3(t)
	dst := reg.host + "/local/copied:v1"
	out := cli(t, "copy", "--part-size", "5", "--jobs", "2", "--parts", "2", srcRef, dst)
	if s3.hosts[reg.s3] != 3 {
		t.Fatalf("part PUTs: %v", s3.hosts)
	}
	if !strings.Contains(out, "verifying") {
		t.Fatalf("no asynchronous verification seen:\n%s", out)
	}
	checkPulled(t, dst, img)
}

func TestCopyIndex(t *testing.T) {
	isolate(t)
	src := newRegistry(t, true, registry.DirectOptions{})
	a, b := testImage(t), testImage(t)
	idx := mutate.AppendManifests(empty.Index,
		mutate.IndexAddendum{Add: a, Descriptor: v1.Descriptor{Platform: &v1.Platform{OS: "linux", Architecture: "amd64"}}},
		mutate.IndexAddendum{Add: b, Descriptor: v1.Descriptor{Platform: &v1.Platform{OS: "linux", Architecture: "arm64"}}})
	r, _ := name.ParseReference(src.host + "/local/multi:1")
	if err := remote.WriteIndex(r, idx); err != nil {
		t.Fatal(err)
	}
	dst := newRegistry(t, true, registry.DirectOptions{})
	cli(t, "copy", "--quiet", src.host+"/local/multi:1", dst.host+"/local/multi:1")
	dr, _ := name.ParseReference(dst.host + "/local/multi:1")
	got, err := remote.Index(dr)
	if err != nil {
		t.Fatal(err)
	}
	gd, _ := got.Digest()
	wd, _ := idx.Digest()
	if gd != wd {
		t.Fatalf("index digest %s, want %s", gd, wd)
	}
	for _, want := range []v1.Image{a, b} {
		wd, _ := want.Digest()
		img, err := got.Image(wd)
		if err != nil {
			t.Fatal(err)
		}
		checkContent(t, img)
	}
}

func TestErrors(t *testing.T) {
	isolate(t)
	reg := newRegistry(t, true, registry.DirectOptions{})
	dir := ociLayout(t, testImage(t), "1")
	usage := func(args ...string) {
		t.Helper()
		var out bytes.Buffer
		err := run(context.Background(), args, &out)
		var ue usageError
		if !errors.As(err, &ue) {
			t.Errorf("airlock %q: %v, want a usage error", args, err)
		}
	}
	usage()
	usage("frobnicate")
	usage("push")
	usage("push", "oci:"+dir)
	usage("push", "oci:"+dir, reg.host+"/local/a", "extra")
	usage("push", "--jobs", "0", "oci:"+dir, reg.host+"/local/a")
	usage("push", "--part-size", "1", "oci:"+dir, reg.host+"/local/a")
	usage("push", "--part-size", "8x", "oci:"+dir, reg.host+"/local/a")
	usage("push", "--part-size", "16.5", "oci:"+dir, reg.host+"/local/a")
	usage("push", "--nope", "oci:"+dir, reg.host+"/local/a")
	usage("push", "tar:"+dir, reg.host+"/local/a")
	usage("push", "oci:"+dir, "UPPER/Case::x")

	for _, cmd := range []string{"push", "copy"} {
		var out bytes.Buffer
		if err := run(context.Background(), []string{cmd, "--help"}, &out); !errors.Is(err, flag.ErrHelp) || !strings.Contains(out.String(), "-part-size") {
			t.Errorf("%s --help: %v\n%s", cmd, err, out.String())
		}
	}

	// A tag with colons and slashes (as skopeo writes ref.name) is one tag.
	long := ociLayout(t, testImage(t), "example.com/team/app:1.0")
	cli(t, "push", "--quiet", "oci:"+long+":example.com/team/app:1.0", reg.host+"/local/long:1")

	// A missing tag names the tags there are.
	var out bytes.Buffer
	err := run(context.Background(), []string{"push", "oci:" + dir + ":nope", reg.host + "/local/a:1"}, &out)
	if err == nil || !strings.Contains(err.Error(), `no image tagged "nope"`) || !strings.Contains(err.Error(), "tags: 1") {
		t.Errorf("missing tag: %v", err)
	}
	// A registry refusal names the request, the status and the registry's message.
	err = run(context.Background(), []string{"push", "oci:" + dir, reg.host + "/ro/a:1"}, &out)
	if err == nil || !strings.Contains(err.Error(), "answered") {
		t.Errorf("unknown repository: %v", err)
	} else {
		t.Logf("unknown repository: %v", err)
	}
}

const authConfig = `
default: local
repositories:
- {name: local, kind: hosted}
auth:
  tokenLifetime: 5m
  roles:
  - name: team-a
    privileges:
    - repositories: [local]
      selector: 'path =^ "/v2/team-a/"'
      actions: [read, browse, add, edit]
`

// authRegistry is a registry with direct uploads under authConfig, with an
// admin and the user alice (password alice-password-1234) of team-a.
func authRegistry(t *testing.T) *testRegistry {
	t.Helper()
	return newRegistryConfig(t, authConfig, true, registry.DirectOptions{}, func(r *registry.Registry) {
		ctx := context.Background()
		if _, err := r.Auth().Users.Bootstrap(ctx, "admin", "admin-password-1234"); err != nil {
			t.Fatal(err)
		}
		if err := r.Auth().Users.CreateUser(ctx, "alice", "alice-password-1234", []string{"team-a"}); err != nil {
			t.Fatal(err)
		}
	})
}

// aliceLogin is a Docker config with alice's credentials for host, as
// docker login writes it.
func aliceLogin(host string) string {
	return `{"auths":{"` + host + `":{"auth":"` + base64.StdEncoding.EncodeToString([]byte("alice:alice-password-1234")) + `"}}}`
}

// writeDockerConfig writes doc as the config.json of $DOCKER_CONFIG.
func writeDockerConfig(t *testing.T, doc string) {
	t.Helper()
	if err := os.WriteFile(filepath.Join(os.Getenv("DOCKER_CONFIG"), "config.json"), []byte(doc), 0o600); err != nil {
		t.Fatal(err)
	}
}

// TestPushWithDockerLogin: credentials come from the Docker config (as
// docker login writes them); the registry's direct-upload requests carry
// the token, the presigned S3 PUTs carry no credentials.
func TestPushWithDockerLogin(t *testing.T) {
	reg := authRegistry(t)
	s3 := countS3(t)
	dir := ociLayout(t, testImage(t), "1")
	dst := reg.host + "/team-a/app:1"

	// Anonymous: refused, saying so.
	isolate(t)
	var out bytes.Buffer
	err := run(context.Background(), []string{"push", "oci:" + dir, dst}, &out)
	if err == nil || !strings.Contains(err.Error(), "docker login "+reg.host) {
		t.Fatalf("anonymous push: %v", err)
	}

	t.Setenv("DOCKER_CONFIG", t.TempDir())
	writeDockerConfig(t, aliceLogin(reg.host))
	cli(t, "push", "--part-size", "5", "oci:"+dir, dst)
	c := reg.count.get()
	if c.partAsks != 1 || c.completions != 1 || c.directAuthed != 2 {
		t.Fatalf("direct requests to the registry: %+v (want both authenticated)", c)
	}
	if s3.hosts[reg.s3] != 3 || s3.authed != 0 {
		t.Fatalf("S3 part PUTs: %v, %d with an Authorization header (want 3, none)", s3.hosts, s3.authed)
	}
}
