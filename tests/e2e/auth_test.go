//go:build e2e

package e2e

import (
	"context"
	"encoding/base64"
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"net/url"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"
)

// Credentials of TestAuth. Passwords follow ident.CheckPassword (at least
// 12 characters, not the user name, not starting with "alk_").
const (
	authAdminEnv = "AIRLOCK_E2E_ADMIN_PW"
	authAdminPW  = "e2e-admin-password-0123"
	alicePW      = "alice-e2e-password-1"
	bobPW        = "bob-e2e-password-123"
)

// authConfig is the configuration of the Airlock under test in TestAuth:
// hosted "local" (the default) and hosted "pub" that anyone may pull; the
// role team-a may read, browse, add and edit the images of local named
// team-a/... (the selector sees "/v2/<name inside local>/").
const authConfig = `default: local
repositories:
  - {name: local, kind: hosted}
  - {name: pub, kind: hosted, anonymousPull: true}
auth:
  adminPasswordEnv: ` + authAdminEnv + `
  roles:
    - name: team-a
      privileges: [{repositories: [local], selector: 'path =^ "/v2/team-a/"', actions: [read, browse, add, edit]}]
`

// adminAPI calls the admin API of base as admin (HTTP Basic, as curl -u).
func adminAPI(t testing.TB, base, method, path string, body any) (*http.Response, []byte) {
	t.Helper()
	var r io.Reader
	if body != nil {
		b, err := json.Marshal(body)
		if err != nil {
			t.Fatal(err)
		}
		r = strings.NewReader(string(b))
	}
	return do(t, method, base+path, r, map[string]string{
		"Authorization": basicAuth("admin", authAdminPW),
		"Content-Type":  "application/json",
	})
}

func basicAuth(user, secret string) string {
	return "Basic " + base64.StdEncoding.EncodeToString([]byte(user+":"+secret))
}

// createUser creates a user through the admin API.
func createUser(t testing.TB, base, name, password string, roles ...string) {
	t.Helper()
	resp, body := adminAPI(t, base, http.MethodPost, "/airlock/api/users", map[string]any{"name": name, "password": password, "roles": roles})
	if resp.StatusCode != http.StatusCreated {
		t.Fatalf("POST /airlock/api/users %s: %s %s, want 201", name, resp.Status, body)
	}
}

// createAPIToken makes an API token of user (admin API) and returns its
// secret and id.
func createAPIToken(t testing.TB, base, user, name string) (secret, id string) {
	t.Helper()
	resp, body := adminAPI(t, base, http.MethodPost, "/airlock/api/users/"+user+"/tokens", map[string]any{"name": name, "ttl": "1h"})
	var out struct {
		Secret string `json:"secret"`
		Token  struct {
			ID string `json:"id"`
		} `json:"token"`
	}
	if resp.StatusCode != http.StatusCreated || json.Unmarshal(body, &out) != nil || !strings.HasPrefix(out.Secret, "alk_") || out.Token.ID == "" {
		t.Fatalf("POST /airlock/api/users/%s/tokens: %s %s; want 201 with an alk_ secret and the token's id", user, resp.Status, body)
	}
	return out.Secret, out.Token.ID
}

// revokeAPIToken revokes an API token (admin API).
func revokeAPIToken(t testing.TB, base, user, id string) {
	t.Helper()
	resp, body := adminAPI(t, base, http.MethodDelete, "/airlock/api/users/"+user+"/tokens/"+id, nil)
	if resp.StatusCode != http.StatusOK {
		t.Fatalf("DELETE /airlock/api/users/%s/tokens/%s: %s %s, want 200", user, id, resp.Status, body)
	}
}

// tokenResp is the token endpoint's answer.
type tokenResp struct {
	Token        string `json:"token"`
	AccessToken  string `json:"access_token"`
	ExpiresIn    int    `json:"expires_in"`
	RefreshToken string `json:"refresh_token"`
}

// tokenGET asks base's token endpoint (GET, HTTP Basic unless user and
// secret are both "") for scopes of service; extra are more query
// parameters (offline_token=true).
func tokenGET(t testing.TB, base, service, user, secret string, scopes []string, extra ...string) (*http.Response, []byte) {
	t.Helper()
	q := url.Values{"service": {service}, "scope": scopes}
	for i := 0; i+1 < len(extra); i += 2 {
		q.Set(extra[i], extra[i+1])
	}
	hdr := map[string]string{}
	if user != "" || secret != "" {
		hdr["Authorization"] = basicAuth(user, secret)
	}
	return do(t, http.MethodGet, base+"/v2/token?"+q.Encode(), nil, hdr)
}

// tokenPOST sends the OAuth2 form (grant_type password or refresh_token).
func tokenPOST(t testing.TB, base string, form url.Values) (*http.Response, []byte) {
	t.Helper()
	return do(t, http.MethodPost, base+"/v2/token", strings.NewReader(form.Encode()),
		map[string]string{"Content-Type": "application/x-www-form-urlencoded"})
}

// mustToken is tokenGET that must answer 200 with a token.
func mustToken(t testing.TB, base, service, user, secret string, scopes ...string) string {
	t.Helper()
	resp, body := tokenGET(t, base, service, user, secret, scopes)
	var tr tokenResp
	if resp.StatusCode != http.StatusOK || json.Unmarshal(body, &tr) != nil || tr.Token == "" || tr.AccessToken != tr.Token {
		t.Fatalf("GET /v2/token as %q for %v: %s %s; want 200 with token = access_token", user, scopes, resp.Status, body)
	}
	return tr.Token
}

// hostOf is 127.0.0.1:PORT of an http:// URL.
func hostOf(u string) string { return strings.TrimPrefix(u, "http://") }

// bearer is the Authorization header of a token.
func bearer(tok string) map[string]string { return map[string]string{"Authorization": "Bearer " + tok} }

// assertChallenge checks a 401 UNAUTHORIZED carrying a Bearer challenge
// whose realm is base's token endpoint (and, when scope is not "", that
// scope).
func assertChallenge(t testing.TB, what string, resp *http.Response, body []byte, base, scope string) {
	t.Helper()
	if resp.StatusCode != http.StatusUnauthorized {
		t.Errorf("%s: %s %s, want 401 UNAUTHORIZED", what, resp.Status, body)
		return
	}
	if resp.Request.Method != http.MethodHead {
		if e := parseErrors(t, body); e.Errors[0].Code != "UNAUTHORIZED" {
			t.Errorf("%s: error code %s, want UNAUTHORIZED: %s", what, e.Errors[0].Code, body)
		}
	}
	ch := resp.Header.Get("Www-Authenticate")
	want := fmt.Sprintf(`Bearer realm="%s/v2/token",service="%s"`, base, hostOf(base))
	if scope != "" {
		want += fmt.Sprintf(`,scope="%s"`, scope)
	}
	if ch != want {
		t.Errorf("%s: WWW-Authenticate %q, want %q", what, ch, want)
	}
}

