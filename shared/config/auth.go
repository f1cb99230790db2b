package config

import (
	"errors"
	"fmt"
	"regexp"
	"slices"
	"time"

	"github.com/airlock-registry/airlock/shared/auth/csel"
)

// Action is what a privilege allows (Nexus's names).
type Action string

// Actions. A pull needs read; a push add and edit; a delete delete; the
// catalog and search list what the caller may browse or read.
const (
	ActionRead   Action = "read"
	ActionBrowse Action = "browse"
	ActionAdd    Action = "add"
	ActionEdit   Action = "edit"
	ActionDelete Action = "delete"
)

// AdminRole is the built-in role with every action on every repository.
const AdminRole = "admin"

// Auth switches authentication on (the top-level auth: section; `auth: {}`
// takes every default). Without the section every request is allowed.
type Auth struct {
	// Disabled says explicitly that every request is allowed (the Lambda
	// function refuses to start without an auth section unless it says so).
	Disabled bool `json:"disabled,omitempty"`
	// TokenLifetime of bearer tokens (default 5m, at least 60s).
	TokenLifetime *Duration `json:"tokenLifetime,omitempty"`
	// AdminPasswordEnv names the environment variable holding the first
	// admin's password; AdminPasswordSecret a Secrets Manager secret or
	// ssm:<parameter> (Lambda). Neither: localdev generates one at first
	// start into <data>/admin.password; the Lambda function refuses to start.
	AdminPasswordEnv    string `json:"adminPasswordEnv,omitempty"`
	AdminPasswordSecret string `json:"adminPasswordSecret,omitempty"`
	// SigningKeyEnv names an environment variable holding PEM-encoded P-256
	// keys (the first private key signs, every key verifies: keep the old
	// one as a second block while rotating). Unset: a key is made on first
	// use and kept in the table.
	SigningKeyEnv string `json:"signingKeyEnv,omitempty"`
	// Anonymous lists the roles of callers without credentials (besides the
	// repositories' anonymousPull).
	Anonymous []string `json:"anonymous,omitempty"`
	// Roles hold privileges; users are given roles (admin API).
	Roles []Role `json:"roles,omitempty"`
}

// Role is a named set of privileges.
type Role struct {
	Name       string      `json:"name"`
	Privileges []Privilege `json:"privileges"`
}

// Privilege allows actions on the content of repositories a content
// selector (CSEL) matches.
type Privilege struct {
	// Repositories are repository names or "*" (every repository).
	Repositories []string `json:"repositories"`
	// Selector is a content selector over path and format ("" matches everything).
	Selector string   `json:"selector,omitempty"`
	Actions  []Action `json:"actions"`
	// compiled is Selector, compiled at load.
	compiled *csel.Selector
}

// Match reports whether the privilege covers path in repository repo for action.
func (p *Privilege) Match(repo, path string, a Action) bool {
	if !slices.Contains(p.Actions, a) {
		return false
	}
	if !slices.Contains(p.Repositories, "*") && !slices.Contains(p.Repositories, repo) {
		return false
	}
	return p.compiled == nil || p.compiled.Match(csel.Attrs{Path: path, Format: "docker"})
}

// Lifetime returns the token lifetime (default 5m).
func (a *Auth) Lifetime() time.Duration { return durationOr(a.TokenLifetime, 5*time.Minute) }

// Enabled reports whether authentication is on.
func (a *Auth) Enabled() bool { return a != nil && !a.Disabled }

// Role returns the role named name.
func (a *Auth) Role(name string) (*Role, bool) {
	for i := range a.Roles {
		if a.Roles[i].Name == name {
			return &a.Roles[i], true
		}
	}
	return nil, false
}

var roleName = regexp.MustCompile(`^[a-z0-9][a-z0-9._-]{0,63}$`)

func (c *Config) validateAuth() error {
	a := c.Auth
	if a == nil {
		return nil
	}
	if a.Disabled && (a.TokenLifetime != nil || a.AdminPasswordEnv != "" || a.AdminPasswordSecret != "" || a.SigningKeyEnv != "" || len(a.Anonymous) > 0 || len(a.Roles) > 0) {
		return errors.New("auth: disabled: true takes no other setting")
	}
	if a.TokenLifetime != nil && a.TokenLifetime.Duration < time.Minute {
		return fmt.Errorf("auth.tokenLifetime %s: want at least 60s", a.TokenLifetime.Duration)
	}
	if a.AdminPasswordEnv != "" && a.AdminPasswordSecret != "" {
		return errors.New("auth: set at most one of adminPasswordEnv and adminPasswordSecret")
	}
	seen := map[string]bool{AdminRole: true}
	for i := range a.Roles {
		r := &a.Roles[i]
		if !roleName.MatchString(r.Name) {
			return fmt.Errorf("auth.roles[%d]: name %q must match %s", i, r.Name, roleName)
		}
		if seen[r.Name] {
			return fmt.Errorf("auth.roles: role %q is defined twice (admin is built in)", r.Name)
		}
		seen[r.Name] = true
		for j := range r.Privileges {
			p := &r.Privileges[j]
			where := fmt.Sprintf("auth.roles[%s].privileges[%d]", r.Name, j)
			if len(p.Repositories) == 0 {
				return fmt.Errorf("%s: repositories is required (names or \"*\")", where)
			}
			for _, name := range p.Repositories {
				if _, ok := c.Repository(name); !ok && name != "*" {
					return fmt.Errorf("%s: repository %q is not listed", where, name)
				}
			}
			if len(p.Actions) == 0 {
				return fmt.Errorf("%s: actions is required (read, browse, add, edit, delete)", where)
			}
			for _, act := range p.Actions {
				switch act {
				case ActionRead, ActionBrowse, ActionAdd, ActionEdit, ActionDelete:
				default:
					return fmt.Errorf("%s: unknown action %q (read, browse, add, edit, delete)", where, act)
				}
			}
			if p.Selector != "" {
				s, err := csel.Compile(p.Selector)
				if err != nil {
					return fmt.Errorf("%s: selector: %w", where, err)
				}
				p.compiled = s
			}
		}
	}
	for _, r := range a.Anonymous {
		if !seen[r] || r == AdminRole {
			return fmt.Errorf("auth.anonymous: role %q is not defined (or is admin)", r)
		}
	}
	return nil
}
