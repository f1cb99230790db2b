package upstreamtest

import (
	"crypto/rand"
	"crypto/subtle"
	"encoding/hex"
	"encoding/json"
	"fmt"
	"net/http"
	"strings"
	"time"
)

// service is the service name of the bearer challenge.
const service = "upstreamtest"

// tokenTTL is the expires_in of issued tokens (they are not expired, see
// RevokeTokens).
const tokenTTL = 300

// RevokeTokens forgets every token issued so far, as if they had expired:
// requests bearing them are answered 401 with a fresh challenge.
func (u *Upstream) RevokeTokens() {
	u.mu.Lock()
	u.tokens = map[string]map[string]string{}
	u.mu.Unlock()
}

// randomHex returns n random bytes in hex.
func randomHex(n int) string {
	b := make([]byte, n)
	_, _ = rand.Read(b)
	return hex.EncodeToString(b)
}

// handleToken is the token endpoint: GET /token?service=...&scope=...
func (u *Upstream) handleToken(w http.ResponseWriter, r *http.Request) {
	if r.Method != http.MethodGet {
		// No OAuth2 POST flow; clients fall back to GET on 404.
		writeError(w, http.StatusNotFound, "UNSUPPORTED", "upstreamtest: only GET /token")
		return
	}
	authenticated := false
	if u.opts.user != "" {
		user, pass, ok := r.BasicAuth()
		if !ok || subtle.ConstantTimeCompare([]byte(user), []byte(u.opts.user)) != 1 ||
			subtle.ConstantTimeCompare([]byte(pass), []byte(u.opts.pass)) != 1 {
			w.Header().Set("WWW-Authenticate", `Basic realm="upstreamtest"`)
			writeError(w, http.StatusUnauthorized, "UNAUTHORIZED", "incorrect username or password")
			return
		}
		authenticated = true
	}
	grants := map[string]string{}
	for _, param := range r.URL.Query()["scope"] {
		for _, scope := range strings.Fields(param) {
			// repository:<name>:<actions>; the name may not contain ':'
			// but a registry-qualified one could, so split from the ends.
			first, last := strings.Index(scope, ":"), strings.LastIndex(scope, ":")
			if first < 0 || first == last || scope[:first] != "repository" {
				continue
			}
			name, actions := scope[first+1:last], strings.Split(scope[last+1:], ",")
			var got []string
			for _, a := range actions {
				if a == "pull" || a == "*" {
					got = append(got, "pull")
				}
				if (a == "push" || a == "*") && authenticated {
					got = append(got, "push")
				}
			}
			if len(got) > 0 {
				grants[name] = strings.Join(append(got, grants[name]), ",")
			}
		}
	}
	tok := randomHex(24)
	u.mu.Lock()
	u.tokens[tok] = grants
	u.mu.Unlock()
	w.Header().Set("Content-Type", "application/json")
	_ = json.NewEncoder(w).Encode(map[string]any{
		"token":        tok,
		"access_token": tok,
		"expires_in":   tokenTTL,
		"issued_at":    time.Now().UTC().Format(time.RFC3339),
	})
}

// authorized reports whether r bears a token that allows it; if not it has
// answered 401 with the challenge the client needs.
func (u *Upstream) authorized(w http.ResponseWriter, r *http.Request, repo string) bool {
	action := "pull"
	if r.Method != http.MethodGet && r.Method != http.MethodHead {
		action = "push"
	}
	if u.tokenAllows(r, repo, action) {
		return true
	}
	u.challenge(w, repo, action, "authentication required")
	return false
}

// tokenAllows reports whether r's bearer token allows action on repo (any
// valid token will do when repo is "").
func (u *Upstream) tokenAllows(r *http.Request, repo, action string) bool {
	tok, ok := strings.CutPrefix(r.Header.Get("Authorization"), "Bearer ")
	if !ok {
		return false
	}
	u.mu.Lock()
	grants, ok := u.tokens[strings.TrimSpace(tok)]
	u.mu.Unlock()
	if !ok {
		return false
	}
	if repo == "" {
		return true
	}
	for _, a := range strings.Split(grants[repo], ",") {
		if a == action {
			return true
		}
	}
	return false
}

// challenge answers 401 with a bearer challenge for action on repo (no
// scope when repo is "") or, without WithToken, with no challenge at all.
func (u *Upstream) challenge(w http.ResponseWriter, repo, action, msg string) {
	if u.opts.token {
		c := fmt.Sprintf(`Bearer realm="%s/token",service="%s"`, u.URL, service)
		if repo != "" {
			scope := "pull"
			if action == "push" {
				scope = "pull,push"
			}
			c += fmt.Sprintf(`,scope="repository:%s:%s"`, repo, scope)
		}
		w.Header().Set("WWW-Authenticate", c)
	}
	w.Header().Set("Docker-Distribution-API-Version", "registry/2.0")
	writeError(w, http.StatusUnauthorized, "UNAUTHORIZED", msg)
}
