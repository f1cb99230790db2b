// Package config reads Airlock's repository configuration: a YAML document
// listing named repositories (hosted, proxy and group), the default
// repository that takes names whose first component names none, and the
// optional auth section (auth.go: users' roles and privileges) and purge
// settings (purge.go: top-level and per repository).
//
// Parsing is strict: unknown fields, unknown kinds and policies, bad
// durations and regexes are errors naming the repository and the field.
// Durations are Go duration strings ("6h", "90s").
package config

import (
	"errors"
	"fmt"
	"net/url"
	"os"
	"regexp"
	"slices"
	"strings"
	"time"

	"sigs.k8s.io/yaml"
)

// Kind is the kind of a repository.
type Kind string

// Kinds of repository.
const (
	KindHosted Kind = "hosted"
	KindProxy  Kind = "proxy"
	KindGroup  Kind = "group"
)

// Policy is the deployment policy of a hosted repository (Nexus's names).
type Policy string

// Deployment policies.
const (
	PolicyAllow                       Policy = "allow"
	PolicyDisableRedeploy             Policy = "disable-redeploy"
	PolicyDisableRedeployExceptLatest Policy = "disable-redeploy-except-latest"
	PolicyReadOnly                    Policy = "read-only"
)

// OnTimeout is what a proxy answers a blob GET whose cache fill outlives the
// fill budget.
type OnTimeout string

// Fill time-out answers.
const (
	// OnTimeoutRetry answers 503 with Retry-After while the proxyfetch
	// function finishes the fill (air-gapped clients cannot reach the upstream).
	OnTimeoutRetry OnTimeout = "retry"
	// OnTimeoutRedirect answers 307 to the upstream's own blob URL.
	OnTimeoutRedirect OnTimeout = "redirect"
)

// Proxy defaults.
const (
	DefaultMetadataMaxAge   = 6 * time.Hour
	DefaultNegativeCacheTTL = time.Minute
	DefaultFillBudget       = 20 * time.Second
)

// Config is the whole configuration document.
type Config struct {
	// Default names the repository that serves names whose first path
	// component is not a repository name ("" = such names are unknown).
	Default      string       `json:"default,omitempty"`
	Repositories []Repository `json:"repositories"`
	// Auth switches authentication on (nil: every request is allowed).
	Auth *Auth `json:"auth,omitempty"`
	// Purge configures the scheduled purge (nil: every default; purge.go).
	Purge *Purge `json:"purge,omitempty"`
}

// Repository is one named repository.
type Repository struct {
	Name string `json:"name"`
	Kind Kind   `json:"kind"`
	// Policy is the deployment policy of a hosted repository (default allow).
	Policy Policy `json:"policy,omitempty"`
	// AnonymousPull lets anyone read the repository (with auth on); for a
	// group it applies to pulls through the group.
	AnonymousPull bool `json:"anonymousPull,omitempty"`

	// Remote is the upstream registry URL of a proxy repository
	// (https://registry-1.docker.io; http:// is allowed).
	Remote string `json:"remote,omitempty"`
	// Credentials authenticate the proxy to its remote (optional).
	Credentials *Credentials `json:"credentials,omitempty"`
	// MetadataMaxAge is how long a cached tag is served without asking the
	// remote (0: revalidate on every pull; default 6h when unset).
	MetadataMaxAge *Duration `json:"metadataMaxAge,omitempty"`
	// NegativeCacheTTL is how long "not found upstream" is remembered (default 1m; 0: never).
	NegativeCacheTTL *Duration `json:"negativeCacheTTL,omitempty"`
	// Fill bounds blob cache fills.
	Fill *Fill `json:"fill,omitempty"`
	// ForeignLayers controls caching of layers that live outside the remote.
	ForeignLayers *ForeignLayers `json:"foreignLayers,omitempty"`
	// SearchIndex is the base URL of a Docker Hub v1 search index whose
	// results docker search merges (default https://index.docker.io for a
	// Docker Hub remote, none otherwise; "none" disables).
	SearchIndex string `json:"searchIndex,omitempty"`

	// Members are the ordered member repositories of a group (hosted, proxy
	// or group): the first that has the content serves it.
	Members []string `json:"members,omitempty"`
	// WriteMember is the hosted repository, reachable through the members,
	// that takes pushes addressed to the group ("": the group refuses them).
	WriteMember string `json:"writeMember,omitempty"`

	// Purge configures the purge tasks of a hosted or proxy repository
	// (purge.go; absent: nothing of it is deleted).
	Purge *RepoPurge `json:"purge,omitempty"`
}

