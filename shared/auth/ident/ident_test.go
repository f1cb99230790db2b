package ident_test

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"regexp"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"golang.org/x/crypto/bcrypt"

	"github.com/airlock-registry/airlock/shared/auth/ident"
	"github.com/airlock-registry/airlock/shared/storage"
	"github.com/airlock-registry/airlock/shared/storage/memstore"
)

// clock is a settable clock shared by the Store and the memstore.
type clock struct {
	mu sync.Mutex
	t  time.Time
}

func (c *clock) Now() time.Time {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.t
}

func (c *clock) Advance(d time.Duration) {
	c.mu.Lock()
	defer c.mu.Unlock()
	c.t = c.t.Add(d)
}

// counting wraps a ProxyMetadata and counts the calls it forwards.
type counting struct {
	storage.ProxyMetadata
	calls atomic.Int64
	// failWrite, when set, fails PutMarker and AcquireMarker of groups it
	// returns true for, with an error quoting the Value as package dynamo's do.
	failWrite func(group string) bool
}

func (c *counting) GetMarker(ctx context.Context, g, k string) (storage.Marker, error) {
	c.calls.Add(1)
	return c.ProxyMetadata.GetMarker(ctx, g, k)
}

func (c *counting) ListMarkers(ctx context.Context, g string, n int) ([]storage.Marker, error) {
	c.calls.Add(1)
	return c.ProxyMetadata.ListMarkers(ctx, g, n)
}

func (c *counting) PutMarker(ctx context.Context, m storage.Marker) error {
	c.calls.Add(1)
	if c.failWrite != nil && c.failWrite(m.Group) {
		return fmt.Errorf("put marker %s/%s value %q: %w", m.Group, m.Key, m.Value, errors.New("ProvisionedThroughputExceededException"))
	}
	return c.ProxyMetadata.PutMarker(ctx, m)
}

func (c *counting) AcquireMarker(ctx context.Context, m storage.Marker) error {
	c.calls.Add(1)
	if c.failWrite != nil && c.failWrite(m.Group) {
		return fmt.Errorf("acquire marker %s/%s for %q: %w", m.Group, m.Key, m.Value, apiError{"ThrottlingException"})
	}
	return c.ProxyMetadata.AcquireMarker(ctx, m)
}

func (c *counting) DeleteMarker(ctx context.Context, g, k string) error {
	c.calls.Add(1)
	return c.ProxyMetadata.DeleteMarker(ctx, g, k)
}

func (c *counting) ReleaseMarker(ctx context.Context, g, k, v string) error {
	c.calls.Add(1)
	return c.ProxyMetadata.ReleaseMarker(ctx, g, k, v)
}

// apiError looks like an AWS API error (smithy.APIError's ErrorCode).
type apiError struct{ code string }

func (e apiError) Error() string     { return "api error " + e.code + ": details" }
func (e apiError) ErrorCode() string { return e.code }

type env struct {
	s     *ident.Store
	mem   *memstore.Store
	meta  *counting
	clock *clock
	// compares counts bcrypt comparisons; hashes records the hashes compared.
	compares atomic.Int64
	mu       sync.Mutex
	hashes   [][]byte
}

func newEnv(t *testing.T, o ident.Options) *env {
	t.Helper()
	c := &clock{t: time.Date(2026, 3, 1, 12, 0, 0, 0, time.UTC)}
	mem := memstore.New(memstore.WithClock(c.Now))
	t.Cleanup(func() { mem.Close() })
	e := &env{mem: mem, meta: &counting{ProxyMetadata: mem}, clock: c}
	o.Now = c.Now
	if o.BcryptCost == 0 {
		o.BcryptCost = bcrypt.MinCost
	}
	e.s = ident.New(e.meta, o)
	ident.SetCompare(e.s, func(hash, pw []byte) error {
		e.compares.Add(1)
		e.mu.Lock()
		e.hashes = append(e.hashes, append([]byte(nil), hash...))
		e.mu.Unlock()
		return bcrypt.CompareHashAndPassword(hash, pw)
	})
	return e
}

var ctx = context.Background()

const (
	alicePW = "correct horse battery"
	bobPW   = "bob's long password"
)

func must(t *testing.T, err error) {
	t.Helper()
	if err != nil {
		t.Fatal(err)
	}
}

func wantErr(t *testing.T, what string, err, want error) {
	t.Helper()
	if !errors.Is(err, want) {
		t.Fatalf("%s: %v, want %v", what, err, want)
	}
}

