// Package config reads Airlock's repository configuration: a YAML document
// listing named repositories (hosted now; proxy and group later) and the
// default repository that takes names whose first component names none.
package config

import (
	"errors"
	"fmt"
	"os"
	"regexp"
	"strings"

	"sigs.k8s.io/yaml"
)

// Kinds of repository.
const (
	KindHosted = "hosted"
	KindProxy  = "proxy"
	KindGroup  = "group"
)

// Deployment policies of a hosted repository (Nexus's names).
const (
	PolicyAllow                       = "allow"
	PolicyDisableRedeploy             = "disable-redeploy"
	PolicyDisableRedeployExceptLatest = "disable-redeploy-except-latest"
	PolicyReadOnly                    = "read-only"
)

// Config is the whole configuration document.
type Config struct {
	// Default names the repository that serves names whose first path
	// component is not a repository name ("" = such names are unknown).
	Default      string       `json:"default,omitempty"`
	Repositories []Repository `json:"repositories"`
}

// Repository is one named repository.
type Repository struct {
	Name string `json:"name"`
	Kind string `json:"kind"`
	// Policy is the deployment policy of a hosted repository (default allow).
	Policy string `json:"policy,omitempty"`

	// Remote is the upstream registry URL of a proxy repository (later issue).
	Remote string `json:"remote,omitempty"`
	// Members are the ordered member repositories of a group (later issue).
	Members []string `json:"members,omitempty"`
	// WriteMember is the member a group forwards pushes to (later issue).
	WriteMember string `json:"writeMember,omitempty"`
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
		switch r.Kind {
		case KindHosted:
			switch r.Policy {
			case "":
				r.Policy = PolicyAllow
			case PolicyAllow, PolicyDisableRedeploy, PolicyDisableRedeployExceptLatest, PolicyReadOnly:
			default:
				return fmt.Errorf("repository %q: unknown policy %q (allow, disable-redeploy, disable-redeploy-except-latest, read-only)", r.Name, r.Policy)
			}
		case KindProxy, KindGroup:
			return fmt.Errorf("repository %q: kind %q is not supported yet (only hosted)", r.Name, r.Kind)
		default:
			return fmt.Errorf("repository %q: unknown kind %q (hosted, proxy, group)", r.Name, r.Kind)
		}
	}
	if c.Default != "" && !seen[c.Default] {
		return fmt.Errorf("default repository %q is not listed", c.Default)
	}
	return nil
}
