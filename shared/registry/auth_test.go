package registry_test

import (
	"context"
	"encoding/base64"
	"encoding/json"
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

// TestAuthBadScopes: malformed scopes of a token request are 400 saying
// what is wrong, never a token and never a 500.
func TestAuthBadScopes(t *testing.T) {
	e := newAuthEnv(t)
	many := strings.Fields(strings.Repeat("repository:team-a/a:pull ", 33))
	for _, c := range []struct {
		name   string
		scopes []string
		want   string
	}{
		{"empty action", []string{"repository:team-a/x:"}, "action"},
		{"empty action in a list", []string{"repository:team-a/x:pull,,push"}, "action"},
		{"no actions part", []string{"repository:team-a/x"}, "<type>:<name>:<actions>"},
		{"unknown type", []string{"refused:team-b/x:push"}, "type repository or registry"},
		{"empty name", []string{"repository::pull"}, "type repository or registry"},
		{"name too long", []string{"repository:" + strings.Repeat("a", 300) + ":pull"}, "type repository or registry"},
		{"too many", many, "more than 32 scopes"},
	} {
		tok, r := e.token("alice", c.scopes...)
		if r.Status != http.StatusBadRequest || tok != "" || errCode(r) != registry.CodeUnsupported || !strings.Contains(errMessage(r), c.want) {
			t.Errorf("%s: %s, want 400 UNSUPPORTED naming %q", c.name, r, c.want)
		}
	}
}

// TestAuthMalformedBasic: a Basic Authorization header that does not decode
// to user:password is 401 saying so, on the token endpoint and the API
// calls that take Basic, not an anonymous answer.
func TestAuthMalformedBasic(t *testing.T) {
	e := newAuthEnv(t)
	for _, h := range []string{
		"Basic !!!!",
		"Basic " + base64.StdEncoding.EncodeToString([]byte("alice")), // no colon
		"basic " + base64.RawStdEncoding.EncodeToString([]byte("alice:alice-password-1234")),
	} {
		for _, path := range []string{"/v2/token?service=" + url.QueryEscape(e.host), "/airlock/api/browse/me", "/airlock/api/users"} {
			r := e.req(http.MethodGet, path, "", "Authorization", h)
			if r.Status != http.StatusUnauthorized || errCode(r) != registry.CodeUnauthorized || !strings.Contains(errMessage(r), "Basic credentials") {
				t.Errorf("%s with %q: %s, want 401 about the Basic credentials", path, h, r)
			}
		}
	}
	// Well-formed Basic still works, any case of the scheme.
	r := e.req(http.MethodGet, "/airlock/api/browse/me", "", "Authorization", "basic "+base64.StdEncoding.EncodeToString([]byte("alice:alice-password-1234")))
	if r.Status != http.StatusOK || !strings.Contains(string(r.Body), `"user":"alice"`) {
		t.Errorf("browse/me with Basic: %s", r)
	}
}

// TestAuthBearerSchemeCase: the Bearer scheme is case-insensitive (RFC
// 9110 §11.1): "bearer <token>" is the same token.
func TestAuthBearerSchemeCase(t *testing.T) {
	e := newAuthEnv(t)
	if err := e.push("alice", "team-a/app"); err != nil {
		t.Fatal(err)
	}
	tok, _ := e.token("alice", "repository:team-a/app:pull")
	for _, scheme := range []string{"bearer", "BEARER"} {
		for _, path := range []string{"/v2/", "/v2/team-a/app/manifests/1", "/airlock/api/browse/me"} {
			r := e.req(http.MethodGet, path, "", "Authorization", scheme+" "+tok, "Accept", "*/*")
			if r.Status != http.StatusOK {
				t.Errorf("%s with %q: %s, want 200", path, scheme, r)
			}
		}
	}
}
