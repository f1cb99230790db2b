package registry_test

import (
	"context"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/x509"
	"encoding/json"
	"encoding/pem"
	"io"
	"net/http"
	"net/url"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/airlock-registry/airlock/shared/auth"
	"github.com/airlock-registry/airlock/shared/registry"
	"github.com/airlock-registry/airlock/shared/storage/memstore"
)

// TestAuthLogins: the OAuth2 POST (containerd), refresh grants (docker after
// login), API tokens as passwords (CI), revocation, and per-user lock-out.
func TestAuthLogins(t *testing.T) {
	e := newAuthEnv(t)
	post := func(form url.Values, basic ...string) resp {
		req, _ := http.NewRequest(http.MethodPost, e.srv.URL+"/v2/token", strings.NewReader(form.Encode()))
		req.Header.Set("Content-Type", "application/x-www-form-urlencoded")
		res, err := http.DefaultClient.Do(req)
		if err != nil {
			t.Fatal(err)
		}
		defer res.Body.Close()
		b, _ := io.ReadAll(res.Body)
		return resp{Status: res.StatusCode, Header: res.Header, Body: b}
	}
	r := post(url.Values{"grant_type": {"password"}, "username": {"alice"}, "password": {"alice-password-1234"}, "service": {e.host}, "scope": {"repository:team-a/app:pull"}, "access_type": {"offline"}, "client_id": {"containerd"}})
	var doc struct {
		Token     string `json:"token"`
		Access    string `json:"access_token"`
		Refresh   string `json:"refresh_token"`
		ExpiresIn int    `json:"expires_in"`
		IssuedAt  string `json:"issued_at"`
	}
	if err := json.Unmarshal(r.Body, &doc); r.Status != http.StatusOK || err != nil || doc.Access == "" || doc.Refresh == "" || doc.ExpiresIn != 300 || doc.IssuedAt == "" {
		t.Fatalf("password grant: %s", r)
	}
	r = post(url.Values{"grant_type": {"refresh_token"}, "refresh_token": {doc.Refresh}, "service": {e.host}, "scope": {"repository:team-a/app:pull,push"}})
	if r.Status != http.StatusOK || !strings.Contains(string(r.Body), `"access_token"`) {
		t.Errorf("refresh grant: %s", r)
	}
	r = post(url.Values{"grant_type": {"refresh_token"}, "refresh_token": {doc.Access}, "service": {e.host}})
	if r.Status != http.StatusUnauthorized {
		t.Errorf("an access token as a refresh token: %s", r)
	}
	for _, f := range []url.Values{{"grant_type": {"client_credentials"}, "service": {e.host}}, {"grant_type": {"password"}, "username": {"alice"}, "password": {"x"}}} {
		if r := post(f); r.Status/100 != 4 {
			t.Errorf("bad grant %v: %s", f, r)
		}
	}
	// API token through the admin API, used as the password.
	adm := func(method, path, body string, user, pass string) resp {
		req, _ := http.NewRequest(method, e.srv.URL+path, strings.NewReader(body))
		if user != "" {
			req.SetBasicAuth(user, pass)
		}
		res, err := http.DefaultClient.Do(req)
		if err != nil {
			t.Fatal(err)
		}
		defer res.Body.Close()
		b, _ := io.ReadAll(res.Body)
		return resp{Status: res.StatusCode, Header: res.Header, Body: b}
	}
	r = adm(http.MethodPost, "/airlock/api/users/alice/tokens", `{"name":"ci","ttl":"24h"}`, "admin", "admin-password-1234")
	var tk struct {
		Secret string `json:"secret"`
		Token  struct{ ID string }
	}
	if err := json.Unmarshal(r.Body, &tk); r.Status != http.StatusCreated || err != nil || tk.Secret == "" {
		t.Fatalf("create API token: %s", r)
	}
	tokenLogin := func(secret string) int {
		q := url.Values{"service": {e.host}, "scope": {"repository:team-a/app:pull"}}
		req, _ := http.NewRequest(http.MethodGet, e.srv.URL+"/v2/token?"+q.Encode(), nil)
		req.SetBasicAuth("alice", secret)
		res, _ := http.DefaultClient.Do(req)
		res.Body.Close()
		return res.StatusCode
	}
	if s := tokenLogin(tk.Secret); s != http.StatusOK {
		t.Errorf("login with the API token: %d", s)
	}
	if r := adm(http.MethodGet, "/airlock/api/users/alice/tokens", "", "admin", "admin-password-1234"); strings.Contains(string(r.Body), tk.Secret) {
		t.Errorf("the token list shows the secret")
	}
	if r := adm(http.MethodGet, "/airlock/api/users", "", "alice", "alice-password-1234"); r.Status != http.StatusForbidden {
		t.Errorf("a non-admin on the admin API: %s", r)
	}
	if r := adm(http.MethodGet, "/airlock/api/users", "", "", ""); r.Status != http.StatusUnauthorized {
		t.Errorf("anonymous on the admin API: %s", r)
	}
	if r := adm(http.MethodDelete, "/airlock/api/users/alice/tokens/"+tk.Token.ID, "", "admin", "admin-password-1234"); r.Status != http.StatusOK {
		t.Fatalf("revoke: %s", r)
	}
	if s := tokenLogin(tk.Secret); s != http.StatusUnauthorized {
		t.Errorf("login with a revoked API token: %d, want 401", s)
	}
	// Brute force: bob is locked after repeated failures; alice is not.
	var last int
	for range 8 {
		q := url.Values{"service": {e.host}}
		req, _ := http.NewRequest(http.MethodGet, e.srv.URL+"/v2/token?"+q.Encode(), nil)
		req.SetBasicAuth("bob", "wrong-password-xx")
		res, _ := http.DefaultClient.Do(req)
		res.Body.Close()
		last = res.StatusCode
	}
	if last != http.StatusTooManyRequests {
		t.Errorf("after 8 failures: %d, want 429 (locked)", last)
	}
	if _, r := e.token("bob", "repository:team-b/app:pull"); r.Status != http.StatusTooManyRequests {
		t.Errorf("bob's right password while locked: %s, want 429", r)
	}
	if _, r := e.token("alice", "repository:team-a/app:pull"); r.Status != http.StatusOK {
		t.Errorf("alice while bob is locked: %s", r)
	}
	e.clock.Advance(20 * time.Minute)
	if _, r := e.token("bob", "repository:team-b/app:pull"); r.Status != http.StatusOK {
		t.Errorf("bob after the lock: %s", r)
	}
}