// runStdin is run with stdin (docker login --password-stdin).
func runStdin(t testing.TB, timeout time.Duration, env []string, stdin, name string, args ...string) (string, error) {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), timeout)
	defer cancel()
	cmd := exec.CommandContext(ctx, name, args...)
	cmd.Env = append(os.Environ(), env...)
	cmd.Stdin = strings.NewReader(stdin)
	cmd.WaitDelay = 5 * time.Second
	start := time.Now()
	b, err := cmd.CombinedOutput()
	d := time.Since(start).Round(time.Millisecond)
	if ctx.Err() != nil {
		err = fmt.Errorf("timed out after %s: %w", timeout, err)
	}
	if err != nil {
		t.Logf("$ %s %s < (stdin) (%s) FAILED: %v\n%s", filepath.Base(name), strings.Join(args, " "), d, err, tail(string(b), 100))
	} else {
		t.Logf("$ %s %s < (stdin) (%s)", filepath.Base(name), strings.Join(args, " "), d)
	}
	return string(b), err
}

// craneAs returns the environment of a crane logged in to host as user
// (its own DOCKER_CONFIG, written by `crane auth login`).
func craneAs(t testing.TB, host, user, secret string) []string {
	t.Helper()
	env := []string{"DOCKER_CONFIG=" + t.TempDir()}
	mustRun(t, time.Minute, env, tool(t, "crane"), "auth", "login", host, "-u", user, "-p", secret)
	return env
}

// containerd is a containerd started by a test, with its own root, state
// and socket.
type containerd struct {
	ctr  string
	sock string
	cmd  *exec.Cmd
	done chan struct{}
	log  string
}

// startContainerd starts Debian's containerd as root (CRI plugin off, no
// other daemon's paths); it is stopped by pid at cleanup. Skips with a
// reason when containerd, ctr or root is missing.
func startContainerd(t *testing.T) *containerd {
	t.Helper()
	bin, err := exec.LookPath("containerd")
	if err != nil {
		t.Skipf("containerd not installed (apt-get install containerd): %v", err)
	}
	ctr, err := exec.LookPath("ctr")
	if err != nil {
		t.Skipf("ctr not installed (apt-get install containerd): %v", err)
	}
	if os.Geteuid() != 0 {
		t.Skipf("containerd needs root; running as uid %d", os.Geteuid())
	}
	dir, err := os.MkdirTemp("", "e2e-ctrd-") // short: socket paths < 108 bytes
	if err != nil {
		t.Fatal(err)
	}
	sock := filepath.Join(dir, "sock")
	cfg := fmt.Sprintf(`version = 2
root = %q
state = %q
disabled_plugins = ["io.containerd.grpc.v1.cri"]
[grpc]
  address = %q
[ttrpc]
  address = %q
[debug]
  address = ""
[metrics]
  address = ""
[plugins."io.containerd.internal.v1.opt"]
  path = %q
`, filepath.Join(dir, "root"), filepath.Join(dir, "state"), sock, sock+".ttrpc", filepath.Join(dir, "opt"))
	cfgPath := filepath.Join(dir, "config.toml")
	if err := os.WriteFile(cfgPath, []byte(cfg), 0o644); err != nil {
		t.Fatal(err)
	}
	logPath := filepath.Join(dir, "containerd.log")
	logf, err := os.Create(logPath)
	if err != nil {
		t.Fatal(err)
	}
	cmd := exec.Command(bin, "--config", cfgPath)
	cmd.Stdout, cmd.Stderr = logf, logf
	cmd.SysProcAttr = &syscall.SysProcAttr{Setpgid: true, Pdeathsig: syscall.SIGTERM}
	start := time.Now()
	if err := cmd.Start(); err != nil {
		t.Fatalf("start containerd: %v", err)
	}
	c := &containerd{ctr: ctr, sock: sock, cmd: cmd, done: make(chan struct{}), log: logPath}
	go func() { _ = cmd.Wait(); _ = logf.Close(); close(c.done) }()
	t.Cleanup(func() {
		_ = cmd.Process.Signal(syscall.SIGTERM)
		select {
		case <-c.done:
		case <-time.After(20 * time.Second):
			t.Logf("containerd ignored SIGTERM for 20s; killing")
		}
		_ = syscall.Kill(-cmd.Process.Pid, syscall.SIGKILL)
		<-c.done
		if t.Failed() {
			t.Logf("containerd log:\n%s", readTail(logPath))
			t.Logf("containerd dir kept: %s", dir)
		} else {
			_ = os.RemoveAll(dir)
		}
	})
	deadline := time.Now().Add(60 * time.Second)
	for {
		_, _, err := execIn("", 5*time.Second, nil, ctr, "--address", sock, "version")
		if err == nil {
			break
		}
		select {
		case <-c.done:
			t.Fatalf("containerd exited: %v\n%s", cmd.ProcessState, readTail(logPath))
		default:
		}
		if time.Now().After(deadline) {
			t.Fatalf("containerd not up after 60s (%v):\n%s", err, readTail(logPath))
		}
		time.Sleep(200 * time.Millisecond)
	}
	t.Logf("containerd up in %s", time.Since(start).Round(time.Millisecond))
	return c
}

// run runs ctr against this containerd in namespace ns.
func (c *containerd) run(t testing.TB, timeout time.Duration, ns string, args ...string) (string, error) {
	t.Helper()
	return run(t, timeout, nil, c.ctr, append([]string{"--address", c.sock, "--namespace", ns}, args...)...)
}

// jwtParts splits a JWT and decodes its payload.
func jwtParts(t testing.TB, tok string) (header, payload, sig string, claims map[string]any) {
	t.Helper()
	p := strings.Split(tok, ".")
	if len(p) != 3 {
		t.Fatalf("token %q is not a JWT of three segments", tok)
	}
	b, err := base64.RawURLEncoding.DecodeString(p[1])
	if err != nil || json.Unmarshal(b, &claims) != nil {
		t.Fatalf("token payload %q: not base64url JSON (%v)", p[1], err)
	}
	return p[0], p[1], p[2], claims
}

func b64JSON(t testing.TB, v any) string {
	t.Helper()
	b, err := json.Marshal(v)
	if err != nil {
		t.Fatal(err)
	}
	return base64.RawURLEncoding.EncodeToString(b)
}

