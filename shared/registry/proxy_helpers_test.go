package registry_test

import (
	"context"
	"crypto/sha256"
	"encoding/hex"
	"fmt"
	"io"
	"log/slog"
	"net/http"
	"net/http/httptest"
	"strings"
	"sync"
	"testing"
	"time"

	gname "github.com/google/go-containerregistry/pkg/name"
	"github.com/google/go-containerregistry/pkg/v1/remote"

	"github.com/airlock-registry/airlock/shared/registry"
	"github.com/airlock-registry/airlock/shared/repo"
	"github.com/airlock-registry/airlock/shared/storage/memstore"
	"github.com/airlock-registry/airlock/shared/upstream/upstreamtest"
)

// clock is a settable test clock shared by the registry and its store.
type clock struct {
	mu  sync.Mutex
	now time.Time
}

func (c *clock) Now() time.Time {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.now
}

func (c *clock) Advance(d time.Duration) {
	c.mu.Lock()
	c.now = c.now.Add(d)
	c.mu.Unlock()
}

// proxyEnv is a registry over an in-memory store with a proxy "hub" of up.
type proxyEnv struct {
	t     *testing.T
	up    *upstreamtest.Upstream
	store *memstore.Store
	clock *clock
	reg   *registry.Registry
	srv   *httptest.Server
	// handoffs counts fills handed to proxyfetch (run in-process).
	handoffs sync.WaitGroup
	mu       sync.Mutex
	jobs     []repo.FillJob
	parkedAt []int64 // the parked upload's offset of each job
	// log records every request the registry received.
	log atomicLog
}

// proxyConfig is the configuration of proxyEnv: %s is the remote, then the
// extra settings of hub (indented by 4).
const proxyConfig = `
default: local
repositories:
- {name: local, kind: hosted}
- name: hub
  kind: proxy
  remote: %s
%s`

// newProxyEnv starts a registry whose "hub" proxies up; settings are extra
// YAML lines of hub ("  metadataMaxAge: 0s").
func newProxyEnv(t *testing.T, up *upstreamtest.Upstream, settings string, opts ...func(*registry.Deps)) *proxyEnv {
	t.Helper()
	e := &proxyEnv{t: t, up: up, clock: &clock{now: time.Now()}}
	e.store = memstore.New(memstore.WithClock(func() time.Time { return e.clock.Now() }))
	t.Cleanup(func() { e.handoffs.Wait(); e.store.Close() })
	deps := registry.Deps{
		Meta: e.store, Blobs: e.store,
		Config: mustConfig(t, sprintf(proxyConfig, up.URL, settings)),
		Logger: slog.New(slog.NewTextHandler(t.Output(), &slog.HandlerOptions{Level: slog.LevelWarn})),
		Now:    e.clock.Now,
		Proxy: repo.ProxyOptions{
			Poll:            10 * time.Millisecond,
			UpstreamTimeout: 5 * time.Second, // generous: CI machines are loaded
			BlockBase:       time.Minute,
			Handoff: func(_ context.Context, job repo.FillJob) error {
				var off int64
				if u, err := e.store.GetUpload(context.Background(), job.UploadID); err == nil {
					off = u.Offset
				}
				e.mu.Lock()
				e.jobs = append(e.jobs, job)
				e.parkedAt = append(e.parkedAt, off)
				e.mu.Unlock()
				e.handoffs.Add(1)
				go func() {
					defer e.handoffs.Done()
					ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
					defer cancel()
					if err := e.reg.Repositories().RunFill(ctx, job); err != nil {
						t.Logf("proxyfetch RunFill (left for the scheduled retry): %v", err)
					}
				}()
				return nil
			},
		},
	}
	for _, o := range opts {
		o(&deps)
	}
	var err error
	if e.reg, err = registry.New(deps); err != nil {
		t.Fatalf("registry.New: %v", err)
	}
	e.srv = httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		e.log.add(r.Method+" "+r.URL.Path, 0)
		e.reg.ServeHTTP(w, r)
	}))
	t.Cleanup(e.srv.Close)
	return e
}

