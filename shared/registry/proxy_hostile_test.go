package registry_test

import (
	"bytes"
	"io"
	"log"
	"net/http"
	"net/http/httptest"
	"strconv"
	"strings"
	"testing"

	ggcrregistry "github.com/google/go-containerregistry/pkg/registry"

	"github.com/airlock-registry/airlock/shared/storage"
	"github.com/airlock-registry/airlock/shared/upstream/upstreamtest"
)

// hostile wraps a real registry (go-containerregistry's) and rewrites its
// manifest answers with fn.
func hostile(t *testing.T, fn func(w http.ResponseWriter, r *http.Request, body []byte, h http.Header)) *upstreamtest.Upstream {
	inner := ggcrregistry.New(ggcrregistry.Logger(log.New(io.Discard, "", 0)))
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if !strings.Contains(r.URL.Path, "/manifests/") || r.Method == http.MethodPut {
			inner.ServeHTTP(w, r)
			return
		}
		rec := httptest.NewRecorder()
		inner.ServeHTTP(rec, r)
		if rec.Code != http.StatusOK {
			for k, v := range rec.Header() {
				w.Header()[k] = v
			}
			w.WriteHeader(rec.Code)
			_, _ = w.Write(rec.Body.Bytes())
			return
		}
		fn(w, r, rec.Body.Bytes(), rec.Header())
	}))
	t.Cleanup(srv.Close)
	return &upstreamtest.Upstream{URL: srv.URL}
}

// TestProxyHostileManifests: an upstream serving manifests that are invalid,
// oversized or not what was asked gets a 502 naming it, and nothing is
// cached; the proxy's store is unchanged.
func TestProxyHostileManifests(t *testing.T) {
	src := upstreamtest.New(t)
	img := src.PushImage(t, "app", "v1", 1, 100)
	for _, c := range []struct {
		name string
		fn   func(w http.ResponseWriter, r *http.Request, body []byte, h http.Header)
		ref  string
	}{
		{"not JSON", func(w http.ResponseWriter, r *http.Request, body []byte, h http.Header) {
			w.Header().Set("Content-Type", h.Get("Content-Type"))
			_, _ = w.Write([]byte("<html>captive portal</html>"))
		}, "v1"},
		{"schema1", func(w http.ResponseWriter, r *http.Request, body []byte, h http.Header) {
			w.Header().Set("Content-Type", "application/vnd.docker.distribution.manifest.v1+prettyjws")
			_, _ = w.Write([]byte(`{"schemaVersion":1,"name":"app","tag":"v1","fsLayers":[]}`))
		}, "v1"},
		{"wrong bytes for a digest", func(w http.ResponseWriter, r *http.Request, body []byte, h http.Header) {
			w.Header().Set("Content-Type", h.Get("Content-Type"))
			_, _ = w.Write(bytes.Replace(body, []byte(`"schemaVersion":2`), []byte(`"schemaVersion":2 `), 1))
		}, img.Digest},
		{"digest header lies", func(w http.ResponseWriter, r *http.Request, body []byte, h http.Header) {
			w.Header().Set("Content-Type", h.Get("Content-Type"))
			w.Header().Set("Docker-Content-Digest", "sha256:"+strings.Repeat("0", 64))
			_, _ = w.Write(body)
		}, "v1"},
		{"oversized", func(w http.ResponseWriter, r *http.Request, body []byte, h http.Header) {
			w.Header().Set("Content-Type", h.Get("Content-Type"))
			w.Header().Set("Content-Length", strconv.Itoa(5<<20))
			_, _ = w.Write(body)
			_, _ = io.Copy(w, io.LimitReader(zeros{}, 5<<20-int64(len(body))))
		}, "v1"},
	} {
		t.Run(c.name, func(t *testing.T) {
			up := hostile(t, c.fn)
			copyImage(t, img, up.URL+"/v2/app")
			e := newProxyEnv(t, up, "  negativeCacheTTL: 0s\n")
			r := e.do(http.MethodGet, "/v2/hub/app/manifests/"+c.ref, "Accept", string(img.MediaType))
			if r.Status != http.StatusBadGateway || !strings.Contains(string(r.Body), up.URL) || !strings.Contains(string(r.Body), "nothing was cached") {
				t.Errorf("%s: %s, want 502 naming the upstream, nothing cached", c.name, r)
			}
			if p, err := e.store.ListTags(t.Context(), storage.Image{Repo: "hub", Name: "app"}, "", 0); err != nil || len(p.Items) != 0 {
				t.Errorf("%s: tags cached: %v %v", c.name, p.Items, err)
			}
			if p, err := e.store.ListImages(t.Context(), "", 0); err != nil || len(p.Items) != 0 {
				t.Errorf("%s: images cached: %v %v", c.name, p.Items, err)
			}
		})
	}
}

type zeros struct{}

func (zeros) Read(p []byte) (int, error) { clear(p); return len(p), nil }
