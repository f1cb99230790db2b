package ui

import (
	"crypto/sha256"
	"embed"
	"encoding/hex"
	"io/fs"
	"mime"
	"net/http"
	"path"
	"strconv"
	"strings"
)

// Prefix is where the UI is served.
const Prefix = "/ui/"

// ContentSecurityPolicy is the policy of every UI response: scripts, styles,
// images and requests of this origin only; no inline script or style, no
// plugins, no <base>, no framing; Trusted Types required with no policy
// allowed, so assigning a string to innerHTML (or any other HTML sink) throws.
const ContentSecurityPolicy = "default-src 'self'; script-src 'self'; style-src 'self'; img-src 'self' data:; " +
	"connect-src 'self'; object-src 'none'; base-uri 'none'; form-action 'self'; frame-ancestors 'none'; " +
	"require-trusted-types-for 'script'; trusted-types 'none'"

// SetSecurityHeaders sets the security headers of UI responses on h (the
// browse endpoints set them too).
func SetSecurityHeaders(h http.Header) {
	h.Set("Content-Security-Policy", ContentSecurityPolicy)
	h.Set("X-Content-Type-Options", "nosniff")
	h.Set("Referrer-Policy", "no-referrer")
	h.Set("X-Frame-Options", "DENY")
	h.Set("Cross-Origin-Opener-Policy", "same-origin")
}

//go:embed static
var static embed.FS

// file is one embedded file, ready to serve.
type file struct {
	body        []byte
	etag        string
	contentType string
}

// Handler serves the UI: GET and HEAD of Prefix (index.html) and the files
// under it, / and /ui redirected to Prefix.
type Handler struct {
	files map[string]file // by name under Prefix ("" is index.html)
}

var _ http.Handler = (*Handler)(nil)

// New reads the embedded files and hashes them.
func New() *Handler {
	h := &Handler{files: map[string]file{}}
	err := fs.WalkDir(static, "static", func(p string, d fs.DirEntry, err error) error {
		if err != nil || d.IsDir() {
			return err
		}
		b, err := static.ReadFile(p)
		if err != nil {
			return err
		}
		sum := sha256.Sum256(b)
		ct := mime.TypeByExtension(path.Ext(p))
		switch path.Ext(p) { // not left to the host's MIME tables
		case ".js":
			ct = "text/javascript; charset=utf-8"
		case ".css":
			ct = "text/css; charset=utf-8"
		case ".html":
			ct = "text/html; charset=utf-8"
		case ".svg":
			ct = "image/svg+xml"
		}
		name := strings.TrimPrefix(p, "static/")
		h.files[name] = file{body: b, etag: `"` + hex.EncodeToString(sum[:16]) + `"`, contentType: ct}
		return nil
	})
	if err != nil { // the files are compiled in: this cannot fail at run time
		panic("ui: embedded files: " + err.Error())
	}
	h.files[""] = h.files["index.html"]
	return h
}

// Files returns the names of the served files (tests).
func (h *Handler) Files() []string {
	var out []string
	for n := range h.files {
		if n != "" {
			out = append(out, n)
		}
	}
	return out
}

// ServeHTTP serves one file, a redirect or a 404, always with the security headers.
func (h *Handler) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	SetSecurityHeaders(w.Header())
	p := r.URL.Path
	if p == "/" || p == strings.TrimSuffix(Prefix, "/") {
		http.Redirect(w, r, Prefix, http.StatusFound)
		return
	}
	if r.Method != http.MethodGet && r.Method != http.MethodHead {
		w.Header().Set("Allow", "GET, HEAD")
		plain(w, r, http.StatusMethodNotAllowed, "method "+r.Method+" not allowed on "+p+" (GET, HEAD)\n")
		return
	}
	f, ok := h.files[strings.TrimPrefix(p, Prefix)]
	if !ok || !strings.HasPrefix(p, Prefix) {
		plain(w, r, http.StatusNotFound, "no UI file at "+p+": the UI starts at "+Prefix+"\n")
		return
	}
	w.Header().Set("ETag", f.etag)
	w.Header().Set("Cache-Control", "no-cache")
	if etagMatch(r.Header.Values("If-None-Match"), f.etag) {
		w.WriteHeader(http.StatusNotModified)
		return
	}
	w.Header().Set("Content-Type", f.contentType)
	w.Header().Set("Content-Length", strconv.Itoa(len(f.body)))
	w.WriteHeader(http.StatusOK)
	if r.Method == http.MethodGet {
		_, _ = w.Write(f.body)
	}
}

// etagMatch reports whether an If-None-Match list names etag (or is "*");
// weak tags compare equal to strong ones (RFC 9110 13.1.2).
func etagMatch(values []string, etag string) bool {
	for _, v := range values {
		for _, t := range strings.Split(v, ",") {
			t = strings.TrimPrefix(strings.TrimSpace(t), "W/")
			if t == "*" || t == etag {
				return true
			}
		}
	}
	return false
}

func plain(w http.ResponseWriter, r *http.Request, status int, msg string) {
	b := []byte(msg)
	w.Header().Set("Content-Type", "text/plain; charset=utf-8")
	w.Header().Set("Content-Length", strconv.Itoa(len(b)))
	w.Header().Set("Cache-Control", "no-store")
	w.WriteHeader(status)
	if r.Method != http.MethodHead {
		_, _ = w.Write(b)
	}
}
