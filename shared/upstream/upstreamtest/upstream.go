package upstreamtest

import (
	"context"
	"errors"
	"io"
	"log"
	"net"
	"net/http"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/google/go-containerregistry/pkg/registry"
)

// Upstream is a running upstream registry. Create it with [New]; it is shut
// down when the test that created it ends. All methods are safe for
// concurrent use.
type Upstream struct {
	// URL is the registry's base URL, http://127.0.0.1:<port>. It stays the
	// same across FaultDown and back.
	URL string
	// CDNURL is the base URL of the blob CDN, http://localhost:<port>, or ""
	// without [WithBlobRedirect].
	CDNURL string

	t     testing.TB
	opts  options
	inner http.Handler         // ggcr's registry
	blobs registry.BlobHandler // its blob store, which the CDN reads too
	main  *server              // serves handleMain at URL
	cdn   *server              // serves handleCDN at CDNURL, or nil
	ready chan struct{}        // closed when New has filled in URL and CDNURL
	done  chan struct{}        // closed when the test ends
	wg    sync.WaitGroup       // handlers in flight; Add only under mu and while !closed
	fmu   sync.Mutex           // serializes SetFault, which may stop and start main

	mu sync.Mutex
	state
}

// state is everything that changes while the Upstream runs; it is guarded
// by Upstream.mu.
type state struct {
	closed    bool
	fault     Fault
	head401   bool
	remaining int                          // rate-limit budget left
	records   []*Request                   // everything seen, in order
	tokens    map[string]map[string]string // token -> repo -> actions
	cdnPaths  map[string]string            // secret CDN path -> blob digest
}

type options struct {
	token    bool
	user     string
	pass     string
	redirect bool
}

// Option configures [New].
type Option func(*options)

// WithToken makes the registry demand a bearer token the way Docker Hub does.
// A /v2/ request without a valid "Authorization: Bearer <token>" is answered
// 401 with
//
//	WWW-Authenticate: Bearer realm="<URL>/token",service="upstreamtest",scope="repository:<name>:pull"
//
// (no scope on /v2/ itself; "pull,push" for writes) and an UNAUTHORIZED error
// body. GET /token?service=upstreamtest&scope=... issues a random opaque
// token for the scopes asked. With user non-empty the token endpoint demands
// HTTP Basic user:pass (401 otherwise) and grants pull and push; with user
// empty it hands anonymous pull tokens to anyone, like Docker Hub for public
// images. A token authorizes only the repositories named in its scopes.
func WithToken(user, pass string) Option {
	return func(o *options) { o.token, o.user, o.pass = true, user, pass }
}

// WithBlobRedirect makes blob GETs (not HEADs) answer 307 Temporary Redirect
// to a second server, the CDN, at http://localhost:<port> (a different host
// from the registry's 127.0.0.1, so HTTP clients treat it as foreign). Each
// redirect names a fresh unguessable path; the CDN serves the blob's bytes
// there (Range supported) and 404 anywhere else. See [Upstream.CDNAuthLeaks].
func WithBlobRedirect() Option {
	return func(o *options) { o.redirect = true }
}

// rateLimit is the ratelimit-limit Docker Hub announces to anonymous users.
const (
	rateLimit       = 100
	rateLimitWindow = ";w=21600"
)

// New starts an upstream registry for the test t and stops it when t ends.
func New(t testing.TB, opts ...Option) *Upstream {
	t.Helper()
	u := &Upstream{t: t, ready: make(chan struct{}), done: make(chan struct{})}
	for _, o := range opts {
		o(&u.opts)
	}
	u.blobs = registry.NewInMemoryBlobHandler()
	u.inner = registry.New(
		registry.Logger(log.New(io.Discard, "", 0)),
		registry.WithBlobHandler(u.blobs),
		registry.WithReferrersSupport(true),
	)
	u.remaining = rateLimit
	u.tokens = map[string]map[string]string{}
	u.cdnPaths = map[string]string{}

	u.main = &server{handler: u.track(u.handleMain)}
	if err := u.main.start("127.0.0.1:0"); err != nil {
		t.Fatalf("upstreamtest: %v", err)
	}
	u.URL = "http://" + u.main.addr
	if u.opts.redirect {
		u.cdn = &server{handler: u.track(u.handleCDN)}
		if err := u.cdn.start("127.0.0.1:0"); err != nil {
			u.main.stop()
			t.Fatalf("upstreamtest: %v", err)
		}
		_, port, _ := net.SplitHostPort(u.cdn.addr)
		u.CDNURL = "http://localhost:" + port
	}
	close(u.ready)
	t.Cleanup(u.close)
	return u
}

