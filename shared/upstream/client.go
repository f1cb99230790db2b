package upstream

import (
	"context"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"net/url"
	"strconv"
	"strings"
	"sync"
	"time"

	"github.com/google/go-containerregistry/pkg/authn"
	"github.com/google/go-containerregistry/pkg/name"
	"github.com/google/go-containerregistry/pkg/v1/remote/transport"
)

// Kind classifies an upstream failure.
type Kind int

// Kinds of failure.
const (
	// Unavailable: the remote could not be reached or answered 5xx.
	Unavailable Kind = iota
	// NotFound: the remote answered 404 (or 401/403 for a name it does not
	// know, as Docker Hub does; see Denied).
	NotFound
	// Denied: the remote refused the proxy's credentials (401/403).
	Denied
	// RateLimited: the remote answered 429.
	RateLimited
	// Invalid: the remote answered something unusable (a body that is not
	// what was asked, a digest mismatch, an oversized manifest).
	Invalid
)

func (k Kind) String() string {
	switch k {
	case Unavailable:
		return "unavailable"
	case NotFound:
		return "not found"
	case Denied:
		return "denied"
	case RateLimited:
		return "rate limited"
	case Invalid:
		return "invalid answer"
	}
	return "kind(" + strconv.Itoa(int(k)) + ")"
}

// Error is an upstream failure.
type Error struct {
	Kind   Kind
	Status int // HTTP status, 0 when no answer came
	// RetryAfter is the remote's Retry-After header (429, 503).
	RetryAfter string
	Remote     string
	Err        error
}

func (e *Error) Error() string {
	s := fmt.Sprintf("upstream %s: %s", e.Remote, e.Kind)
	if e.Status != 0 {
		s += fmt.Sprintf(" (HTTP %d)", e.Status)
	}
	if e.Err != nil {
		s += ": " + e.Err.Error()
	}
	return s
}

func (e *Error) Unwrap() error { return e.Err }

// IsKind reports whether err is an *Error of kind k.
func IsKind(err error, k Kind) bool {
	var e *Error
	return errors.As(err, &e) && e.Kind == k
}

// ManifestAccept is the Accept header sent for manifests: every media type
// the registry stores.
var ManifestAccept = []string{
	"application/vnd.oci.image.index.v1+json",
	"application/vnd.docker.distribution.manifest.list.v2+json",
	"application/vnd.oci.image.manifest.v1+json",
	"application/vnd.docker.distribution.manifest.v2+json",
}

// MaxManifestSize caps a manifest read from the remote.
const MaxManifestSize = 4 << 20

// Options configure a Client.
type Options struct {
	// Remote is the registry's base URL (scheme and host).
	Remote string
	// Username and Password authenticate to the remote ("" = anonymous).
	Username, Password string
	// Transport is the base round tripper (default: a clone of http.DefaultTransport).
	Transport http.RoundTripper
	// TransportTTL bounds how long an authenticated transport is reused (default 4m).
	TransportTTL time.Duration
}

// Client talks to one remote registry.
type Client struct {
	remote  *url.URL
	reg     name.Registry
	hub     bool
	auth    authn.Authenticator
	base    http.RoundTripper
	ttl     time.Duration
	mu      sync.Mutex
	clients map[string]cachedClient
}

type cachedClient struct {
	c     *http.Client
	until time.Time
}

// maxCachedClients bounds the transports kept (one per image name).
const maxCachedClients = 1024

// dockerHubHosts are the hosts of Docker Hub's registry API.
var dockerHubHosts = map[string]bool{"registry-1.docker.io": true, "index.docker.io": true, "docker.io": true, "registry.hub.docker.com": true}

// New returns a client of the remote.
func New(o Options) (*Client, error) {
	u, err := url.Parse(o.Remote)
	if err != nil || u.Host == "" || (u.Scheme != "http" && u.Scheme != "https") {
		return nil, fmt.Errorf("upstream: remote %q is not an http(s) URL", o.Remote)
	}
	var opts []name.Option
	if u.Scheme == "http" {
		opts = append(opts, name.Insecure)
	}
	reg, err := name.NewRegistry(u.Host, opts...)
	if err != nil {
		return nil, fmt.Errorf("upstream: remote %q: %w", o.Remote, err)
	}
	c := &Client{remote: u, reg: reg, hub: dockerHubHosts[u.Hostname()], base: o.Transport, ttl: o.TransportTTL, clients: map[string]cachedClient{}}
	if c.base == nil {
		c.base = http.DefaultTransport.(*http.Transport).Clone()
	}
	if u.Scheme == "https" {
		// go-containerregistry's ping falls back to plain http for loopback
		// and private addresses; an https remote must never be downgraded
		// (credentials and tokens would travel in clear).
		c.base = httpsOnly{c.base}
	}
	if c.ttl == 0 {
		c.ttl = 4 * time.Minute
	}
	c.auth = authn.Anonymous
	if o.Username != "" {
		c.auth = &authn.Basic{Username: o.Username, Password: o.Password}
	}
	return c, nil
}