// Credentials of a proxy's remote. The password is never in the document:
// PasswordEnv names an environment variable (localdev), PasswordSecret a
// Secrets Manager ARN or SSM parameter (Lambda).
type Credentials struct {
	Username       string `json:"username"`
	PasswordEnv    string `json:"passwordEnv,omitempty"`
	PasswordSecret string `json:"passwordSecret,omitempty"`
}

// Fill configures blob cache fills of a proxy.
type Fill struct {
	// Budget is how long a blob GET may wait for a fill (default 20s).
	Budget *Duration `json:"budget,omitempty"`
	// OnTimeout is the answer once the budget is spent (default retry).
	OnTimeout OnTimeout `json:"onTimeout,omitempty"`
}

// ForeignLayers configures foreign layers (descriptors with urls).
type ForeignLayers struct {
	Enabled bool `json:"enabled"`
	// Allow lists full-match regular expressions of URLs that may be fetched.
	Allow []string `json:"allow,omitempty"`
}

// Duration is a time.Duration written as a Go duration string.
type Duration struct{ time.Duration }

// UnmarshalJSON reads "6h" (a number is refused: its unit would be a guess).
func (d *Duration) UnmarshalJSON(b []byte) error {
	s := string(b)
	if len(s) < 2 || s[0] != '"' {
		return fmt.Errorf("duration %s: want a quoted Go duration such as \"6h\" or \"90s\"", s)
	}
	v, err := time.ParseDuration(s[1 : len(s)-1])
	if err != nil {
		return fmt.Errorf("duration %s: %w", s, err)
	}
	if v < 0 {
		return fmt.Errorf("duration %s is negative", s)
	}
	d.Duration = v
	return nil
}

// MarshalJSON writes the duration string.
func (d Duration) MarshalJSON() ([]byte, error) { return []byte(`"` + d.String() + `"`), nil }

func durationOr(d *Duration, def time.Duration) time.Duration {
	if d == nil {
		return def
	}
	return d.Duration
}

// MaxAge returns the proxy's metadataMaxAge (default DefaultMetadataMaxAge).
func (r *Repository) MaxAge() time.Duration {
	return durationOr(r.MetadataMaxAge, DefaultMetadataMaxAge)
}

// NegativeTTL returns the proxy's negativeCacheTTL (default DefaultNegativeCacheTTL).
func (r *Repository) NegativeTTL() time.Duration {
	return durationOr(r.NegativeCacheTTL, DefaultNegativeCacheTTL)
}

// FillBudget returns the proxy's fill budget (default DefaultFillBudget).
func (r *Repository) FillBudget() time.Duration {
	if r.Fill == nil {
		return DefaultFillBudget
	}
	return durationOr(r.Fill.Budget, DefaultFillBudget)
}

// FillOnTimeout returns the proxy's fill time-out answer (default retry).
func (r *Repository) FillOnTimeout() OnTimeout {
	if r.Fill == nil || r.Fill.OnTimeout == "" {
		return OnTimeoutRetry
	}
	return r.Fill.OnTimeout
}

var repoName = regexp.MustCompile(`^[a-z0-9]+(?:[._-][a-z0-9]+)*$`)

// Parse reads and validates a YAML (or JSON) configuration document.
func Parse(doc []byte) (*Config, error) {
	var c Config
	if err := yaml.UnmarshalStrict(doc, &c); err != nil {
		return nil, fmt.Errorf("parse configuration: %w", err)
	}
	if err := c.validate(); err != nil {
		return nil, err
	}
	return &c, nil
}

// Load reads the configuration from a file.
func Load(path string) (*Config, error) {
	b, err := os.ReadFile(path)
	if err != nil {
		return nil, fmt.Errorf("read configuration: %w", err)
	}
	c, err := Parse(b)
	if err != nil {
		return nil, fmt.Errorf("%s: %w", path, err)
	}
	return c, nil
}

// FromEnv reads the configuration from the environment variable name: either
// the YAML document itself or "file:<path>".
func FromEnv(name string) (*Config, error) {
	v := os.Getenv(name)
	if v == "" {
		return nil, fmt.Errorf("%s is not set", name)
	}
	if p, ok := strings.CutPrefix(v, "file:"); ok {
		return Load(p)
	}
	return Parse([]byte(v))
}