func TestUserLifecycle(t *testing.T) {
	e := newEnv(t, ident.Options{})
	must(t, e.s.CreateUser(ctx, "alice", alicePW, []string{"pull", "admin", "pull"}))
	u, err := e.s.GetUser(ctx, "alice")
	must(t, err)
	if u.Name != "alice" || strings.Join(u.Roles, ",") != "admin,pull" || !u.Created.Equal(e.clock.Now()) || !u.HasRole("admin") || u.HasRole("push") {
		t.Fatalf("GetUser: %+v", u)
	}
	mk, err := e.mem.GetMarker(ctx, "authusers", "alice")
	must(t, err)
	if mk.Until.Year() != 2200 || strings.Contains(mk.Value, alicePW) || !strings.Contains(mk.Value, `"hash":"$2a$04$`) {
		t.Fatalf("stored user: until %s, value %s", mk.Until, mk.Value)
	}
	got, err := e.s.Authenticate(ctx, "alice", alicePW)
	if err != nil || got.Name != "alice" || strings.Join(got.Roles, ",") != "admin,pull" {
		t.Fatalf("Authenticate: %+v, %v", got, err)
	}
	if _, err := e.s.Authenticate(ctx, "alice", alicePW+"x"); err != ident.ErrBadCredentials {
		t.Fatalf("wrong password: %v", err)
	}

	must(t, e.s.SetPassword(ctx, "alice", "a brand new password"))
	if _, err := e.s.Authenticate(ctx, "alice", alicePW); err != ident.ErrBadCredentials {
		t.Fatalf("old password after SetPassword: %v", err)
	}
	if _, err := e.s.Authenticate(ctx, "alice", "a brand new password"); err != nil {
		t.Fatalf("new password: %v", err)
	}
	must(t, e.s.SetRoles(ctx, "alice", []string{"push"}))
	if u, _ := e.s.GetUser(ctx, "alice"); strings.Join(u.Roles, ",") != "push" {
		t.Fatalf("roles after SetRoles: %v", u.Roles)
	}
	must(t, e.s.SetRoles(ctx, "alice", nil))
	if u, _ := e.s.GetUser(ctx, "alice"); len(u.Roles) != 0 {
		t.Fatalf("roles after SetRoles(nil): %v", u.Roles)
	}

	must(t, e.s.CreateUser(ctx, "bob", bobPW, nil))
	must(t, e.s.CreateUser(ctx, "0.x_y-z", bobPW, nil))
	list, err := e.s.ListUsers(ctx)
	must(t, err)
	var names []string
	for _, u := range list {
		names = append(names, u.Name)
	}
	if strings.Join(names, " ") != "0.x_y-z alice bob" {
		t.Fatalf("ListUsers: %v", names)
	}

	must(t, e.s.DeleteUser(ctx, "alice"))
	_, err = e.s.GetUser(ctx, "alice")
	wantErr(t, "GetUser after delete", err, ident.ErrNotFound)
	if _, err := e.s.Authenticate(ctx, "alice", "a brand new password"); err != ident.ErrBadCredentials {
		t.Fatalf("deleted user logs in: %v", err)
	}
	wantErr(t, "DeleteUser twice", e.s.DeleteUser(ctx, "alice"), ident.ErrNotFound)
	wantErr(t, "SetPassword of nobody", e.s.SetPassword(ctx, "alice", alicePW), ident.ErrNotFound)
	wantErr(t, "SetRoles of nobody", e.s.SetRoles(ctx, "alice", nil), ident.ErrNotFound)
	if list, _ := e.s.ListUsers(ctx); len(list) != 2 {
		t.Fatalf("ListUsers after delete: %v", list)
	}
	// The name can be taken again; the new user is a new user.
	must(t, e.s.CreateUser(ctx, "alice", alicePW, nil))

	// Name rules.
	for _, name := range []string{"", "Alice", ".a", "-a", "_a", "a b", "a/b", "a@b", "é", strings.Repeat("a", 65)} {
		wantErr(t, fmt.Sprintf("CreateUser(%q)", name), e.s.CreateUser(ctx, name, alicePW, nil), ident.ErrInvalid)
	}
	for _, name := range []string{"a", "0", "a.b_c-d", strings.Repeat("z", 64)} {
		must(t, e.s.CreateUser(ctx, name, "twelve chars!", nil))
	}
	wantErr(t, "bad role", e.s.CreateUser(ctx, "carol", alicePW, []string{"Admin"}), ident.ErrInvalid)
	wantErr(t, "bad role", e.s.SetRoles(ctx, "bob", []string{""}), ident.ErrInvalid)
	wantErr(t, "GetUser of a bad name", func() error { _, err := e.s.GetUser(ctx, "A"); return err }(), ident.ErrNotFound)
}

func TestCreateRace(t *testing.T) {
	e := newEnv(t, ident.Options{MaxFailures: 20}) // 7 losers' passwords are tried below
	const n = 8
	errs := make([]error, n)
	var wg sync.WaitGroup
	for i := range n {
		wg.Add(1)
		go func() {
			defer wg.Done()
			errs[i] = e.s.CreateUser(ctx, "racer", fmt.Sprintf("password number %d", i), []string{"r"})
		}()
	}
	wg.Wait()
	winner := -1
	for i, err := range errs {
		switch {
		case err == nil:
			if winner >= 0 {
				t.Fatalf("two winners: %d and %d", winner, i)
			}
			winner = i
		case !errors.Is(err, ident.ErrExists):
			t.Fatalf("creator %d: %v", i, err)
		}
	}
	if winner < 0 {
		t.Fatal("no winner")
	}
	for i := range n {
		_, err := e.s.Authenticate(ctx, "racer", fmt.Sprintf("password number %d", i))
		if (err == nil) != (i == winner) {
			t.Errorf("password %d (winner %d): %v", i, winner, err)
		}
	}
	// And once more, sequentially: the existing user is untouched.
	wantErr(t, "create existing", e.s.CreateUser(ctx, "racer", "another password!", nil), ident.ErrExists)
}

