//go:build e2e

package e2e

import (
	"fmt"
	"io"
	"net/http"
	"net/http/httptest"
	"net/http/httputil"
	"net/url"
	"strings"
	"sync"
	"testing"
	"time"
)

// hit is one request that went through a front: what it carried and got.
type hit struct {
	Method, Path, Query string
	Range               string // the Range header
	Auth                bool   // an Authorization header came along
	Body                int64  // request body bytes read
	Status              int
	Header              http.Header // the answer's header (Location, OCI-Chunk-Min-Length, ...)
}

func (h hit) String() string {
	s := h.Method + " " + h.Path
	if h.Query != "" {
		s += "?" + h.Query
	}
	if h.Range != "" {
		s += " (Range: " + h.Range + ")"
	}
	if h.Body > 0 {
		s += fmt.Sprintf(" body %d", h.Body)
	}
	if h.Auth {
		s += " with Authorization"
	}
	return fmt.Sprintf("%s -> %d", s, h.Status)
}

// countingFront is a reverse proxy in front of a registry that records
// every request (method, path, query, Range, Authorization or not, body
// bytes, status and the answer's header). The Host header is kept: the
// registry sees the front's host, as behind API Gateway or a load balancer.
type countingFront struct {
	srv  *httptest.Server
	URL  string // http://127.0.0.1:PORT
	Host string // 127.0.0.1:PORT
	mu   sync.Mutex
	hits []hit
}

// startFront starts a counting front of target on 127.0.0.1.
func startFront(t testing.TB, target string) *countingFront { return startFrontRate(t, target, 0) }

// startFrontRate is startFront whose blob GETs, when rate > 0, serve the
// bytes themselves at about rate bytes per second (a slow registry): the
// front follows the target's redirect to its storage and streams the body.
func startFrontRate(t testing.TB, target string, rate int) *countingFront {
	t.Helper()
	u, err := url.Parse(target)
	if err != nil {
		t.Fatal(err)
	}
	f := &countingFront{}
	rp := httputil.NewSingleHostReverseProxy(u)
	f.srv = httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		h := hit{Method: r.Method, Path: r.URL.Path, Query: r.URL.RawQuery, Range: r.Header.Get("Range"),
			Auth: r.Header.Get("Authorization") != ""}
		cb := &countingBody{ReadCloser: r.Body}
		if r.Body != nil && r.Body != http.NoBody {
			r.Body = cb
		}
		sw := &statusWriter{ResponseWriter: w, code: http.StatusOK}
		if rate > 0 && r.Method == http.MethodGet && isBlobHit(h) {
			slowBlob(sw, r, target, rate)
		} else {
			rp.ServeHTTP(sw, r)
		}
		h.Body, h.Status, h.Header = cb.n, sw.code, sw.Header().Clone()
		f.mu.Lock()
		f.hits = append(f.hits, h)
		f.mu.Unlock()
	}))
	f.URL = f.srv.URL
	f.Host = strings.TrimPrefix(f.srv.URL, "http://")
	t.Cleanup(f.srv.Close)
	return f
}

// mark returns the position of the next request, for since.
func (f *countingFront) mark() int {
	f.mu.Lock()
	defer f.mu.Unlock()
	return len(f.hits)
}

// since returns the requests recorded after mark m.
func (f *countingFront) since(m int) []hit {
	f.mu.Lock()
	defer f.mu.Unlock()
	return append([]hit(nil), f.hits[m:]...)
}

// down closes the front: its port refuses connections from now on.
func (f *countingFront) down() {
	f.srv.CloseClientConnections()
	f.srv.Close()
}

// countingBody counts the bytes a request body yields.
type countingBody struct {
	io.ReadCloser
	n int64
}

func (c *countingBody) Read(p []byte) (int, error) {
	n, err := c.ReadCloser.Read(p)
	c.n += int64(n)
	return n, err
}

// statusWriter remembers the status code written.
type statusWriter struct {
	http.ResponseWriter
	code int
}

func (s *statusWriter) WriteHeader(code int) {
	s.code = code
	s.ResponseWriter.WriteHeader(code)
}

