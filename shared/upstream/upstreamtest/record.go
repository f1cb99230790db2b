package upstreamtest

import (
	"net/http"
	"strconv"
	"strings"
)

// Request is one request as the Upstream saw it.
type Request struct {
	// Method and Path are the request's; Query is its raw query string.
	Method, Path, Query string
	// Kind is what the request was for: ping, token, manifest, blob, tags,
	// referrers, cdn or other (see the package documentation).
	Kind string
	// Repo and Ref are the repository name and the last path element (tag
	// or digest) of manifest, blob, tags and referrers requests; for cdn
	// requests Ref is the digest of the blob the path stands for.
	Repo, Ref string
	// Status is the status answered, or 0 if no response was sent (reset,
	// hang, client gone first).
	Status int
	// IfNoneMatch, Range and Authorization are the request's headers.
	IfNoneMatch, Range, Authorization string
}

// classify names the kind of a request path and, for repository paths, the
// repository and the last element.
func classify(path string) (kind, repo, ref string) {
	switch {
	case path == "/token":
		return "token", "", ""
	case path == "/v2/" || path == "/v2":
		return "ping", "", ""
	case !strings.HasPrefix(path, "/v2/"):
		return "other", "", ""
	}
	elem := strings.Split(strings.TrimPrefix(path, "/v2/"), "/")
	n := len(elem)
	if n >= 3 && elem[n-2] == "blobs" && elem[n-1] == "uploads" ||
		n >= 4 && elem[n-3] == "blobs" && elem[n-2] == "uploads" {
		i := n - 2
		if elem[n-2] == "uploads" {
			i = n - 3
		}
		return "other", strings.Join(elem[:i], "/"), ""
	}
	if n < 3 {
		return "other", "", ""
	}
	repo, ref = strings.Join(elem[:n-2], "/"), elem[n-1]
	switch elem[n-2] {
	case "manifests":
		return "manifest", repo, ref
	case "blobs":
		return "blob", repo, ref
	case "referrers":
		return "referrers", repo, ref
	case "tags":
		if ref == "list" {
			return "tags", repo, ""
		}
	}
	return "other", "", ""
}

// record appends r to the log (Status 0 until a header is written).
func (u *Upstream) record(r *http.Request, kind, repo, ref string) *Request {
	rec := &Request{
		Method: r.Method, Path: r.URL.Path, Query: r.URL.RawQuery,
		Kind: kind, Repo: repo, Ref: ref,
		IfNoneMatch:   r.Header.Get("If-None-Match"),
		Range:         r.Header.Get("Range"),
		Authorization: r.Header.Get("Authorization"),
	}
	u.mu.Lock()
	u.records = append(u.records, rec)
	u.mu.Unlock()
	return rec
}

// Requests returns a copy of every request recorded since New or Reset, in
// the order they arrived.
func (u *Upstream) Requests() []Request {
	u.mu.Lock()
	defer u.mu.Unlock()
	out := make([]Request, len(u.records))
	for i, r := range u.records {
		out[i] = *r
	}
	return out
}

// Reset forgets every recorded request (so every counter restarts from
// zero, CDNAuthLeaks included) and refills the rate-limit budget. It
// changes neither content, fault nor tokens.
func (u *Upstream) Reset() {
	u.mu.Lock()
	u.records = nil
	u.remaining = rateLimit
	u.mu.Unlock()
}

// countIf counts the recorded requests for which keep is true.
func (u *Upstream) countIf(keep func(*Request) bool) int {
	u.mu.Lock()
	defer u.mu.Unlock()
	n := 0
	for _, r := range u.records {
		if keep(r) {
			n++
		}
	}
	return n
}

// Count returns how many requests of this method ("GET", "HEAD", ...) and
// kind ("ping", "token", "manifest", "blob", "tags", "referrers", "cdn",
// "other") arrived, whatever they were answered; "" matches any method or
// any kind. A request counts as soon as it arrives.
func (u *Upstream) Count(method, kind string) int {
	return u.countIf(func(r *Request) bool {
		return (method == "" || r.Method == method) && (kind == "" || r.Kind == kind)
	})
}

