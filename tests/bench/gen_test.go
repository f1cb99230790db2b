//go:build bench

package bench

import (
	"crypto/sha256"
	"encoding/json"
	"fmt"
	"io"
	"math/rand/v2"
	"sync"

	v1 "github.com/google/go-containerregistry/pkg/v1"
	"github.com/google/go-containerregistry/pkg/v1/empty"
	"github.com/google/go-containerregistry/pkg/v1/mutate"
	"github.com/google/go-containerregistry/pkg/v1/types"
	digest "github.com/opencontainers/go-digest"
	ocispec "github.com/opencontainers/image-spec/specs-go/v1"
)

// blob is deterministic pseudo-random content of a given size, generated on
// the fly (never held in memory) from a seed.
type blob struct {
	seed   uint64
	size   int64
	digest digest.Digest
}

// open returns a fresh reader of the blob's bytes.
func (b blob) open() io.Reader {
	var key [32]byte
	for i := range 8 {
		key[i] = byte(b.seed >> (8 * i))
	}
	return io.LimitReader(rand.NewChaCha8(key), b.size)
}

// newBlob makes a blob and computes its digest (one pass over the bytes).
func newBlob(seed uint64, size int64) blob {
	b := blob{seed: seed, size: size}
	h := sha256.New()
	if _, err := io.Copy(h, b.open()); err != nil {
		panic(err) // a generator cannot fail
	}
	b.digest = digest.NewDigestFromEncoded(digest.SHA256, fmt.Sprintf("%x", h.Sum(nil)))
	return b
}

// newBlobs makes n blobs of size bytes with seeds seed, seed+1, ..., hashing
// them in parallel.
func newBlobs(seed uint64, n int, size int64) []blob {
	out := make([]blob, n)
	var wg sync.WaitGroup
	for i := range out {
		wg.Go(func() { out[i] = newBlob(seed+uint64(i), size) })
	}
	wg.Wait()
	return out
}

// testImage is an OCI image: a small config blob and generated layers.
type testImage struct {
	layers   []blob
	config   []byte
	manifest []byte
}

// total returns the bytes of all layers.
func (im testImage) total() int64 {
	var n int64
	for _, l := range im.layers {
		n += l.size
	}
	return n
}

// newImage makes an image of n layers of size bytes each.
func newImage(seed uint64, n int, size int64) testImage {
	im := testImage{layers: newBlobs(seed, n, size)}
	cfg := ocispec.Image{
		Platform: ocispec.Platform{Architecture: "amd64", OS: "linux"},
		RootFS:   ocispec.RootFS{Type: "layers"},
	}
	for _, l := range im.layers {
		cfg.RootFS.DiffIDs = append(cfg.RootFS.DiffIDs, l.digest)
	}
	im.config = mustJSON(cfg)
	m := ocispec.Manifest{
		MediaType: ocispec.MediaTypeImageManifest,
		Config: ocispec.Descriptor{
			MediaType: ocispec.MediaTypeImageConfig,
			Digest:    digest.FromBytes(im.config),
			Size:      int64(len(im.config)),
		},
	}
	m.SchemaVersion = 2
	for _, l := range im.layers {
		m.Layers = append(m.Layers, ocispec.Descriptor{MediaType: ocispec.MediaTypeImageLayer, Digest: l.digest, Size: l.size})
	}
	im.manifest = mustJSON(m)
	return im
}

func mustJSON(v any) []byte {
	b, err := json.Marshal(v)
	if err != nil {
		panic(err)
	}
	return b
}

// genLayer is a blob as a go-containerregistry layer (uncompressed tar media
// type; the bytes are random, which registries do not inspect).
type genLayer struct{ b blob }

var _ v1.Layer = genLayer{}

func (l genLayer) hash() v1.Hash {
	return v1.Hash{Algorithm: "sha256", Hex: l.b.digest.Encoded()}
}

// Digest returns the layer's digest.
func (l genLayer) Digest() (v1.Hash, error) { return l.hash(), nil }

// DiffID returns the digest too: the layer is stored uncompressed.
func (l genLayer) DiffID() (v1.Hash, error) { return l.hash(), nil }

// Compressed returns the bytes.
func (l genLayer) Compressed() (io.ReadCloser, error) { return io.NopCloser(l.b.open()), nil }

// Uncompressed returns the bytes.
func (l genLayer) Uncompressed() (io.ReadCloser, error) { return io.NopCloser(l.b.open()), nil }

// Size returns the byte count.
func (l genLayer) Size() (int64, error) { return l.b.size, nil }

// MediaType is the OCI uncompressed layer type.
func (l genLayer) MediaType() (types.MediaType, error) { return types.OCIUncompressedLayer, nil }

// ggcrImage returns im's layers as a go-containerregistry OCI image.
func ggcrImage(im testImage) (v1.Image, error) {
	base := mutate.MediaType(empty.Image, types.OCIManifestSchema1)
	base = mutate.ConfigMediaType(base, types.OCIConfigJSON)
	adds := make([]mutate.Addendum, 0, len(im.layers))
	for _, l := range im.layers {
		adds = append(adds, mutate.Addendum{Layer: genLayer{l}, MediaType: types.OCIUncompressedLayer})
	}
	return mutate.Append(base, adds...)
}