func TestWeakPasswords(t *testing.T) {
	e := newEnv(t, ident.Options{})
	for _, tc := range []struct{ pw, why string }{
		{"", "at least 12 characters"},
		{"elevenchars", "at least 12 characters"},
		{"ééééééééééé", "at least 12 characters"}, // 11 characters, 22 bytes
		{strings.Repeat("x", 73), "at most 72 bytes"},
		{strings.Repeat("é", 37), "at most 72 bytes"}, // 37 characters, 74 bytes
		{"alk_" + strings.Repeat("x", 20), `must not start with "alk_"`},
		{"longusername", "not be the user name"},
		{"LongUserName", "not be the user name"},
		{"valid\xffutf8nope", "valid UTF-8"},
	} {
		err := e.s.CreateUser(ctx, "longusername", tc.pw, nil)
		if !errors.Is(err, ident.ErrWeakPassword) || !strings.Contains(err.Error(), tc.why) {
			t.Errorf("CreateUser with %q: %v, want ErrWeakPassword saying %q", tc.pw, err, tc.why)
		}
		if err != nil && tc.pw != "" && strings.Contains(err.Error(), tc.pw) {
			t.Errorf("the error quotes the password: %v", err)
		}
	}
	for _, pw := range []string{"twelve chars", "éééééééééééé", strings.Repeat("x", 72), strings.Repeat("é", 36)} {
		if err := ident.CheckPassword("someone", pw); err != nil {
			t.Errorf("CheckPassword(%q): %v", pw, err)
		}
	}
	must(t, e.s.CreateUser(ctx, "dave", strings.Repeat("d", 72), nil))
	wantErr(t, "SetPassword weak", e.s.SetPassword(ctx, "dave", "short"), ident.ErrWeakPassword)
	if _, err := e.s.Authenticate(ctx, "dave", strings.Repeat("d", 72)); err != nil {
		t.Fatalf("72-byte password: %v", err)
	}
	// bcrypt would compare only the first 72 bytes: longer ones never match.
	if _, err := e.s.Authenticate(ctx, "dave", strings.Repeat("d", 73)); err != ident.ErrBadCredentials {
		t.Fatalf("73-byte password with the right 72-byte prefix: %v", err)
	}
}

func TestBootstrap(t *testing.T) {
	e := newEnv(t, ident.Options{})
	created, err := e.s.Bootstrap(ctx, "admin", "first admin password")
	if err != nil || !created {
		t.Fatalf("first Bootstrap: %v, %v", created, err)
	}
	created, err = e.s.Bootstrap(ctx, "admin", "second admin password")
	if err != nil || created {
		t.Fatalf("second Bootstrap: %v, %v", created, err)
	}
	u, err := e.s.Authenticate(ctx, "admin", "first admin password")
	if err != nil || strings.Join(u.Roles, ",") != "admin" {
		t.Fatalf("bootstrapped admin: %+v, %v", u, err)
	}
	if _, err := e.s.Authenticate(ctx, "admin", "second admin password"); err != ident.ErrBadCredentials {
		t.Fatalf("second Bootstrap overwrote the password: %v", err)
	}
	// An existing user of the name is never changed (no role added).
	must(t, e.s.CreateUser(ctx, "ops", alicePW, []string{"pull"}))
	if created, err := e.s.Bootstrap(ctx, "ops", "another password!"); err != nil || created {
		t.Fatalf("Bootstrap of an existing user: %v, %v", created, err)
	}
	if u, _ := e.s.GetUser(ctx, "ops"); strings.Join(u.Roles, ",") != "pull" {
		t.Fatalf("Bootstrap changed roles: %v", u.Roles)
	}
	if _, err := e.s.Bootstrap(ctx, "root", "short"); !errors.Is(err, ident.ErrWeakPassword) {
		t.Fatalf("Bootstrap with a weak password: %v", err)
	}
	if _, err := e.s.Bootstrap(ctx, "Root", alicePW); !errors.Is(err, ident.ErrInvalid) {
		t.Fatalf("Bootstrap with a bad name: %v", err)
	}
}

var secretRE = regexp.MustCompile(`^alk_([a-z2-7]{16})_[a-z2-7]{52}$`)

