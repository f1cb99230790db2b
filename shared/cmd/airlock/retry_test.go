package main

import (
	"bytes"
	"context"
	"errors"
	"net/http"
	"net/http/httptest"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/airlock-registry/airlock/shared/registry"
)

// fastRetries shortens the policy's backoff for a test (Retry-After is
// honoured as sent).
func fastRetries(t *testing.T) {
	old := retries
	retries.base, retries.max = time.Millisecond, 4*time.Millisecond
	t.Cleanup(func() { retries = old })
}

// requestKind names the kind of a registry request ("" for the ping, which
// newPusher sends once and the tests leave alone).
func requestKind(r *http.Request) string {
	q := r.URL.Query()
	switch {
	case r.URL.Path == "/v2/" || r.URL.Path == "/v2":
		return ""
	case r.Method == http.MethodHead && strings.Contains(r.URL.Path, "/blobs/"):
		return "head blob"
	case r.Method == http.MethodPost && q.Has("size"):
		return "part URLs"
	case r.Method == http.MethodPost && strings.HasSuffix(r.URL.Path, "/blobs/uploads/"):
		return "open"
	case r.Method == http.MethodPut && q.Has("airlock-complete"):
		return "complete"
	case r.Method == http.MethodPut && q.Has("digest"):
		return "monolithic"
	case r.Method == http.MethodPut && strings.Contains(r.URL.Path, "/manifests/"):
		return "manifest"
	}
	return r.Method + " other"
}

// fault is what the faulty front door does to a request.
type fault struct {
	status     int
	retryAfter string // with status
	lost       bool   // the registry handles the request, its answer is replaced by status
	drop       bool   // the connection is closed before any answer
}

// faulty wraps a registry's handler: the first request of each kind in
// faults gets its fault; then (and for the other kinds) the registry
// answers. off stops the faults (for the pull that checks the push).
type faulty struct {
	mu       sync.Mutex
	faults   map[string]fault
	always   bool // every request of those kinds, not only the first
	done     map[string]bool
	seen     map[string]int // requests per kind
	injected int
	off      bool
}

func (f *faulty) wrap(next http.Handler) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		k := requestKind(r)
		f.mu.Lock()
		f.seen[k]++
		ft, ok := f.faults[k]
		ok = ok && !f.off && (f.always || !f.done[k])
		if ok {
			f.done[k] = true
			f.injected++
		}
		f.mu.Unlock()
		switch {
		case !ok:
			next.ServeHTTP(w, r)
		case ft.drop:
			conn, _, err := http.NewResponseController(w).Hijack()
			if err != nil {
				panic(err)
			}
			conn.Close()
		default:
			if ft.lost {
				next.ServeHTTP(httptest.NewRecorder(), r)
			}
			if ft.retryAfter != "" {
				w.Header().Set("Retry-After", ft.retryAfter)
			}
			w.WriteHeader(ft.status)
		}
	})
}

func newFaulty(faults map[string]fault) *faulty {
	return &faulty{faults: faults, done: map[string]bool{}, seen: map[string]int{}}
}

func (f *faulty) count(kind string) int {
	f.mu.Lock()
	defer f.mu.Unlock()
	return f.seen[kind]
}

// TestRetryTransient: a push through a front door that answers the first
// request of each kind 503 (Retry-After: 0), 429 (no Retry-After: the
// backoff), drops the connection, or loses the answer of a completed
// request (502, 504) succeeds; each failure is retried once, with a line.
func TestRetryTransient(t *testing.T) {
	fastRetries(t)
	isolate(t)
	countS3(t)
	f := newFaulty(map[string]fault{
		"head blob":  {status: http.StatusServiceUnavailable, retryAfter: "0"},
		"open":       {drop: true},
		"part URLs":  {status: http.StatusTooManyRequests},
		"complete":   {status: http.StatusBadGateway, lost: true},     // completedAlready answers the retry
		"monolithic": {status: http.StatusGatewayTimeout, lost: true}, // the retry finds the session gone, HEAD the blob
		"manifest":   {status: http.StatusServiceUnavailable, retryAfter: "0"},
	})
	out, injected := faultyPush(t, f, true, "--part-size", "5")
	if injected != len(f.faults) {
		t.Fatalf("injected %d failures, want one of each of the %d kinds (a kind the push did not send?)", injected, len(f.faults))
	}
	if n := strings.Count(out, "retrying in "); n != injected {
		t.Fatalf("%d retry lines for %d failures:\n%s", n, injected, out)
	}
	for _, want := range []string{"503 Service Unavailable from HEAD ", "429 Too Many Requests from POST ", "EOF from POST ",
		"502 Bad Gateway from PUT ", "504 Gateway Timeout from PUT ", "; 6 requests retried"} {
		if !strings.Contains(out, want) {
			t.Errorf("output lacks %q:\n%s", want, out)
		}
	}
}

