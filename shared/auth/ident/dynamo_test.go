package ident_test

import (
	"errors"
	"fmt"
	"os"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/airlock-registry/airlock/localdev/harness"
	"github.com/airlock-registry/airlock/shared/auth/ident"
	"github.com/airlock-registry/airlock/shared/storage/dynamo"
)

// TestMain stops the emulator TestDynamo started.
func TestMain(m *testing.M) {
	code := m.Run()
	harness.StopAll()
	os.Exit(code)
}

// TestDynamo runs the essentials against package dynamo on the emulator
// (dynalite by default; localdev/harness), with the real clock: the
// conditional writes (one creator wins), the item layout's key sizes,
// tokens, and a lock.
func TestDynamo(t *testing.T) {
	if testing.Short() {
		t.Skip("-short: no emulator")
	}
	if harness.DynamoBackend() != "dynalite" && !harness.InPrivateNetns() {
		t.Skipf("%s=%s needs a private network namespace (see shared/storage/dynamo's TestMain)", harness.EnvDynamo, harness.DynamoBackend())
	}
	db, table := harness.TestDynamo(t)
	s := ident.New(dynamo.New(db, table), ident.Options{BcryptCost: 4})

	if created, err := s.Bootstrap(ctx, "admin", "the admin password"); err != nil || !created {
		t.Fatalf("Bootstrap: %v, %v", created, err)
	}
	if created, err := s.Bootstrap(ctx, "admin", "another password"); err != nil || created {
		t.Fatalf("Bootstrap again: %v, %v", created, err)
	}
	long := strings.Repeat("n", ident.MaxNameLen)
	errs := make([]error, 8)
	var wg sync.WaitGroup
	for i := range errs {
		wg.Add(1)
		go func() {
			defer wg.Done()
			errs[i] = s.CreateUser(ctx, long, fmt.Sprint("racing password ", i), []string{"pull"})
		}()
	}
	wg.Wait()
	wins := 0
	for i, err := range errs {
		switch {
		case err == nil:
			wins++
		case !errors.Is(err, ident.ErrExists):
			t.Fatalf("creator %d: %v", i, err)
		}
	}
	if wins != 1 {
		t.Fatalf("%d creators won", wins)
	}
	if list, err := s.ListUsers(ctx); err != nil || len(list) != 2 {
		t.Fatalf("ListUsers: %v, %v", list, err)
	}
	if u, err := s.Authenticate(ctx, "admin", "the admin password"); err != nil || !u.HasRole("admin") {
		t.Fatalf("Authenticate: %+v, %v", u, err)
	}

	sec, tok, err := s.CreateToken(ctx, long, "ci", time.Hour)
	must(t, err)
	if u, err := s.Authenticate(ctx, long, sec); err != nil || u.Name != long {
		t.Fatalf("token login: %+v, %v", u, err)
	}
	if _, err := s.Authenticate(ctx, "admin", sec); err != ident.ErrBadCredentials {
		t.Fatalf("token of another user: %v", err)
	}
	if list, err := s.ListTokens(ctx, long); err != nil || len(list) != 1 || list[0].ID != tok.ID {
		t.Fatalf("ListTokens: %v, %v", list, err)
	}
	must(t, s.RevokeToken(ctx, long, tok.ID))
	if ok, err := s.TokenActive(ctx, tok.ID); ok || err != nil {
		t.Fatalf("revoked token active: %v, %v", ok, err)
	}

	for i := range 5 {
		if _, err := s.Authenticate(ctx, "admin", fmt.Sprint("wrong password ", i)); err != ident.ErrBadCredentials {
			t.Fatalf("failure %d: %v", i+1, err)
		}
	}
	var le *ident.LockedError
	if _, err := s.Authenticate(ctx, "admin", "the admin password"); !errors.As(err, &le) || le.RetryAfter <= 0 || le.RetryAfter > time.Minute {
		t.Fatalf("locked admin: %v", err)
	}
	must(t, s.SetPassword(ctx, "admin", "a reset admin password"))
	if _, err := s.Authenticate(ctx, "admin", "a reset admin password"); err != nil {
		t.Fatalf("after SetPassword: %v", err)
	}
	must(t, s.DeleteUser(ctx, long))
	if _, err := s.GetUser(ctx, long); !errors.Is(err, ident.ErrNotFound) {
		t.Fatalf("deleted user: %v", err)
	}
}
