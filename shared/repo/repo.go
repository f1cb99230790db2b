package repo

import (
	"context"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net/http"
	"os"
	"strings"
	"time"

	digest "github.com/opencontainers/go-digest"
	ocispec "github.com/opencontainers/image-spec/specs-go/v1"

	"github.com/airlock-registry/airlock/shared/config"
	"github.com/airlock-registry/airlock/shared/storage"
	"github.com/airlock-registry/airlock/shared/upstream"
)

// Ref is a manifest reference: a tag or a digest (exactly one is set).
type Ref struct {
	Tag    string
	Digest digest.Digest
}

func (r Ref) String() string {
	if r.Tag != "" {
		return r.Tag
	}
	return r.Digest.String()
}

// Manifest is a manifest as a repository serves it.
type Manifest struct {
	storage.Manifest
	// Warning, when set, is a Warning header for the response (a stale copy
	// served while the upstream is unreachable).
	Warning string
}

// Repository is what one configured repository serves, whatever its kind.
type Repository interface {
	// Name is the repository's configured name.
	Name() string
	// Kind is its kind.
	Kind() config.Kind
	// Manifest returns the manifest ref names in image.
	Manifest(ctx context.Context, image string, ref Ref) (Manifest, error)
	// Blob returns where the blob's bytes are, for a GET (a proxy fills its
	// cache first; it may return *UnavailableError or *RedirectError).
	Blob(ctx context.Context, image string, d digest.Digest) (storage.Blob, error)
	// BlobInfo returns the blob's size for a HEAD without filling a cache
	// (Key may be empty when the bytes are not stored here).
	BlobInfo(ctx context.Context, image string, d digest.Digest) (storage.Blob, error)
	// Cached returns the blob's link when the repository stores it, with no
	// remote call (the source of a cross-repository mount).
	Cached(ctx context.Context, image string, d digest.Digest) (storage.Blob, error)
	// Tags lists up to n tags (n <= 0: all) after last, in lexical order.
	Tags(ctx context.Context, image, last string, n int) (storage.Page, error)
	// Referrers lists the descriptors of manifests whose subject is subject.
	Referrers(ctx context.Context, image string, subject digest.Digest) ([]ocispec.Descriptor, error)
	// Push returns the hosted repository that takes pushes addressed to this
	// one, or a *DeniedError naming where to push instead.
	Push() (*Hosted, error)
}

// Deps are what the repositories need.
type Deps struct {
	Meta   storage.Metadata
	Blobs  storage.Blobs
	Logger *slog.Logger
	// Now is the clock (default time.Now).
	Now func() time.Time
	// Proxy tunes proxy repositories.
	Proxy ProxyOptions
}

// ProxyOptions tune every proxy repository.
type ProxyOptions struct {
	// Handoff hands a blob fill that outlived its budget to the proxyfetch
	// function (Lambda: an asynchronous invoke; localdev: a goroutine). nil:
	// the fill is left for the scheduled retry (Set.RetryFills).
	Handoff func(ctx context.Context, job FillJob) error
	// Transport is the base HTTP transport to remotes (tests wrap it).
	Transport http.RoundTripper
	// Secret resolves credentials.passwordSecret (Lambda: Secrets Manager or
	// SSM). nil: passwordSecret is refused at start.
	Secret func(ctx context.Context, ref string) (string, error)
	// UpstreamTimeout bounds one metadata call to a remote (manifest HEAD or
	// GET, tags): default 10s, and never more than the request has left.
	UpstreamTimeout time.Duration
	// BlockAfter is the number of consecutive remote failures that blocks the
	// remote (default 3); BlockBase the first back-off (default 30s), doubled
	// on every further failure up to BlockMax (default 10m).
	BlockAfter          int
	BlockBase, BlockMax time.Duration
	// Poll is how often a request waiting for another's fill checks (default 250ms).
	Poll time.Duration
	// FillUntilDeadline lets a blob fill run until the request's own
	// deadline (less 2 s to answer) when that is later than the proxy's
	// fill budget: a front door that waits as long as the function runs (a
	// Lambda function URL, up to 15 min) fills a large layer inside the
	// request instead of handing it off. Without it the fill budget applies,
	// capped by the deadline (API Gateway's 30 s).
	FillUntilDeadline bool
	// LeaseTTL bounds a fill lease of a crashed filler (default 15m, the
	// proxyfetch function's limit).
	LeaseTTL time.Duration
}

