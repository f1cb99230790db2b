package registry

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"net/http"
	"os"
	"strconv"
	"strings"
	"time"

	"github.com/airlock-registry/airlock/shared/auth"
	"github.com/airlock-registry/airlock/shared/auth/ident"
	"github.com/airlock-registry/airlock/shared/auth/token"
	"github.com/airlock-registry/airlock/shared/config"
	"github.com/airlock-registry/airlock/shared/storage"
)

// tokenPath is the token endpoint (Docker token spec), on the registry's own host.
const tokenPath = "/v2/token"

// dockerAction is the token scope action an operation needs.
func dockerAction(o op) string {
	switch o {
	case opBlobGet, opBlobHead, opManifestGet, opManifestHead, opTags, opReferrers:
		return "pull"
	case opBlobDelete, opManifestDelete:
		return "delete"
	}
	return "push"
}

// realm is where clients get tokens: the registry's host as the client
// addressed it (API Gateway domain, custom domain, 127.0.0.1:PORT).
func realm(r *http.Request) (realm, service string) {
	scheme := "http"
	if r.TLS != nil {
		scheme = "https"
	}
	if p := r.Header.Get("X-Forwarded-Proto"); p == "https" || p == "http" {
		scheme = p
	}
	return scheme + "://" + r.Host + tokenPath, r.Host
}

// challenge is the 401 that starts the token flow for scope ("" on /v2/).
func challenge(r *http.Request, scope, msg string) *Error {
	rl, svc := realm(r)
	v := fmt.Sprintf(`Bearer realm=%q,service=%q`, rl, svc)
	if scope != "" {
		v += fmt.Sprintf(`,scope=%q`, scope)
	}
	e := apiErr(http.StatusUnauthorized, CodeUnauthorized, "%s", msg)
	e.Header = http.Header{"Www-Authenticate": {v}}
	return e
}

// bearer verifies the request's bearer token; ok is false without one.
func (rg *Registry) bearer(r *http.Request) (token.Claims, bool, error) {
	h := r.Header.Get("Authorization")
	// The scheme is case-insensitive (RFC 9110, section 11.1).
	if len(h) < 7 || !strings.EqualFold(h[:7], "Bearer ") {
		return token.Claims{}, false, nil
	}
	tok := h[7:]
	_, svc := realm(r)
	c, err := rg.auth.Verify(r.Context(), strings.TrimSpace(tok), svc)
	return c, true, err
}

// authorize decides whether the request may run the operation on the
// target (README, Authentication): the token must grant the operation's
// action on the name the client used; without a token only what anonymous
// may read is served.
func (rg *Registry) authorize(r *http.Request, t target) error {
	if rg.auth == nil {
		return nil
	}
	if rg.ingress && sessionOp(t.op) {
		// The session id is the capability (Registry.Ingress; README, Upload
		// ingress): every handler of these operations answers 404
		// BLOB_UPLOAD_UNKNOWN unless the session exists for this very image.
		// An Authorization header is ignored: some clients send the main
		// host's token (another service), most send none.
		return nil
	}
	action := dockerAction(t.op)
	scope := "repository:" + t.full + ":" + action
	if action == "push" {
		scope = "repository:" + t.full + ":pull,push"
	}
	c, ok, err := rg.bearer(r)
	if err != nil {
		return challenge(r, scope, "the bearer token is invalid or expired: get a new one (docker login)")
	}
	if ok {
		if c.Allows("repository", t.full, action) {
			return nil
		}
		if c.Allows(auth.RefusedType, t.full, action) {
			who := c.Subject
			if who == "" {
				who = "anonymous"
			}
			return apiErr(http.StatusForbidden, CodeDenied, "%s may not %s %s: no privilege allows it", who, action, t.full)
		}
		return challenge(r, scope, "the token does not cover "+t.full+": ask the token endpoint for "+scope)
	}
	if action == "pull" && rg.auth.Can(auth.Identity{}, t.repo.Name(), auth.Path(t.name), config.ActionRead) {
		return nil
	}
	return challenge(r, scope, "authentication required: docker login "+r.Host)
}

// sessionOp reports whether o works on an existing upload session named by
// the request's path.
func sessionOp(o op) bool {
	switch o {
	case opUploadPatch, opUploadPut, opUploadStatus, opUploadCancel, opUploadParts:
		return true
	}
	return false
}