// TestAuth drives authentication end to end: one localdev (authConfig; its
// admin password in $AIRLOCK_E2E_ADMIN_PW) behind a counting front that
// every client talks to, so the realm and service of its challenges are the
// front's host and the test sees every token request. Users are made with
// the admin API: alice and bob with role team-a (local's team-a/...). Real
// clients log in and push and pull: dockerd 20.10 (docker login with a
// password and with an API token, a denied push, an anonymous pull of an
// anonymousPull repository), containerd's ctr (the OAuth2 password grant),
// crane and regctl (and a revoked API token); the catalog as anonymous,
// alice and admin see it; then attacks over raw HTTP: tampered and forged
// tokens, a pull-only token used to push, a token of another service or
// host, existence probes, traversal names, mounts and manifest PUTs of
// another team's blobs, refresh tokens misused or outliving their user,
// the admin API without the admin role, and brute force of a password.
// Every subtest uses images of its own, so any one runs alone
// (-run 'TestAuth/<name>').
func TestAuth(t *testing.T) {
	t.Parallel()
	start := time.Now()
	airlock := startRegistry(t, registryOpts{Config: authConfig, Env: []string{authAdminEnv + "=" + authAdminPW}})
	front := startFront(t, airlock.URL)
	reg := front.Host // what clients use
	t.Logf("airlock %s behind %s; started in %s", airlock.URL, front.URL, time.Since(start).Round(time.Millisecond))
	if !strings.Contains(airlock.log.String(), "auth on: docker login -u admin, password in $"+authAdminEnv+"; admin created") {
		t.Errorf("localdev's ready line does not say it created admin with the password of $%s:\n%s", authAdminEnv, tail(airlock.log.String(), 20))
	}
	createUser(t, airlock.URL, "alice", alicePW, "team-a")
	createUser(t, airlock.URL, "bob", bobPW, "team-a")
	crane := tool(t, "crane")

	t.Run("docker", func(t *testing.T) {
		d := startDockerd(t, "") // skips without dockerd or root
		cfgDir := t.TempDir()
		d.env = append(d.env, "DOCKER_CONFIG="+cfgDir) // the CLI's credentials
		cfgFile := filepath.Join(cfgDir, "config.json")

		// pub/base:1, pushed by admin with crane, for the anonymous pull.
		base := smallDockerImage(t, 2, 256*1024)
		baseTar := filepath.Join(t.TempDir(), "base.tar")
		writeDockerTarball(t, baseTar, "e2e/authbase:1", base)
		adminEnv := craneAs(t, reg, "admin", authAdminPW)
		mustRun(t, 2*time.Minute, adminEnv, crane, "push", "--insecure", baseTar, reg+"/pub/base:1")

		// docker login with alice's password; push, rmi, pull.
		img := smallDockerImage(t, 2, 512*1024)
		loaded := "e2e/authapp:1"
		tarPath := filepath.Join(t.TempDir(), "app.tar")
		writeDockerTarball(t, tarPath, loaded, img)
		d.mustDocker(t, 2*time.Minute, "load", "-i", tarPath)
		ref := reg + "/team-a/app:1"
		d.mustDocker(t, time.Minute, "tag", loaded, ref)
		id := strings.TrimSpace(d.mustDocker(t, time.Minute, "image", "inspect", "--format", "{{.Id}}", ref))

		m := front.mark()
		out, err := runStdin(t, time.Minute, d.env, alicePW, d.cli, "login", reg, "-u", "alice", "--password-stdin")
		if err != nil || !strings.Contains(out, "Login Succeeded") {
			t.Fatalf("docker login %s -u alice: %v\n%s", reg, err, out)
		}
		t.Logf("the airlock saw during docker login:\n%s", fmtHits(front.since(m)))
		if got := filterHits(front.since(m), func(h hit) bool { return h.Path == "/v2/token" && h.Status == http.StatusOK }); len(got) == 0 {
			t.Errorf("docker login: no token request answered 200:\n%s", fmtHits(front.since(m)))
		}
		cfg, err := os.ReadFile(cfgFile)
		if err != nil || !strings.Contains(string(cfg), reg) {
			t.Errorf("docker login: %s does not name %s (%v):\n%s", cfgFile, reg, err, cfg)
		}

		m = front.mark()
		out = d.mustDocker(t, 5*time.Minute, "push", ref)
		mm := pushDigest.FindStringSubmatch(out)
		if mm == nil {
			t.Fatalf("no digest in docker push output:\n%s", out)
		}
		pushed := mm[1]
		hs := front.since(m)
		t.Logf("the airlock saw during docker push %s:\n%s", ref, fmtHits(hs))
		if bad := filterHits(hs, func(h hit) bool { return h.Status == http.StatusForbidden || h.Status >= 500 }); len(bad) != 0 {
			t.Errorf("docker push as alice: refused or failed requests:\n%s", fmtHits(bad))
		}
		adminTok := mustToken(t, airlock.URL, airlock.Host, "admin", authAdminPW, "repository:team-a/app:pull", "repository:pub/base:pull")
		if code, h := headAs(t, airlock.URL+"/v2/team-a/app/manifests/1", adminTok); code != http.StatusOK || h.Get("Docker-Content-Digest") != pushed {
			t.Errorf("HEAD team-a/app:1 as admin: %d %q, want 200 %s (docker push)", code, h.Get("Docker-Content-Digest"), pushed)
		}
		if code, _ := headStatus(t, airlock.URL+"/v2/team-a/app/manifests/1", manifestAccept); code != http.StatusUnauthorized {
			t.Errorf("HEAD team-a/app:1 without a token: %d, want 401", code)
		}
		d.mustDocker(t, time.Minute, "rmi", ref, loaded)
		out = d.mustDocker(t, 5*time.Minute, "pull", ref)
		if mm := pullDigest.FindStringSubmatch(out); mm == nil || mm[1] != pushed {
			t.Fatalf("docker pull %s: digest %v, pushed %s:\n%s", ref, mm, pushed, out)
		}
		if got := strings.TrimSpace(d.mustDocker(t, time.Minute, "image", "inspect", "--format", "{{.Id}}", ref)); got != id {
			t.Errorf("image ID after docker pull %s, before the push %s", got, id)
		}
		// Logged in, alice pulls what anyone may pull (pub: anonymousPull).
		out, err = d.docker(t, 2*time.Minute, "pull", reg+"/pub/base:1")
		if err != nil {
			t.Errorf("docker pull %s/pub/base:1 logged in as alice: pub has anonymousPull, a logged-in user must be able to pull it too:\n%s", reg, out)
		} else {
			d.mustDocker(t, time.Minute, "rmi", reg+"/pub/base:1")
		}
		out = d.mustDocker(t, time.Minute, "logout", reg)
		if cfg, _ := os.ReadFile(cfgFile); strings.Contains(string(cfg), reg) {
			t.Errorf("docker logout %s: %s still names it:\n%s", reg, cfgFile, cfg)
		}

		// Logged out: the pull is refused, and docker says to log in.
		d.mustDocker(t, time.Minute, "rmi", ref)
		m = front.mark()
		out, err = d.docker(t, 2*time.Minute, "pull", ref)
		t.Logf("the airlock saw during the anonymous docker pull %s:\n%s", ref, fmtHits(front.since(m)))
		if err == nil {
			t.Fatalf("docker pull %s without login succeeded:\n%s", ref, out)
		}
		t.Logf("docker pull without login:\n%s", out)
		// The anonymous token lists the pull as refused: 403 DENIED, which
		// docker words as "pull access denied ... may require 'docker login'".
		if !strings.Contains(out, "may require 'docker login'") || !strings.Contains(out, "denied: anonymous may not pull team-a/app") {
			t.Errorf("docker pull without login: the output lacks \"may require 'docker login'\" and the registry's \"denied: anonymous may not pull team-a/app\":\n%s", out)
		}

		// docker login with an API token of alice as the password.
		secret, tokID := createAPIToken(t, airlock.URL, "alice", "e2e docker")
		out, err = runStdin(t, time.Minute, d.env, secret, d.cli, "login", reg, "-u", "alice", "--password-stdin")
		if err != nil || !strings.Contains(out, "Login Succeeded") {
			t.Fatalf("docker login %s -u alice with an API token: %v\n%s", reg, err, out)
		}
		cfg, _ = os.ReadFile(cfgFile)
		// An API-token login gets no refresh token, so docker keeps the API
		// token itself and its revocation takes effect at once.
		hasIdentity := strings.Contains(string(cfg), "identitytoken")
		if hasIdentity {
			t.Errorf("config.json after docker login with an API token keeps a refresh token (identitytoken); want none (revocation must take effect at once)")
		}
		img2 := smallDockerImage(t, 2, 256*1024)
		tar2 := filepath.Join(t.TempDir(), "app2.tar")
		ref2 := reg + "/team-a/app:2"
		writeDockerTarball(t, tar2, ref2, img2)
		d.mustDocker(t, 2*time.Minute, "load", "-i", tar2)
		id2 := strings.TrimSpace(d.mustDocker(t, time.Minute, "image", "inspect", "--format", "{{.Id}}", ref2))
		out = d.mustDocker(t, 5*time.Minute, "push", ref2)
		mm = pushDigest.FindStringSubmatch(out)
		if mm == nil {
			t.Fatalf("no digest in docker push output:\n%s", out)
		}
		pushed2 := mm[1]
		d.mustDocker(t, time.Minute, "rmi", ref2)
		out = d.mustDocker(t, 5*time.Minute, "pull", ref2)
		if mm := pullDigest.FindStringSubmatch(out); mm == nil || mm[1] != pushed2 {
			t.Fatalf("docker pull %s (API token login): digest %v, pushed %s:\n%s", ref2, mm, pushed2, out)
		}
		if got := strings.TrimSpace(d.mustDocker(t, time.Minute, "image", "inspect", "--format", "{{.Id}}", ref2)); got != id2 {
			t.Errorf("image ID after docker pull %s, before the push %s", got, id2)
		}

		// team-b is not alice's: the push fails with the registry's DENIED.
		refB := reg + "/team-b/x:1"
		d.mustDocker(t, time.Minute, "tag", ref2, refB)
		m = front.mark()
		out, err = d.docker(t, 2*time.Minute, "push", refB)
		hs = front.since(m)
		t.Logf("the airlock saw during docker push %s:\n%s", refB, fmtHits(hs))
		if err == nil {
			t.Fatalf("docker push %s as alice (role team-a) succeeded:\n%s", refB, out)
		}
		t.Logf("docker push %s:\n%s", refB, out)
		if !strings.Contains(out, "denied: alice may not push team-b/x") && !strings.Contains(out, "denied: alice may not pull team-b/x") {
			t.Errorf("docker push %s: output lacks the registry's 403 DENIED message (denied: alice may not ... team-b/x):\n%s", refB, out)
		}
		if got := filterHits(hs, func(h hit) bool { return h.Status == http.StatusForbidden }); len(got) == 0 {
			t.Errorf("docker push %s: no request answered 403:\n%s", refB, fmtHits(hs))
		}
		if ok := filterHits(hs, func(h hit) bool { return h.Path != "/v2/token" && h.Path != "/v2/" && h.Status < 300 }); len(ok) != 0 {
			t.Errorf("docker push %s: requests accepted:\n%s", refB, fmtHits(ok))
		}
		if code, _ := headAs(t, airlock.URL+"/v2/team-b/x/manifests/1", mustToken(t, airlock.URL, airlock.Host, "admin", authAdminPW, "repository:team-b/x:pull")); code != http.StatusNotFound {
			t.Errorf("HEAD team-b/x:1 as admin after the refused push: %d, want 404", code)
		}

		// The API token revoked, docker's stored login stops working.
		revokeAPIToken(t, airlock.URL, "alice", tokID)
		d.mustDocker(t, time.Minute, "rmi", ref2)
		m = front.mark()
		out, err = d.docker(t, 2*time.Minute, "pull", ref2)
		t.Logf("the airlock saw during docker pull %s after the API token was revoked:\n%s", ref2, fmtHits(front.since(m)))
		if err == nil {
			t.Errorf("docker pull %s with the login of a revoked API token succeeded (config.json identitytoken: %v):\n%s", ref2, hasIdentity, out)
		}
		d.mustDocker(t, time.Minute, "logout", reg)

		// Anonymous pull of pub (anonymousPull: true).
		m = front.mark()
		out = d.mustDocker(t, 5*time.Minute, "pull", reg+"/pub/base:1")
		t.Logf("the airlock saw during the anonymous docker pull of pub/base:1:\n%s", fmtHits(front.since(m)))
		if mm := pullDigest.FindStringSubmatch(out); mm == nil || mm[1] != digestOf(t, base).String() {
			t.Errorf("anonymous docker pull %s/pub/base:1: digest %v, want %s (crane push by admin):\n%s", reg, mm, digestOf(t, base), out)
		}
		if got := filterHits(front.since(m), func(h hit) bool { return h.Path == "/v2/token" && h.Status != http.StatusOK }); len(got) != 0 {
			t.Errorf("anonymous docker pull of pub/base:1: token requests refused:\n%s", fmtHits(got))
		}
	})

	t.Run("containerd", func(t *testing.T) {
		c := startContainerd(t) // skips without containerd, ctr or root
		img := smallDockerImage(t, 2, 256*1024)
		want := digestOf(t, img).String()
		tarPath := filepath.Join(t.TempDir(), "ctr.tar")
		writeDockerTarball(t, tarPath, "e2e/authctr:1", img)
		mustRun(t, 2*time.Minute, craneAs(t, reg, "alice", alicePW), crane, "push", "--insecure", tarPath, reg+"/team-a/ctr:1")
		ref := reg + "/team-a/ctr:1"

		// With --user, containerd's resolver answers the Bearer challenge with
		// the OAuth2 POST (grant_type=password); it falls back to GET only when
		// the POST fails.
		m := front.mark()
		out, err := c.run(t, 2*time.Minute, "alice", "images", "pull", "--plain-http", "--snapshotter", "native", "--user", "alice:"+alicePW, ref)
		hs := front.since(m)
		t.Logf("the airlock saw during ctr pull --user alice:\n%s", fmtHits(hs))
		if err != nil {
			t.Fatalf("ctr images pull --user alice %s: %v\n%s", ref, err, out)
		}
		posts := filterHits(hs, func(h hit) bool { return h.Method == http.MethodPost && h.Path == "/v2/token" })
		if len(posts) == 0 || len(filterHits(posts, func(h hit) bool { return h.Status != http.StatusOK })) != 0 {
			t.Errorf("ctr pull --user: POST /v2/token (OAuth2 password grant):\n%s\nwant at least one, all answered 200", fmtHits(posts))
		}
		if gets := filterHits(hs, func(h hit) bool { return h.Method == http.MethodGet && h.Path == "/v2/token" }); len(gets) != 0 {
			t.Errorf("ctr pull --user: GET /v2/token (the fallback after a failed POST):\n%s\nwant none", fmtHits(gets))
		}
		ls := c.mustRun(t, "alice", "images", "ls")
		if !strings.Contains(ls, ref) || !strings.Contains(ls, want) {
			t.Errorf("ctr images ls does not list %s with digest %s:\n%s", ref, want, ls)
		}

		// Without credentials: refused.
		m = front.mark()
		out, err = c.run(t, 2*time.Minute, "anon", "images", "pull", "--plain-http", "--snapshotter", "native", ref)
		hs = front.since(m)
		t.Logf("the airlock saw during ctr pull without --user:\n%s", fmtHits(hs))
		if err == nil {
			t.Fatalf("ctr images pull %s without --user succeeded:\n%s", ref, out)
		}
		// The request without a token gets the 401 challenge; containerd then
		// fetches an anonymous token (GET), which lists the pull as refused,
		// and the retried HEAD is 403 DENIED (README, Authentication: a
		// refused scope is 403, not another challenge), so ctr reports 403.
		wantHits := []string{"HEAD /v2/team-a/ctr/manifests/1 -> 401", "GET /v2/token -> 200", "HEAD /v2/team-a/ctr/manifests/1 -> 403"}
		var got []string
		for _, h := range hs {
			got = append(got, fmt.Sprintf("%s %s -> %d", h.Method, h.Path, h.Status))
		}
		if fmt.Sprint(got) != fmt.Sprint(wantHits) {
			t.Errorf("ctr pull without --user: the airlock saw %q, want %q", got, wantHits)
		}
		if !strings.Contains(out, "403 Forbidden") {
			t.Errorf("ctr images pull without --user: output lacks 403 Forbidden:\n%s", out)
		}
	})

	t.Run("crane-regctl", func(t *testing.T) {
		// crane: auth login with the password, push and pull.
		img := layeredImage(t, 256*1024, 512*1024)
		env := craneAs(t, reg, "alice", alicePW)
		dir := filepath.Join(t.TempDir(), "layout")
		writeLayout(t, dir, img, "1")
		mustRun(t, 2*time.Minute, env, crane, "push", "--insecure", dir, reg+"/team-a/crane:1")
		pulled := filepath.Join(t.TempDir(), "pull")
		mustRun(t, 2*time.Minute, env, crane, "pull", "--insecure", "--format", "oci", reg+"/team-a/crane:1", pulled)
		assertSameImage(t, "crane pull as alice", img, readLayout(t, pulled))
		// The same name through the repository's own prefix: same selector path.
		if got := strings.TrimSpace(mustRun(t, time.Minute, env, crane, "digest", "--insecure", reg+"/local/team-a/crane:1")); got != digestOf(t, img).String() {
			t.Errorf("crane digest local/team-a/crane:1 = %s, want %s", got, digestOf(t, img))
		}
		out, err := run(t, 2*time.Minute, env, crane, "push", "--insecure", dir, reg+"/team-b/crane:1")
		// crane's first request is a blob HEAD (pull): 403, without a body.
		if err == nil {
			t.Errorf("crane push team-b/crane:1 as alice succeeded:\n%s", out)
		} else if !strings.Contains(out, "403 Forbidden") && !strings.Contains(out, "DENIED") {
			t.Errorf("crane push team-b/crane:1 as alice: output lacks 403 Forbidden / DENIED:\n%s", out)
		}
		out, err = run(t, time.Minute, nil, crane, "digest", "--insecure", reg+"/team-a/crane:1")
		if err == nil || !strings.Contains(out, "UNAUTHORIZED") && !strings.Contains(out, "DENIED") {
			t.Errorf("crane digest team-a/crane:1 without login: %v, want a refusal (UNAUTHORIZED or DENIED):\n%s", err, out)
		}

		// regctl: registry login, push and pull.
		regctl := tool(t, "regctl")
		renv := regctlEnv(t, reg)
		out, err = runStdin(t, time.Minute, renv, alicePW, regctl, "registry", "login", reg, "--user", "alice", "--pass-stdin")
		if err != nil {
			t.Fatalf("regctl registry login %s --user alice: %v\n%s", reg, err, out)
		}
		img2 := layeredImage(t, 256*1024, 256*1024)
		src := filepath.Join(t.TempDir(), "src")
		writeLayout(t, src, img2, "1")
		mustRun(t, 2*time.Minute, renv, regctl, "image", "copy", "ocidir://"+src+":1", reg+"/team-a/regctl:1")
		if got := strings.TrimSpace(mustRun(t, time.Minute, renv, regctl, "image", "digest", reg+"/team-a/regctl:1")); got != digestOf(t, img2).String() {
			t.Errorf("regctl image digest team-a/regctl:1 = %s, want %s", got, digestOf(t, img2))
		}
		dst := filepath.Join(t.TempDir(), "dst")
		// A blob GET is a 307 to a presigned URL of the S3 emulator, on
		// 127.0.0.1 like the registry: regctl sets Authorization on its
		// request, and Go's client keeps it on a redirect to the same host
		// name (another port), so the emulator sees a presigned URL and a
		// bearer token. MinIO, like S3, refuses two authentication types.
		if out, err := run(t, 2*time.Minute, renv, regctl, "image", "copy", reg+"/team-a/regctl:1", "ocidir://"+dst+":1"); err != nil {
			t.Errorf("regctl pull team-a/regctl:1 as alice: %v (the S3 emulator refused the presigned URL: %v)\n%s",
				err, strings.Contains(out, "multiple authentication types"), tail(out, 5))
		} else {
			assertSameImage(t, "regctl pull as alice", img2, readLayout(t, dst))
		}

		// An API token works until revoked; then neither crane, regctl nor
		// the token endpoint take it. It never gets a refresh token (which
		// would outlive its revocation).
		secret, tokID := createAPIToken(t, airlock.URL, "alice", "e2e crane")
		tenv := craneAs(t, reg, "alice", secret)
		mustRun(t, time.Minute, tenv, crane, "digest", "--insecure", reg+"/team-a/crane:1")
		resp, body := tokenGET(t, front.URL, reg, "alice", secret, []string{"repository:team-a/crane:pull"}, "offline_token", "true")
		var tr tokenResp
		if resp.StatusCode != http.StatusOK || json.Unmarshal(body, &tr) != nil || tr.Token == "" || tr.RefreshToken != "" {
			t.Fatalf("GET /v2/token?offline_token=true with the API token: %s %s, want 200 with a token and no refresh_token", resp.Status, body)
		}
		revokeAPIToken(t, airlock.URL, "alice", tokID)
		out, err = run(t, time.Minute, tenv, crane, "digest", "--insecure", reg+"/team-a/crane:1")
		if err == nil || !strings.Contains(out, "UNAUTHORIZED") {
			t.Errorf("crane digest with a revoked API token: %v, want a failure with UNAUTHORIZED:\n%s", err, out)
		}
		renv2 := regctlEnv(t, reg)
		out, err = runStdin(t, time.Minute, renv2, secret, regctl, "registry", "login", reg, "--user", "alice", "--pass-stdin")
		if err == nil {
			t.Errorf("regctl registry login with a revoked API token succeeded:\n%s", out)
		}
		out, err = run(t, time.Minute, renv2, regctl, "image", "digest", reg+"/team-a/regctl:1")
		if err == nil {
			t.Errorf("regctl image digest with a revoked API token succeeded:\n%s", out)
		}
		resp, body = tokenGET(t, front.URL, reg, "alice", secret, []string{"repository:team-a/crane:pull"})
		if resp.StatusCode != http.StatusUnauthorized {
			t.Errorf("GET /v2/token with the revoked API token: %s %s, want 401", resp.Status, body)
		}
	})

	t.Run("catalog", func(t *testing.T) {
		// Listings show what the caller may browse or read: anonymous the
		// anonymousPull repository, alice team-a's images and pub, admin all.
		img := layeredImage(t, 32*1024)
		dir := filepath.Join(t.TempDir(), "layout")
		writeLayout(t, dir, img, "1")
		adminEnv := craneAs(t, reg, "admin", authAdminPW)
		aliceEnv := craneAs(t, reg, "alice", alicePW)
		mustRun(t, time.Minute, adminEnv, crane, "push", "--insecure", dir, reg+"/pub/cat:1")
		mustRun(t, time.Minute, adminEnv, crane, "push", "--insecure", dir, reg+"/team-b/cat:1")
		mustRun(t, time.Minute, aliceEnv, crane, "push", "--insecure", dir, reg+"/team-a/cat:1")
		check := func(what, list string, want, not []string) {
			t.Helper()
			names := map[string]bool{}
			for _, f := range strings.FieldsFunc(list, func(r rune) bool { return r == '\n' || r == '"' || r == ',' || r == '[' || r == ']' || r == ' ' }) {
				names[f] = true
			}
			for _, n := range want {
				if !names[n] {
					t.Errorf("%s does not list %s:\n%s", what, n, list)
				}
			}
			for _, n := range not {
				if names[n] {
					t.Errorf("%s lists %s, which the caller may not see:\n%s", what, n, list)
				}
			}
		}
		// Without credentials the catalog challenges (so clients that log in
		// only when asked send theirs); an anonymous token lists what
		// anonymous may see.
		resp, body := do(t, http.MethodGet, front.URL+"/v2/_catalog", nil, nil)
		if resp.StatusCode != http.StatusUnauthorized || !strings.Contains(resp.Header.Get("Www-Authenticate"), `scope="registry:catalog:*"`) {
			t.Errorf("GET /v2/_catalog without credentials: %s %v %s, want 401 with scope registry:catalog:*", resp.Status, resp.Header, body)
		}
		check("crane catalog (anonymous)", mustRun(t, time.Minute, nil, crane, "catalog", "--insecure", reg),
			[]string{"pub/cat"}, []string{"local/team-a/cat", "local/team-b/cat"})
		check("crane catalog as admin", mustRun(t, time.Minute, adminEnv, crane, "catalog", "--insecure", reg),
			[]string{"pub/cat", "local/team-a/cat", "local/team-b/cat"}, nil)
		check("crane catalog as alice", mustRun(t, time.Minute, aliceEnv, crane, "catalog", "--insecure", reg),
			[]string{"local/team-a/cat", "pub/cat"}, []string{"local/team-b/cat"})
		renv := regctlEnv(t, reg)
		if out, err := runStdin(t, time.Minute, renv, alicePW, tool(t, "regctl"), "registry", "login", reg, "--user", "alice", "--pass-stdin"); err != nil {
			t.Fatalf("regctl registry login as alice: %v\n%s", err, out)
		}
		m := front.mark()
		out := mustRun(t, time.Minute, renv, tool(t, "regctl"), "repo", "ls", reg)
		t.Logf("the airlock saw during regctl repo ls as alice:\n%s", fmtHits(front.since(m)))
		check("regctl repo ls as alice", out, []string{"local/team-a/cat", "pub/cat"}, []string{"local/team-b/cat"})
	})

	t.Run("attacks", func(t *testing.T) {
		base, svc := airlock.URL, airlock.Host // straight to localdev
		img := layeredImage(t, 64*1024)
		pushAtk := func(ref string) {
			dir := filepath.Join(t.TempDir(), "layout")
			writeLayout(t, dir, img, "1")
			mustRun(t, 2*time.Minute, craneAs(t, svc, "alice", alicePW), crane, "push", "--insecure", dir, ref)
		}
		pushAtk(svc + "/team-a/atk:1")
		raw, err := img.RawManifest()
		if err != nil {
			t.Fatal(err)
		}
		mt, err := img.MediaType()
		if err != nil {
			t.Fatal(err)
		}
		manifest := svc + "/team-a/atk:1"
		getManifest := func(tok, image string) (*http.Response, []byte) {
			hdr := bearer(tok)
			hdr["Accept"] = manifestAccept
			return do(t, http.MethodGet, base+"/v2/"+image+"/manifests/1", nil, hdr)
		}

		// Control: alice's pull token reads the manifest.
		pull := mustToken(t, base, svc, "alice", alicePW, "repository:team-a/atk:pull")
		if resp, body := getManifest(pull, "team-a/atk"); resp.StatusCode != http.StatusOK || resp.Header.Get("Docker-Content-Digest") != digestOf(t, img).String() {
			t.Fatalf("GET %s with alice's pull token: %s %s, want 200 %s", manifest, resp.Status, body, digestOf(t, img))
		}

		// Tampered tokens: a flipped byte in the payload; the payload edited
		// to name team-b with the original signature; alg none.
		h, p, s, claims := jwtParts(t, pull)
		i := len(p) / 2
		c := byte('A')
		if p[i] == 'A' {
			c = 'B'
		}
		flipped := h + "." + p[:i] + string(c) + p[i+1:] + "." + s
		resp, body := getManifest(flipped, "team-a/atk")
		assertChallenge(t, "GET manifest with a byte of the token's payload flipped", resp, body, base, "repository:team-a/atk:pull")
		t.Logf("flipped payload byte: %s %s", resp.Status, body)

		pushAtk(svc + "/team-a/other:1")
		claims["access"] = []map[string]any{{"type": "repository", "name": "team-a/other", "actions": []string{"pull", "push", "delete"}}}
		edited := h + "." + b64JSON(t, claims) + "." + s
		resp, body = getManifest(edited, "team-a/other")
		assertChallenge(t, "GET manifest with a token whose access claim was rewritten (signature kept)", resp, body, base, "repository:team-a/other:pull")
		none := b64JSON(t, map[string]string{"alg": "none", "typ": "JWT"}) + "." + b64JSON(t, claims) + "."
		resp, body = getManifest(none, "team-a/other")
		assertChallenge(t, "GET manifest with an alg=none token", resp, body, base, "repository:team-a/other:pull")

		// A pull-only token used to PUT a manifest: 401 with the scope to
		// ask for (the token does not name push; had alice asked for push
		// and been refused, it would be 403 DENIED, below).
		resp, body = do(t, http.MethodPut, base+"/v2/team-a/atk/manifests/2", strings.NewReader(string(raw)),
			map[string]string{"Authorization": "Bearer " + pull, "Content-Type": string(mt)})
		assertChallenge(t, "PUT manifest with a pull-only token", resp, body, base, "repository:team-a/atk:pull,push")
		t.Logf("PUT manifest with a pull-only token: %s %s (%s)", resp.Status, body, resp.Header.Get("Www-Authenticate"))
		if resp, body := getManifest2(t, base, pull, "team-a/atk"); resp.StatusCode != http.StatusNotFound {
			t.Errorf("GET team-a/atk:2 after the refused PUT: %s %s, want 404", resp.Status, body)
		}
		// Asked for and refused: the token lists it as refused, the registry
		// answers 403 DENIED.
		refused := mustToken(t, base, svc, "alice", alicePW, "repository:team-b/atk:pull,push")
		resp, body = do(t, http.MethodPut, base+"/v2/team-b/atk/manifests/2", strings.NewReader(string(raw)),
			map[string]string{"Authorization": "Bearer " + refused, "Content-Type": string(mt)})
		if resp.StatusCode != http.StatusForbidden || parseErrors(t, body).Errors[0].Code != "DENIED" {
			t.Errorf("PUT team-b/atk manifest with alice's token (push asked for, refused): %s %s, want 403 DENIED", resp.Status, body)
		}

		// A token for another service (audience), and one for this service
		// sent to the same localdev under another host name.
		other := mustToken(t, base, "registry.example.com", "alice", alicePW, "repository:team-a/atk:pull")
		resp, body = getManifest(other, "team-a/atk")
		assertChallenge(t, "GET manifest with a token for service registry.example.com", resp, body, base, "repository:team-a/atk:pull")
		_, port, _ := strings.Cut(svc, ":")
		lhBase := "http://localhost:" + port
		hdr := bearer(pull)
		hdr["Accept"] = manifestAccept
		resp, body = do(t, http.MethodGet, lhBase+"/v2/team-a/atk/manifests/1", nil, hdr)
		assertChallenge(t, "GET manifest at localhost:"+port+" with a token for "+svc, resp, body, lhBase, "repository:team-a/atk:pull")

		// No existence oracle: a refused name answers the same whether it
		// exists or not, anonymous and alice alike.
		secretImg := layeredImage(t, 64*1024)
		secretDir := filepath.Join(t.TempDir(), "secret")
		writeLayout(t, secretDir, secretImg, "1")
		mustRun(t, 2*time.Minute, craneAs(t, svc, "admin", authAdminPW), crane, "push", "--insecure", secretDir, svc+"/team-b/secret:1")
		for _, who := range []struct{ user, secret string }{{"", ""}, {"alice", alicePW}} {
			tok := mustToken(t, base, svc, who.user, who.secret, "repository:team-b/secret:pull", "repository:team-b/missing:pull")
			r1, b1 := getManifest(tok, "team-b/secret")
			r2, b2 := getManifest(tok, "team-b/missing")
			if r1.StatusCode != http.StatusForbidden || r2.StatusCode != r1.StatusCode ||
				strings.ReplaceAll(string(b2), "team-b/missing", "team-b/secret") != string(b1) {
				t.Errorf("GET manifest as %q of team-b/secret (exists) and team-b/missing: %s %s / %s %s; want the same 403 DENIED",
					who.user, r1.Status, b1, r2.Status, b2)
			}
		}

		// Names the selector might misread: a token for the name
		// "team-a/../team-b/secret" (its selector path starts with
		// "/v2/team-a/") is useless: such paths are refused before any
		// authorization (NAME_INVALID), plain or percent-encoded, and the
		// token does not cover team-b/secret.
		dots := mustToken(t, base, svc, "alice", alicePW, "repository:team-a/../team-b/secret:pull,push")
		_, _, _, dc := jwtParts(t, dots)
		t.Logf("token for repository:team-a/../team-b/secret:pull,push grants %v", dc["access"])
		for _, p := range []string{"/v2/team-a/../team-b/secret/manifests/1", "/v2/team-a/%2e%2e/team-b/secret/manifests/1",
			"/v2/team-a%2F..%2Fteam-b/secret/manifests/1", "/v2/team-a/./../team-b/secret/manifests/1"} {
			hdr := bearer(dots)
			hdr["Accept"] = manifestAccept
			resp, body := do(t, http.MethodGet, base+p, nil, hdr)
			if resp.StatusCode != http.StatusBadRequest || parseErrors(t, body).Errors[0].Code != "NAME_INVALID" {
				t.Errorf("GET %s with a token for team-a/../team-b/secret: %s %s, want 400 NAME_INVALID", p, resp.Status, body)
			}
		}
		resp, body = getManifest(dots, "team-b/secret")
		assertChallenge(t, "GET team-b/secret with a token for team-a/../team-b/secret", resp, body, base, "repository:team-b/secret:pull")

		// team-b's blobs stay out of alice's reach: not visible under her
		// names, not mountable from team-b, not linkable by a manifest PUT.
		sb := blobDigests(t, secretImg)
		steal := mustToken(t, base, svc, "alice", alicePW, "repository:team-a/steal:pull,push", "repository:team-b/secret:pull")
		for _, d := range sb {
			if code, _ := headAs(t, base+"/v2/team-a/steal/blobs/"+d.String(), steal); code != http.StatusNotFound {
				t.Errorf("HEAD team-a/steal/blobs/%s (a blob only team-b/secret holds) as alice: %d, want 404", d, code)
			}
		}
		for _, from := range []string{"team-b/secret", "local/team-b/secret", ""} {
			u := base + "/v2/team-a/steal/blobs/uploads/?mount=" + sb[1].String()
			if from != "" {
				u += "&from=" + url.QueryEscape(from)
			}
			resp, body := do(t, http.MethodPost, u, nil, bearer(steal))
			if resp.StatusCode != http.StatusAccepted {
				t.Errorf("POST %s as alice: %s %s, want 202 (an upload session, no mount)", u, resp.Status, body)
			}
		}
		if code, _ := headAs(t, base+"/v2/team-a/steal/blobs/"+sb[1].String(), steal); code != http.StatusNotFound {
			t.Errorf("HEAD team-a/steal/blobs/%s after the mount attempts: %d, want 404", sb[1], code)
		}
		sRaw, err := secretImg.RawManifest()
		if err != nil {
			t.Fatal(err)
		}
		resp, body = do(t, http.MethodPut, base+"/v2/team-a/steal/manifests/1", strings.NewReader(string(sRaw)),
			map[string]string{"Authorization": "Bearer " + steal, "Content-Type": string(mt)})
		if resp.StatusCode != http.StatusBadRequest || parseErrors(t, body).Errors[0].Code != "MANIFEST_BLOB_UNKNOWN" {
			t.Errorf("PUT team-a/steal manifest referencing team-b/secret's blobs: %s %s, want 400 MANIFEST_BLOB_UNKNOWN", resp.Status, body)
		}

		// Refresh tokens: never access tokens, and the other way round; one
		// of a deleted user is dead, also once a new user of the same name
		// exists (as API tokens are: ident records the user's uid).
		resp, body = tokenGET(t, base, svc, "alice", alicePW, []string{"repository:team-a/atk:pull"}, "offline_token", "true")
		var tr tokenResp
		if resp.StatusCode != http.StatusOK || json.Unmarshal(body, &tr) != nil || tr.RefreshToken == "" {
			t.Fatalf("GET /v2/token?offline_token=true as alice: %s %s, want 200 with a refresh_token", resp.Status, body)
		}
		resp, body = getManifest(tr.RefreshToken, "team-a/atk")
		assertChallenge(t, "GET manifest with a refresh token as the bearer token", resp, body, base, "repository:team-a/atk:pull")
		refresh := func(rt string, scope string) (*http.Response, []byte) {
			return tokenPOST(t, base, url.Values{"grant_type": {"refresh_token"}, "refresh_token": {rt}, "service": {svc}, "scope": {scope}, "client_id": {"e2e"}})
		}
		if resp, body := refresh(tr.Token, "repository:team-a/atk:pull"); resp.StatusCode != http.StatusUnauthorized {
			t.Errorf("POST /v2/token grant_type=refresh_token with an access token: %s %s, want 401", resp.Status, body)
		}
		if resp, body := refresh(tr.RefreshToken, "repository:team-a/atk:pull"); resp.StatusCode != http.StatusOK {
			t.Errorf("POST /v2/token grant_type=refresh_token (control): %s %s, want 200", resp.Status, body)
		}
		createUser(t, base, "carol", "carol-e2e-password-1", "team-a")
		resp, body = tokenGET(t, base, svc, "carol", "carol-e2e-password-1", []string{"repository:team-a/atk:pull"}, "offline_token", "true")
		var carol tokenResp
		if resp.StatusCode != http.StatusOK || json.Unmarshal(body, &carol) != nil || carol.RefreshToken == "" {
			t.Fatalf("GET /v2/token?offline_token=true as carol: %s %s, want 200 with a refresh_token", resp.Status, body)
		}
		if resp, body := adminAPI(t, base, http.MethodDelete, "/airlock/api/users/carol", nil); resp.StatusCode != http.StatusOK {
			t.Fatalf("DELETE /airlock/api/users/carol: %s %s", resp.Status, body)
		}
		if resp, body := refresh(carol.RefreshToken, "repository:team-a/atk:pull"); resp.StatusCode != http.StatusUnauthorized {
			t.Errorf("refresh token of the deleted user carol: %s %s, want 401", resp.Status, body)
		}
		createUser(t, base, "carol", "carol-new-password-2", "admin") // another person, same name
		if resp, body := refresh(carol.RefreshToken, "repository:team-b/secret:pull"); resp.StatusCode != http.StatusUnauthorized {
			_, _, _, nc := jwtParts(t, mustField(t, body, "token"))
			t.Errorf("refresh token of the deleted user carol, after a new carol (admin) was created: %s, access %v; want 401 "+
				"(it must not work for a new user of the same name)", resp.Status, nc["access"])
		}

		// The admin API: admin role only.
		for _, c := range []struct {
			what string
			hdr  map[string]string
			code int
		}{
			{"anonymous", nil, http.StatusUnauthorized},
			{"alice (Basic)", map[string]string{"Authorization": basicAuth("alice", alicePW)}, http.StatusForbidden},
			{"alice (Bearer)", bearer(pull), http.StatusForbidden},
		} {
			resp, body := do(t, http.MethodGet, base+"/airlock/api/users", nil, c.hdr)
			if resp.StatusCode != c.code {
				t.Errorf("GET /airlock/api/users as %s: %s %s, want %d", c.what, resp.Status, body, c.code)
			}
			hdr := map[string]string{"Content-Type": "application/json"}
			for k, v := range c.hdr {
				hdr[k] = v
			}
			resp, body = do(t, http.MethodPost, base+"/airlock/api/users", strings.NewReader(`{"name":"mallory","password":"mallory-password-1","roles":["admin"]}`), hdr)
			if resp.StatusCode != c.code {
				t.Errorf("POST /airlock/api/users (mallory, admin) as %s: %s %s, want %d", c.what, resp.Status, body, c.code)
			}
		}
		if resp, body := tokenGET(t, base, svc, "mallory", "mallory-password-1", []string{"repository:team-a/atk:pull"}); resp.StatusCode != http.StatusUnauthorized {
			t.Errorf("GET /v2/token as mallory (whose creation was refused): %s %s, want 401", resp.Status, body)
		}

		// Brute force: 8 wrong passwords for bob. MaxFailures (5) get 401,
		// then the name is locked: 429 TOOMANYREQUESTS with Retry-After, even
		// for the right password; alice, and bob's API token, are unaffected.
		bobSecret, _ := createAPIToken(t, base, "bob", "e2e brute force")
		var codes []int
		for i := 0; i < 8; i++ {
			resp, body := tokenGET(t, base, svc, "bob", fmt.Sprintf("wrong-password-%02d", i), []string{"repository:team-a/atk:pull"})
			codes = append(codes, resp.StatusCode)
			switch {
			case resp.StatusCode == http.StatusUnauthorized:
				if e := parseErrors(t, body); e.Errors[0].Code != "UNAUTHORIZED" {
					t.Errorf("wrong password %d for bob: %s %s, want UNAUTHORIZED", i+1, resp.Status, body)
				}
			case resp.StatusCode == http.StatusTooManyRequests:
				ra, err := strconv.Atoi(resp.Header.Get("Retry-After"))
				if e := parseErrors(t, body); e.Errors[0].Code != "TOOMANYREQUESTS" || err != nil || ra < 1 || ra > 60 {
					t.Errorf("wrong password %d for bob: %s %s, Retry-After %q; want TOOMANYREQUESTS and Retry-After 1..60 s",
						i+1, resp.Status, body, resp.Header.Get("Retry-After"))
				}
				if i == 7 {
					t.Logf("wrong password 8 for bob: %s %s, Retry-After %s", resp.Status, body, resp.Header.Get("Retry-After"))
				}
			default:
				t.Errorf("wrong password %d for bob: %s %s, want 401 or 429", i+1, resp.Status, body)
			}
		}
		t.Logf("8 wrong passwords for bob at GET /v2/token: %v", codes)
		if want := []int{401, 401, 401, 401, 401, 429, 429, 429}; fmt.Sprint(codes) != fmt.Sprint(want) {
			t.Errorf("8 wrong passwords for bob: statuses %v, want %v (5 failures lock the name)", codes, want)
		}
		resp, body = tokenGET(t, base, svc, "bob", bobPW, []string{"repository:team-a/atk:pull"})
		if resp.StatusCode != http.StatusTooManyRequests || resp.Header.Get("Retry-After") == "" {
			t.Errorf("bob's right password while locked: %s %s, want 429 with Retry-After", resp.Status, body)
		}
		resp, body = tokenPOST(t, base, url.Values{"grant_type": {"password"}, "username": {"bob"}, "password": {bobPW},
			"service": {svc}, "scope": {"repository:team-a/atk:pull"}, "client_id": {"e2e"}})
		if resp.StatusCode != http.StatusTooManyRequests || resp.Header.Get("Retry-After") == "" {
			t.Errorf("POST /v2/token grant_type=password for bob while locked: %s %s, want 429 with Retry-After", resp.Status, body)
		}
		if tok := mustToken(t, base, svc, "alice", alicePW, "repository:team-a/atk:pull"); tok != "" {
			if resp, body := getManifest(tok, "team-a/atk"); resp.StatusCode != http.StatusOK {
				t.Errorf("alice's token while bob is locked: GET manifest %s %s, want 200", resp.Status, body)
			}
		}
		resp, body = tokenPOST(t, base, url.Values{"grant_type": {"password"}, "username": {"alice"}, "password": {alicePW},
			"service": {svc}, "scope": {"repository:team-a/atk:pull"}, "client_id": {"e2e"}})
		if resp.StatusCode != http.StatusOK {
			t.Errorf("POST /v2/token grant_type=password for alice while bob is locked: %s %s, want 200", resp.Status, body)
		}
		mustToken(t, base, svc, "bob", bobSecret, "repository:team-a/atk:pull") // API tokens are never locked
	})
	t.Logf("TestAuth took %s", time.Since(start).Round(time.Millisecond))
}

