package upstreamtest

import (
	"context"
	"crypto/sha256"
	"errors"
	"fmt"
	"io"
	"net/http"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/google/go-containerregistry/pkg/authn"
	"github.com/google/go-containerregistry/pkg/name"
	"github.com/google/go-containerregistry/pkg/v1/remote"
)

// fastRetry lets ggcr retry quickly, for faults that heal.
var fastRetry = remote.WithRetryBackoff(remote.Backoff{Duration: time.Millisecond, Factor: 1, Steps: 3})

// try sends one request with a fresh connection and returns the error, if
// any, and the response (body read).
func try(method, u string, timeout time.Duration) (*http.Response, []byte, error) {
	c := &http.Client{Transport: &http.Transport{DisableKeepAlives: true}, Timeout: timeout}
	req, _ := http.NewRequest(method, u, nil)
	resp, err := c.Do(req)
	if err != nil {
		return nil, nil, err
	}
	defer resp.Body.Close()
	b, err := io.ReadAll(resp.Body)
	return resp, b, err
}

func TestFaultDownAndBackOnSameAddress(t *testing.T) {
	u := New(t)
	img := u.PushImage(t, "x", "t", 1, 256)
	url := u.URL

	// A kept-alive connection, which Down must close too.
	keep := &http.Client{Timeout: 5 * time.Second}
	resp, err := keep.Get(u.URL + "/v2/")
	if err != nil {
		t.Fatal(err)
	}
	_, _ = io.Copy(io.Discard, resp.Body)
	resp.Body.Close()
	u.Reset()

	u.SetFault(FaultDown)
	if _, _, err := try("GET", u.URL+"/v2/", time.Second); !errors.Is(err, syscall.ECONNREFUSED) {
		t.Fatalf("down: %v, want connection refused", err)
	}
	if resp, err := keep.Get(u.URL + "/v2/"); err == nil {
		resp.Body.Close()
		t.Fatalf("down: the kept-alive connection still answers %d", resp.StatusCode)
	}
	if _, err := pull(t, img.Ref, noRetry); err == nil {
		t.Fatal("down: pull succeeded")
	}
	if n := u.Count("", ""); n != 0 {
		t.Errorf("down: %d requests recorded", n)
	}

	u.SetFault(FaultNone)
	if u.URL != url {
		t.Fatalf("URL moved from %s to %s", url, u.URL)
	}
	if _, err := pull(t, img.Ref); err != nil {
		t.Fatalf("back up: %v", err)
	}
	// And down and up once more.
	u.SetFault(FaultDown)
	u.SetFault(FaultStatus(503))
	if resp, _, err := try("GET", u.URL+"/v2/", time.Second); err != nil || resp.StatusCode != 503 {
		t.Fatalf("down then 503: %v %v", resp, err)
	}
}

func TestFaultReset(t *testing.T) {
	u := New(t)
	img := u.PushImage(t, "x", "t", 1, 256)
	u.SetFault(FaultReset)
	_, _, err := try("GET", u.URL+"/v2/x/manifests/t", time.Second)
	if err == nil || !(errors.Is(err, syscall.ECONNRESET) || errors.Is(err, io.EOF)) {
		t.Fatalf("reset: %v, want connection reset", err)
	}
	if r := u.Requests(); len(r) != 1 || r[0].Status != 0 || r[0].Kind != "manifest" {
		t.Errorf("recorded %+v", r)
	}

	// Once only: ggcr's retry gets through.
	u.SetFault(FaultReset.On("manifest").Times(1))
	u.Reset()
	if _, err := pull(t, img.Ref, fastRetry); err != nil {
		t.Fatalf("pull after one reset: %v", err)
	}
	if n := u.Count("GET", "manifest"); n != 2 {
		t.Errorf("manifest GETs %d, want 2 (reset, retry)", n)
	}
}

