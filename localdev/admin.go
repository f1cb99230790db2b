package main

import (
	"context"
	"crypto/rand"
	"errors"
	"fmt"
	"io/fs"
	"os"
	"path/filepath"
	"strings"

	"log/slog"

	"sigs.k8s.io/yaml"

	"github.com/airlock-registry/airlock/shared/auth/ident"
	"github.com/airlock-registry/airlock/shared/config"
	"github.com/airlock-registry/airlock/shared/registry"
)

// bootstrapAdmin creates the first admin when auth is on, with the password
// of auth.adminPasswordEnv or, failing that, of <data>/admin.password
// (generated at the first start, mode 0600, printed once, like Nexus's
// admin.password). There is never a default password. It returns the ready
// line's note.
func bootstrapAdmin(ctx context.Context, h *registry.Registry, cfg *config.Config, data string) (string, error) {
	if h.Auth() == nil {
		return "auth off: every request is allowed; add an auth: section to the configuration to require logins", nil
	}
	pw, where := "", ""
	if env := cfg.Auth.AdminPasswordEnv; env != "" {
		pw, where = os.Getenv(env), "$"+env
		if pw == "" {
			return "", fmt.Errorf("auth.adminPasswordEnv: environment variable %s is not set", env)
		}
	} else {
		path := filepath.Join(data, "admin.password")
		where = path
		b, err := os.ReadFile(path)
		switch {
		case err == nil:
			pw = strings.TrimSpace(string(b))
		case errors.Is(err, fs.ErrNotExist):
			pw = rand.Text() // 26 characters of crypto/rand base32
			if err := os.MkdirAll(data, 0o755); err != nil {
				return "", err
			}
			if err := os.WriteFile(path, []byte(pw+"\n"), 0o600); err != nil {
				return "", fmt.Errorf("write %s: %w", path, err)
			}
			fmt.Fprintf(os.Stderr, "admin password (shown once; also in %s): %s\n", path, pw)
		default:
			return "", fmt.Errorf("read %s: %w", path, err)
		}
	}
	created, err := h.Auth().Users.Bootstrap(ctx, "admin", pw)
	if err != nil {
		return "", fmt.Errorf("create the admin user: %w", err)
	}
	state := "admin exists"
	if created {
		state = "admin created"
	}
	return fmt.Sprintf("auth on: docker login -u admin, password in %s; %s", where, state), nil
}

// seedUsers creates the users of a YAML file (localdev's -users flag):
//
//	users:
//	  - {name: alice, passwordEnv: ALICE_PASSWORD, roles: [team-a]}
//	  - {name: ci, password: a-long-local-password, roles: [team-a]}   # local only
//
// Users that exist already are left as they are.
func seedUsers(ctx context.Context, h *registry.Registry, path string, log *slog.Logger) error {
	if path == "" {
		return nil
	}
	if h.Auth() == nil {
		return fmt.Errorf("-users %s: authentication is off (no auth section in the configuration)", path)
	}
	b, err := os.ReadFile(path)
	if err != nil {
		return fmt.Errorf("-users: %w", err)
	}
	var doc struct {
		Users []struct {
			Name        string   `json:"name"`
			Password    string   `json:"password"`
			PasswordEnv string   `json:"passwordEnv"`
			Roles       []string `json:"roles"`
		} `json:"users"`
	}
	if err := yaml.UnmarshalStrict(b, &doc); err != nil {
		return fmt.Errorf("-users %s: %w", path, err)
	}
	for _, u := range doc.Users {
		pw := u.Password
		if u.PasswordEnv != "" {
			if pw = os.Getenv(u.PasswordEnv); pw == "" {
				return fmt.Errorf("-users %s: user %s: environment variable %s is not set", path, u.Name, u.PasswordEnv)
			}
		}
		for _, r := range u.Roles {
			if _, ok := h.Config.Auth.Role(r); !ok && r != config.AdminRole {
				return fmt.Errorf("-users %s: user %s: role %q is not defined (auth.roles)", path, u.Name, r)
			}
		}
		err := h.Auth().Users.CreateUser(ctx, u.Name, pw, u.Roles)
		switch {
		case errors.Is(err, ident.ErrExists):
			log.Info("user exists, kept", "user", u.Name)
		case err != nil:
			return fmt.Errorf("-users %s: user %s: %w", path, u.Name, err)
		default:
			log.Info("user created", "user", u.Name, "roles", u.Roles)
		}
	}
	return nil
}