// Repository returns the repository with that name.
func (c *Config) Repository(name string) (*Repository, bool) {
	for i := range c.Repositories {
		if c.Repositories[i].Name == name {
			return &c.Repositories[i], true
		}
	}
	return nil, false
}

func (c *Config) validate() error {
	if len(c.Repositories) == 0 {
		return errors.New("configuration lists no repositories")
	}
	seen := map[string]bool{}
	for i := range c.Repositories {
		r := &c.Repositories[i]
		if !repoName.MatchString(r.Name) {
			return fmt.Errorf("repository %q: name must match %s", r.Name, repoName)
		}
		if seen[r.Name] {
			return fmt.Errorf("repository %q is listed twice", r.Name)
		}
		seen[r.Name] = true
		var err error
		switch r.Kind {
		case KindHosted:
			err = r.validateHosted()
		case KindProxy:
			err = r.validateProxy()
		case KindGroup:
			err = r.validateGroup()
		default:
			err = fmt.Errorf("unknown kind %q (hosted, proxy, group)", r.Kind)
		}
		if err == nil {
			err = r.validatePurge()
		}
		if err != nil {
			return fmt.Errorf("repository %q: %w", r.Name, err)
		}
	}
	if c.Default != "" && !seen[c.Default] {
		return fmt.Errorf("default repository %q is not listed", c.Default)
	}
	if err := c.validateGroups(); err != nil {
		return err
	}
	if err := c.validatePurge(); err != nil {
		return err
	}
	return c.validateAuth()
}

func (r *Repository) validateGroup() error {
	if r.Policy != "" || r.Remote != "" || r.Credentials != nil || r.MetadataMaxAge != nil || r.NegativeCacheTTL != nil || r.Fill != nil || r.ForeignLayers != nil || r.SearchIndex != "" {
		return errors.New("a group takes only members and writeMember (the members' own settings apply)")
	}
	if len(r.Members) == 0 {
		return errors.New("members is required: the ordered repositories the group serves")
	}
	seen := map[string]bool{}
	for _, m := range r.Members {
		if seen[m] {
			return fmt.Errorf("member %q is listed twice", m)
		}
		seen[m] = true
	}
	return nil
}

// validateGroups checks what needs every repository: members exist, no
// group reaches itself, a writeMember is a hosted repository the group
// reaches through its members.
func (c *Config) validateGroups() error {
	for i := range c.Repositories {
		r := &c.Repositories[i]
		if r.Kind != KindGroup {
			continue
		}
		for _, m := range r.Members {
			if _, ok := c.Repository(m); !ok {
				return fmt.Errorf("repository %q: member %q is not listed", r.Name, m)
			}
		}
		if path := c.cycle(r.Name, r.Name, nil); path != nil {
			return fmt.Errorf("repository %q: members form a cycle: %s", r.Name, strings.Join(path, " -> "))
		}
		if r.WriteMember == "" {
			continue
		}
		w, ok := c.Repository(r.WriteMember)
		if !ok {
			return fmt.Errorf("repository %q: writeMember %q is not listed", r.Name, r.WriteMember)
		}
		if w.Kind != KindHosted {
			return fmt.Errorf("repository %q: writeMember %q is a %s repository; it must be a hosted one", r.Name, r.WriteMember, w.Kind)
		}
		if !slices.Contains(c.Reachable(r.Name), r.WriteMember) {
			return fmt.Errorf("repository %q: writeMember %q is not one of its members (directly or through a member group)", r.Name, r.WriteMember)
		}
	}
	return nil
}

// cycle returns the path from start back to target through group members, or nil.
func (c *Config) cycle(target, at string, path []string) []string {
	r, _ := c.Repository(at)
	if r == nil || r.Kind != KindGroup {
		return nil
	}
	path = append(path, at)
	for _, m := range r.Members {
		if m == target {
			return append(path, m)
		}
		if slices.Contains(path, m) {
			continue
		}
		if p := c.cycle(target, m, path); p != nil {
			return p
		}
	}
	return nil
}