// Host returns the registry's host:port, 127.0.0.1:<port>, as image
// references name it.
func (u *Upstream) Host() string { return strings.TrimPrefix(u.URL, "http://") }

// Ref returns the image reference of repo at a tag or digest:
// "<Host>/<repo>:<tag>" or "<Host>/<repo>@<digest>".
func (u *Upstream) Ref(repo, tagOrDigest string) string {
	if strings.Contains(tagOrDigest, ":") {
		return u.Host() + "/" + repo + "@" + tagOrDigest
	}
	return u.Host() + "/" + repo + ":" + tagOrDigest
}

// Fail401OnHEAD makes manifest HEADs by digest answer 401 UNAUTHORIZED (with
// the bearer challenge under [WithToken]) even when authorized, as some
// registries refuse HEAD; GETs and HEADs by tag are unaffected.
func (u *Upstream) Fail401OnHEAD(on bool) {
	u.mu.Lock()
	u.head401 = on
	u.mu.Unlock()
}

// RateLimitRemaining returns the rate-limit budget left, as the last
// ratelimit-remaining header announced it. It starts at 100; each manifest
// GET answered 200 takes one and announces what is left, HEADs and 304s
// announce it without taking; it stops at 0 and is never enforced (use
// FaultTooManyRequests for that).
func (u *Upstream) RateLimitRemaining() int {
	u.mu.Lock()
	defer u.mu.Unlock()
	return u.remaining
}

// close stops both servers and waits (briefly) for handlers to return.
func (u *Upstream) close() {
	u.mu.Lock()
	u.closed = true
	u.mu.Unlock()
	close(u.done)
	u.main.stop()
	if u.cdn != nil {
		u.cdn.stop()
	}
	finished := make(chan struct{})
	go func() { u.wg.Wait(); close(finished) }()
	select {
	case <-finished:
	case <-time.After(5 * time.Second):
		u.t.Errorf("upstreamtest: handlers still running 5s after the test ended")
	}
}

// track wraps a handler so that close can wait for it.
func (u *Upstream) track(h http.HandlerFunc) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		<-u.ready
		u.mu.Lock()
		if u.closed {
			u.mu.Unlock()
			return
		}
		u.wg.Add(1)
		u.mu.Unlock()
		defer u.wg.Done()
		h(w, r)
	})
}

// server is an HTTP server that can stop listening and later listen again on
// the same address.
type server struct {
	handler http.Handler
	mu      sync.Mutex
	addr    string // fixed by the first start
	srv     *http.Server
}

// start listens on addr (the first time) or on the address it had before,
// retrying briefly if the port is not yet free again.
func (s *server) start(addr string) error {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.srv != nil {
		return nil
	}
	if s.addr != "" {
		addr = s.addr
	}
	var ln net.Listener
	var err error
	for i := 0; i < 50; i++ {
		if ln, err = net.Listen("tcp", addr); err == nil {
			break
		}
		time.Sleep(20 * time.Millisecond)
	}
	if err != nil {
		return err
	}
	s.addr = ln.Addr().String()
	s.srv = &http.Server{
		Handler:           s.handler,
		ReadHeaderTimeout: 10 * time.Second,
		ErrorLog:          log.New(io.Discard, "", 0),
	}
	go s.srv.Serve(ln) //nolint:errcheck // returns when stop closes it
	return nil
}

// stop closes the listener and every open connection: new connections are
// refused and requests in flight see their connection (and context) go.
func (s *server) stop() {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.srv == nil {
		return
	}
	_ = s.srv.Close()
	s.srv = nil
}

// sleep waits for d, or until ctx is done or the test has ended.
func (u *Upstream) sleep(ctx context.Context, d time.Duration) error {
	if d <= 0 {
		return nil
	}
	tm := time.NewTimer(d)
	defer tm.Stop()
	select {
	case <-tm.C:
		return nil
	case <-ctx.Done():
		return ctx.Err()
	case <-u.done:
		return errors.New("upstreamtest: closed")
	}
}