// faultyPush pushes testImage through f to a registry (direct uploads
// offered or not) with the push's flags args, checks the image pulled (f
// off) and returns the output and the failures injected.
func faultyPush(t *testing.T, f *faulty, direct bool, args ...string) (string, int) {
	t.Helper()
	reg := newRegistryWrapped(t, testConfig, direct, registry.DirectOptions{}, nil, f.wrap)
	img := testImage(t)
	dir := ociLayout(t, img, "1")
	dst := reg.host + "/local/team/app:1"
	out := cli(t, append(append([]string{"push"}, args...), "oci:"+dir+":1", dst)...)
	f.mu.Lock()
	f.off = true
	injected := f.injected
	f.mu.Unlock()
	checkPulled(t, dst, img)
	return out, injected
}

// TestRetryStandardUpload: the same through a registry without direct
// uploads, so every blob goes by monolithic PUT, its body read again.
func TestRetryStandardUpload(t *testing.T) {
	fastRetries(t)
	isolate(t)
	countS3(t)
	f := newFaulty(map[string]fault{
		"monolithic": {status: http.StatusServiceUnavailable, retryAfter: "0"},
		"open":       {status: http.StatusTooManyRequests, retryAfter: "0"},
	})
	out, injected := faultyPush(t, f, false, "--jobs", "1")
	if injected != 2 || !strings.Contains(out, "; 2 requests retried") {
		t.Fatalf("injected %d, output:\n%s", injected, out)
	}
}

// TestRetryGivesUp: a registry that always answers 503 fails the push
// after the bounded attempts, naming the status and the way out.
func TestRetryGivesUp(t *testing.T) {
	fastRetries(t)
	isolate(t)
	f := newFaulty(map[string]fault{"head blob": {status: http.StatusServiceUnavailable, retryAfter: "0"}})
	f.always = true
	reg := newRegistryWrapped(t, testConfig, true, registry.DirectOptions{}, nil, f.wrap)
	dir := ociLayout(t, oneLayerImage(t, 1000), "1")
	var out bytes.Buffer
	err := run(context.Background(), []string{"push", "--jobs", "1", "oci:" + dir + ":1", reg.host + "/local/app:1"}, &out)
	if err == nil {
		t.Fatalf("push through an always-503 registry succeeded:\n%s", out.String())
	}
	for _, want := range []string{"answered 503 Service Unavailable", "still after 4 attempts", "push again later"} {
		if !strings.Contains(err.Error(), want) {
			t.Errorf("error %q lacks %q", err, want)
		}
	}
	if n := f.count("head blob"); n != retries.attempts {
		t.Errorf("the registry saw %d HEADs, want %d (the attempts)", n, retries.attempts)
	}
	if n := strings.Count(out.String(), "retrying in "); n != retries.attempts-1 {
		t.Errorf("%d retry lines, want %d:\n%s", n, retries.attempts-1, out.String())
	}
}

