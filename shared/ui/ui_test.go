package ui_test

import (
	"io"
	"net/http"
	"net/http/httptest"
	"regexp"
	"strconv"
	"strings"
	"testing"

	"github.com/airlock-registry/airlock/shared/ui"
)

func get(t *testing.T, h http.Handler, method, path string, hdr ...string) *http.Response {
	t.Helper()
	req := httptest.NewRequest(method, path, nil)
	for i := 0; i+1 < len(hdr); i += 2 {
		req.Header.Set(hdr[i], hdr[i+1])
	}
	w := httptest.NewRecorder()
	h.ServeHTTP(w, req)
	res := w.Result()
	for name, want := range map[string]string{
		"Content-Security-Policy": ui.ContentSecurityPolicy,
		"X-Content-Type-Options":  "nosniff",
		"Referrer-Policy":         "no-referrer",
		"X-Frame-Options":         "DENY",
	} {
		if got := res.Header.Get(name); got != want {
			t.Errorf("%s %s: %s = %q, want %q", method, path, name, got, want)
		}
	}
	return res
}

func body(t *testing.T, res *http.Response) string {
	t.Helper()
	b, err := io.ReadAll(res.Body)
	if err != nil {
		t.Fatal(err)
	}
	return string(b)
}

func TestHandler(t *testing.T) {
	h := ui.New()
	for _, c := range []struct {
		method, path string
		status       int
		ctype        string
		location     string
	}{
		{"GET", "/", http.StatusFound, "", "/ui/"},
		{"GET", "/ui", http.StatusFound, "", "/ui/"},
		{"GET", "/ui/", http.StatusOK, "text/html; charset=utf-8", ""},
		{"HEAD", "/ui/", http.StatusOK, "text/html; charset=utf-8", ""},
		{"GET", "/ui/index.html", http.StatusOK, "text/html; charset=utf-8", ""},
		{"GET", "/ui/app.js", http.StatusOK, "text/javascript; charset=utf-8", ""},
		{"GET", "/ui/style.css", http.StatusOK, "text/css; charset=utf-8", ""},
		{"GET", "/ui/favicon.svg", http.StatusOK, "image/svg+xml", ""},
		{"GET", "/ui/nothing.js", http.StatusNotFound, "text/plain; charset=utf-8", ""},
		{"GET", "/ui/../go.mod", http.StatusNotFound, "text/plain; charset=utf-8", ""},
		{"POST", "/ui/", http.StatusMethodNotAllowed, "text/plain; charset=utf-8", ""},
	} {
		res := get(t, h, c.method, c.path)
		if res.StatusCode != c.status || c.ctype != "" && res.Header.Get("Content-Type") != c.ctype || res.Header.Get("Location") != c.location {
			t.Errorf("%s %s: %d %q Location %q, want %d %q %q", c.method, c.path, res.StatusCode, res.Header.Get("Content-Type"), res.Header.Get("Location"), c.status, c.ctype, c.location)
		}
		b := body(t, res)
		if c.method == "HEAD" && b != "" {
			t.Errorf("HEAD %s: a body of %d bytes", c.path, len(b))
		}
		if c.status == http.StatusOK && c.method == "GET" && (res.Header.Get("Content-Length") != strconv.Itoa(len(b)) || len(b) == 0) {
			t.Errorf("GET %s: Content-Length %q for %d bytes", c.path, res.Header.Get("Content-Length"), len(b))
		}
	}
}

// TestCaching: ETags from the content, revalidation with 304 and no body.
func TestCaching(t *testing.T) {
	h := ui.New()
	etags := map[string]string{}
	for _, f := range h.Files() {
		res := get(t, h, "GET", "/ui/"+f)
		tag := res.Header.Get("ETag")
		if !regexp.MustCompile(`^"[0-9a-f]{32}"$`).MatchString(tag) || res.Header.Get("Cache-Control") != "no-cache" {
			t.Errorf("%s: ETag %q, Cache-Control %q; want a content hash and no-cache", f, tag, res.Header.Get("Cache-Control"))
		}
		if other, dup := etags[tag]; dup {
			t.Errorf("%s and %s share the ETag %s", f, other, tag)
		}
		etags[tag] = f
		for _, inm := range []string{tag, "W/" + tag, `"x", ` + tag, "*"} {
			res := get(t, h, "GET", "/ui/"+f, "If-None-Match", inm)
			if b := body(t, res); res.StatusCode != http.StatusNotModified || b != "" || res.Header.Get("ETag") != tag {
				t.Errorf("%s with If-None-Match %s: %d, %d bytes, want 304 without a body", f, inm, res.StatusCode, len(b))
			}
		}
		if res := get(t, h, "GET", "/ui/"+f, "If-None-Match", `"0123"`); res.StatusCode != http.StatusOK {
			t.Errorf("%s with another ETag: %d, want 200", f, res.StatusCode)
		}
	}
	if len(etags) < 6 {
		t.Errorf("only %d files served: %v", len(etags), etags)
	}
}

// TestStaticFiles checks what the policy relies on: no inline script or
// style, nothing loaded from another origin, and no HTML sink in the scripts.
func TestStaticFiles(t *testing.T) {
	h := ui.New()
	for _, f := range h.Files() {
		src := strings.ReplaceAll(body(t, get(t, h, "GET", "/ui/"+f)), `xmlns="http://www.w3.org/2000/svg"`, "")
		for _, bad := range []*regexp.Regexp{
			regexp.MustCompile(`(?i)https?://`),
			regexp.MustCompile(`(?i)["'(]//[a-z]`),
			regexp.MustCompile(`\binnerHTML\b|\bouterHTML\b|insertAdjacentHTML|document\.write|\beval\(|new Function\(`),
		} {
			if m := bad.FindString(src); m != "" {
				t.Errorf("%s contains %q (%s)", f, m, bad)
			}
		}
		if strings.HasSuffix(f, ".html") {
			for _, bad := range []*regexp.Regexp{
				regexp.MustCompile(`(?i)<script(?:\s+type="module")?>`), // a script without src
				regexp.MustCompile(`(?i)<style`),
				regexp.MustCompile(`(?i)\sstyle=`),
				regexp.MustCompile(`(?i)\son[a-z]+=`),
			} {
				if m := bad.FindString(src); m != "" {
					t.Errorf("%s has inline code or style: %q", f, m)
				}
			}
		}
	}
}
