package registry_test

import (
	"context"
	"fmt"
	"net/http"
	"strings"
	"sync/atomic"
	"testing"

	digest "github.com/opencontainers/go-digest"
	ocispec "github.com/opencontainers/image-spec/specs-go/v1"

	"github.com/airlock-registry/airlock/shared/registry"
	"github.com/airlock-registry/airlock/shared/storage"
	"github.com/airlock-registry/airlock/shared/storage/memstore"
)

// touchCounter is a memstore counting the reference checks of manifest PUTs
// (TouchLink, TouchManifest) made on it.
type touchCounter struct {
	*memstore.Store
	n atomic.Int64
}

func (c *touchCounter) TouchLink(ctx context.Context, img storage.Image, d digest.Digest) (storage.Blob, error) {
	c.n.Add(1)
	return c.Store.TouchLink(ctx, img, d)
}

func (c *touchCounter) TouchManifest(ctx context.Context, img storage.Image, d digest.Digest) error {
	c.n.Add(1)
	return c.Store.TouchManifest(ctx, img, d)
}

// TestManyMissingReferencesCalls: a manifest PUT referencing 4000 blobs or
// child manifests none of which exists stops checking at the first missing
// one (at most the parallel checks already under way, 8, and the config's
// are made), hosted
// and through a group whose proxy member's remote is unreachable, and the
// answer names the first missing reference in manifest order.
func TestManyMissingReferencesCalls(t *testing.T) {
	const n, workers = 4000, 8
	var layers, children []ocispec.Descriptor
	for i := range n {
		b := []byte(fmt.Sprintf("never pushed %d", i))
		layers = append(layers, desc(ocispec.MediaTypeImageLayerGzip, b))
		children = append(children, desc(ocispec.MediaTypeImageManifest, b))
	}
	cfg := []byte(`{"os":"linux"}`)
	image := manifestJSON(ocispec.MediaTypeImageManifest, desc(ocispec.MediaTypeImageConfig, cfg), layers...)
	index := indexJSON(ocispec.MediaTypeImageIndex, children...)
	for _, v := range []struct {
		via, name string
		status    int
		code      registry.Code
	}{
		{"hosted", "local/team/app", http.StatusBadRequest, registry.CodeManifestBlobUnknown},
		{"group, proxy member's remote down", "docker/team/app", http.StatusServiceUnavailable, registry.CodeUnavailable},
	} {
		t.Run(v.via, func(t *testing.T) {
			var tc *touchCounter
			e := memEnv(t, func(d *registry.Deps) {
				tc = &touchCounter{Store: d.Meta.(*memstore.Store)}
				d.Meta = tc
				d.Config = mustConfig(t, deadProxyGroup("local"))
			})
			e.pushBlob(v.name, cfg)
			for _, m := range []struct {
				what, mt string
				body     []byte
				first    digest.Digest
				max      int64 // the checks under way when the first fails, and the config's
			}{
				{"image of 4000 missing layers", ocispec.MediaTypeImageManifest, image, layers[0].Digest, workers + 1},
				{"index of 4000 missing manifests", ocispec.MediaTypeImageIndex, index, children[0].Digest, workers},
			} {
				tc.n.Store(0)
				r := e.putManifest(v.name, "v1", m.mt, m.body)
				status, code := v.status, v.code
				if m.mt == ocispec.MediaTypeImageIndex && v.via == "hosted" {
					status, code = http.StatusBadRequest, registry.CodeManifestBlobUnknown
				}
				wantErr(t, m.what, r, status, code)
				if msg := errMessage(r); !strings.Contains(msg, m.first.String()) {
					t.Errorf("%s: message %q does not name the first missing reference %s", m.what, msg, m.first)
				}
				if got := tc.n.Load(); got > m.max {
					t.Errorf("%s: %d reference checks (TouchLink/TouchManifest), want at most %d: the check does not stop at the first missing reference", m.what, got, m.max)
				}
			}
			if got := e.tags(v.name); len(got) != 0 {
				t.Errorf("tags after the refused pushes: %v", got)
			}
		})
	}
}