// TestRetryNotOnRefusals: 400, 401 and 404 are answers, not hiccups: the
// push fails on the first, sending the request once.
func TestRetryNotOnRefusals(t *testing.T) {
	fastRetries(t)
	for _, c := range []struct {
		kind   string
		status int
	}{{"manifest", http.StatusBadRequest}, {"open", http.StatusUnauthorized}, {"part URLs", http.StatusNotFound}, {"head blob", http.StatusForbidden}} {
		t.Run(c.kind, func(t *testing.T) {
			isolate(t)
			countS3(t)
			f := newFaulty(map[string]fault{c.kind: {status: c.status}})
			reg := newRegistryWrapped(t, testConfig, true, registry.DirectOptions{}, nil, f.wrap)
			dir := ociLayout(t, oneLayerImage(t, 2<<20), "1")
			var out bytes.Buffer
			err := run(context.Background(), []string{"push", "--jobs", "1", "oci:" + dir + ":1", reg.host + "/local/app:1"}, &out)
			var re *registryError
			if !errors.As(err, &re) || re.Status != c.status {
				t.Fatalf("push: %v, want the registry's %d", err, c.status)
			}
			if n := f.count(c.kind); n != 1 || strings.Contains(out.String(), "retrying") {
				t.Fatalf("%s sent %d times, want once:\n%s", c.kind, n, out.String())
			}
		})
	}
}

// cancelOnRetry cancels when the first retry line is written.
type cancelOnRetry struct {
	mu     sync.Mutex
	buf    bytes.Buffer
	cancel context.CancelFunc
}

func (c *cancelOnRetry) Write(b []byte) (int, error) {
	c.mu.Lock()
	defer c.mu.Unlock()
	c.buf.Write(b)
	if strings.Contains(c.buf.String(), "retrying in ") {
		c.cancel()
	}
	return len(b), nil
}

// TestRetryCancel: a cancelled push (Ctrl-C) stops waiting to retry at
// once; the request was sent once.
func TestRetryCancel(t *testing.T) {
	isolate(t)
	f := newFaulty(map[string]fault{"head blob": {status: http.StatusServiceUnavailable, retryAfter: "3600"}})
	f.always = true
	reg := newRegistryWrapped(t, testConfig, true, registry.DirectOptions{}, nil, f.wrap)
	old := retries
	retries.maxRetryAfter = time.Hour // the wait would outlast the test's time-out
	t.Cleanup(func() { retries = old })
	dir := ociLayout(t, oneLayerImage(t, 1000), "1")
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	w := &cancelOnRetry{cancel: cancel}
	err := run(ctx, []string{"push", "--jobs", "1", "oci:" + dir + ":1", reg.host + "/local/app:1"}, w)
	if !errors.Is(err, context.Canceled) {
		t.Fatalf("cancelled push: %v, want context.Canceled", err)
	}
	if n := f.count("head blob"); n != 1 {
		t.Fatalf("the registry saw %d HEADs, want 1", n)
	}
}

// TestRetryWait: Retry-After in seconds or as an HTTP date is honoured up
// to the cap; without one the backoff doubles, jittered within its upper
// half, up to max.
func TestRetryWait(t *testing.T) {
	r := retryPolicy{attempts: 4, base: time.Second, max: 8 * time.Second, maxRetryAfter: 30 * time.Second}
	after := func(v string) *http.Response { return &http.Response{Header: http.Header{"Retry-After": {v}}} }
	for _, c := range []struct {
		v    string
		want time.Duration
	}{{"0", 0}, {"7", 7 * time.Second}, {"3600", 30 * time.Second}, {time.Now().Add(-time.Hour).UTC().Format(http.TimeFormat), 0},
		{time.Now().Add(time.Hour).UTC().Format(http.TimeFormat), 30 * time.Second}} {
		if got := r.wait(1, after(c.v)); got != c.want {
			t.Errorf("Retry-After: %s: wait %s, want %s", c.v, got, c.want)
		}
	}
	if got := r.wait(1, after(time.Now().Add(20*time.Second).UTC().Format(http.TimeFormat))); got <= 10*time.Second || got > 20*time.Second {
		t.Errorf("Retry-After: a date 20 s ahead: wait %s", got)
	}
	for try, hi := range map[int]time.Duration{1: time.Second, 2: 2 * time.Second, 3: 4 * time.Second, 5: 8 * time.Second} {
		for range 50 {
			res := after("soon") // not a number nor a date: the backoff
			if got := r.wait(try, res); got < hi/2 || got > hi {
				t.Fatalf("try %d: wait %s, want %s to %s", try, got, hi/2, hi)
			}
		}
	}
}
