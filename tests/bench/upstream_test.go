//go:build bench

package bench

import (
	"fmt"
	"io"
	"log"
	"maps"
	"net/http"
	"net/http/httptest"
	"net/http/httputil"
	"net/url"
	"slices"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	ggcrregistry "github.com/google/go-containerregistry/pkg/registry"
)

// startUpstream runs go-containerregistry's in-memory registry
// (pkg/registry) in the test process: the remote every proxy pulls through.
func startUpstream(t *testing.T) *httptest.Server {
	t.Helper()
	srv := httptest.NewServer(ggcrregistry.New(ggcrregistry.Logger(log.New(io.Discard, "", 0))))
	t.Cleanup(srv.Close)
	return srv
}

// upCounts are the requests one consumer sent the upstream, by kind.
type upCounts struct {
	mHead, mGet, bHead, bGet, other int
	// bytes is the response-body bytes the upstream sent.
	bytes int64
	// blobGets counts blob GETs per digest; others counts the "other"
	// requests as "METHOD /path-kind".
	blobGets map[string]int
	others   map[string]int
}

func (c upCounts) total() int { return c.mHead + c.mGet + c.bHead + c.bGet + c.other }

// otherDetail lists the other requests ("GET /v2/×1"), or "-".
func (c upCounts) otherDetail() string {
	if len(c.others) == 0 {
		return "-"
	}
	var s []string
	for _, k := range slices.Sorted(maps.Keys(c.others)) {
		s = append(s, fmt.Sprintf("%s×%d", k, c.others[k]))
	}
	return strings.Join(s, " ")
}

// front is a counting reverse proxy in front of the upstream: each consumer
// (a registry under test) gets its own, so counts never mix.
type front struct {
	name string
	srv  *httptest.Server
	mu   sync.Mutex
	c    upCounts
	body atomic.Int64
}

// newFront starts a counting reverse proxy to upstream.
func newFront(t *testing.T, name, upstream string) *front {
	t.Helper()
	u, err := url.Parse(upstream)
	if err != nil {
		t.Fatal(err)
	}
	f := &front{name: name}
	f.reset()
	rp := &httputil.ReverseProxy{
		Rewrite: func(r *httputil.ProxyRequest) { r.SetURL(u) },
		Transport: &http.Transport{
			MaxIdleConns: 256, MaxIdleConnsPerHost: 128, IdleConnTimeout: time.Minute,
			DisableCompression: true,
		},
		ModifyResponse: func(resp *http.Response) error {
			resp.Body = &countingBody{ReadCloser: resp.Body, n: &f.body}
			return nil
		},
		ErrorLog: log.New(io.Discard, "", 0),
	}
	f.srv = httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		f.count(r)
		rp.ServeHTTP(w, r)
	}))
	t.Cleanup(f.srv.Close)
	return f
}

// URL is the front's base URL (the proxies' remote).
func (f *front) URL() string { return f.srv.URL }

// count classifies one request by method and path.
func (f *front) count(r *http.Request) {
	el := strings.Split(strings.TrimSuffix(r.URL.Path, "/"), "/")
	kind := ""
	if n := len(el); n >= 5 && el[1] == "v2" {
		kind = el[n-2] // manifests, blobs (an upload's path ends in uploads/<id>)
	}
	f.mu.Lock()
	defer f.mu.Unlock()
	switch {
	case kind == "manifests" && r.Method == http.MethodHead:
		f.c.mHead++
	case kind == "manifests" && r.Method == http.MethodGet:
		f.c.mGet++
	case kind == "blobs" && r.Method == http.MethodHead:
		f.c.bHead++
	case kind == "blobs" && r.Method == http.MethodGet:
		f.c.bGet++
		f.c.blobGets[el[len(el)-1]]++
	default:
		f.c.other++
		p := r.URL.Path
		if len(el) >= 3 && el[1] == "v2" {
			p = "/v2/…/" + el[len(el)-1]
		}
		f.c.others[r.Method+" "+p]++
	}
}

// take returns the counts since the last take (or reset) and resets them.
func (f *front) take() upCounts {
	f.mu.Lock()
	defer f.mu.Unlock()
	c := f.c
	c.bytes = f.body.Swap(0)
	f.c = upCounts{blobGets: map[string]int{}, others: map[string]int{}}
	return c
}

func (f *front) reset() { _ = f.take() }

// countingBody adds the bytes read through it to n.
type countingBody struct {
	io.ReadCloser
	n *atomic.Int64
}

func (b *countingBody) Read(p []byte) (int, error) {
	n, err := b.ReadCloser.Read(p)
	b.n.Add(int64(n))
	return n, err
}

// statusCounter is the pulling client's transport: it counts transport
// errors and answers of status 400 and above except 401 (go-containerregistry
// retries 503s and other 5xx silently; this makes them visible).
type statusCounter struct {
	base http.RoundTripper
	mu   sync.Mutex
	bad  map[string]int // "503 GET blobs" → count
}

func newStatusCounter(base http.RoundTripper) *statusCounter {
	return &statusCounter{base: base, bad: map[string]int{}}
}

func (s *statusCounter) RoundTrip(r *http.Request) (*http.Response, error) {
	resp, err := s.base.RoundTrip(r)
	key := ""
	switch {
	case err != nil && r.URL.Scheme == "https":
		// go-containerregistry pings an insecure registry over https
		// first, then over http: not a failure of the registry.
	case err != nil:
		key = "error " + r.Method
	case resp.StatusCode >= 400 && resp.StatusCode != http.StatusUnauthorized:
		kind := "other"
		if el := strings.Split(r.URL.Path, "/"); len(el) >= 3 {
			kind = el[len(el)-2]
		}
		key = fmt.Sprintf("%d %s %s", resp.StatusCode, r.Method, kind)
	}
	if key != "" {
		s.mu.Lock()
		s.bad[key]++
		s.mu.Unlock()
	}
	return resp, err
}

// take returns the failed answers seen since the last take ("none" if none).
func (s *statusCounter) take() string {
	s.mu.Lock()
	defer s.mu.Unlock()
	if len(s.bad) == 0 {
		return "none"
	}
	var out []string
	for _, k := range slices.Sorted(maps.Keys(s.bad)) {
		out = append(out, fmt.Sprintf("%s×%d", k, s.bad[k]))
	}
	s.bad = map[string]int{}
	return strings.Join(out, " ")
}
