package main

import (
	"context"
	"errors"
	"fmt"
	"os"

	"github.com/airlock-registry/airlock/shared/cloud"
	"github.com/airlock-registry/airlock/shared/registry"
)

// requireAuth refuses a configuration without an auth section: a function
// on a public endpoint must not let anyone push (say `auth: {disabled:
// true}` to run without, explicitly).
func requireAuth(e *cloud.Env) error {
	if e.Config.Auth == nil {
		return errors.New("the configuration has no auth section: anyone could push and delete; add `auth: {}` (or `auth: {disabled: true}` to allow every request, explicitly)")
	}
	return nil
}

// bootstrapAdmin creates the first admin (user admin) once, with the
// password of AIRLOCK_ADMIN_PASSWORD (local runs), auth.adminPasswordEnv,
// auth.adminPasswordSecret or AIRLOCK_ADMIN_SECRET (the template's SSM
// parameter): one read per cold start when it exists.
func bootstrapAdmin(ctx context.Context, e *cloud.Env, h *registry.Registry) error {
	if h.Auth() == nil {
		return nil
	}
	a := e.Config.Auth
	pw := os.Getenv("AIRLOCK_ADMIN_PASSWORD")
	if pw == "" && a.AdminPasswordEnv != "" {
		pw = os.Getenv(a.AdminPasswordEnv)
	}
	if pw == "" {
		ref := a.AdminPasswordSecret
		if ref == "" {
			ref = os.Getenv("AIRLOCK_ADMIN_SECRET")
		}
		if ref == "" {
			return errors.New("no admin password: set auth.adminPasswordSecret or the template's AdminPasswordParameter")
		}
		v, err := e.Proxy.Secret(ctx, ref)
		if err != nil {
			return fmt.Errorf("admin password: %w", err)
		}
		pw = v
	}
	if _, err := h.Auth().Users.Bootstrap(ctx, "admin", pw); err != nil {
		return fmt.Errorf("create the admin user: %w", err)
	}
	return nil
}
