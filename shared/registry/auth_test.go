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
	"net/http/httptest"
	"net/url"
	"strings"
	"testing"
	"time"

	"github.com/google/go-containerregistry/pkg/authn"
	gname "github.com/google/go-containerregistry/pkg/name"
	"github.com/google/go-containerregistry/pkg/v1/remote"

	"github.com/airlock-registry/airlock/shared/auth"
	"github.com/airlock-registry/airlock/shared/registry"
	"github.com/airlock-registry/airlock/shared/storage/memstore"
	"github.com/airlock-registry/airlock/shared/upstream/upstreamtest"
)

const authConfig = `
default: local
repositories:
- {name: local, kind: hosted}
- {name: pub, kind: hosted, anonymousPull: true}
- {name: docker, kind: group, members: [local, pub], writeMember: local, anonymousPull: true}
auth:
  tokenLifetime: 5m
  roles:
  - name: team-a
    privileges:
    - repositories: [local, docker]
      selector: 'path =^ "/v2/team-a/"'
      actions: [read, browse, add, edit]
  - name: team-b
    privileges:
    - repositories: [local]
      selector: 'path =^ "/v2/team-b/"'
      actions: [read, browse, add, edit, delete]
  - name: reader
    privileges:
    - repositories: ['*']
      actions: [read, browse]
`

type authEnv struct {
	t     *testing.T
	reg   *registry.Registry
	srv   *httptest.Server
	clock *clock
	host  string
}

func newAuthEnv(t *testing.T) *authEnv {
	t.Helper()
	e := &authEnv{t: t, clock: &clock{now: time.Now()}}
	st := memstore.New(memstore.WithClock(e.clock.Now))
	t.Cleanup(func() { st.Close() })
	reg, err := registry.New(registry.Deps{Meta: st, Blobs: st, Config: mustConfig(t, authConfig), Now: e.clock.Now,
		AuthOptions: auth.Options{BcryptCost: 4}})
	if err != nil {
		t.Fatal(err)
	}
	e.reg = reg
	e.srv = httptest.NewServer(reg)
	t.Cleanup(e.srv.Close)
	e.host = strings.TrimPrefix(e.srv.URL, "http://")
	ctx := context.Background()
	if _, err := reg.Auth().Users.Bootstrap(ctx, "admin", "admin-password-1234"); err != nil {
		t.Fatal(err)
	}
	for _, u := range []struct{ name, role string }{{"alice", "team-a"}, {"bob", "team-b"}, {"rita", "reader"}} {
		if err := reg.Auth().Users.CreateUser(ctx, u.name, u.name+"-password-1234", []string{u.role}); err != nil {
			t.Fatal(err)
		}
	}
	return e
}

func (e *authEnv) req(method, path, bearer string, hdr ...string) resp {
	e.t.Helper()
	req, _ := http.NewRequest(method, e.srv.URL+path, nil)
	if bearer != "" {
		req.Header.Set("Authorization", "Bearer "+bearer)
	}
	for i := 0; i+1 < len(hdr); i += 2 {
		req.Header.Set(hdr[i], hdr[i+1])
	}
	res, err := noRedirect.Do(req)
	if err != nil {
		e.t.Fatal(err)
	}
	defer res.Body.Close()
	b, _ := io.ReadAll(res.Body)
	return resp{Status: res.StatusCode, Header: res.Header, Body: b}
}

// token gets a token as user (password user+"-password-1234"; "" anonymous) for scopes.
func (e *authEnv) token(user string, scopes ...string) (string, resp) {
	e.t.Helper()
	q := url.Values{"service": {e.host}, "scope": scopes}
	req, _ := http.NewRequest(http.MethodGet, e.srv.URL+"/v2/token?"+q.Encode(), nil)
	if user != "" {
		req.SetBasicAuth(user, user+"-password-1234")
	}
	res, err := http.DefaultClient.Do(req)
	if err != nil {
		e.t.Fatal(err)
	}
	defer res.Body.Close()
	b, _ := io.ReadAll(res.Body)
	var doc struct {
		Token string `json:"token"`
	}
	_ = json.Unmarshal(b, &doc)
	return doc.Token, resp{Status: res.StatusCode, Header: res.Header, Body: b}
}