func TestTokens(t *testing.T) {
	e := newEnv(t, ident.Options{})
	must(t, e.s.CreateUser(ctx, "alice", alicePW, []string{"push"}))
	must(t, e.s.CreateUser(ctx, "bob", bobPW, nil))

	sec1, t1, err := e.s.CreateToken(ctx, "alice", "ci", time.Hour)
	must(t, err)
	m := secretRE.FindStringSubmatch(sec1)
	if m == nil || m[1] != t1.ID {
		t.Fatalf("secret %q (id %q) has not the format alk_<id>_<random>", sec1, t1.ID)
	}
	now := e.clock.Now()
	if t1.User != "alice" || t1.Name != "ci" || !t1.Created.Equal(now) || !t1.Expires.Equal(now.Add(time.Hour)) {
		t.Fatalf("token: %+v", t1)
	}
	e.clock.Advance(time.Minute)
	sec2, t2, err := e.s.CreateToken(ctx, "alice", "laptop ✓", 2*time.Hour)
	must(t, err)
	if sec1 == sec2 || t1.ID == t2.ID {
		t.Fatal("two tokens alike")
	}
	list, err := e.s.ListTokens(ctx, "alice")
	must(t, err)
	if len(list) != 2 || list[0] != t1 || list[1] != t2 {
		t.Fatalf("ListTokens: %+v, want %+v and %+v", list, t1, t2)
	}
	if s := fmt.Sprintf("%+v %#v", list, list); strings.Contains(s, sec1[21:]) || strings.Contains(s, sec2[21:]) {
		t.Fatal("a listing holds a secret")
	}
	if l, _ := e.s.ListTokens(ctx, "bob"); len(l) != 0 {
		t.Fatalf("bob's tokens: %v", l)
	}

	// Only hashes are stored.
	for _, g := range []string{"authtokens", "authutok:alice"} {
		ms, err := e.mem.ListMarkers(ctx, g, 0)
		must(t, err)
		if len(ms) != 2 {
			t.Fatalf("group %s: %d markers", g, len(ms))
		}
		for _, mk := range ms {
			if strings.Contains(mk.Value, sec1[21:]) || strings.Contains(mk.Value, sec2[21:]) {
				t.Fatalf("stored marker %s/%s holds a secret: %s", g, mk.Key, mk.Value)
			}
		}
	}

	u, err := e.s.Authenticate(ctx, "alice", sec1)
	if err != nil || u.Name != "alice" || strings.Join(u.Roles, ",") != "push" {
		t.Fatalf("Authenticate with a token: %+v, %v", u, err)
	}
	if _, err := e.s.Authenticate(ctx, "bob", sec1); err != ident.ErrBadCredentials {
		t.Fatalf("alice's token as bob: %v", err)
	}
	if ok, err := e.s.TokenActive(ctx, t1.ID); !ok || err != nil {
		t.Fatalf("TokenActive: %v, %v", ok, err)
	}
	if e.compares.Load() != 0 {
		t.Fatalf("token logins ran bcrypt %d times", e.compares.Load())
	}

	// Revocation.
	must(t, e.s.RevokeToken(ctx, "alice", t1.ID))
	if _, err := e.s.Authenticate(ctx, "alice", sec1); err != ident.ErrBadCredentials {
		t.Fatalf("revoked token: %v", err)
	}
	if ok, _ := e.s.TokenActive(ctx, t1.ID); ok {
		t.Fatal("revoked token is active")
	}
	wantErr(t, "revoke twice", e.s.RevokeToken(ctx, "alice", t1.ID), ident.ErrNotFound)
	wantErr(t, "revoke another user's token", e.s.RevokeToken(ctx, "bob", t2.ID), ident.ErrNotFound)
	wantErr(t, "revoke a bad id", e.s.RevokeToken(ctx, "alice", "nope"), ident.ErrNotFound)
	if _, err := e.s.Authenticate(ctx, "alice", sec2); err != nil {
		t.Fatalf("token 2 after bob's revocation attempt: %v", err)
	}
	if list, _ := e.s.ListTokens(ctx, "alice"); len(list) != 1 || list[0] != t2 {
		t.Fatalf("ListTokens after revocation: %+v", list)
	}

	// Expiry, by the clock.
	e.clock.Advance(2*time.Hour - time.Millisecond)
	if _, err := e.s.Authenticate(ctx, "alice", sec2); err != nil {
		t.Fatalf("token 1 ms before its expiry: %v", err)
	}
	e.clock.Advance(time.Millisecond)
	if _, err := e.s.Authenticate(ctx, "alice", sec2); err != ident.ErrBadCredentials {
		t.Fatalf("expired token: %v", err)
	}
	if ok, _ := e.s.TokenActive(ctx, t2.ID); ok {
		t.Fatal("expired token is active")
	}
	if list, _ := e.s.ListTokens(ctx, "alice"); len(list) != 0 {
		t.Fatalf("ListTokens lists an expired token: %+v", list)
	}

	// Arguments.
	for _, ttl := range []time.Duration{0, -time.Hour, time.Millisecond, ident.MaxTokenTTL + time.Second} {
		if _, _, err := e.s.CreateToken(ctx, "alice", "x", ttl); !errors.Is(err, ident.ErrInvalid) {
			t.Errorf("ttl %s: %v", ttl, err)
		}
	}
	for _, name := range []string{"", "a\nb", strings.Repeat("n", 65), "\xff"} {
		if _, _, err := e.s.CreateToken(ctx, "alice", name, time.Hour); !errors.Is(err, ident.ErrInvalid) {
			t.Errorf("token name %q: %v", name, err)
		}
	}
	if _, _, err := e.s.CreateToken(ctx, "nobody", "x", time.Hour); !errors.Is(err, ident.ErrNotFound) {
		t.Errorf("token of nobody: %v", err)
	}
	if _, err := e.s.ListTokens(ctx, "nobody"); !errors.Is(err, ident.ErrNotFound) {
		t.Errorf("tokens of nobody: %v", err)
	}
	if ok, err := e.s.TokenActive(ctx, "not an id"); ok || err != nil {
		t.Errorf("TokenActive of a bad id: %v, %v", ok, err)
	}
}

