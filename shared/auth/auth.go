package auth

import (
	"context"
	"errors"
	"fmt"
	"slices"
	"time"

	"github.com/airlock-registry/airlock/shared/auth/ident"
	"github.com/airlock-registry/airlock/shared/auth/token"
	"github.com/airlock-registry/airlock/shared/config"
	"github.com/airlock-registry/airlock/shared/storage"
)

// Identity is who makes a request.
type Identity struct {
	// Name is the user ("" for anonymous).
	Name  string
	Roles []string
	// epoch is the user's credentials version (refresh tokens carry it).
	epoch string
}

// Anonymous reports whether the identity has no user.
func (id Identity) Anonymous() bool { return id.Name == "" }

// Resolver maps a request name to the repository serving it and the image
// name inside that repository (repo.Set.Resolve).
type Resolver func(name string) (repo, image string, err error)

// Path is the path a content selector sees for an image: "/v2/<image>/"
// with the image's name inside its repository (as in Nexus, where each
// repository has its own connector), whatever prefix the client used
// (/v2/team-a/app, /v2/local/team-a/app and /v2/docker/team-a/app are all
// "/v2/team-a/app/").
func Path(image string) string { return "/v2/" + image + "/" }

// RefusedType is the access-claim type listing the actions a token request
// asked for and was refused: the registry answers those with 403 DENIED
// instead of a new 401 challenge.
const RefusedType = "refused"

// Service authenticates and authorizes.
type Service struct {
	cfg     *config.Config
	Tokens  *token.Service
	Users   *ident.Store
	resolve Resolver
	now     func() time.Time
}

// Options configure New.
type Options struct {
	Now func() time.Time
	// BcryptCost is the password hash's cost (0: ident's default).
	BcryptCost int
	// SigningKeyPEM is an operator-provided signing key (nil: keys are made
	// and kept in the store).
	SigningKeyPEM []byte
}

// Issuer is the iss claim of Airlock's tokens.
const Issuer = "airlock"

// New builds the service of cfg (whose Auth must be enabled) over store.
func New(ctx context.Context, cfg *config.Config, store storage.ProxyMetadata, resolve Resolver, o Options) (*Service, error) {
	if !cfg.Auth.Enabled() {
		return nil, errors.New("auth: the configuration does not enable authentication")
	}
	if o.Now == nil {
		o.Now = time.Now
	}
	ts, err := token.NewService(ctx, store, token.Options{Issuer: Issuer, Lifetime: cfg.Auth.Lifetime(), Now: o.Now, PEM: o.SigningKeyPEM})
	if err != nil {
		return nil, fmt.Errorf("auth: token keys: %w", err)
	}
	users := ident.New(store, ident.Options{Now: o.Now, BcryptCost: o.BcryptCost})
	return &Service{cfg: cfg, Tokens: ts, Users: users, resolve: resolve, now: o.Now}, nil
}

// Can reports whether id may do action on path (the request path, or
// "/v2/<name>/" for a name) in repository repo.
func (s *Service) Can(id Identity, repo, path string, action config.Action) bool {
	// What anonymous may do, every caller may do.
	if rc, ok := s.cfg.Repository(repo); ok && rc.AnonymousPull && (action == config.ActionRead || action == config.ActionBrowse) {
		return true
	}
	roles := append(slices.Clip(id.Roles), s.cfg.Auth.Anonymous...)
	for _, name := range roles {
		if name == config.AdminRole {
			return true
		}
		r, ok := s.cfg.Auth.Role(name)
		if !ok {
			continue
		}
		for i := range r.Privileges {
			if r.Privileges[i].Match(repo, path, action) {
				return true
			}
		}
	}
	return false
}

// IsAdmin reports whether id has the admin role.
func (s *Service) IsAdmin(id Identity) bool {
	return !id.Anonymous() && slices.Contains(id.Roles, config.AdminRole)
}

// dockerActions maps a token scope action to the privileges it needs.
func dockerActions(a string) []config.Action {
	switch a {
	case "pull":
		return []config.Action{config.ActionRead}
	case "push":
		return []config.Action{config.ActionAdd, config.ActionEdit}
	case "delete":
		return []config.Action{config.ActionDelete}
	}
	return nil
}

// grant returns the access id gets for the requested scopes: exactly the
// actions allowed per resource, and per repository a RefusedType entry with
// the actions asked for and refused.
func (s *Service) grant(id Identity, scopes []scope) []token.Access {
	out := []token.Access{}
	for _, sc := range scopes {
		acc := token.Access{Type: sc.typ, Name: sc.name, Actions: []string{}}
		refused := token.Access{Type: RefusedType, Name: sc.name, Actions: []string{}}
		switch sc.typ {
		case "repository":
			repo, image, err := s.resolve(sc.name)
			for _, a := range sc.actions {
				needs := dockerActions(a)
				if a == "*" {
					needs = []config.Action{config.ActionRead, config.ActionAdd, config.ActionEdit, config.ActionDelete}
				}
				ok := err == nil && len(needs) > 0
				for _, n := range needs {
					ok = ok && s.Can(id, repo, Path(image), n)
				}
				switch {
				case ok && !slices.Contains(acc.Actions, a):
					acc.Actions = append(acc.Actions, a)
				case !ok && !slices.Contains(refused.Actions, a):
					refused.Actions = append(refused.Actions, a)
				}
			}
		case "registry":
			if sc.name == "catalog" {
				acc.Actions = append(acc.Actions, "*") // the listing itself is filtered by browse/read
			}
		}
		out = append(out, acc)
		if len(refused.Actions) > 0 {
			out = append(out, refused)
		}
	}
	return out
}

// Identify returns the identity behind verified claims (roles read from the
// user only where needed: listings; requests use the token's access claim).
func (s *Service) Identify(ctx context.Context, c token.Claims) (Identity, error) {
	if c.Subject == "" {
		return Identity{}, nil
	}
	u, err := s.Users.GetUser(ctx, c.Subject)
	if err != nil {
		return Identity{}, err
	}
	return Identity{Name: u.Name, Roles: u.Roles}, nil
}
