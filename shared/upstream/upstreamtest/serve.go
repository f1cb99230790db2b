package upstreamtest

import (
	"bytes"
	"io"
	"net/http"
	"net/http/httptest"
	"strings"
	"time"

	"github.com/google/go-containerregistry/pkg/registry"
	v1 "github.com/google/go-containerregistry/pkg/v1"
)

// handleMain serves the registry: faults first (an outage comes before any
// authentication), then the token endpoint or the token check, then the
// wrapper's own answers (401 on HEAD, 304, redirect) and finally ggcr's
// registry.
func (u *Upstream) handleMain(w http.ResponseWriter, r *http.Request) {
	kind, repo, ref := classify(r.URL.Path)
	rw := &respWriter{ResponseWriter: w, u: u, r: r, rec: u.record(r, kind, repo, ref)}
	if u.requestFault(rw, r) {
		return
	}
	if kind == "token" {
		if !u.opts.token {
			writeError(rw, http.StatusNotFound, "NOT_FOUND", "upstreamtest: no token endpoint without WithToken")
			return
		}
		u.handleToken(rw, r)
		return
	}
	if u.opts.token && !u.authorized(rw, r, repo) {
		return
	}
	if kind == "manifest" {
		u.mu.Lock()
		head401 := u.head401
		u.mu.Unlock()
		if head401 && r.Method == http.MethodHead && strings.Contains(ref, ":") {
			u.challenge(rw, repo, "pull", "upstreamtest: HEAD of a manifest by digest refused")
			return
		}
		if (r.Method == http.MethodGet || r.Method == http.MethodHead) &&
			r.Header.Get("If-None-Match") != "" && u.notModified(rw, r) {
			return
		}
	}
	if kind == "blob" && r.Method == http.MethodGet && u.opts.redirect && u.redirect(rw, r, repo, ref) {
		return
	}
	u.inner.ServeHTTP(rw, r)
}

// notModified answers 304 if r's If-None-Match names the digest of the
// manifest it asks for, and reports whether it did.
func (u *Upstream) notModified(w http.ResponseWriter, r *http.Request) bool {
	head := r.Clone(r.Context())
	head.Method = http.MethodHead
	head.Body = http.NoBody
	rec := httptest.NewRecorder()
	u.inner.ServeHTTP(rec, head)
	d := rec.Header().Get("Docker-Content-Digest")
	if rec.Code != http.StatusOK || d == "" || !etagMatches(r.Header.Get("If-None-Match"), d) {
		return false
	}
	w.Header().Set("Docker-Content-Digest", d)
	w.WriteHeader(http.StatusNotModified)
	return true
}

// etagMatches reports whether an If-None-Match list names digest, quoted or
// not, weak or strong, or is "*".
func etagMatches(ifNoneMatch, digest string) bool {
	for _, tag := range strings.Split(ifNoneMatch, ",") {
		tag = strings.TrimPrefix(strings.TrimSpace(tag), "W/")
		if tag == "*" || strings.Trim(tag, `"`) == digest {
			return true
		}
	}
	return false
}

// redirect answers 307 to a fresh CDN path for blob ref if the blob exists,
// and reports whether it did (if not, the registry answers the 404).
func (u *Upstream) redirect(w http.ResponseWriter, r *http.Request, repo, ref string) bool {
	h, err := v1.NewHash(ref)
	if err != nil {
		return false
	}
	if _, err := u.blobs.(registry.BlobStatHandler).Stat(r.Context(), repo, h); err != nil {
		return false
	}
	secret := randomHex(16)
	u.mu.Lock()
	u.cdnPaths[secret] = ref
	u.mu.Unlock()
	http.Redirect(w, r, u.CDNURL+"/cdn/"+secret, http.StatusTemporaryRedirect)
	return true
}

// handleCDN serves blob bytes at the paths redirect handed out; it knows no
// credentials and records any it is sent.
func (u *Upstream) handleCDN(w http.ResponseWriter, r *http.Request) {
	secret, _ := strings.CutPrefix(r.URL.Path, "/cdn/")
	u.mu.Lock()
	d, ok := u.cdnPaths[secret]
	u.mu.Unlock()
	rw := &respWriter{ResponseWriter: w, u: u, r: r, rec: u.record(r, "cdn", "", d)}
	if u.requestFault(rw, r) {
		return
	}
	if r.Method != http.MethodGet && r.Method != http.MethodHead {
		http.Error(rw, "method not allowed", http.StatusMethodNotAllowed)
		return
	}
	if !ok {
		http.Error(rw, "no such object", http.StatusNotFound)
		return
	}
	h, err := v1.NewHash(d)
	if err != nil {
		http.Error(rw, err.Error(), http.StatusInternalServerError)
		return
	}
	rc, err := u.blobs.Get(r.Context(), "", h)
	if err != nil {
		http.Error(rw, "no such object", http.StatusNotFound)
		return
	}
	b, err := io.ReadAll(rc)
	_ = rc.Close()
	if err != nil {
		http.Error(rw, err.Error(), http.StatusInternalServerError)
		return
	}
	rw.Header().Set("Content-Type", "application/octet-stream")
	http.ServeContent(rw, r, "", time.Time{}, bytes.NewReader(b))
}