func TestTokenLimit(t *testing.T) {
	e := newEnv(t, ident.Options{})
	must(t, e.s.CreateUser(ctx, "alice", alicePW, nil))
	for i := range ident.MaxTokensPerUser {
		if _, _, err := e.s.CreateToken(ctx, "alice", fmt.Sprint("t", i), time.Hour); err != nil {
			t.Fatalf("token %d: %v", i, err)
		}
	}
	if _, _, err := e.s.CreateToken(ctx, "alice", "one too many", time.Hour); !errors.Is(err, ident.ErrInvalid) {
		t.Fatalf("token %d: %v", ident.MaxTokensPerUser+1, err)
	}
	e.clock.Advance(time.Hour) // all expire
	if _, _, err := e.s.CreateToken(ctx, "alice", "fresh", time.Hour); err != nil {
		t.Fatalf("after expiry: %v", err)
	}
}

// TestMalformedTokens checks that malformed secrets are refused without a
// store read, and tampered well-formed ones after one.
func TestMalformedTokens(t *testing.T) {
	e := newEnv(t, ident.Options{})
	must(t, e.s.CreateUser(ctx, "alice", alicePW, nil))
	sec, tok, err := e.s.CreateToken(ctx, "alice", "ci", time.Hour)
	must(t, err)
	rnd := sec[21:]
	last := rnd[len(rnd)-1:]
	other := map[string]string{"a": "q", "q": "a"}[last] // the other canonical final character
	for _, bad := range []string{
		"alk_",
		"alk_" + tok.ID,
		"alk_" + tok.ID + "_",
		sec[:len(sec)-1],
		sec + "a",
		strings.ToUpper(sec[:4]) + sec[4:],
		"alk-" + sec[4:],
		"alk_" + tok.ID + "-" + rnd,
		"alk_" + strings.ToUpper(tok.ID) + "_" + rnd,
		"alk_" + tok.ID + "_" + strings.ToUpper(rnd),
		"alk_" + tok.ID + "_" + rnd[:len(rnd)-1] + "b", // non-canonical: trailing bits set
		"alk_" + tok.ID + "_" + rnd[:20] + "\n" + rnd[21:],
		"alk_" + tok.ID + "_" + rnd[:20] + "1" + rnd[21:], // not base32
		"alk_" + tok.ID[:15] + "__" + rnd,
		sec + "\n",
	} {
		before, compares := e.meta.calls.Load(), e.compares.Load()
		if _, err := e.s.Authenticate(ctx, "alice", bad); err != ident.ErrBadCredentials {
			t.Errorf("Authenticate(%q): %v", bad, err)
		}
		// "ALK_…", "alk-…" are passwords (wrong ones); "alk_…" never are.
		if n, c := e.meta.calls.Load()-before, e.compares.Load()-compares; strings.HasPrefix(bad, "alk_") && (n != 0 || c != 0) {
			t.Errorf("Authenticate(%q) made %d store calls, %d bcrypt comparisons", bad, n, c)
		}
	}
	// Well-formed but wrong: one read of the token's record, refused.
	for _, bad := range []string{
		"alk_" + tok.ID + "_" + rnd[:len(rnd)-1] + other,
		"alk_" + tok.ID + "_" + strings.Repeat("a", len(rnd)),
		"alk_" + strings.Repeat("a", 16) + "_" + rnd,
	} {
		if _, err := e.s.Authenticate(ctx, "alice", bad); err != ident.ErrBadCredentials {
			t.Errorf("Authenticate(%q): %v", bad, err)
		}
	}
	before := e.compares.Load()
	if _, err := e.s.Authenticate(ctx, "Alice", sec); err != ident.ErrBadCredentials {
		t.Errorf("token with a bad user name: %v", err)
	}
	if n := e.compares.Load() - before; n != 0 {
		t.Errorf("token checks ran bcrypt %d times", n)
	}
	if _, err := e.s.Authenticate(ctx, "alice", sec); err != nil {
		t.Fatalf("the real token: %v", err)
	}
}

// TestDeleteUserRevokesTokens checks that tokens die with their user, also
// for a new user of the same name.
func TestDeleteUserRevokesTokens(t *testing.T) {
	e := newEnv(t, ident.Options{})
	must(t, e.s.CreateUser(ctx, "alice", alicePW, nil))
	sec, tok, err := e.s.CreateToken(ctx, "alice", "ci", time.Hour)
	must(t, err)
	must(t, e.s.DeleteUser(ctx, "alice"))
	for _, g := range []string{"authtokens", "authutok:alice"} {
		if ms, _ := e.mem.ListMarkers(ctx, g, 0); len(ms) != 0 {
			t.Fatalf("%s after DeleteUser: %v", g, ms)
		}
	}
	must(t, e.s.CreateUser(ctx, "alice", alicePW, nil))
	if _, err := e.s.Authenticate(ctx, "alice", sec); err != ident.ErrBadCredentials {
		t.Fatalf("old token for the new alice: %v", err)
	}
	if ok, _ := e.s.TokenActive(ctx, tok.ID); ok {
		t.Fatal("old token active")
	}
	if l, _ := e.s.ListTokens(ctx, "alice"); len(l) != 0 {
		t.Fatalf("new alice lists old tokens: %v", l)
	}

	// A token item that outlived its user (a crash between the writes of
	// DeleteUser) still does not work for a new user of the name.
	sec2, tok2, err := e.s.CreateToken(ctx, "alice", "ci", time.Hour)
	must(t, err)
	must(t, e.mem.DeleteMarker(ctx, "authusers", "alice")) // the user goes, its tokens stay
	if ok, _ := e.s.TokenActive(ctx, tok2.ID); ok {
		t.Fatal("token of a missing user active")
	}
	must(t, e.s.CreateUser(ctx, "alice", alicePW, nil))
	if _, err := e.s.Authenticate(ctx, "alice", sec2); err != ident.ErrBadCredentials {
		t.Fatalf("leftover token for a new alice: %v", err)
	}
	if ok, _ := e.s.TokenActive(ctx, tok2.ID); ok {
		t.Fatal("leftover token active")
	}
}

