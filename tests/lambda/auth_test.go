package lambda_test

import (
	"encoding/base64"
	"encoding/json"
	"net/http"
	"net/url"
	"strings"
	"sync"
	"testing"
)

// adminPassword is the first admin's password the function is started
// with (AIRLOCK_ADMIN_PASSWORD: local runs only; on AWS an SSM parameter).
const adminPassword = "lambda-test-admin-password"

// tokens caches the admin's bearer tokens per host and repository name.
var tokens sync.Map

// withToken adds an admin bearer token for the event's repository name
// (infra/airlock.yaml enables authentication) unless the event carries an
// Authorization header already or is the token request itself.
func withToken(t testing.TB, fn *function, event []byte) []byte {
	var ev map[string]any
	if json.Unmarshal(event, &ev) != nil {
		return event
	}
	headers, _ := ev["headers"].(map[string]any)
	path, _ := ev["rawPath"].(string)
	if headers == nil || headers["authorization"] != nil || !strings.HasPrefix(path, "/v2/") || path == "/v2/token" {
		return event
	}
	name := repoName(path)
	host, _ := headers["host"].(string)
	tok, ok := tokens.Load(host + " " + name)
	if !ok {
		tok = adminToken(t, fn, host, name)
		tokens.Store(host+" "+name, tok)
	}
	headers["authorization"] = "Bearer " + tok.(string)
	out, _ := json.Marshal(ev)
	return out
}

// repoName is the repository name of a /v2/<name>/<endpoint>/... path ("" for /v2/).
func repoName(path string) string {
	segs := strings.Split(strings.Trim(strings.TrimPrefix(path, "/v2/"), "/"), "/")
	for i, s := range segs {
		if s == "blobs" || s == "manifests" || s == "tags" || s == "referrers" {
			return strings.Join(segs[:i], "/")
		}
	}
	return ""
}

// adminToken asks the function's token endpoint (through its front door)
// for the admin's token.
func adminToken(t testing.TB, fn *function, host, name string) string {
	t.Helper()
	q := url.Values{"service": {host}}
	if name != "" {
		q.Set("scope", "repository:"+name+":pull,push,delete")
	}
	r := fn.invokeRaw(t, fn.door.event(t, request{method: "GET", target: "/v2/token?" + q.Encode(), header: []string{
		"Authorization", "Basic " + base64.StdEncoding.EncodeToString([]byte("admin:"+adminPassword)),
	}}))
	var doc struct {
		Token string `json:"token"`
	}
	if r.StatusCode != http.StatusOK || json.Unmarshal(r.body(), &doc) != nil || doc.Token == "" {
		t.Fatalf("admin token for %q: %s\n%s", name, r, tail(fn.out.String(), 2000))
	}
	return doc.Token
}

// TestAuthOnLambda: the packaged configuration requires logins: without a
// token the function answers 401 with the challenge naming the host the
// client addressed over https (API Gateway's X-Forwarded-Proto), a wrong
// password gets 401 from the token endpoint, the admin's token works.
func TestAuthOnLambda(t *testing.T) {
	r := suite.fn.invokeRaw(t, event(t, request{method: "GET", target: "/v2/lambda/app/tags/list"}))
	want := `Bearer realm="https://abcdef1234.execute-api.us-east-1.amazonaws.com/v2/token",service="abcdef1234.execute-api.us-east-1.amazonaws.com",scope="repository:lambda/app:pull"`
	if r.StatusCode != http.StatusUnauthorized || r.header("Www-Authenticate") != want {
		t.Fatalf("no token: %s, want 401 with %s", r, want)
	}
	bad := suite.fn.invokeRaw(t, event(t, request{method: "GET", target: "/v2/token?service=x", header: []string{
		"Authorization", "Basic " + base64.StdEncoding.EncodeToString([]byte("admin:wrong-password-1")),
	}}))
	if bad.StatusCode != http.StatusUnauthorized || strings.Contains(string(bad.body()), "wrong-password") {
		t.Fatalf("wrong password: %s", bad)
	}
	if ok := do(t, request{method: "GET", target: "/v2/"}); ok.StatusCode != http.StatusOK {
		t.Fatalf("/v2/ with the admin's token: %s", ok)
	}
}
