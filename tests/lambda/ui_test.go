package lambda_test

import (
	"net/http"
	"strings"
	"testing"

	"github.com/airlock-registry/airlock/shared/ui"
)

// TestUIOnLambda serves the web UI through the API Gateway adapter: the
// root redirects, the files are text bodies (not base64) with the security
// headers and their ETag, a revalidation is a 304 without a body, and a
// browse endpoint answers anonymous visitors (the packaged configuration
// has auth on).
func TestUIOnLambda(t *testing.T) {
	r := do(t, request{method: http.MethodGet, target: "/"})
	wantStatus(t, "GET /", r, http.StatusFound)
	wantHeader(t, "GET /", r, "Location", "/ui/")

	r = do(t, request{method: http.MethodGet, target: "/ui/"})
	wantStatus(t, "GET /ui/", r, http.StatusOK)
	wantHeader(t, "GET /ui/", r, "Content-Type", "text/html; charset=utf-8")
	wantHeader(t, "GET /ui/", r, "Content-Security-Policy", ui.ContentSecurityPolicy)
	wantHeader(t, "GET /ui/", r, "X-Content-Type-Options", "nosniff")
	if r.IsBase64Encoded || !strings.Contains(string(r.body()), `<script type="module" src="app.js"></script>`) {
		t.Errorf("GET /ui/: base64 %v, body %.200s; want the page as text", r.IsBase64Encoded, r.body())
	}

	r = do(t, request{method: http.MethodGet, target: "/ui/app.js"})
	wantStatus(t, "GET /ui/app.js", r, http.StatusOK)
	wantHeader(t, "GET /ui/app.js", r, "Content-Type", "text/javascript; charset=utf-8")
	etag := r.header("ETag")
	r = do(t, request{method: http.MethodGet, target: "/ui/app.js", header: []string{"If-None-Match", etag}})
	wantStatus(t, "GET /ui/app.js If-None-Match", r, http.StatusNotModified)
	if etag == "" || len(r.body()) != 0 {
		t.Errorf("revalidation of app.js (ETag %q): %d bytes, want none", etag, len(r.body()))
	}

	r = do(t, request{method: http.MethodGet, target: "/airlock/api/browse/me"})
	wantStatus(t, "GET /airlock/api/browse/me", r, http.StatusOK)
	if got := string(r.body()); got != `{"auth":true,"admin":false}` {
		t.Errorf("me on Lambda: %s, want anonymous with auth on", got)
	}
	wantHeader(t, "GET /airlock/api/browse/me", r, "Cache-Control", "no-store")
}