func (e *authEnv) push(user, name string) error {
	img := upstreamtest.New(e.t).PushImage(e.t, "x", "1", 1, 100)
	ref, err := gname.ParseReference(e.host+"/"+name+":1", gname.Insecure)
	if err != nil {
		return err
	}
	var a authn.Authenticator = authn.Anonymous
	if user != "" {
		a = &authn.Basic{Username: user, Password: user + "-password-1234"}
	}
	return remote.Write(ref, img.Image, remote.WithAuth(a), remote.WithRetryBackoff(remote.Backoff{Steps: 1}))
}

func (e *authEnv) pull(user, name string) error {
	ref, err := gname.ParseReference(e.host+"/"+name+":1", gname.Insecure)
	if err != nil {
		return err
	}
	var a authn.Authenticator = authn.Anonymous
	if user != "" {
		a = &authn.Basic{Username: user, Password: user + "-password-1234"}
	}
	img, err := remote.Image(ref, remote.WithAuth(a), remote.WithRetryBackoff(remote.Backoff{Steps: 1}))
	if err != nil {
		return err
	}
	ls, err := img.Layers()
	if err != nil {
		return err
	}
	rc, err := ls[0].Compressed()
	if err != nil {
		return err
	}
	defer rc.Close()
	_, err = io.Copy(io.Discard, rc)
	return err
}

// TestAuthChallenge: without a token everything but anonymous pulls gets
// 401 with the Bearer challenge naming realm, service and scope.
func TestAuthChallenge(t *testing.T) {
	e := newAuthEnv(t)
	r := e.req(http.MethodGet, "/v2/", "")
	want := `Bearer realm="` + e.srv.URL + `/v2/token",service="` + e.host + `"`
	if r.Status != http.StatusUnauthorized || r.Header.Get("Www-Authenticate") != want || errCode(r) != registry.CodeUnauthorized {
		t.Errorf("/v2/ without a token: %s %q, want 401 %s", r, r.Header.Get("Www-Authenticate"), want)
	}
	r = e.req(http.MethodGet, "/v2/team-a/app/manifests/1", "")
	if r.Status != http.StatusUnauthorized || !strings.HasSuffix(r.Header.Get("Www-Authenticate"), `scope="repository:team-a/app:pull"`) {
		t.Errorf("manifest without a token: %s %q", r, r.Header.Get("Www-Authenticate"))
	}
	r = e.req(http.MethodPost, "/v2/team-a/app/blobs/uploads/", "")
	if r.Status != http.StatusUnauthorized || !strings.HasSuffix(r.Header.Get("Www-Authenticate"), `scope="repository:team-a/app:pull,push"`) {
		t.Errorf("upload without a token: %s %q", r, r.Header.Get("Www-Authenticate"))
	}
	r = e.req(http.MethodGet, "/v2/", "", "X-Forwarded-Proto", "https")
	if !strings.Contains(r.Header.Get("Www-Authenticate"), `realm="https://`+e.host+`/v2/token"`) {
		t.Errorf("behind a TLS front door the realm must be https: %q", r.Header.Get("Www-Authenticate"))
	}
}