// TestAuthOperatorKey: auth.signingKeyEnv makes the registry sign with the
// operator's key; two registries sharing it accept each other's tokens
// (one per region, say), and a registry with another key refuses them.
func TestAuthOperatorKey(t *testing.T) {
	k, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	der, _ := x509.MarshalPKCS8PrivateKey(k)
	t.Setenv("AIRLOCK_TEST_SIGNING_KEY", string(pem.EncodeToMemory(&pem.Block{Type: "PRIVATE KEY", Bytes: der})))
	doc := strings.Replace(authConfig, "auth:\n", "auth:\n  signingKeyEnv: AIRLOCK_TEST_SIGNING_KEY\n", 1)
	mk := func(doc string) *registry.Registry {
		st := memstore.New()
		t.Cleanup(func() { st.Close() })
		reg, err := registry.New(registry.Deps{Meta: st, Blobs: st, Config: mustConfig(t, doc), AuthOptions: auth.Options{BcryptCost: 4}})
		if err != nil {
			t.Fatal(err)
		}
		return reg
	}
	a, b, other := mk(doc), mk(doc), mk(authConfig)
	tok, _, err := a.Auth().Tokens.Issue(context.Background(), "alice", "reg.example.com", nil)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := b.Auth().Verify(context.Background(), tok, "reg.example.com"); err != nil {
		t.Errorf("a registry with the same operator key refused the token: %v", err)
	}
	if _, err := other.Auth().Verify(context.Background(), tok, "reg.example.com"); err == nil {
		t.Error("a registry with its own key accepted the token")
	}
	t.Setenv("AIRLOCK_TEST_SIGNING_KEY", "")
	if _, err := registry.New(registry.Deps{Meta: memstore.New(), Blobs: memstore.New(), Config: mustConfig(t, doc)}); err == nil || !strings.Contains(err.Error(), "AIRLOCK_TEST_SIGNING_KEY") {
		t.Errorf("unset signingKeyEnv: %v", err)
	}
}