func (s *statusWriter) Flush() {
	if f, ok := s.ResponseWriter.(http.Flusher); ok {
		f.Flush()
	}
}

// slowBlob serves a blob GET of target itself, at about rate bytes/s.
func slowBlob(w http.ResponseWriter, r *http.Request, target string, rate int) {
	noRedirect := &http.Client{CheckRedirect: func(*http.Request, []*http.Request) error { return http.ErrUseLastResponse }}
	get := func(c *http.Client, u string) (*http.Response, error) {
		req, err := http.NewRequestWithContext(r.Context(), http.MethodGet, u, nil)
		if err != nil {
			return nil, err
		}
		if rg := r.Header.Get("Range"); rg != "" {
			req.Header.Set("Range", rg)
		}
		return c.Do(req)
	}
	resp, err := get(noRedirect, target+r.URL.Path)
	if err == nil && resp.StatusCode == http.StatusTemporaryRedirect {
		resp.Body.Close()
		resp, err = get(http.DefaultClient, resp.Header.Get("Location"))
	}
	if err != nil {
		http.Error(w, err.Error(), http.StatusBadGateway)
		return
	}
	defer resp.Body.Close()
	for _, k := range []string{"Content-Length", "Content-Range", "Content-Type", "Docker-Content-Digest", "Accept-Ranges"} {
		if v := resp.Header.Get(k); v != "" {
			w.Header().Set(k, v)
		}
	}
	w.WriteHeader(resp.StatusCode)
	const chunk = 64 * 1024
	pause := time.Duration(float64(time.Second) * chunk / float64(rate))
	buf := make([]byte, chunk)
	for {
		n, err := io.ReadFull(resp.Body, buf)
		if n > 0 {
			if _, werr := w.Write(buf[:n]); werr != nil {
				return
			}
			http.NewResponseController(w).Flush()
		}
		if err != nil {
			return
		}
		select {
		case <-r.Context().Done():
			return
		case <-time.After(pause):
		}
	}
}

func isManifestHit(h hit) bool { return strings.Contains(h.Path, "/manifests/") }
func isBlobHit(h hit) bool {
	return strings.Contains(h.Path, "/blobs/") && !strings.Contains(h.Path, "/blobs/uploads")
}

// isUploadHit: a request of the blob upload API (POST, PATCH, PUT under
// /blobs/uploads), a cross-repository mount included.
func isUploadHit(h hit) bool {
	return strings.Contains(h.Path, "/blobs/uploads") &&
		(h.Method == http.MethodPost || h.Method == http.MethodPatch || h.Method == http.MethodPut)
}

// isUploadOpen: an upload POST (a new session or a mount).
func isUploadOpen(h hit) bool {
	return h.Method == http.MethodPost && strings.HasSuffix(h.Path, "/blobs/uploads/")
}

// isMountHit: an upload POST that asks for a cross-repository mount.
func isMountHit(h hit) bool {
	return isUploadOpen(h) && strings.Contains(h.Query, "mount=")
}

// isUploadBody: an upload PATCH or PUT (the requests that carry blob bytes).
func isUploadBody(h hit) bool {
	return strings.Contains(h.Path, "/blobs/uploads/") && (h.Method == http.MethodPatch || h.Method == http.MethodPut)
}

// filterHits returns the hits for which keep is true.
func filterHits(hs []hit, keep func(hit) bool) []hit {
	var out []hit
	for _, h := range hs {
		if keep(h) {
			out = append(out, h)
		}
	}
	return out
}

// bodies returns the largest request body of hs and their sum.
func bodies(hs []hit) (largest, total int64) {
	for _, h := range hs {
		largest = max(largest, h.Body)
		total += h.Body
	}
	return largest, total
}

// fmtHits lists hits one per line for failure messages.
func fmtHits(hs []hit) string {
	if len(hs) == 0 {
		return "  (none)"
	}
	var b strings.Builder
	for _, h := range hs {
		b.WriteString("  " + h.String() + "\n")
	}
	return strings.TrimRight(b.String(), "\n")
}