func TestFaultStatus(t *testing.T) {
	u := New(t)
	img := u.PushImage(t, "x", "t", 1, 256)
	u.SetFault(FaultStatus(503))
	resp, body, err := try("GET", u.URL+"/v2/x/manifests/t", time.Second)
	if err != nil || resp.StatusCode != 503 || errCode(t, string(body)) != "UNAVAILABLE" {
		t.Fatalf("503: %v %v %q", resp, err, body)
	}
	if _, err := pull(t, img.Ref, noRetry); statusOf(err) != 503 {
		t.Errorf("ggcr: %v", err)
	}

	// Only blobs fail; manifests are served.
	u.SetFault(FaultStatus(500).On("blob"))
	u.Reset()
	if _, err := pull(t, img.Ref, noRetry); statusOf(err) != 500 {
		t.Errorf("blobs 500: %v", err)
	}
	if u.ManifestGets() != 1 {
		t.Errorf("manifest GETs %d", u.ManifestGets())
	}

	// Twice, then healed.
	u.SetFault(FaultStatus(502).Times(2))
	u.Reset()
	if _, err := pull(t, img.Ref, fastRetry); err != nil {
		t.Fatalf("after two 502s: %v", err)
	}
	var bad int
	for _, r := range u.Requests() {
		if r.Status == 502 {
			bad++
		}
	}
	if bad != 2 {
		t.Errorf("%d 502s, want 2", bad)
	}
	if s := FaultStatus(502).On("blob").Times(2).String(); s != "FaultStatus(502).On(blob).Times(2)" {
		t.Errorf("String %q", s)
	}
}

func TestFaultStatusOnToken(t *testing.T) {
	u := New(t, WithToken("", ""))
	img := u.PushImage(t, "x", "t", 1, 256)
	u.SetFault(FaultStatus(503))
	if resp, _, _ := try("GET", u.URL+"/token?scope=repository:x:pull", time.Second); resp == nil || resp.StatusCode != 200 {
		t.Errorf("token endpoint under a default fault: %v", resp)
	}
	u.SetFault(FaultStatus(503).On("token"))
	if resp, _, _ := try("GET", u.URL+"/v2/", time.Second); resp == nil || resp.StatusCode != 401 {
		t.Errorf("ping under a token fault: %v", resp)
	}
	if _, err := pull(t, img.Ref, noRetry, remote.WithAuth(authn.Anonymous)); err == nil || !strings.Contains(err.Error(), "503") {
		t.Errorf("pull with the token endpoint down: %v", err)
	}
}

func TestFaultTooManyRequests(t *testing.T) {
	u := New(t)
	img := u.PushImage(t, "x", "t", 1, 256)
	u.SetFault(FaultTooManyRequests("7"))
	resp, body, err := try("GET", u.URL+"/v2/x/manifests/t", time.Second)
	if err != nil || resp.StatusCode != 429 || resp.Header.Get("Retry-After") != "7" ||
		resp.Header.Get("ratelimit-remaining") != "0;w=21600" || resp.Header.Get("ratelimit-limit") != "100;w=21600" ||
		errCode(t, string(body)) != "TOOMANYREQUESTS" {
		t.Fatalf("429: %v %v %q", resp, err, body)
	}
	if _, err := pull(t, img.Ref, noRetry); statusOf(err) != 429 {
		t.Errorf("ggcr: %v", err)
	}
}

func TestFaultCorruptBlobs(t *testing.T) {
	for _, redirect := range []bool{false, true} {
		var opts []Option
		if redirect {
			opts = append(opts, WithBlobRedirect())
		}
		u := New(t, opts...)
		img := u.PushImage(t, "x", "t", 1, 4096)
		_, good, err := try("GET", u.URL+"/v2/x/blobs/"+img.Layers[0], time.Second)
		if err != nil {
			t.Fatal(err)
		}
		u.SetFault(FaultCorruptBlobs)
		resp, bad, err := try("GET", u.URL+"/v2/x/blobs/"+img.Layers[0], time.Second)
		if err != nil || resp.StatusCode != 200 || len(bad) != len(good) || resp.ContentLength != int64(len(good)) {
			t.Fatalf("redirect %v: corrupt GET %v %v, %d bytes of %d", redirect, resp, err, len(bad), len(good))
		}
		diff := 0
		for i := range good {
			if good[i] != bad[i] {
				diff++
			}
		}
		if diff != 1 {
			t.Errorf("redirect %v: %d bytes differ, want 1", redirect, diff)
		}
		if _, err := pull(t, img.Ref, noRetry); err == nil || !strings.Contains(err.Error(), "checksum") {
			t.Errorf("redirect %v: pull of corrupt blobs: %v", redirect, err)
		}
		dig, _ := name.NewDigest(u.Ref("x", img.Layers[0]))
		l, err := remote.Layer(dig, noRetry)
		if err != nil {
			t.Fatal(err)
		}
		rc, err := l.Compressed()
		if err == nil {
			_, err = io.Copy(io.Discard, rc)
			rc.Close()
		}
		if err == nil || !strings.Contains(err.Error(), "checksum") {
			t.Errorf("redirect %v: corrupt layer read: %v", redirect, err)
		}
		if n := u.BlobGets(img.Layers[0]); n < 3 {
			t.Errorf("redirect %v: BlobGets %d", redirect, n)
		}
		u.SetFault(FaultNone)
		if _, err := pull(t, img.Ref); err != nil {
			t.Errorf("redirect %v: healed: %v", redirect, err)
		}
	}
}