// DockerHub reports whether the remote is Docker Hub.
func (c *Client) DockerHub() bool { return c.hub }

// Remote returns the remote's base URL.
func (c *Client) Remote() string { return c.remote.Scheme + "://" + c.remote.Host }

// Host returns the remote's host (the registry a containerd ?ns= names:
// "docker.io" for Docker Hub).
func (c *Client) Host() string {
	if c.hub {
		return "docker.io"
	}
	return c.remote.Host
}

// RemoteName is the name of image at the remote: Docker Hub's official
// images are library/<name>.
func (c *Client) RemoteName(image string) string {
	if c.hub && !strings.Contains(image, "/") {
		return "library/" + image
	}
	return image
}

// fail classifies a transport-level error.
func (c *Client) fail(err error) *Error {
	var te *transport.Error
	if errors.As(err, &te) {
		return c.statusErr(te.StatusCode, "", err)
	}
	var ue *Error
	if errors.As(err, &ue) {
		return ue
	}
	return &Error{Kind: Unavailable, Remote: c.Remote(), Err: cleanNetErr(err)}
}

// cleanNetErr keeps the useful part of a network error.
func cleanNetErr(err error) error {
	var ne net.Error
	if errors.As(err, &ne) && ne.Timeout() {
		return errors.New("timed out")
	}
	if errors.Is(err, context.DeadlineExceeded) {
		return errors.New("timed out")
	}
	return err
}

func (c *Client) statusErr(status int, retryAfter string, err error) *Error {
	e := &Error{Status: status, RetryAfter: retryAfter, Remote: c.Remote(), Err: err}
	switch {
	case status == http.StatusNotFound:
		e.Kind = NotFound
	case status == http.StatusUnauthorized || status == http.StatusForbidden:
		e.Kind = Denied
	case status == http.StatusTooManyRequests:
		e.Kind = RateLimited
	case status >= 500:
		e.Kind = Unavailable
	default:
		e.Kind = Invalid
	}
	return e
}

// client returns the authenticated HTTP client for one image (scope pull).
func (c *Client) client(ctx context.Context, image string) (*http.Client, error) {
	rn := c.RemoteName(image)
	c.mu.Lock()
	cc, ok := c.clients[rn]
	c.mu.Unlock()
	if ok && time.Now().Before(cc.until) {
		return cc.c, nil
	}
	scope := c.reg.Repo(rn).Scope(transport.PullScope)
	rt, err := transport.NewWithContext(ctx, c.reg, c.auth, c.base, []string{scope})
	if err != nil {
		return nil, c.fail(err)
	}
	hc := &http.Client{Transport: rt}
	c.mu.Lock()
	if len(c.clients) >= maxCachedClients { // bounded memory: start over
		clear(c.clients)
	}
	c.clients[rn] = cachedClient{hc, time.Now().Add(c.ttl)}
	c.mu.Unlock()
	return hc, nil
}

// url returns the remote URL of /v2/<image>/<rest>.
func (c *Client) url(image, rest string) string {
	return c.Remote() + "/v2/" + c.RemoteName(image) + "/" + rest
}

// do sends one request for image and classifies non-2xx answers (except
// those in ok) as errors; the caller closes the body of the response.
func (c *Client) do(ctx context.Context, image, method, u string, h http.Header, ok ...int) (*http.Response, error) {
	hc, err := c.client(ctx, image)
	if err != nil {
		return nil, err
	}
	req, err := http.NewRequestWithContext(ctx, method, u, nil)
	if err != nil {
		return nil, &Error{Kind: Invalid, Remote: c.Remote(), Err: err}
	}
	for k, vs := range h {
		req.Header[k] = vs
	}
	resp, err := hc.Do(req)
	if err != nil {
		return nil, c.fail(err)
	}
	if resp.StatusCode/100 == 2 {
		return resp, nil
	}
	for _, s := range ok {
		if resp.StatusCode == s {
			return resp, nil
		}
	}
	msg, _ := io.ReadAll(io.LimitReader(resp.Body, 1024))
	resp.Body.Close()
	err = fmt.Errorf("%s %s: %s", method, resp.Request.URL.Redacted(), strings.TrimSpace(string(msg)))
	if len(msg) == 0 {
		err = fmt.Errorf("%s %s: %s", method, resp.Request.URL.Redacted(), resp.Status)
	}
	return nil, c.statusErr(resp.StatusCode, resp.Header.Get("Retry-After"), err)
}

// RateLimit returns Docker Hub's ratelimit-* headers of a response, for logs.
func RateLimit(h http.Header) (limit, remaining string) {
	return h.Get("Ratelimit-Limit"), h.Get("Ratelimit-Remaining")
}

// httpsOnly refuses plain-http requests (the remote is https).
type httpsOnly struct{ inner http.RoundTripper }

func (h httpsOnly) RoundTrip(r *http.Request) (*http.Response, error) {
	if r.URL.Scheme != "https" {
		return nil, fmt.Errorf("refusing plain-http request to %s: the remote is https (no downgrade)", r.URL.Host)
	}
	return h.inner.RoundTrip(r)
}
