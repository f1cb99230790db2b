package registry_test

import (
	"bytes"
	"encoding/json"
	"io"
	"net/http"
	"strings"
	"testing"

	digest "github.com/opencontainers/go-digest"
	"github.com/opencontainers/image-spec/specs-go"
	ocispec "github.com/opencontainers/image-spec/specs-go/v1"

	"github.com/airlock-registry/airlock/shared/registry"
)

// paddedManifest is an image manifest of about n bytes whose annotation value is
// made of fill (characters JSON may have to escape).
func paddedManifest(cfg, layer ocispec.Descriptor, fill string, n int) []byte {
	m := ocispec.Manifest{Versioned: specs.Versioned{SchemaVersion: 2}, MediaType: ocispec.MediaTypeImageManifest,
		Config: cfg, Layers: []ocispec.Descriptor{layer},
		Annotations: map[string]string{"pad": strings.Repeat(fill, n/len(fill))}}
	var b bytes.Buffer
	enc := json.NewEncoder(&b)
	enc.SetEscapeHTML(false) // keep '<', '>' and '&' raw in the body, as clients may
	if err := enc.Encode(m); err != nil {
		panic(err)
	}
	return bytes.TrimSuffix(b.Bytes(), []byte("\n"))
}

// escapedLen is the length of b as a JSON string as aws-lambda-go writes it
// in a response (encoding/json without HTML escaping), without the quotes.
func escapedLen(t *testing.T, b []byte) int64 {
	t.Helper()
	var out bytes.Buffer
	enc := json.NewEncoder(&out)
	enc.SetEscapeHTML(false)
	if err := enc.Encode(string(b)); err != nil {
		t.Fatal(err)
	}
	return int64(out.Len() - 3) // quotes and newline
}

// TestManifestRedirectSize: a manifest GET whose body would make a response
// longer than Deps.ManifestRedirectSize is a 307 to a presigned URL serving
// the exact body; one at the limit is served inline; HEAD never redirects.
func TestManifestRedirectSize(t *testing.T) {
	cfg, layer := []byte(`{"os":"linux"}`), randBytes(100)
	// 600 Ki '\\' are 1.2 MB in the manifest ("\\\\") and 2.4 MB once
	// escaped again in the response: over the limit although the raw bytes
	// are not; 600 KB of "a<" (no HTML escaping) stays under it.
	const limit = 2 << 20
	escaping := paddedManifest(desc(ocispec.MediaTypeImageConfig, cfg), desc(ocispec.MediaTypeImageLayer, layer), `\\`, 600<<10)
	plain := paddedManifest(desc(ocispec.MediaTypeImageConfig, cfg), desc(ocispec.MediaTypeImageLayer, layer), "a<&\"", 600<<10)
	exact := escapedLen(t, plain)
	if bytes.Count(plain, []byte("<")) < 100<<10 || escapedLen(t, escaping) <= limit || exact > limit {
		t.Fatalf("bad fixtures: escaped sizes %d and %d against %d", escapedLen(t, escaping), exact, limit)
	}

	for _, tc := range []struct {
		name     string
		body     []byte
		limit    int64
		redirect bool
	}{
		{"escaping body over the limit", escaping, limit, true},
		{"plain body under the limit", plain, limit, false},
		{"escaped length exactly at the limit", plain, exact, false},
		{"escaped length one over the limit", plain, exact - 1, true},
		{"no limit", escaping, 0, false},
	} {
		t.Run(tc.name, func(t *testing.T) {
			e := newEnv(t, func(d *registry.Deps) { d.ManifestRedirectSize = tc.limit })
			e.pushBlob("local/big", cfg)
			e.pushBlob("local/big", layer)
			wantStatus(t, "put", e.putManifest("local/big", "v1", ocispec.MediaTypeImageManifest, tc.body), http.StatusCreated)
			d := digest.FromBytes(tc.body)

			head := e.do("HEAD", "/v2/local/big/manifests/v1", nil)
			wantStatus(t, "head", head, http.StatusOK)
			wantHeader(t, "head", head, "Docker-Content-Digest", d.String())

			r := e.do("GET", "/v2/local/big/manifests/v1", nil, "Accept", ocispec.MediaTypeImageManifest)
			if !tc.redirect {
				wantStatus(t, "get", r, http.StatusOK)
				if string(r.Body) != string(tc.body) {
					t.Fatalf("get: body of %d bytes differs from the %d pushed", len(r.Body), len(tc.body))
				}
				return
			}
			wantStatus(t, "get", r, http.StatusTemporaryRedirect)
			wantHeader(t, "get", r, "Docker-Content-Digest", d.String())
			loc := r.Header.Get("Location")
			if !strings.HasPrefix(loc, e.s3+"/") || !strings.Contains(loc, "X-Amz-Signature=") {
				t.Fatalf("Location %q is not a presigned URL of %s", loc, e.s3)
			}
			res, err := http.Get(loc)
			if err != nil {
				t.Fatal(err)
			}
			defer res.Body.Close()
			got, err := io.ReadAll(res.Body)
			if err != nil || res.StatusCode != http.StatusOK || digest.FromBytes(got) != d {
				t.Fatalf("presigned GET: %d, %d bytes (%v), want the %d-byte manifest %s", res.StatusCode, len(got), err, len(tc.body), d)
			}
			if ct := res.Header.Get("Content-Type"); ct != ocispec.MediaTypeImageManifest {
				t.Errorf("presigned GET Content-Type = %q, want the manifest's media type %q", ct, ocispec.MediaTypeImageManifest)
			}
		})
	}
}
