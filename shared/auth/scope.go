package auth

import (
	"context"
	"errors"
	"fmt"
	"slices"
	"strings"
	"time"

	"github.com/airlock-registry/airlock/shared/auth/ident"
	"github.com/airlock-registry/airlock/shared/auth/token"
)

// scope is one parsed token scope: "repository:team/app:pull,push".
type scope struct {
	typ, name string
	actions   []string
}

// maxScopes bounds the scopes of one token request.
const maxScopes = 32

// ParseScopes parses the token request's scope parameters (repeated, or
// space-separated in one, as the OAuth2 POST sends them).
func parseScopes(vals []string) ([]scope, error) {
	var out []scope
	for _, v := range vals {
		for _, f := range strings.Fields(v) {
			// name may contain ':' only as a registry port, which names never do here.
			i, j := strings.Index(f, ":"), strings.LastIndex(f, ":")
			if i < 0 || i == j {
				return nil, fmt.Errorf("scope %q: want <type>:<name>:<actions>", trunc(f))
			}
			sc := scope{typ: f[:i], name: f[i+1 : j]}
			if sc.typ != "repository" && sc.typ != "registry" || sc.name == "" || len(sc.name) > 255 {
				return nil, fmt.Errorf("scope %q: type repository or registry and a name", trunc(f))
			}
			sc.actions = strings.Split(f[j+1:], ",")
			if slices.Contains(sc.actions, "") {
				return nil, fmt.Errorf("scope %q: an empty action: want actions such as pull, push, delete or *, separated by commas", trunc(f))
			}
			out = append(out, sc)
			if len(out) > maxScopes {
				return nil, fmt.Errorf("more than %d scopes", maxScopes)
			}
		}
	}
	return out, nil
}

func trunc(s string) string {
	if len(s) > 80 {
		return s[:80] + "..."
	}
	return s
}

// TokenRequest is a parsed token request.
type TokenRequest struct {
	Service string
	Scopes  []string
	// User and Secret are the Basic credentials or the password grant's
	// (both empty: anonymous).
	User, Secret string
	// RefreshToken is the refresh grant's token.
	RefreshToken string
	// Offline asks for a refresh token too (offline_token=true, or the
	// password grant with access_type=offline).
	Offline bool
}

// TokenResponse is the token endpoint's answer.
type TokenResponse struct {
	Token        string    `json:"token"`
	AccessToken  string    `json:"access_token"`
	ExpiresIn    int       `json:"expires_in"`
	IssuedAt     time.Time `json:"issued_at"`
	RefreshToken string    `json:"refresh_token,omitempty"`
}

// Errors of Token.
var (
	// ErrBadRequest: the request is malformed (its message says how).
	ErrBadRequest = errors.New("bad token request")
	// ErrUnauthorized: bad credentials or refresh token.
	ErrUnauthorized = errors.New("unauthorized")
)

// Token answers a token request: authenticate (user once per token), grant
// the scopes' allowed actions, sign.
func (s *Service) Token(ctx context.Context, r TokenRequest) (TokenResponse, error) {
	scopes, err := parseScopes(r.Scopes)
	if err != nil {
		return TokenResponse{}, fmt.Errorf("%w: %v", ErrBadRequest, err)
	}
	if r.Service == "" {
		return TokenResponse{}, fmt.Errorf("%w: the service parameter is required", ErrBadRequest)
	}
	var id Identity
	switch {
	case r.RefreshToken != "":
		c, err := s.Tokens.VerifyRefresh(ctx, r.RefreshToken, r.Service)
		if err != nil {
			return TokenResponse{}, fmt.Errorf("%w: invalid refresh token", ErrUnauthorized)
		}
		name, epoch, _ := strings.Cut(c.Subject, "#")
		u, err := s.Users.GetUser(ctx, name)
		if err != nil {
			return TokenResponse{}, fmt.Errorf("%w: the refresh token's user no longer exists", ErrUnauthorized)
		}
		// A password change, and a user deleted and created again under the
		// same name, end every refresh token issued before.
		if epoch != u.Epoch {
			return TokenResponse{}, fmt.Errorf("%w: the refresh token predates the user's current password: log in again", ErrUnauthorized)
		}
		id = Identity{Name: u.Name, Roles: u.Roles, epoch: u.Epoch}
	case r.User != "" || r.Secret != "":
		u, err := s.Users.Authenticate(ctx, r.User, r.Secret)
		var locked *ident.LockedError
		if errors.As(err, &locked) {
			return TokenResponse{}, err
		}
		if err != nil {
			return TokenResponse{}, fmt.Errorf("%w: invalid username or password", ErrUnauthorized)
		}
		id = Identity{Name: u.Name, Roles: u.Roles, epoch: u.Epoch}
	}
	// Refresh tokens only for password logins: a client logged in with an
	// API token keeps the token itself (docker stores it when no refresh
	// token comes back), so revoking it takes effect at once.
	offline := r.Offline && !id.Anonymous() && r.RefreshToken == "" && !strings.HasPrefix(r.Secret, ident.TokenPrefix)
	tok, c, err := s.Tokens.Issue(ctx, id.Name, r.Service, s.grant(id, scopes))
	if err != nil {
		return TokenResponse{}, err
	}
	out := TokenResponse{Token: tok, AccessToken: tok, ExpiresIn: int(c.ExpiresAt.Sub(c.IssuedAt) / time.Second), IssuedAt: c.IssuedAt}
	if offline {
		if out.RefreshToken, _, err = s.Tokens.IssueRefresh(ctx, id.Name+"#"+id.epoch, r.Service); err != nil {
			return TokenResponse{}, err
		}
	}
	return out, nil
}

// Verify checks a bearer token for service (audience).
func (s *Service) Verify(ctx context.Context, tok, service string) (token.Claims, error) {
	return s.Tokens.Verify(ctx, tok, service)
}