func (o *ProxyOptions) defaults() {
	if o.UpstreamTimeout == 0 {
		o.UpstreamTimeout = 10 * time.Second
	}
	if o.BlockAfter == 0 {
		o.BlockAfter = 3
	}
	if o.BlockBase == 0 {
		o.BlockBase = 30 * time.Second
	}
	if o.BlockMax == 0 {
		o.BlockMax = 10 * time.Minute
	}
	if o.Poll == 0 {
		o.Poll = 250 * time.Millisecond
	}
	if o.LeaseTTL == 0 {
		o.LeaseTTL = 15 * time.Minute
	}
}

// Set is every configured repository, and the resolver of request names.
type Set struct {
	cfg   *config.Config
	repos map[string]Repository
	deps  *Deps
}

// New builds the repositories of cfg. Proxy credentials are resolved now
// (passwordEnv from the environment, passwordSecret through ProxyOptions.Secret).
func New(ctx context.Context, cfg *config.Config, d Deps) (*Set, error) {
	if d.Meta == nil || d.Blobs == nil || cfg == nil {
		return nil, errors.New("repo: Meta, Blobs and a configuration are required")
	}
	if d.Logger == nil {
		d.Logger = slog.New(slog.NewTextHandler(io.Discard, nil))
	}
	if d.Now == nil {
		d.Now = time.Now
	}
	d.Proxy.defaults()
	s := &Set{cfg: cfg, repos: map[string]Repository{}, deps: &d}
	for i := range cfg.Repositories {
		rc := &cfg.Repositories[i]
		switch rc.Kind {
		case config.KindHosted:
			s.repos[rc.Name] = s.hosted(rc)
		case config.KindProxy:
			p, err := s.proxy(ctx, rc)
			if err != nil {
				return nil, fmt.Errorf("repository %q: %w", rc.Name, err)
			}
			s.repos[rc.Name] = p
		case config.KindGroup: // after every other repository exists
		default:
			return nil, fmt.Errorf("repository %q: kind %q is not supported", rc.Name, rc.Kind)
		}
	}
	for i := range cfg.Repositories {
		if rc := &cfg.Repositories[i]; rc.Kind == config.KindGroup {
			g, err := s.group(rc)
			if err != nil {
				return nil, fmt.Errorf("repository %q: %w", rc.Name, err)
			}
			s.repos[rc.Name] = g
		}
	}
	return s, nil
}

func (s *Set) group(rc *config.Repository) (*Group, error) {
	br, ok := s.deps.Meta.(storage.BatchReader)
	if !ok {
		return nil, fmt.Errorf("the metadata store %T cannot read a group's members together (storage.BatchReader)", s.deps.Meta)
	}
	g := &Group{cfg: rc, batch: br, deps: s.deps}
	for _, name := range s.cfg.Reachable(rc.Name) {
		l := s.repos[name]
		g.leaves = append(g.leaves, l)
		if h, ok := l.(*Hosted); ok {
			g.hosted = append(g.hosted, h)
		}
	}
	if rc.WriteMember != "" {
		g.write, _ = s.repos[rc.WriteMember].(*Hosted)
	}
	return g, nil
}

func (s *Set) hosted(rc *config.Repository) *Hosted {
	return &Hosted{cfg: rc, meta: s.deps.Meta, blobs: s.deps.Blobs, deps: s.deps}
}