// TestAuthRefreshRevocation: refresh tokens end with a password change or
// the user's re-creation; an API-token login gets no refresh token (so its
// revocation takes effect at once); the catalog challenges callers without
// credentials.
func TestAuthRefreshRevocation(t *testing.T) {
	e := newAuthEnv(t)
	get := func(user, pass string, q url.Values) (int, map[string]any) {
		q.Set("service", e.host)
		req, _ := http.NewRequest(http.MethodGet, e.srv.URL+"/v2/token?"+q.Encode(), nil)
		req.SetBasicAuth(user, pass)
		res, err := http.DefaultClient.Do(req)
		if err != nil {
			t.Fatal(err)
		}
		defer res.Body.Close()
		var doc map[string]any
		_ = json.NewDecoder(res.Body).Decode(&doc)
		return res.StatusCode, doc
	}
	refresh := func(rt string) int {
		form := url.Values{"grant_type": {"refresh_token"}, "refresh_token": {rt}, "service": {e.host}}
		res, err := http.PostForm(e.srv.URL+"/v2/token", form)
		if err != nil {
			t.Fatal(err)
		}
		res.Body.Close()
		return res.StatusCode
	}
	_, doc := get("alice", "alice-password-1234", url.Values{"offline_token": {"true"}})
	rt, _ := doc["refresh_token"].(string)
	if rt == "" || refresh(rt) != http.StatusOK {
		t.Fatalf("refresh token of a password login: %v", doc)
	}
	if err := e.reg.Auth().Users.SetPassword(context.Background(), "alice", "alice-new-password-1"); err != nil {
		t.Fatal(err)
	}
	if c := refresh(rt); c != http.StatusUnauthorized {
		t.Errorf("refresh after a password change: %d, want 401", c)
	}
	// Re-created under the same name.
	_, doc = get("bob", "bob-password-1234", url.Values{"offline_token": {"true"}})
	rt, _ = doc["refresh_token"].(string)
	ctx := context.Background()
	if err := e.reg.Auth().Users.DeleteUser(ctx, "bob"); err != nil {
		t.Fatal(err)
	}
	if err := e.reg.Auth().Users.CreateUser(ctx, "bob", "bob-password-1234", []string{"admin"}); err != nil {
		t.Fatal(err)
	}
	if c := refresh(rt); c != http.StatusUnauthorized {
		t.Errorf("the old bob's refresh token for the new bob: %d, want 401", c)
	}
	// API token login: no refresh token.
	secret, _, err := e.reg.Auth().Users.CreateToken(ctx, "rita", "ci", time.Hour)
	if err != nil {
		t.Fatal(err)
	}
	c, doc := get("rita", secret, url.Values{"offline_token": {"true"}})
	if c != http.StatusOK || doc["refresh_token"] != nil {
		t.Errorf("API token login with offline_token: %d %v, want a token and no refresh token", c, doc)
	}
	// The catalog challenges a caller without credentials.
	r := e.req(http.MethodGet, "/v2/_catalog", "")
	if r.Status != http.StatusUnauthorized || !strings.Contains(r.Header.Get("Www-Authenticate"), `scope="registry:catalog:*"`) {
		t.Errorf("catalog without credentials: %s %v", r, r.Header)
	}
}