// TestAuthPrivileges: team A pushes and pulls team-a/* and not team-b/*
// (both directions), a reader pulls and cannot push, anonymous pulls only
// the anonymousPull repository (directly and through the group).
func TestAuthPrivileges(t *testing.T) {
	e := newAuthEnv(t)
	if err := e.push("alice", "team-a/app"); err != nil {
		t.Fatalf("alice pushes team-a/app: %v", err)
	}
	if err := e.push("bob", "team-b/app"); err != nil {
		t.Fatalf("bob pushes team-b/app: %v", err)
	}
	if err := e.push("admin", "pub/base"); err != nil {
		t.Fatalf("admin pushes pub/base: %v", err)
	}
	for _, c := range []struct {
		user, name string
		push, ok   bool
	}{
		{"alice", "team-a/app", false, true},
		{"alice", "local/team-a/app", false, true},
		{"alice", "team-b/app", false, false},
		{"alice", "team-b/other", true, false},
		{"bob", "team-a/app", false, false},
		{"bob", "team-a/evil", true, false},
		{"rita", "team-a/app", false, true},
		{"rita", "team-b/app", false, true},
		{"rita", "team-a/new", true, false},
		{"", "pub/base", false, true},
		{"alice", "pub/base", false, true}, // a logged-in user may read what anonymous may
		{"", "docker/base", false, true},   // through the anonymousPull group
		{"", "team-a/app", false, false},
		{"", "pub/new", true, false},
	} {
		var err error
		if c.push {
			err = e.push(c.user, c.name)
		} else {
			err = e.pull(c.user, c.name)
		}
		if (err == nil) != c.ok {
			t.Errorf("%q %s %s: err %v, want ok=%v", c.user, map[bool]string{true: "push", false: "pull"}[c.push], c.name, err, c.ok)
		}
		if err != nil && c.user != "" && !strings.Contains(err.Error(), "DENIED") && !strings.Contains(err.Error(), "UNAUTHORIZED") && !strings.Contains(err.Error(), "403") {
			t.Errorf("%s %s: %v, want DENIED or UNAUTHORIZED", c.user, c.name, err)
		}
	}
	// By digest too: bob's manifest digest is no way around the selector.
	adminTok, _ := e.token("admin", "repository:team-b/app:pull")
	bm := e.req(http.MethodGet, "/v2/team-b/app/manifests/1", adminTok, "Accept", "*/*")
	aliceTok, _ := e.token("alice", "repository:team-b/app:pull")
	for _, p := range []string{"/v2/team-b/app/manifests/" + bm.Header.Get("Docker-Content-Digest"), "/v2/local/team-b/app/manifests/" + bm.Header.Get("Docker-Content-Digest")} {
		tok := aliceTok
		if strings.HasPrefix(p, "/v2/local/") {
			tok, _ = e.token("alice", "repository:local/team-b/app:pull")
		}
		if r := e.req(http.MethodGet, p, tok); r.Status != http.StatusForbidden {
			t.Errorf("alice GET %s: %s, want 403", p, r)
		}
	}
	// Rotation: admin only; tokens issued before keep working.
	rot := func(user string) int {
		req, _ := http.NewRequest(http.MethodPost, e.srv.URL+"/airlock/api/keys/rotate", nil)
		req.SetBasicAuth(user, user+"-password-1234")
		res, _ := http.DefaultClient.Do(req)
		res.Body.Close()
		return res.StatusCode
	}
	if c := rot("alice"); c != http.StatusForbidden {
		t.Errorf("alice rotates keys: %d", c)
	}
	if c := rot("admin"); c != http.StatusOK {
		t.Errorf("admin rotates keys: %d", c)
	}
	if r := e.req(http.MethodGet, "/v2/team-b/app/manifests/1", adminTok, "Accept", "*/*"); r.Status != http.StatusOK {
		t.Errorf("a token of the old key after rotation: %s", r)
	}
	// A token without the privilege is 403 DENIED (the token service refused it).
	tok, _ := e.token("alice", "repository:team-b/app:pull")
	if r := e.req(http.MethodGet, "/v2/team-b/app/manifests/1", tok); r.Status != http.StatusForbidden || errCode(r) != registry.CodeDenied {
		t.Errorf("alice's token on team-b: %s, want 403 DENIED", r)
	}
	// Search too (docker search sends Basic credentials).
	for user, want := range map[string]string{"alice": "local/team-a/app", "": "", "rita": "local/team-a/app,local/team-b/app"} {
		req, _ := http.NewRequest(http.MethodGet, e.srv.URL+"/v1/search?q=team", nil)
		if user != "" {
			req.SetBasicAuth(user, user+"-password-1234")
		}
		res, err := http.DefaultClient.Do(req)
		if err != nil {
			t.Fatal(err)
		}
		var doc struct{ Results []struct{ Name string } }
		_ = json.NewDecoder(res.Body).Decode(&doc)
		res.Body.Close()
		var names []string
		for _, r := range doc.Results {
			names = append(names, r.Name)
		}
		if got := strings.Join(names, ","); res.StatusCode != http.StatusOK || got != want {
			t.Errorf("search team as %q: %d %s, want %q", user, res.StatusCode, got, want)
		}
	}
	// Catalog and search show each caller only what it may see.
	// (What anonymous may read, everybody may: pub is anonymousPull.)
	for user, want := range map[string]string{"alice": "local/team-a/app,pub/base", "bob": "local/team-b/app,pub/base", "": "pub/base", "rita": "local/team-a/app,local/team-b/app,pub/base"} {
		tok, _ := e.token(user, "registry:catalog:*")
		r := e.req(http.MethodGet, "/v2/_catalog", tok)
		var doc struct{ Repositories []string }
		_ = json.Unmarshal(r.Body, &doc)
		if got := strings.Join(doc.Repositories, ","); r.Status != http.StatusOK || got != want {
			t.Errorf("catalog of %q: %s %s, want %s", user, r, got, want)
		}
	}
}