func (s *Set) proxy(ctx context.Context, rc *config.Repository) (*Proxy, error) {
	pm, ok := s.deps.Meta.(proxyMeta)
	if !ok {
		return nil, fmt.Errorf("the metadata store %T cannot hold a proxy's state (storage.ProxyMetadata)", s.deps.Meta)
	}
	o := upstream.Options{Remote: rc.Remote, Transport: s.deps.Proxy.Transport}
	if c := rc.Credentials; c != nil {
		o.Username = c.Username
		switch {
		case c.PasswordEnv != "":
			v, ok := os.LookupEnv(c.PasswordEnv)
			if !ok || v == "" {
				return nil, fmt.Errorf("credentials.passwordEnv: environment variable %s is not set", c.PasswordEnv)
			}
			o.Password = v
		case s.deps.Proxy.Secret == nil:
			return nil, errors.New("credentials.passwordSecret is resolved only on Lambda; set passwordEnv for localdev")
		default:
			v, err := s.deps.Proxy.Secret(ctx, c.PasswordSecret)
			if err != nil {
				return nil, fmt.Errorf("credentials.passwordSecret: %w", err)
			}
			o.Password = v
		}
	}
	up, err := upstream.New(o)
	if err != nil {
		return nil, err
	}
	hc := *rc
	hc.Kind, hc.Policy = config.KindHosted, config.PolicyAllow
	return &Proxy{cfg: rc, cache: s.hosted(&hc), meta: pm, up: up, deps: s.deps, set: s}, nil
}

// Get returns the repository named name.
func (s *Set) Get(name string) (Repository, bool) {
	r, ok := s.repos[name]
	return r, ok
}

// Default returns the default repository, if one is configured.
func (s *Set) Default() (Repository, bool) {
	if s.cfg.Default == "" {
		return nil, false
	}
	return s.Get(s.cfg.Default)
}

// Resolve maps a request name to a repository and the image name inside it:
// the first component selects a repository when it names one (and more
// components follow); otherwise the default repository takes the whole name.
//
// ns is containerd's ?ns=<registry> (hosts.toml mirrors): the request is
// for that registry's image of that name. A proxy of that registry takes it.
// Docker Hub ("docker.io") is what unprefixed names already mean (Docker's
// registry-mirrors), so without a Docker Hub proxy it resolves as above.
// Any other registry is served only by a proxy of it: resolving quay.io's
// or ghcr.io's names in the default repository would hand out another
// registry's image (often Docker Hub's, where anyone may publish under that
// name) as theirs, so it is a NotFoundError that names the fix, and
// containerd goes on to the registry itself.
func (s *Set) Resolve(name, ns string) (Repository, string, error) {
	if ns != "" {
		for _, rc := range s.cfg.Repositories {
			if p, isProxy := s.repos[rc.Name].(*Proxy); isProxy && strings.EqualFold(p.up.Host(), ns) {
				return p, name, nil
			}
		}
		if !strings.EqualFold(ns, "docker.io") {
			if len(ns) > 255 {
				ns = ns[:255] + "…"
			}
			return nil, "", &NotFoundError{Msg: fmt.Sprintf("this registry mirrors %q only through a proxy repository of it, and none is configured: "+
				"add one (kind: proxy, remote: https://%s) or pull from %s directly", ns, ns, ns)}
		}
	}
	first, rest, ok := strings.Cut(name, "/")
	if r, found := s.repos[first]; found && ok {
		return r, rest, nil
	}
	if r, found := s.Default(); found {
		return r, name, nil
	}
	return nil, "", &NotFoundError{Msg: fmt.Sprintf("%q names no repository and no default repository is configured", name)}
}

// Proxies returns the proxy repositories, in configuration order.
func (s *Set) Proxies() []*Proxy {
	var out []*Proxy
	for _, rc := range s.cfg.Repositories {
		if p, ok := s.repos[rc.Name].(*Proxy); ok {
			out = append(out, p)
		}
	}
	return out
}
