package upstream_test

import (
	"context"
	"io"
	"net/http"
	"strings"
	"testing"

	digest "github.com/opencontainers/go-digest"

	"github.com/airlock-registry/airlock/shared/upstream"
	"github.com/airlock-registry/airlock/shared/upstream/upstreamtest"
)

func newClient(t *testing.T, u *upstreamtest.Upstream, user, pass string) *upstream.Client {
	t.Helper()
	c, err := upstream.New(upstream.Options{Remote: u.URL, Username: user, Password: pass})
	if err != nil {
		t.Fatal(err)
	}
	return c
}

func TestTokenFlowAndCDN(t *testing.T) {
	u := upstreamtest.New(t, upstreamtest.WithToken("bob", "pw"), upstreamtest.WithBlobRedirect())
	img := u.PushImage(t, "team/app", "v1", 1, 1000)
	ctx := context.Background()

	c := newClient(t, u, "bob", "pw")
	m, err := c.GetManifest(ctx, "team/app", "v1", "")
	if err != nil || m.Digest.String() != img.Digest || string(m.Body) != string(img.Manifest) {
		t.Fatalf("GetManifest: %v %s", err, m.Digest)
	}
	b, err := c.GetBlob(ctx, "team/app", digest.Digest(img.Layers[0]), 0, 0)
	if err != nil {
		t.Fatal(err)
	}
	got, _ := digest.FromReader(b.Body)
	b.Body.Close()
	if got.String() != img.Layers[0] {
		t.Errorf("blob through the CDN: %s", got)
	}
	if n := u.CDNAuthLeaks(); n != 0 {
		t.Errorf("%d requests to the CDN carried credentials", n)
	}
	bad := newClient(t, u, "bob", "wrong")
	if _, err := bad.GetManifest(ctx, "team/app", "v1", ""); !upstream.IsKind(err, upstream.Denied) {
		t.Errorf("wrong password: %v, want a Denied error", err)
	}
}

// TestHeadFallback: a HEAD refused with 401 (ECR Public) is asked again
// with a GET before the manifest counts as unknown.
func TestHeadFallback(t *testing.T) {
	u := upstreamtest.New(t)
	img := u.PushImage(t, "app", "v1", 1, 10)
	u.Fail401OnHEAD(true)
	c := newClient(t, u, "", "")
	m, err := c.HeadManifest(context.Background(), "app", img.Digest, "")
	if err != nil || m.Digest.String() != img.Digest || m.Body == nil {
		t.Fatalf("HEAD refused with 401: %v %+v, want the manifest from a GET", err, m.Descriptor)
	}
	if u.Count(http.MethodGet, "manifest") != 1 {
		t.Errorf("requests: %+v", u.Requests())
	}
}

// TestErrorKinds: the remote's answers are classified for the proxy.
func TestErrorKinds(t *testing.T) {
	u := upstreamtest.New(t)
	u.PushImage(t, "app", "v1", 1, 10)
	c := newClient(t, u, "", "")
	ctx := context.Background()
	for _, tc := range []struct {
		fault upstreamtest.Fault
		kind  upstream.Kind
	}{
		{upstreamtest.FaultStatus(http.StatusInternalServerError), upstream.Unavailable},
		{upstreamtest.FaultReset, upstream.Unavailable},
		{upstreamtest.FaultDown, upstream.Unavailable},
		{upstreamtest.FaultTooManyRequests("9"), upstream.RateLimited},
		{upstreamtest.FaultStatus(http.StatusForbidden), upstream.Denied},
		{upstreamtest.FaultNone, upstream.NotFound}, // a missing tag
	} {
		u.SetFault(tc.fault)
		_, err := c.GetManifest(ctx, "app", "nope", "")
		if !upstream.IsKind(err, tc.kind) {
			t.Errorf("%v: %v, want kind %v", tc.fault, err, tc.kind)
		}
		if tc.kind == upstream.RateLimited && !strings.Contains(err.Error(), "429") {
			t.Errorf("429 error: %v", err)
		}
	}
}

// TestRangeFallback: a remote refusing an open-ended Range is asked for
// everything (Offset 0); a closed range works.
func TestRangeFallback(t *testing.T) {
	u := upstreamtest.New(t)
	img := u.PushImage(t, "app", "v1", 1, 5000)
	c := newClient(t, u, "", "")
	d := digest.Digest(img.Layers[0])
	size, err := c.HeadBlob(context.Background(), "app", d)
	if err != nil {
		t.Fatal(err)
	}
	b, err := c.GetBlob(context.Background(), "app", d, 100, size)
	if err != nil || b.Offset != 100 || b.Size != size-100 {
		t.Fatalf("closed range: %v offset %d size %d", err, b.Offset, b.Size)
	}
	b.Body.Close()
	b, err = c.GetBlob(context.Background(), "app", d, 100, 0) // open-ended: refused, then all
	if err != nil || b.Offset != 0 {
		t.Fatalf("open-ended range: %v offset %d", err, b.Offset)
	}
	n, _ := io.Copy(io.Discard, b.Body)
	b.Body.Close()
	if n != size {
		t.Errorf("fallback body: %d bytes, want %d", n, size)
	}
}

func TestDockerHubNames(t *testing.T) {
	hub, err := upstream.New(upstream.Options{Remote: "https://registry-1.docker.io"})
	if err != nil {
		t.Fatal(err)
	}
	if !hub.DockerHub() || hub.Host() != "docker.io" || hub.RemoteName("alpine") != "library/alpine" || hub.RemoteName("bitnami/redis") != "bitnami/redis" {
		t.Errorf("Docker Hub: hub=%v host=%s alpine→%s", hub.DockerHub(), hub.Host(), hub.RemoteName("alpine"))
	}
	q, _ := upstream.New(upstream.Options{Remote: "https://quay.io"})
	if q.DockerHub() || q.RemoteName("alpine") != "alpine" || q.Host() != "quay.io" {
		t.Errorf("quay: %v %s", q.DockerHub(), q.RemoteName("alpine"))
	}
	for _, bad := range []string{"ftp://x", "registry-1.docker.io", ""} {
		if _, err := upstream.New(upstream.Options{Remote: bad}); err == nil {
			t.Errorf("remote %q accepted", bad)
		}
	}
}

// TestNoDowngrade: an https remote is never asked over plain http, even on
// a loopback address where go-containerregistry's ping would fall back.
func TestNoDowngrade(t *testing.T) {
	u := upstreamtest.New(t) // plain http on 127.0.0.1
	c, err := upstream.New(upstream.Options{Remote: strings.Replace(u.URL, "http://", "https://", 1)})
	if err != nil {
		t.Fatal(err)
	}
	_, err = c.GetManifest(context.Background(), "app", "v1", "")
	if err == nil || !upstream.IsKind(err, upstream.Unavailable) {
		t.Fatalf("https remote served by a plain-http server: %v, want unavailable", err)
	}
	if n := len(u.Requests()); n != 0 {
		t.Errorf("%d plain-http requests reached the server", n)
	}
}