// BlobGets returns how many times the bytes of blob digest d were requested
// and served: main-server blob GETs answered 200 or 206 (not the 307s of
// WithBlobRedirect) plus CDN GETs answered 200 or 206. Corrupted and slowed
// bodies count; HEADs and errors do not.
func (u *Upstream) BlobGets(d string) int {
	return u.countIf(func(r *Request) bool {
		return r.Method == http.MethodGet && (r.Kind == "blob" || r.Kind == "cdn") &&
			r.Ref == d && (r.Status == http.StatusOK || r.Status == http.StatusPartialContent)
	})
}

// ManifestGets returns how many manifest GETs were answered 200 with a body
// (304s and errors do not count).
func (u *Upstream) ManifestGets() int {
	return u.countIf(func(r *Request) bool {
		return r.Method == http.MethodGet && r.Kind == "manifest" && r.Status == http.StatusOK
	})
}

// NotModified returns how many manifest GETs and HEADs were answered 304 Not
// Modified because their If-None-Match named the manifest's digest.
func (u *Upstream) NotModified() int {
	return u.countIf(func(r *Request) bool {
		return r.Kind == "manifest" && r.Status == http.StatusNotModified
	})
}

// CDNAuthLeaks returns how many requests reached the CDN carrying an
// Authorization header. A proxy must keep it at 0: the CDN is another host
// and the registry's credentials are not for it.
func (u *Upstream) CDNAuthLeaks() int {
	return u.countIf(func(r *Request) bool { return r.Kind == "cdn" && r.Authorization != "" })
}

// respWriter records the status of a response in its Request, adds the
// headers the Upstream puts on manifests, and applies blob-body faults.
type respWriter struct {
	http.ResponseWriter
	u       *Upstream
	r       *http.Request
	rec     *Request
	wrote   bool
	body    Fault // FaultCorruptBlobs, FaultSlowBlobs or FaultNone
	total   int64 // Content-Length of a faulted body, -1 if unknown
	pos     int64 // bytes of the body written so far
	chunk   int64 // FaultSlowBlobs: bytes per tick
	perTick int64 // FaultSlowBlobs: nanoseconds per tick
}

func (w *respWriter) WriteHeader(code int) {
	if w.wrote {
		return
	}
	w.wrote = true
	h := w.Header()
	kind, method := w.rec.Kind, w.r.Method
	if kind == "manifest" {
		if d := h.Get("Docker-Content-Digest"); d != "" && (code == http.StatusOK || code == http.StatusNotModified) {
			h.Set("ETag", `"`+d+`"`)
		}
		if code == http.StatusOK || code == http.StatusNotModified {
			h.Set("ratelimit-limit", strconv.Itoa(rateLimit)+rateLimitWindow)
			h.Set("ratelimit-remaining", strconv.Itoa(w.u.spendRateLimit(method == http.MethodGet && code == http.StatusOK))+rateLimitWindow)
		}
	}
	if method == http.MethodGet && (kind == "blob" || kind == "cdn") &&
		(code == http.StatusOK || code == http.StatusPartialContent) {
		w.startBodyFault(kind)
	}
	w.u.mu.Lock()
	w.rec.Status = code
	w.u.mu.Unlock()
	w.ResponseWriter.WriteHeader(code)
	if w.body.kind == faultSlowBlobs {
		w.Flush() // headers at once, bytes later
	}
}

func (w *respWriter) Write(p []byte) (int, error) {
	if !w.wrote {
		w.WriteHeader(http.StatusOK)
	}
	switch w.body.kind {
	case faultCorruptBlobs:
		return w.writeCorrupt(p)
	case faultSlowBlobs:
		return w.writeSlow(p)
	}
	return w.ResponseWriter.Write(p)
}

// Flush sends what has been written so far.
func (w *respWriter) Flush() {
	if f, ok := w.ResponseWriter.(http.Flusher); ok {
		f.Flush()
	}
}

// Unwrap lets http.ResponseController reach the connection.
func (w *respWriter) Unwrap() http.ResponseWriter { return w.ResponseWriter }

// spendRateLimit returns the ratelimit-remaining to announce, taking one
// from the budget first if spend.
func (u *Upstream) spendRateLimit(spend bool) int {
	u.mu.Lock()
	defer u.mu.Unlock()
	if spend && u.remaining > 0 {
		u.remaining--
	}
	return u.remaining
}