// get sends a request to the proxy registry (redirects not followed).
func (e *proxyEnv) do(method, path string, hdr ...string) resp {
	e.t.Helper()
	req, err := http.NewRequest(method, e.srv.URL+path, nil)
	if err != nil {
		e.t.Fatal(err)
	}
	for i := 0; i+1 < len(hdr); i += 2 {
		req.Header.Add(hdr[i], hdr[i+1])
	}
	res, err := noRedirect.Do(req)
	if err != nil {
		e.t.Fatalf("%s %s: %v", method, path, err)
	}
	defer res.Body.Close()
	b, _ := io.ReadAll(res.Body)
	return resp{Status: res.StatusCode, Header: res.Header, Body: b}
}

// pullBlob GETs a blob through the proxy and follows its 307 to the store,
// returning the bytes' sha256 digest ("" and the response when not a 307).
func (e *proxyEnv) pullBlob(path string) (string, resp) {
	e.t.Helper()
	r := e.do(http.MethodGet, path)
	if r.Status != http.StatusTemporaryRedirect {
		return "", r
	}
	res, err := http.Get(r.Header.Get("Location"))
	if err != nil {
		e.t.Fatalf("GET presigned %s: %v", path, err)
	}
	defer res.Body.Close()
	h := sha256.New()
	if _, err := io.Copy(h, res.Body); err != nil {
		e.t.Fatalf("read presigned %s: %v", path, err)
	}
	if res.StatusCode != http.StatusOK {
		e.t.Fatalf("GET presigned %s: %d", path, res.StatusCode)
	}
	return "sha256:" + hex.EncodeToString(h.Sum(nil)), r
}

// pull pulls image:tag through the proxy as a client does: the manifest by
// tag, then every blob. It fails the test on any error.
func (e *proxyEnv) pull(name, tag string, img *upstreamtest.Image) {
	e.t.Helper()
	r := e.do(http.MethodGet, "/v2/"+name+"/manifests/"+tag, "Accept", string(img.MediaType))
	if r.Status != http.StatusOK || r.Header.Get("Docker-Content-Digest") != img.Digest {
		e.t.Fatalf("manifest %s:%s: %s (digest %q, want %s)", name, tag, r, r.Header.Get("Docker-Content-Digest"), img.Digest)
	}
	if string(r.Body) != string(img.Manifest) {
		e.t.Fatalf("manifest %s:%s: body differs from the upstream's bytes", name, tag)
	}
	for _, d := range img.Blobs() {
		got, r := e.pullBlob("/v2/" + name + "/blobs/" + d)
		if got != d {
			e.t.Fatalf("blob %s of %s: got %q: %s", d, name, got, r)
		}
	}
}

func sprintf(format string, args ...any) string {
	return strings.TrimLeft(fmt.Sprintf(format, args...), "\n")
}

// atomicLog records "METHOD path status" lines.
type atomicLog struct {
	mu    sync.Mutex
	lines []string
}

func (l *atomicLog) add(req string, status int) {
	l.mu.Lock()
	l.lines = append(l.lines, fmt.Sprintf("%s %d", req, status))
	l.mu.Unlock()
}

func (l *atomicLog) all() []string {
	l.mu.Lock()
	defer l.mu.Unlock()
	return append([]string(nil), l.lines...)
}

func (l *atomicLog) reset() {
	l.mu.Lock()
	l.lines = nil
	l.mu.Unlock()
}

// statusRecorder remembers the status a handler wrote.
type statusRecorder struct {
	http.ResponseWriter
	status int
}

func (s *statusRecorder) WriteHeader(code int) {
	s.status = code
	s.ResponseWriter.WriteHeader(code)
}

// copyImage pushes img to the repository at repoURL (http://host/v2/<name>)
// with go-containerregistry, tag img.Tag.
func copyImage(t *testing.T, img *upstreamtest.Image, repoURL string) {
	t.Helper()
	hostName := strings.TrimPrefix(repoURL, "http://")
	host, name, _ := strings.Cut(hostName, "/v2/")
	ref, err := gname.ParseReference(host+"/"+name+":"+img.Tag, gname.Insecure)
	if err != nil {
		t.Fatal(err)
	}
	if err := remote.Write(ref, img.Image); err != nil {
		t.Fatalf("push %s: %v", ref, err)
	}
}

// deadProxyGroup is a configuration of a group "docker" over the hosted
// "local" (its write member) and a proxy "hub" whose remote never answers
// (nothing listens on port 1), with def as the default repository.
func deadProxyGroup(def string) string {
	return "default: " + def + `
repositories:
- {name: local, kind: hosted}
- {name: hub, kind: proxy, remote: "http://127.0.0.1:1"}
- {name: docker, kind: group, members: [local, hub], writeMember: local}
`
}