func locked(t *testing.T, err error) time.Duration {
	t.Helper()
	var le *ident.LockedError
	if !errors.As(err, &le) {
		t.Fatalf("want *LockedError, got %v", err)
	}
	return le.RetryAfter
}

func TestBruteForce(t *testing.T) {
	e := newEnv(t, ident.Options{})
	must(t, e.s.CreateUser(ctx, "alice", alicePW, nil))
	must(t, e.s.CreateUser(ctx, "bob", bobPW, nil))
	fail := func(n int) {
		t.Helper()
		for i := range n {
			if _, err := e.s.Authenticate(ctx, "alice", fmt.Sprint("wrong guess ", i)); err != ident.ErrBadCredentials {
				t.Fatalf("wrong password %d: %v", i+1, err)
			}
		}
	}
	fail(5)
	_, err := e.s.Authenticate(ctx, "alice", "wrong guess 6")
	if d := locked(t, err); d != time.Minute {
		t.Fatalf("RetryAfter %s, want 1m", d)
	}
	before := e.compares.Load()
	e.clock.Advance(30 * time.Second)
	_, err = e.s.Authenticate(ctx, "alice", alicePW)
	if d := locked(t, err); d != 30*time.Second {
		t.Fatalf("right password while locked: RetryAfter %s, want 30s", d)
	}
	if n := e.compares.Load() - before; n != 0 {
		t.Fatalf("bcrypt ran %d times while locked", n)
	}
	// Other users are unaffected.
	if _, err := e.s.Authenticate(ctx, "bob", bobPW); err != nil {
		t.Fatalf("bob while alice is locked: %v", err)
	}
	if _, err := e.s.Authenticate(ctx, "bob", "bob's wrong password"); err != ident.ErrBadCredentials {
		t.Fatalf("bob's wrong password: %v", err)
	}
	// Tokens are not locked.
	tokSecret, _, err := e.s.CreateToken(ctx, "alice", "ci", time.Hour)
	must(t, err)
	if _, err := e.s.Authenticate(ctx, "alice", tokSecret); err != nil {
		t.Fatalf("token while locked: %v", err)
	}
	e.clock.Advance(30*time.Second - time.Millisecond)
	locked(t, func() error { _, err := e.s.Authenticate(ctx, "alice", alicePW); return err }())
	e.clock.Advance(time.Millisecond)
	if _, err := e.s.Authenticate(ctx, "alice", alicePW); err != nil {
		t.Fatalf("after the lock: %v", err)
	}

	// A success clears the count: 4 + success + 4 failures do not lock.
	fail(4)
	if _, err := e.s.Authenticate(ctx, "alice", alicePW); err != nil {
		t.Fatal(err)
	}
	fail(4)
	if _, err := e.s.Authenticate(ctx, "alice", alicePW); err != nil {
		t.Fatalf("after 4+4 failures around a success: %v", err)
	}
	// Failures count for Window: 4, then 15 minutes, then 4 more do not lock.
	fail(4)
	e.clock.Advance(15 * time.Minute)
	fail(4)
	if _, err := e.s.Authenticate(ctx, "alice", alicePW); err != nil {
		t.Fatalf("after 4 failures, a window, 4 failures: %v", err)
	}

	// Repeated locks double, up to 15m; the success above reset the level.
	for i, want := range []time.Duration{time.Minute, 2 * time.Minute, 4 * time.Minute, 8 * time.Minute, 15 * time.Minute, 15 * time.Minute} {
		fail(5)
		_, err := e.s.Authenticate(ctx, "alice", alicePW)
		if d := locked(t, err); d != want {
			t.Fatalf("lock %d: %s, want %s", i+1, d, want)
		}
		e.clock.Advance(want)
	}
	// A quiet Window after a lock's end resets the level.
	e.clock.Advance(15 * time.Minute)
	fail(5)
	if d := locked(t, func() error { _, err := e.s.Authenticate(ctx, "alice", alicePW); return err }()); d != time.Minute {
		t.Fatalf("lock after a quiet window: %s, want 1m", d)
	}
	// SetPassword unlocks.
	must(t, e.s.SetPassword(ctx, "alice", "the reset password"))
	if _, err := e.s.Authenticate(ctx, "alice", "the reset password"); err != nil {
		t.Fatalf("after SetPassword: %v", err)
	}
}

func TestBruteForceOptions(t *testing.T) {
	e := newEnv(t, ident.Options{MaxFailures: 2, Window: time.Minute, Lock: 10 * time.Second, MaxLock: 25 * time.Second})
	must(t, e.s.CreateUser(ctx, "alice", alicePW, nil))
	for i, want := range []time.Duration{10 * time.Second, 20 * time.Second, 25 * time.Second} {
		for range 2 {
			if _, err := e.s.Authenticate(ctx, "alice", "wrong password!"); err != ident.ErrBadCredentials {
				t.Fatal(err)
			}
		}
		_, err := e.s.Authenticate(ctx, "alice", alicePW)
		if d := locked(t, err); d != want {
			t.Fatalf("lock %d: %s, want %s", i+1, d, want)
		}
		e.clock.Advance(want)
	}
}