func TestFaultSlowBlobs(t *testing.T) {
	u := New(t, WithBlobRedirect())
	img := u.PushImage(t, "x", "t", 1, 8192)
	u.SetFault(FaultSlowBlobs(400 * time.Millisecond))
	c := &http.Client{Transport: &http.Transport{DisableKeepAlives: true}}
	start := time.Now()
	resp, err := c.Get(u.URL + "/v2/x/blobs/" + img.Layers[0]) // via the CDN
	if err != nil {
		t.Fatal(err)
	}
	headers := time.Since(start)
	b, err := io.ReadAll(resp.Body)
	resp.Body.Close()
	body := time.Since(start)
	if err != nil || resp.StatusCode != 200 || int64(len(b)) != resp.ContentLength {
		t.Fatalf("slow GET: %d, %d bytes, %v", resp.StatusCode, len(b), err)
	}
	if d := fmt.Sprintf("sha256:%x", sha256.Sum256(b)); d != img.Layers[0] {
		t.Errorf("slow body has digest %s, want %s", d, img.Layers[0])
	}
	if headers > 250*time.Millisecond || body < 350*time.Millisecond || body > 3*time.Second {
		t.Errorf("headers after %v, body after %v; want headers at once, body in ~400ms", headers, body)
	}

	// A client that gives up stops the trickle.
	ctx, cancel := context.WithTimeout(context.Background(), 100*time.Millisecond)
	defer cancel()
	req, _ := http.NewRequestWithContext(ctx, "GET", u.URL+"/v2/x/blobs/"+img.Layers[0], nil)
	start = time.Now()
	if resp, err := c.Do(req); err == nil {
		_, err = io.ReadAll(resp.Body)
		resp.Body.Close()
		if err == nil {
			t.Error("read the whole slow body within 100ms")
		}
	}
	if d := time.Since(start); d > 300*time.Millisecond {
		t.Errorf("gave up after %v", d)
	}
}

func TestFaultHang(t *testing.T) {
	u := New(t)
	img := u.PushImage(t, "x", "t", 1, 256)
	u.SetFault(FaultHang)
	start := time.Now()
	_, _, err := try("GET", u.URL+"/v2/x/manifests/t", 150*time.Millisecond)
	var te interface{ Timeout() bool }
	if !errors.As(err, &te) || !te.Timeout() {
		t.Fatalf("hang: %v, want a client timeout", err)
	}
	if d := time.Since(start); d < 150*time.Millisecond || d > time.Second {
		t.Errorf("gave up after %v", d)
	}
	ref, _ := name.ParseReference(img.Ref)
	ctx, cancel := context.WithTimeout(context.Background(), 100*time.Millisecond)
	defer cancel()
	if _, err := remote.Image(ref, remote.WithContext(ctx), noRetry); !errors.Is(err, context.DeadlineExceeded) {
		t.Errorf("ggcr under hang: %v", err)
	}
	if r := u.Requests(); len(r) < 2 || r[0].Status != 0 {
		t.Errorf("recorded %+v", r)
	}
	u.SetFault(FaultNone)
	if _, err := pull(t, img.Ref); err != nil {
		t.Fatal(err)
	}
}
