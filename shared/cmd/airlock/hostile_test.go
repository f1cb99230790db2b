package main

import (
	"bytes"
	"context"
	"encoding/json"
	"io"
	"net/http"
	"net/http/httptest"
	"net/http/httputil"
	"net/url"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/google/go-containerregistry/pkg/name"
	"github.com/google/go-containerregistry/pkg/v1/remote"

	"github.com/airlock-registry/airlock/shared/registry"
)

// lyingRegistry serves reg through a proxy that rewrites the registry's
// answers to part asks (POST <location>?size=): a registry that lies about
// its plan. It returns the proxy's host:port.
func lyingRegistry(t *testing.T, reg *testRegistry, rewrite func(a map[string]any)) string {
	t.Helper()
	u, _ := url.Parse("http://" + reg.host)
	rp := httputil.NewSingleHostReverseProxy(u)
	rp.ModifyResponse = func(res *http.Response) error {
		if res.Request.Method != http.MethodPost || !res.Request.URL.Query().Has("size") || res.StatusCode != http.StatusOK {
			return nil
		}
		b, err := io.ReadAll(res.Body)
		if err != nil {
			return err
		}
		var a map[string]any
		if err := json.Unmarshal(b, &a); err != nil {
			return err
		}
		rewrite(a)
		b, _ = json.Marshal(a)
		res.Body = io.NopCloser(bytes.NewReader(b))
		res.ContentLength = int64(len(b))
		res.Header.Set("Content-Length", strconv.Itoa(len(b)))
		return nil
	}
	srv := httptest.NewServer(rp)
	t.Cleanup(srv.Close)
	return strings.TrimPrefix(srv.URL, "http://")
}

// acceptAll answers every part PUT 200 with an ETag (a store that takes
// anything), so that a push goes on to the parts a lying plan adds.
type acceptAll struct{}

func (acceptAll) RoundTrip(r *http.Request) (*http.Response, error) {
	if r.Body != nil {
		_, _ = io.Copy(io.Discard, r.Body)
		r.Body.Close()
	}
	return &http.Response{StatusCode: http.StatusOK, Status: "200 OK", Header: http.Header{"Etag": {`"x"`}},
		Body: io.NopCloser(strings.NewReader("")), Request: r}, nil
}

// TestLyingPartPlan: a registry whose part plan does not match the blob
// (parts past its end, part URLs that never end) gets a clear error naming
// the plan, not a panic or an endless loop, and nothing is tagged.
func TestLyingPartPlan(t *testing.T) {
	cases := []struct {
		name    string
		rewrite func(a map[string]any)
		want    string
	}{
		{"next without parts", func(a map[string]any) { a["parts"], a["next"] = []any{}, 1 }, "part URLs"},
		{"next going back", func(a map[string]any) { a["next"] = 1 }, "part URLs"},
		{"parts past the end", func(a map[string]any) {
			p := a["parts"].([]any)[0].(map[string]any)
			var ps []any
			for i := 1; i <= 5; i++ {
				ps = append(ps, map[string]any{"number": i, "url": p["url"], "size": 1 << 20})
			}
			a["parts"], a["count"], a["partSize"] = ps, 5, 1<<20
		}, "plan"},
		{"part size zero", func(a map[string]any) { a["partSize"] = 0 }, "plan"},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			reg, _ := isolatedRegistry(t, true, registry.DirectOptions{})
			old := s3Client
			s3Client = &http.Client{Transport: acceptAll{}}
			t.Cleanup(func() { s3Client = old })
			host := lyingRegistry(t, reg, c.rewrite)
			dir := ociLayout(t, oneLayerImage(t, 2<<20), "1")
			// The deadline only ends a test that would otherwise loop forever.
			ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
			defer cancel()
			var out bytes.Buffer
			err := run(ctx, []string{"push", "oci:" + dir, host + "/local/a:1"}, &out)
			if err == nil || ctx.Err() != nil || !strings.Contains(err.Error(), c.want) {
				t.Fatalf("push to a registry with a lying part plan: %v, want an error about its %s\n%s", err, c.want, out.String())
			}
			ref, err := name.ParseReference(reg.host + "/local/a:1")
			if err != nil {
				t.Fatal(err)
			}
			if _, err := remote.Head(ref); err == nil {
				t.Fatal("the image was tagged")
			}
		})
	}
}

// TestRegistryNeverAnswers: a registry that takes a request and never
// answers ends the push with an error (after responseWait), not a hang.
func TestRegistryNeverAnswers(t *testing.T) {
	reg, _ := isolatedRegistry(t, true, registry.DirectOptions{})
	old := responseWait
	responseWait = 200 * time.Millisecond
	t.Cleanup(func() { responseWait = old })
	u, _ := url.Parse("http://" + reg.host)
	rp := httputil.NewSingleHostReverseProxy(u)
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if r.Method == http.MethodHead {
			<-r.Context().Done() // the client gives up
			return
		}
		rp.ServeHTTP(w, r)
	}))
	t.Cleanup(srv.Close)
	dir := ociLayout(t, oneLayerImage(t, 2<<20), "1")
	// The deadline only ends a test that would otherwise hang.
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	var out bytes.Buffer
	err := run(ctx, []string{"push", "oci:" + dir, strings.TrimPrefix(srv.URL, "http://") + "/local/a:1"}, &out)
	if err == nil || ctx.Err() != nil || !strings.Contains(err.Error(), "timeout awaiting response headers") {
		t.Fatalf("push to a registry that never answers: %v, want a timeout awaiting its answer", err)
	}
}

// TestSourceNeverAnswers: a copy whose source registry never answers ends
// with an error (after responseWait), not a hang.
func TestSourceNeverAnswers(t *testing.T) {
	reg, _ := isolatedRegistry(t, true, registry.DirectOptions{})
	old := responseWait
	responseWait = 200 * time.Millisecond
	t.Cleanup(func() { responseWait = old })
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		<-r.Context().Done() // the client gives up
	}))
	t.Cleanup(srv.Close)
	// The deadline only ends a test that would otherwise hang.
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	var out bytes.Buffer
	err := run(ctx, []string{"copy", strings.TrimPrefix(srv.URL, "http://") + "/x:1", reg.host + "/local/a:1"}, &out)
	if err == nil || ctx.Err() != nil || !strings.Contains(err.Error(), "timeout awaiting response headers") {
		t.Fatalf("copy from a registry that never answers: %v, want a timeout awaiting its answer", err)
	}
}

// TestLargePartAnswer: an answer of part URLs above 1 MiB is read whole. On
// AWS a presigned URL carries the function's session token (about 2 KB a
// URL), so 1,000 URLs (one answer) are about 2 MB; here the answer is
// padded to that size.
func TestLargePartAnswer(t *testing.T) {
	reg, s3 := isolatedRegistry(t, true, registry.DirectOptions{})
	host := lyingRegistry(t, reg, func(a map[string]any) { a["padding"] = strings.Repeat("x", 2<<20) })
	img := oneLayerImage(t, 6<<20)
	dir := ociLayout(t, img, "1")
	cli(t, "push", "--quiet", "--part-size", "5", "oci:"+dir, host+"/local/a:1")
	if got := s3.total(); got != 2 {
		t.Errorf("%d part PUTs, want 2", got)
	}
	checkPulled(t, reg.host+"/local/a:1", img)
}