// TestParallelGuesses checks that racing wrong passwords get at most
// MaxFailures bcrypt checks per window.
func TestParallelGuesses(t *testing.T) {
	e := newEnv(t, ident.Options{})
	must(t, e.s.CreateUser(ctx, "alice", alicePW, nil))
	const n = 30
	var wg sync.WaitGroup
	var bad, lockedN atomic.Int64
	for i := range n {
		wg.Add(1)
		go func() {
			defer wg.Done()
			_, err := e.s.Authenticate(ctx, "alice", fmt.Sprint("parallel guess ", i))
			var le *ident.LockedError
			switch {
			case err == ident.ErrBadCredentials:
				bad.Add(1)
			case errors.As(err, &le):
				lockedN.Add(1)
			default:
				t.Errorf("guess %d: %v", i, err)
			}
		}()
	}
	wg.Wait()
	if c := e.compares.Load(); c > 5 || bad.Load() != c || bad.Load()+lockedN.Load() != n {
		t.Fatalf("%d bcrypt checks, %d refused, %d locked", c, bad.Load(), lockedN.Load())
	}
	locked(t, func() error { _, err := e.s.Authenticate(ctx, "alice", alicePW); return err }())
}

// TestParallelLogins checks that many concurrent right logins all succeed
// (attempts in flight hold slots; the others wait for them).
func TestParallelLogins(t *testing.T) {
	e := newEnv(t, ident.Options{})
	must(t, e.s.CreateUser(ctx, "alice", alicePW, nil))
	var wg sync.WaitGroup
	for i := range 16 {
		wg.Add(1)
		go func() {
			defer wg.Done()
			if _, err := e.s.Authenticate(ctx, "alice", alicePW); err != nil {
				t.Errorf("login %d: %v", i, err)
			}
		}()
	}
	wg.Wait()
	if ms, _ := e.mem.ListMarkers(ctx, "authlogin:alice", 0); len(ms) != 0 {
		t.Fatalf("slots left: %v", ms)
	}
}

// TestUnknownUser checks that unknown (and impossible) names cost a bcrypt
// comparison, against the dummy hash, and are counted and locked like
// known ones.
func TestUnknownUser(t *testing.T) {
	e := newEnv(t, ident.Options{})
	must(t, e.s.CreateUser(ctx, "alice", alicePW, nil))
	dummy := ident.DummyHash(e.s)
	for _, name := range []string{"nobody", "Not A Name!", "", strings.Repeat("n", 65)} {
		e.hashes = nil
		before := e.compares.Load()
		if _, err := e.s.Authenticate(ctx, name, alicePW); err != ident.ErrBadCredentials {
			t.Fatalf("unknown user %q: %v", name, err)
		}
		if n := e.compares.Load() - before; n != 1 || !bytes.Equal(e.hashes[0], dummy) {
			t.Fatalf("unknown user %q: %d bcrypt comparisons (want 1, against the dummy hash)", name, n)
		}
	}
	// The dummy hash has the configured cost, like real hashes.
	if c, err := bcrypt.Cost(dummy); err != nil || c != bcrypt.MinCost {
		t.Fatalf("dummy cost %d, %v", c, err)
	}
	// A known user with a wrong password: one comparison, against its hash.
	e.hashes = nil
	before := e.compares.Load()
	if _, err := e.s.Authenticate(ctx, "alice", "wrong password!"); err != ident.ErrBadCredentials {
		t.Fatal(err)
	}
	if n := e.compares.Load() - before; n != 1 || bytes.Equal(e.hashes[0], dummy) {
		t.Fatalf("known user: %d comparisons", n)
	}
	// A too long password: still one comparison.
	before = e.compares.Load()
	if _, err := e.s.Authenticate(ctx, "alice", strings.Repeat("x", 100)); err != ident.ErrBadCredentials {
		t.Fatal(err)
	}
	if n := e.compares.Load() - before; n != 1 {
		t.Fatalf("long password: %d comparisons", n)
	}
	// Unknown names lock like known ones: locks tell nothing ("nobody"
	// failed once above).
	for range 4 {
		if _, err := e.s.Authenticate(ctx, "nobody", "some password"); err != ident.ErrBadCredentials {
			t.Fatal(err)
		}
	}
	locked(t, func() error { _, err := e.s.Authenticate(ctx, "nobody", "some password"); return err }())
}