// TestAuthDirectUpload: the direct-to-S3 requests (part URLs, completion)
// need the push scope like any upload: a pull-only token and another team's
// token get no part URL, the owner's push token does.
func TestAuthDirectUpload(t *testing.T) {
	e := newAuthEnv(t)
	push, _ := e.token("alice", "repository:team-a/big:pull,push")
	r := e.req(http.MethodPost, "/v2/team-a/big/blobs/uploads/", push)
	loc := r.Header.Get("Location")
	if r.Status != http.StatusAccepted || loc == "" {
		t.Fatalf("open a session: %s", r)
	}
	parts := loc + "?size=" + strconv.Itoa(12<<20) + "&airlock-part-size=" + strconv.Itoa(5<<20)
	pull, _ := e.token("alice", "repository:team-a/big:pull")
	if r := e.req(http.MethodPost, parts, pull); r.Status != http.StatusUnauthorized {
		t.Errorf("part URLs with a pull-only token: %s, want 401", r)
	}
	if r := e.req(http.MethodPost, parts, ""); r.Status != http.StatusUnauthorized {
		t.Errorf("part URLs without a token: %s, want 401", r)
	}
	other, _ := e.token("bob", "repository:team-a/big:pull,push")
	if r := e.req(http.MethodPost, parts, other); r.Status != http.StatusForbidden {
		t.Errorf("part URLs with another team's token: %s, want 403", r)
	}
	if r := e.req(http.MethodPut, loc+"?digest=sha256:"+strings.Repeat("0", 64)+"&airlock-complete=1", other); r.Status != http.StatusForbidden {
		t.Errorf("completion with another team's token: %s, want 403", r)
	}
	if r := e.req(http.MethodPost, parts, push); r.Status != http.StatusOK || !strings.Contains(string(r.Body), `"parts"`) {
		t.Errorf("part URLs with the owner's push token: %s", r)
	}
}

// TestAuthAdminUsersErrors: the admin API's refusals, each with its status.
func TestAuthAdminUsersErrors(t *testing.T) {
	e := newAuthEnv(t)
	adm := func(method, path, body string) resp {
		req, _ := http.NewRequest(method, e.srv.URL+path, strings.NewReader(body))
		req.SetBasicAuth("admin", "admin-password-1234")
		res, err := http.DefaultClient.Do(req)
		if err != nil {
			t.Fatal(err)
		}
		defer res.Body.Close()
		b, _ := io.ReadAll(res.Body)
		return resp{Status: res.StatusCode, Header: res.Header, Body: b}
	}
	for _, c := range []struct {
		name, method, path, body string
		status                   int
	}{
		{"duplicate user", http.MethodPost, "/airlock/api/users", `{"name":"alice","password":"another-password-1","roles":["team-a"]}`, http.StatusConflict},
		{"weak password", http.MethodPost, "/airlock/api/users", `{"name":"dave","password":"short","roles":[]}`, http.StatusBadRequest},
		{"unknown role", http.MethodPost, "/airlock/api/users", `{"name":"dave","password":"a-long-password-1","roles":["ghost"]}`, http.StatusBadRequest},
		{"bad name", http.MethodPost, "/airlock/api/users", `{"name":"Dave!","password":"a-long-password-1"}`, http.StatusBadRequest},
		{"not JSON", http.MethodPost, "/airlock/api/users", `{name:`, http.StatusBadRequest},
		{"unknown field", http.MethodPost, "/airlock/api/users", `{"name":"dave","pasword":"a-long-password-1"}`, http.StatusBadRequest},
		{"delete unknown user", http.MethodDelete, "/airlock/api/users/nobody", "", http.StatusNotFound},
		{"token of unknown user", http.MethodPost, "/airlock/api/users/nobody/tokens", `{"name":"ci"}`, http.StatusNotFound},
		{"bad ttl", http.MethodPost, "/airlock/api/users/alice/tokens", `{"name":"ci","ttl":"soon"}`, http.StatusBadRequest},
		{"revoke unknown token", http.MethodDelete, "/airlock/api/users/alice/tokens/nope", "", http.StatusNotFound},
		{"no such endpoint", http.MethodPatch, "/airlock/api/users/alice", "", http.StatusNotFound},
	} {
		if r := adm(c.method, c.path, c.body); r.Status != c.status {
			t.Errorf("%s: %s, want %d", c.name, r, c.status)
		}
	}
	// Nothing changed: alice still logs in with her password.
	if _, r := e.token("alice", "repository:team-a/app:pull"); r.Status != http.StatusOK {
		t.Errorf("alice after the refused calls: %s", r)
	}
}