// Reachable returns the repositories a group serves, in lookup order (depth
// first through member groups, each once), excluding groups themselves.
func (c *Config) Reachable(group string) []string {
	var out []string
	seen := map[string]bool{}
	var walk func(name string)
	walk = func(name string) {
		if seen[name] {
			return
		}
		seen[name] = true
		r, ok := c.Repository(name)
		if !ok {
			return
		}
		if r.Kind != KindGroup {
			out = append(out, name)
			return
		}
		for _, m := range r.Members {
			walk(m)
		}
	}
	walk(group)
	return out
}

func (r *Repository) validateHosted() error {
	switch r.Policy {
	case "":
		r.Policy = PolicyAllow
	case PolicyAllow, PolicyDisableRedeploy, PolicyDisableRedeployExceptLatest, PolicyReadOnly:
	default:
		return fmt.Errorf("unknown policy %q (allow, disable-redeploy, disable-redeploy-except-latest, read-only)", r.Policy)
	}
	if r.Remote != "" || r.Credentials != nil || r.MetadataMaxAge != nil || r.NegativeCacheTTL != nil || r.Fill != nil || r.ForeignLayers != nil || r.SearchIndex != "" {
		return errors.New("remote, credentials, metadataMaxAge, negativeCacheTTL, fill, foreignLayers and searchIndex are proxy settings (kind: proxy)")
	}
	if len(r.Members) > 0 || r.WriteMember != "" {
		return errors.New("members and writeMember are group settings (kind: group)")
	}
	return nil
}

func (r *Repository) validateProxy() error {
	if r.Policy != "" {
		return errors.New("policy is a hosted setting: a proxy takes no pushes")
	}
	if len(r.Members) > 0 || r.WriteMember != "" {
		return errors.New("members and writeMember are group settings (kind: group)")
	}
	if r.Remote == "" {
		return errors.New("remote is required (e.g. https://registry-1.docker.io)")
	}
	u, err := url.Parse(r.Remote)
	if err != nil || (u.Scheme != "https" && u.Scheme != "http") || u.Host == "" || u.User != nil || u.RawQuery != "" || u.Fragment != "" {
		return fmt.Errorf("remote %q: want http(s)://host[:port][/path] with no user, query or fragment", r.Remote)
	}
	r.Remote = strings.TrimSuffix(r.Remote, "/")
	if r.SearchIndex != "" && r.SearchIndex != "none" {
		if u, err := url.Parse(r.SearchIndex); err != nil || (u.Scheme != "https" && u.Scheme != "http") || u.Host == "" {
			return fmt.Errorf("searchIndex %q: want an http(s) URL or none", r.SearchIndex)
		}
		r.SearchIndex = strings.TrimSuffix(r.SearchIndex, "/")
	}
	if c := r.Credentials; c != nil {
		if c.Username == "" {
			return errors.New("credentials.username is required")
		}
		if (c.PasswordEnv == "") == (c.PasswordSecret == "") {
			return errors.New("credentials: set exactly one of passwordEnv (localdev) and passwordSecret (Lambda: Secrets Manager ARN or SSM parameter)")
		}
	}
	if f := r.Fill; f != nil {
		switch f.OnTimeout {
		case "", OnTimeoutRetry, OnTimeoutRedirect:
		default:
			return fmt.Errorf("fill.onTimeout %q: want retry or redirect", f.OnTimeout)
		}
		if f.Budget != nil && f.Budget.Duration < time.Second {
			return fmt.Errorf("fill.budget %s: want at least 1s", f.Budget.Duration)
		}
	}
	if fl := r.ForeignLayers; fl != nil {
		for _, a := range fl.Allow {
			if _, err := regexp.Compile("^(?:" + a + ")$"); err != nil {
				return fmt.Errorf("foreignLayers.allow %q: %w", a, err)
			}
		}
		if fl.Enabled && len(fl.Allow) == 0 {
			return errors.New("foreignLayers.enabled needs an allow list of URL regexes (full match)")
		}
	}
	return nil
}

// ForeignAllowed reports whether a foreign layer URL fully matches the
// proxy's allow list (and foreign layers are enabled).
func (r *Repository) ForeignAllowed(u string) bool {
	if r.ForeignLayers == nil || !r.ForeignLayers.Enabled {
		return false
	}
	for _, a := range r.ForeignLayers.Allow {
		if regexp.MustCompile("^(?:" + a + ")$").MatchString(u) {
			return true
		}
	}
	return false
}