// authorizeBase answers /v2/ with auth on: any valid token (anonymous ones too).
func (rg *Registry) authorizeBase(r *http.Request) error {
	if rg.auth == nil {
		return nil
	}
	if _, ok, err := rg.bearer(r); err != nil || !ok {
		return challenge(r, "", "authentication required: docker login "+r.Host)
	}
	return nil
}

// caller is the identity of a listing or admin request: a bearer token or
// HTTP Basic credentials (admin calls with curl -u); anonymous without.
func (rg *Registry) caller(r *http.Request) (auth.Identity, error) {
	if c, ok, err := rg.bearer(r); ok {
		if err != nil {
			return auth.Identity{}, challenge(r, "", "the bearer token is invalid or expired")
		}
		id, err := rg.auth.Identify(r.Context(), c)
		if err != nil {
			return auth.Identity{}, challenge(r, "", "the token's user no longer exists")
		}
		return id, nil
	}
	user, pass, ok, err := basicAuth(r)
	if err != nil {
		return auth.Identity{}, err
	}
	if ok {
		u, err := rg.auth.Users.Authenticate(r.Context(), user, pass)
		if err != nil {
			return auth.Identity{}, loginErr(r, err)
		}
		return auth.Identity{Name: u.Name, Roles: u.Roles}, nil
	}
	return auth.Identity{}, nil
}

// visible reports whether id may see the catalog name "repo/image".
func (rg *Registry) visible(r *http.Request, id auth.Identity, name string) bool {
	if rg.auth == nil {
		return true
	}
	repoName, image, _ := strings.Cut(name, "/")
	path := auth.Path(image)
	return rg.auth.Can(id, repoName, path, config.ActionBrowse) || rg.auth.Can(id, repoName, path, config.ActionRead)
}

// basicAuth returns the request's HTTP Basic credentials (ok false
// without a Basic Authorization header). A Basic header that does not
// decode to user:password is a 401 saying so: taking it for anonymous
// would answer the caller as someone else than it means to be ("Basic"
// with nothing after it stays anonymous).
func basicAuth(r *http.Request) (user, pass string, ok bool, err error) {
	if user, pass, ok = r.BasicAuth(); ok {
		return user, pass, true, nil
	}
	if h := r.Header.Get("Authorization"); len(h) >= 6 && strings.EqualFold(h[:6], "basic ") && strings.TrimSpace(h[6:]) != "" {
		e := apiErr(http.StatusUnauthorized, CodeUnauthorized, "the Authorization header's Basic credentials are not the base64 of <user>:<password>: log in again (docker login)")
		e.Header = http.Header{"Www-Authenticate": {`Basic realm="airlock"`}}
		return "", "", false, e
	}
	return "", "", false, nil
}

// loginErr is the answer to failed credentials.
func loginErr(r *http.Request, err error) error {
	var locked *ident.LockedError
	if errors.As(err, &locked) {
		e := apiErr(http.StatusTooManyRequests, CodeTooManyRequests, "too many failed logins for this user: try again in %s", locked.RetryAfter.Round(time.Second))
		e.Header = http.Header{"Retry-After": {strconv.Itoa(int(max(locked.RetryAfter, time.Second) / time.Second))}}
		return e
	}
	e := apiErr(http.StatusUnauthorized, CodeUnauthorized, "invalid username or password")
	e.Header = http.Header{"Www-Authenticate": {`Basic realm="airlock"`}}
	return e
}