// TestNoSecretsInErrors collects the errors of every operation handed a
// password or returning a secret, including store failures whose texts
// quote the Values written (as package dynamo's do), and checks that none
// holds a password, a token secret or a hash.
func TestNoSecretsInErrors(t *testing.T) {
	e := newEnv(t, ident.Options{MaxFailures: 2})
	const pw = "s3cret-Password-42"
	must(t, e.s.CreateUser(ctx, "alice", pw, nil))
	sec, tok, err := e.s.CreateToken(ctx, "alice", "ci", time.Hour)
	must(t, err)
	var secrets []string
	secrets = append(secrets, pw, sec, sec[21:], "$2a$", "$2b$", "sha256")
	for _, mk := range mustList(t, e.mem, "authtokens") {
		secrets = append(secrets, between(mk.Value, `"sha256":"`, `"`))
	}
	for _, mk := range mustList(t, e.mem, "authusers") {
		secrets = append(secrets, between(mk.Value, `"hash":"`, `"`))
	}

	var errs []error
	add := func(err error) {
		if err != nil {
			errs = append(errs, err)
		}
	}
	add(e.s.CreateUser(ctx, "alice", pw, nil)) // exists: memstore quotes both Values
	_, err = e.s.Authenticate(ctx, "alice", "wrong "+pw)
	add(err)
	add(e.s.CreateUser(ctx, "bob", pw[:5], nil))
	add(e.s.CreateUser(ctx, "Bad Name", pw, nil))
	add(e.s.SetPassword(ctx, "nobody", pw))
	add(e.s.SetPassword(ctx, "alice", pw[:8]))
	_, err = e.s.Bootstrap(ctx, "root", "short")
	add(err)
	for _, s := range []string{pw + "x", sec[:len(sec)-1], sec + "x", "alk_" + tok.ID + "_" + strings.Repeat("a", 52)} {
		_, err := e.s.Authenticate(ctx, "alice", s)
		add(err)
		_, err = e.s.Authenticate(ctx, "bob", s)
		add(err)
	}
	_, err = e.s.Authenticate(ctx, "alice", pw) // locked now
	add(err)
	must(t, e.s.RevokeToken(ctx, "alice", tok.ID))
	_, err = e.s.Authenticate(ctx, "alice", sec)
	add(err)

	// Store failures of writes holding a hash: sealed.
	e.meta.failWrite = func(g string) bool { return g == "authusers" || g == "authtokens" }
	err = e.s.CreateUser(ctx, "carol", pw, nil)
	if err == nil || !strings.Contains(err.Error(), "ThrottlingException") {
		t.Fatalf("CreateUser on a failing store: %v (want the error code)", err)
	}
	add(err)
	err = e.s.SetPassword(ctx, "alice", pw+"2")
	if err == nil {
		t.Fatal("SetPassword on a failing store: no error")
	}
	add(err)
	e.meta.failWrite = func(g string) bool { return g == "authtokens" }
	_, _, err = e.s.CreateToken(ctx, "alice", "ci", time.Hour)
	if err == nil {
		t.Fatal("CreateToken on a failing store: no error")
	}
	add(err)
	e.meta.failWrite = nil
	if ms := mustList(t, e.mem, "authutok:alice"); len(ms) != 0 {
		t.Fatalf("failed CreateToken left its listing item: %v", ms)
	}

	if len(errs) < 15 {
		t.Fatalf("only %d errors collected", len(errs))
	}
	for _, err := range errs {
		msg := fmt.Sprintf("%v %+v %#v", err, err, err)
		for u := errors.Unwrap(err); u != nil; u = errors.Unwrap(u) {
			msg += " " + u.Error()
		}
		for _, s := range secrets {
			if s != "" && strings.Contains(msg, s) {
				t.Errorf("error %q holds secret %q", err, s)
			}
		}
	}
	// Sealed errors still tell their kind to errors.Is.
	e.meta.failWrite = func(g string) bool { return g == "authusers" }
	if err := e.s.CreateUser(ctx, "dave", pw, nil); errors.Is(err, ident.ErrExists) || err == nil {
		t.Fatalf("failing store read as exists: %v", err)
	}
}

func mustList(t *testing.T, m storage.ProxyMetadata, g string) []storage.Marker {
	t.Helper()
	ms, err := m.ListMarkers(ctx, g, 0)
	must(t, err)
	return ms
}

// between returns the text of s after the first a, up to the next b.
func between(s, a, b string) string {
	i := strings.Index(s, a)
	if i < 0 {
		return ""
	}
	s = s[i+len(a):]
	if j := strings.Index(s, b); j >= 0 {
		return s[:j]
	}
	return s
}

// TestMutationsSerialised checks that a password change racing a delete
// never brings the user back.
func TestMutationsSerialised(t *testing.T) {
	e := newEnv(t, ident.Options{})
	for i := range 20 {
		name := fmt.Sprint("user", i)
		must(t, e.s.CreateUser(ctx, name, alicePW, nil))
		var wg sync.WaitGroup
		wg.Add(3)
		go func() { defer wg.Done(); _ = e.s.SetPassword(ctx, name, "a changed password") }()
		go func() { defer wg.Done(); _ = e.s.SetRoles(ctx, name, []string{"x"}) }()
		go func() {
			defer wg.Done()
			if err := e.s.DeleteUser(ctx, name); err != nil {
				t.Errorf("DeleteUser: %v", err)
			}
		}()
		wg.Wait()
		if _, err := e.s.GetUser(ctx, name); !errors.Is(err, ident.ErrNotFound) {
			t.Fatalf("round %d: user back after delete: %v", i, err)
		}
	}
	if ms := mustList(t, e.mem, "authlease"); len(ms) != 0 {
		t.Fatalf("leases left: %v", ms)
	}
}

func TestLockedErrorText(t *testing.T) {
	if s := (&ident.LockedError{RetryAfter: 1500 * time.Millisecond}).Error(); !strings.Contains(s, "2s") {
		t.Fatalf("LockedError: %s", s)
	}
}
