package registry

import (
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net/http"
	"strings"
	"time"

	"github.com/airlock-registry/airlock/shared/auth/ident"
	"github.com/airlock-registry/airlock/shared/config"
	"github.com/airlock-registry/airlock/shared/storage"
)

// adminUsers serves the identities of the admin API (admin role only):
//
//	GET    /airlock/api/users                         list users
//	POST   /airlock/api/users                         {"name","password","roles"} create a user
//	PUT    /airlock/api/users/<name>/password         {"password"}
//	PUT    /airlock/api/users/<name>/roles            {"roles"}
//	DELETE /airlock/api/users/<name>                  delete (and revoke its API tokens)
//	GET    /airlock/api/users/<name>/tokens           list API tokens (never their secrets)
//	POST   /airlock/api/users/<name>/tokens           {"name","ttl":"720h"}: the secret is in this answer only
//	DELETE /airlock/api/users/<name>/tokens/<id>      revoke
func (rg *Registry) adminUsers(w http.ResponseWriter, r *http.Request, rest string) error {
	if rg.auth == nil {
		return apiErr(http.StatusNotFound, CodeUnsupported, "authentication is not enabled (no auth section in the configuration): there are no users")
	}
	ctx := r.Context()
	users := rg.auth.Users
	parts := strings.Split(strings.Trim(rest, "/"), "/")
	if parts[0] == "" {
		parts = nil
	}
	var body struct {
		Name     string   `json:"name"`
		Password string   `json:"password"`
		Roles    []string `json:"roles"`
		TTL      string   `json:"ttl"`
	}
	if r.Method == http.MethodPost || r.Method == http.MethodPut {
		dec := json.NewDecoder(io.LimitReader(r.Body, 64<<10))
		dec.DisallowUnknownFields()
		if err := dec.Decode(&body); err != nil {
			return apiErr(http.StatusBadRequest, CodeUnsupported, "request body: %v", err)
		}
	}
	checkRoles := func(roles []string) error {
		for _, ro := range roles {
			if _, ok := rg.Config.Auth.Role(ro); !ok && ro != config.AdminRole {
				return apiErr(http.StatusBadRequest, CodeUnsupported, "role %q is not defined in the configuration (auth.roles; admin is built in)", ro)
			}
		}
		return nil
	}
	var out any
	status := http.StatusOK
	var err error
	switch m, n := r.Method, len(parts); {
	case n == 0 && m == http.MethodGet:
		var list []ident.User
		list, err = users.ListUsers(ctx)
		out = map[string]any{"users": list}
	case n == 0 && m == http.MethodPost:
		if err = checkRoles(body.Roles); err == nil {
			err = users.CreateUser(ctx, body.Name, body.Password, body.Roles)
			status, out = http.StatusCreated, map[string]any{"name": body.Name, "roles": body.Roles}
		}
	case n == 1 && m == http.MethodDelete:
		err = users.DeleteUser(ctx, parts[0])
		out = map[string]string{"deleted": parts[0]}
	case n == 2 && parts[1] == "password" && m == http.MethodPut:
		err = users.SetPassword(ctx, parts[0], body.Password)
		out = map[string]string{"name": parts[0]}
	case n == 2 && parts[1] == "roles" && m == http.MethodPut:
		if err = checkRoles(body.Roles); err == nil {
			err = users.SetRoles(ctx, parts[0], body.Roles)
			out = map[string]any{"name": parts[0], "roles": body.Roles}
		}
	case n == 2 && parts[1] == "tokens" && m == http.MethodGet:
		var list []ident.Token
		list, err = users.ListTokens(ctx, parts[0])
		out = map[string]any{"tokens": list}
	case n == 2 && parts[1] == "tokens" && m == http.MethodPost:
		ttl := 90 * 24 * time.Hour
		if body.TTL != "" {
			if ttl, err = time.ParseDuration(body.TTL); err != nil || ttl < time.Minute {
				return apiErr(http.StatusBadRequest, CodeUnsupported, "ttl %q: want a Go duration of at least 1m", body.TTL)
			}
		}
		var secret string
		var t ident.Token
		secret, t, err = users.CreateToken(ctx, parts[0], body.Name, ttl)
		status, out = http.StatusCreated, map[string]any{"token": t, "secret": secret, "note": "the secret is shown once: use it as the password of docker login"}
	case n == 3 && parts[1] == "tokens" && m == http.MethodDelete:
		err = users.RevokeToken(ctx, parts[0], parts[2])
		out = map[string]string{"revoked": parts[2]}
	default:
		return apiErr(http.StatusNotFound, CodeUnsupported, "no admin endpoint %s %s", r.Method, r.URL.Path)
	}
	if err != nil {
		var e *Error
		switch {
		case errors.As(err, &e):
			return e
		case errors.Is(err, ident.ErrNotFound), errors.Is(err, storage.ErrNotFound):
			return apiErr(http.StatusNotFound, CodeNameUnknown, "%v", err)
		case errors.Is(err, ident.ErrExists):
			return apiErr(http.StatusConflict, CodeDenied, "%v", err)
		case errors.Is(err, ident.ErrWeakPassword), errors.Is(err, ident.ErrInvalid):
			return apiErr(http.StatusBadRequest, CodeUnsupported, "%v", err)
		}
		return fmt.Errorf("admin users: %w", err)
	}
	b, _ := json.Marshal(out)
	w.Header().Set("Content-Type", "application/json")
	w.Header().Set("Cache-Control", "no-store")
	w.WriteHeader(status)
	_, _ = w.Write(b)
	return nil
}