// tokenEndpoint serves GET (HTTP Basic; service, scope, offline_token) and
// the OAuth2 POST (grant_type password or refresh_token) of the Docker token
// spec: https://distribution.github.io/distribution/spec/auth/token/ and
// .../auth/oauth/.
func (rg *Registry) tokenEndpoint(w http.ResponseWriter, r *http.Request) error {
	if rg.auth == nil {
		return apiErr(http.StatusNotFound, CodeUnsupported, "authentication is not enabled on this registry (no auth section in its configuration): no token is needed")
	}
	var req auth.TokenRequest
	switch r.Method {
	case http.MethodGet:
		q := r.URL.Query()
		req.Service, req.Scopes = q.Get("service"), q["scope"]
		req.Offline = q.Get("offline_token") == "true"
		u, p, ok, err := basicAuth(r)
		if err != nil {
			return err
		}
		if ok {
			req.User, req.Secret = u, p
		}
	case http.MethodPost:
		r.Body = http.MaxBytesReader(w, r.Body, 64<<10)
		if err := r.ParseForm(); err != nil {
			return apiErr(http.StatusBadRequest, CodeUnsupported, "token request: %v", err)
		}
		f := r.PostForm
		req.Service, req.Scopes = f.Get("service"), f["scope"]
		switch f.Get("grant_type") {
		case "password":
			req.User, req.Secret = f.Get("username"), f.Get("password")
			req.Offline = f.Get("access_type") == "offline"
		case "refresh_token":
			req.RefreshToken = f.Get("refresh_token")
			if req.RefreshToken == "" {
				return apiErr(http.StatusBadRequest, CodeUnsupported, "grant_type refresh_token needs refresh_token")
			}
		default:
			return apiErr(http.StatusBadRequest, CodeUnsupported, "grant_type %q: want password or refresh_token", f.Get("grant_type"))
		}
	default:
		return notAllowed(r.Method, tokenPath, http.MethodGet, http.MethodPost)
	}
	res, err := rg.auth.Token(r.Context(), req)
	switch {
	case errors.Is(err, auth.ErrBadRequest):
		return apiErr(http.StatusBadRequest, CodeUnsupported, "%v", err)
	case errors.Is(err, auth.ErrUnauthorized):
		e := apiErr(http.StatusUnauthorized, CodeUnauthorized, "%v", err)
		e.Header = http.Header{"Www-Authenticate": {`Basic realm="airlock"`}}
		return e
	case err != nil:
		var locked *ident.LockedError
		if errors.As(err, &locked) {
			return loginErr(r, err)
		}
		return err
	}
	body, _ := json.Marshal(res)
	w.Header().Set("Content-Type", "application/json")
	w.Header().Set("Cache-Control", "no-store")
	w.Header().Set("Content-Length", strconv.Itoa(len(body)))
	w.WriteHeader(http.StatusOK)
	_, _ = w.Write(body)
	return nil
}

// Auth returns the authentication service (nil when auth is off).
func (rg *Registry) Auth() *auth.Service { return rg.auth }

// buildAuth makes the auth service when the configuration enables it.
func buildAuth(ctx context.Context, d Deps, resolve auth.Resolver) (*auth.Service, error) {
	if !d.Config.Auth.Enabled() {
		return nil, nil
	}
	if env := d.Config.Auth.SigningKeyEnv; env != "" && d.AuthOptions.SigningKeyPEM == nil {
		v := os.Getenv(env)
		if v == "" {
			return nil, fmt.Errorf("auth.signingKeyEnv: environment variable %s is not set", env)
		}
		d.AuthOptions.SigningKeyPEM = []byte(v)
	}
	pm, ok := d.Meta.(storage.ProxyMetadata)
	if !ok {
		return nil, fmt.Errorf("the metadata store %T cannot hold identities and keys (storage.ProxyMetadata)", d.Meta)
	}
	return auth.New(ctx, d.Config, pm, resolve, d.AuthOptions)
}

// listCaller is the identity of a catalog or search request (with auth on:
// a bad token is refused; no token lists what anonymous may see).
func (rg *Registry) listCaller(r *http.Request) (auth.Identity, error) {
	if rg.auth == nil {
		return auth.Identity{}, nil
	}
	return rg.caller(r)
}

// requireAdmin refuses admin calls of callers without the admin role.
func (rg *Registry) requireAdmin(r *http.Request) error {
	if rg.auth == nil {
		return nil
	}
	id, err := rg.caller(r)
	if err != nil {
		return err
	}
	if id.Anonymous() {
		e := apiErr(http.StatusUnauthorized, CodeUnauthorized, "the admin API needs the admin role: curl -u admin:<password>")
		e.Header = http.Header{"Www-Authenticate": {`Basic realm="airlock"`}}
		return e
	}
	if !rg.auth.IsAdmin(id) {
		return apiErr(http.StatusForbidden, CodeDenied, "%s does not have the admin role", id.Name)
	}
	return nil
}

// mayPull reports whether the request's token (or anonymous) may pull name
// (the source of a cross-repository mount).
func (rg *Registry) mayPull(r *http.Request, name string) bool {
	if rg.auth == nil {
		return true
	}
	if c, ok, err := rg.bearer(r); ok {
		return err == nil && c.Allows("repository", name, "pull")
	}
	src, image, err := rg.repos.Resolve(name, "")
	return err == nil && rg.auth.Can(auth.Identity{}, src.Name(), auth.Path(image), config.ActionRead)
}
