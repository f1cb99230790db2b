package registry

import (
	"errors"
	"net/http"
	"strings"

	"github.com/airlock-registry/airlock/shared/repo"
	"github.com/airlock-registry/airlock/shared/storage"
)

// adminPrefix is where Airlock's own API lives (outside /v2/).
const adminPrefix = "/airlock/api/"

// admin serves Airlock's admin API (the admin role when authentication is
// on: requireAdmin):
//
//	GET  /airlock/api/proxies                          every proxy's remote state (failures, blocked until, parked fills)
//	POST /airlock/api/proxies/<proxy>/refresh?name=<image>&tag=<tag>
//	                                                   revalidate one cached tag now, whatever metadataMaxAge says
//	POST /airlock/api/purge?task=<name>&dryRun=true|false
//	                                                   run one purge task now; answers its report (admin_purge.go)
//	POST /airlock/api/keys/rotate                      add a token signing key (rotateKeys)
//	     /airlock/api/users...                         users and API tokens (admin_users.go)
//
// The browse endpoints under /airlock/api/browse/ are not admin calls
// (browse.go; served before this).
func (rg *Registry) admin(w http.ResponseWriter, r *http.Request) error {
	if err := rg.requireAdmin(r); err != nil {
		return err
	}
	rest := strings.TrimPrefix(r.URL.Path, adminPrefix)
	if strings.HasPrefix(rest, "users") {
		return rg.adminUsers(w, r, strings.TrimPrefix(rest, "users"))
	}
	if rest == "keys/rotate" {
		return rg.rotateKeys(w, r)
	}
	if rest == "purge" {
		return rg.adminPurge(w, r)
	}
	switch {
	case rest == "proxies":
		if r.Method != http.MethodGet && r.Method != http.MethodHead {
			return notAllowed(r.Method, r.URL.Path, http.MethodGet, http.MethodHead)
		}
		out := []repo.Status{}
		for _, p := range rg.repos.Proxies() {
			st, err := p.Status(r.Context())
			if err != nil {
				return err
			}
			out = append(out, st)
		}
		writeJSON(w, r, "application/json", struct {
			Proxies []repo.Status `json:"proxies"`
		}{out})
		return nil
	case strings.HasPrefix(rest, "proxies/") && strings.HasSuffix(rest, "/refresh"):
		if r.Method != http.MethodPost {
			return notAllowed(r.Method, r.URL.Path, http.MethodPost)
		}
		name := strings.TrimSuffix(strings.TrimPrefix(rest, "proxies/"), "/refresh")
		rp, ok := rg.repos.Get(name)
		p, isProxy := rp.(*repo.Proxy)
		if !ok || !isProxy {
			return apiErr(http.StatusNotFound, CodeNameUnknown, "%q is not a proxy repository", name)
		}
		q := r.URL.Query()
		image, tag := q.Get("name"), q.Get("tag")
		if err := checkName(image); err != nil {
			return err
		}
		if !tagRe.MatchString(tag) {
			return apiErr(http.StatusBadRequest, CodeManifestInvalid, "invalid or missing tag %q (?tag=)", tag)
		}
		m, err := p.Refresh(r.Context(), image, tag)
		if errors.Is(err, storage.ErrNotFound) {
			return apiErr(http.StatusNotFound, CodeManifestUnknown, "%s:%s: %v", image, tag, err)
		}
		if err != nil {
			return err
		}
		writeJSON(w, r, "application/json", struct {
			Name    string `json:"name"`
			Tag     string `json:"tag"`
			Digest  string `json:"digest"`
			Warning string `json:"warning,omitempty"`
		}{name + "/" + image, tag, m.Digest.String(), m.Warning})
		return nil
	}
	return apiErr(http.StatusNotFound, CodeNameUnknown, "no admin endpoint at %s (GET /airlock/api/proxies, POST /airlock/api/proxies/<proxy>/refresh?name=&tag=, "+
		"POST /airlock/api/purge?task=&dryRun=, /airlock/api/users[/<user>[/password|/roles|/tokens]], POST /airlock/api/keys/rotate, GET /airlock/api/browse/...)", r.URL.Path)
}

// rotateKeys (POST /airlock/api/keys/rotate) adds a token signing key; it
// signs from two minutes later on, and the old key keeps verifying until
// every token it signed has expired.
func (rg *Registry) rotateKeys(w http.ResponseWriter, r *http.Request) error {
	if r.Method != http.MethodPost {
		return notAllowed(r.Method, r.URL.Path, http.MethodPost)
	}
	if rg.auth == nil {
		return apiErr(http.StatusNotFound, CodeUnsupported, "authentication is not enabled: there are no signing keys")
	}
	if err := rg.auth.Tokens.Rotate(r.Context()); err != nil {
		return apiErr(http.StatusConflict, CodeUnsupported, "rotate: %v", err)
	}
	writeJSON(w, r, "application/json", map[string]string{"rotated": "a new key signs from two minutes from now; the old one verifies until its tokens expire"})
	return nil
}