// TestAuthTokenAttacks: every forged, expired, misdirected or misused token
// is refused with 401 UNAUTHORIZED.
func TestAuthTokenAttacks(t *testing.T) {
	e := newAuthEnv(t)
	if err := e.push("alice", "team-a/app"); err != nil {
		t.Fatal(err)
	}
	good, _ := e.token("alice", "repository:team-a/app:pull")
	if r := e.req(http.MethodGet, "/v2/team-a/app/manifests/1", good, "Accept", "*/*"); r.Status != http.StatusOK {
		t.Fatalf("a good token: %s", r)
	}
	parts := strings.Split(good, ".")
	tamperedPayload := parts[0] + "." + strings.TrimRight(parts[1], "A") + "B." + parts[2]
	none := "eyJhbGciOiJub25lIiwidHlwIjoiSldUIn0." + parts[1] + "."
	pullOnly := good
	refresh := func() string {
		q := url.Values{"service": {e.host}, "offline_token": {"true"}}
		req, _ := http.NewRequest(http.MethodGet, e.srv.URL+"/v2/token?"+q.Encode(), nil)
		req.SetBasicAuth("alice", "alice-password-1234")
		res, err := http.DefaultClient.Do(req)
		if err != nil {
			t.Fatal(err)
		}
		defer res.Body.Close()
		var doc struct {
			Refresh string `json:"refresh_token"`
		}
		_ = json.NewDecoder(res.Body).Decode(&doc)
		if doc.Refresh == "" {
			t.Fatal("no refresh token with offline_token=true")
		}
		return doc.Refresh
	}()
	for _, c := range []struct{ name, tok, method, path string }{
		{"alg none", none, http.MethodGet, "/v2/team-a/app/manifests/1"},
		{"tampered payload", tamperedPayload, http.MethodGet, "/v2/team-a/app/manifests/1"},
		{"garbage", "not.a.token", http.MethodGet, "/v2/team-a/app/manifests/1"},
		{"refresh token as access", refresh, http.MethodGet, "/v2/team-a/app/manifests/1"},
		{"token for A used on B", good, http.MethodGet, "/v2/team-a/other/manifests/1"},
		{"pull-only token used to push", pullOnly, http.MethodPost, "/v2/team-a/app/blobs/uploads/"},
	} {
		r := e.req(c.method, c.path, c.tok)
		if r.Status != http.StatusUnauthorized || errCode(r) != registry.CodeUnauthorized {
			t.Errorf("%s: %s, want 401 UNAUTHORIZED", c.name, r)
		}
	}
	// Another audience (the token asked for another host).
	q := url.Values{"service": {"elsewhere.example.com"}, "scope": {"repository:team-a/app:pull"}}
	req, _ := http.NewRequest(http.MethodGet, e.srv.URL+"/v2/token?"+q.Encode(), nil)
	req.SetBasicAuth("alice", "alice-password-1234")
	res, _ := http.DefaultClient.Do(req)
	var doc struct{ Token string }
	_ = json.NewDecoder(res.Body).Decode(&doc)
	res.Body.Close()
	if r := e.req(http.MethodGet, "/v2/team-a/app/manifests/1", doc.Token); r.Status != http.StatusUnauthorized {
		t.Errorf("wrong audience: %s", r)
	}
	// Expired.
	e.clock.Advance(6 * time.Minute)
	if r := e.req(http.MethodGet, "/v2/team-a/app/manifests/1", good); r.Status != http.StatusUnauthorized {
		t.Errorf("expired token: %s", r)
	}
}

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