// mustField returns a string field of a JSON object.
func mustField(t testing.TB, body []byte, key string) string {
	t.Helper()
	var m map[string]any
	if err := json.Unmarshal(body, &m); err != nil {
		t.Fatalf("not a JSON object (%v): %s", err, body)
	}
	v, _ := m[key].(string)
	return v
}

// headAs sends HEAD u (a manifest) with a bearer token.
func headAs(t testing.TB, u, tok string) (int, http.Header) {
	t.Helper()
	hdr := bearer(tok)
	hdr["Accept"] = manifestAccept
	resp, _ := do(t, http.MethodHead, u, nil, hdr)
	return resp.StatusCode, resp.Header
}

// getManifest2 gets image:2 with a bearer token.
func getManifest2(t testing.TB, base, tok, image string) (*http.Response, []byte) {
	t.Helper()
	hdr := bearer(tok)
	hdr["Accept"] = manifestAccept
	return do(t, http.MethodGet, base+"/v2/"+image+"/manifests/2", nil, hdr)
}

// mustRun runs ctr and fails the test on error.
func (c *containerd) mustRun(t testing.TB, ns string, args ...string) string {
	t.Helper()
	out, err := c.run(t, 2*time.Minute, ns, args...)
	if err != nil {
		t.Fatalf("ctr %s: %v", strings.Join(args, " "), err)
	}
	return out
}
