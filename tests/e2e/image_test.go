//go:build e2e

package e2e

import (
	"archive/tar"
	"bytes"
	"crypto/rand"
	"fmt"
	"io"
	"net/http"
	"os"
	"path/filepath"
	"testing"

	"github.com/google/go-containerregistry/pkg/name"
	v1 "github.com/google/go-containerregistry/pkg/v1"
	"github.com/google/go-containerregistry/pkg/v1/empty"
	"github.com/google/go-containerregistry/pkg/v1/layout"
	"github.com/google/go-containerregistry/pkg/v1/mutate"
	"github.com/google/go-containerregistry/pkg/v1/random"
	"github.com/google/go-containerregistry/pkg/v1/remote"
	"github.com/google/go-containerregistry/pkg/v1/static"
	"github.com/google/go-containerregistry/pkg/v1/tarball"
	"github.com/google/go-containerregistry/pkg/v1/types"
	"github.com/google/go-containerregistry/pkg/v1/validate"
)

const mib = 1 << 20

// randomTar returns a tar archive holding one file of size random bytes.
func randomTar(t testing.TB, fileName string, size int64) []byte {
	t.Helper()
	var b bytes.Buffer
	b.Grow(int(size) + 4096)
	tw := tar.NewWriter(&b)
	if err := tw.WriteHeader(&tar.Header{Name: fileName, Size: size, Mode: 0o644, Typeflag: tar.TypeReg}); err != nil {
		t.Fatal(err)
	}
	if _, err := io.CopyN(tw, rand.Reader, size); err != nil {
		t.Fatal(err)
	}
	if err := tw.Close(); err != nil {
		t.Fatal(err)
	}
	return b.Bytes()
}

// bigImage returns an OCI image of n uncompressed tar layers of about size
// bytes each (random, so incompressible; no gzip time spent building it).
func bigImage(t testing.TB, n int, size int64) v1.Image {
	t.Helper()
	img := mutate.MediaType(empty.Image, types.OCIManifestSchema1)
	img = mutate.ConfigMediaType(img, types.OCIConfigJSON)
	var adds []mutate.Addendum
	for i := 0; i < n; i++ {
		l := static.NewLayer(randomTar(t, fmt.Sprintf("layer%d.bin", i), size), types.OCIUncompressedLayer)
		adds = append(adds, mutate.Addendum{Layer: l, History: v1.History{CreatedBy: fmt.Sprintf("e2e layer %d", i)}})
	}
	img, err := mutate.Append(img, adds...)
	if err != nil {
		t.Fatal(err)
	}
	return withPlatform(t, img)
}

// smallDockerImage returns a Docker-media-type image of n gzipped random layers
// of size bytes each, for the Docker daemon tests.
func smallDockerImage(t testing.TB, n int, size int64) v1.Image {
	t.Helper()
	img, err := random.Image(size, int64(n))
	if err != nil {
		t.Fatal(err)
	}
	return withPlatform(t, img)
}

// withPlatform sets linux/amd64 and a command in the config, as docker expects.
func withPlatform(t testing.TB, img v1.Image) v1.Image {
	t.Helper()
	cf, err := img.ConfigFile()
	if err != nil {
		t.Fatal(err)
	}
	cf = cf.DeepCopy()
	cf.OS = "linux"
	cf.Architecture = "amd64"
	cf.Config.Cmd = []string{"/bin/true"}
	img, err = mutate.ConfigFile(img, cf)
	if err != nil {
		t.Fatal(err)
	}
	return img
}

// imageSize is the sum of the config and layer sizes.
func imageSize(t testing.TB, img v1.Image) int64 {
	t.Helper()
	m, err := img.Manifest()
	if err != nil {
		t.Fatal(err)
	}
	n := m.Config.Size
	for _, l := range m.Layers {
		n += l.Size
	}
	return n
}

// digestOf returns img's manifest digest.
func digestOf(t testing.TB, img v1.Image) v1.Hash {
	t.Helper()
	d, err := img.Digest()
	if err != nil {
		t.Fatal(err)
	}
	return d
}

// writeLayout writes img as an OCI image layout in dir, tagged tag
// (org.opencontainers.image.ref.name), as regctl, skopeo and crane read it.
func writeLayout(t testing.TB, dir string, img v1.Image, tag string) {
	t.Helper()
	p, err := layout.Write(dir, empty.Index)
	if err != nil {
		t.Fatal(err)
	}
	if err := p.AppendImage(img, layout.WithAnnotations(map[string]string{
		"org.opencontainers.image.ref.name": tag,
	})); err != nil {
		t.Fatal(err)
	}
}

// readLayout reads the only image of an OCI layout, checks every blob's
// digest and size against its descriptor (validate.Image) and returns it.
func readLayout(t testing.TB, dir string) v1.Image {
	t.Helper()
	idx, err := layout.ImageIndexFromPath(dir)
	if err != nil {
		t.Fatalf("read layout %s: %v", dir, err)
	}
	im, err := idx.IndexManifest()
	if err != nil {
		t.Fatal(err)
	}
	if len(im.Manifests) != 1 {
		t.Fatalf("layout %s has %d manifests, want 1", dir, len(im.Manifests))
	}
	img, err := idx.Image(im.Manifests[0].Digest)
	if err != nil {
		t.Fatal(err)
	}
	if err := validate.Image(img, validate.Fast); err != nil {
		t.Fatalf("pulled image in %s is not valid: %v", dir, err)
	}
	verifyBlobs(t, dir, img)
	return img
}

// verifyBlobs re-hashes every layer blob as stored (validate.Image would
// gunzip, and these layers are plain tar) against its descriptor.
func verifyBlobs(t testing.TB, dir string, img v1.Image) {
	t.Helper()
	m, err := img.Manifest()
	if err != nil {
		t.Fatal(err)
	}
	for i, l := range m.Layers {
		p := filepath.Join(dir, "blobs", l.Digest.Algorithm, l.Digest.Hex)
		st, err := os.Stat(p)
		if err != nil {
			t.Fatalf("layer %d blob: %v", i, err)
		}
		if st.Size() != l.Size {
			t.Fatalf("layer %d blob %s: %d bytes, want %d", i, l.Digest, st.Size(), l.Size)
		}
		if got := fileDigest(t, p); got != l.Digest {
			t.Fatalf("layer %d blob: digest %s, want %s", i, got, l.Digest)
		}
	}
}

// assertSameImage checks that got has want's manifest digest and layer digests.
func assertSameImage(t testing.TB, what string, want, got v1.Image) {
	t.Helper()
	wd, gd := digestOf(t, want), digestOf(t, got)
	if wd != gd {
		t.Fatalf("%s: manifest digest %s, want %s", what, gd, wd)
	}
	assertSameLayers(t, what, want, got, "digest", v1.Layer.Digest)
}

// assertSameLayers checks that got has as many layers as want and each
// the same id (v1.Layer.Digest, or DiffID where the blobs were compressed
// again); idName names it in the failure.
func assertSameLayers(t testing.TB, what string, want, got v1.Image, idName string, id func(v1.Layer) (v1.Hash, error)) {
	t.Helper()
	wl, err := want.Layers()
	if err != nil {
		t.Fatal(err)
	}
	gl, err := got.Layers()
	if err != nil {
		t.Fatal(err)
	}
	if len(wl) != len(gl) {
		t.Fatalf("%s: %d layers, want %d", what, len(gl), len(wl))
	}
	for i := range wl {
		a, _ := id(wl[i])
		b, _ := id(gl[i])
		if a != b {
			t.Fatalf("%s: layer %d %s %s, want %s", what, i, idName, b, a)
		}
	}
}

// pullImage pulls ref from a plain-HTTP registry with ggcr (anonymously
// unless opts say otherwise) and re-hashes every layer's bytes against its
// digest.
func pullImage(t testing.TB, ref string, opts ...remote.Option) v1.Image {
	t.Helper()
	r, err := name.ParseReference(ref, name.Insecure)
	if err != nil {
		t.Fatal(err)
	}
	img, err := remote.Image(r, opts...)
	if err != nil {
		t.Fatalf("pull %s: %v", ref, err)
	}
	ls, err := img.Layers()
	if err != nil {
		t.Fatal(err)
	}
	for i, l := range ls {
		d, _ := l.Digest()
		rc, err := l.Compressed()
		if err != nil {
			t.Fatalf("pull %s: layer %d: %v", ref, i, err)
		}
		got, _, err := v1.SHA256(rc)
		rc.Close()
		if err != nil || got != d {
			t.Fatalf("pull %s: layer %d: bytes hash to %s (%v), want %s", ref, i, got, err, d)
		}
	}
	return img
}

// writeDockerTarball writes img as a `docker save` tarball tagged ref.
func writeDockerTarball(t testing.TB, path, ref string, img v1.Image) {
	t.Helper()
	tag, err := name.NewTag(ref)
	if err != nil {
		t.Fatal(err)
	}
	if err := tarball.WriteToFile(path, tag, img); err != nil {
		t.Fatal(err)
	}
}

// headStatus sends HEAD url and returns the status code and headers.
func headStatus(t testing.TB, url string, accept ...string) (int, http.Header) {
	t.Helper()
	req, err := http.NewRequest(http.MethodHead, url, nil)
	if err != nil {
		t.Fatal(err)
	}
	for _, a := range accept {
		req.Header.Add("Accept", a)
	}
	c := &http.Client{CheckRedirect: func(*http.Request, []*http.Request) error { return http.ErrUseLastResponse }}
	resp, err := c.Do(req)
	if err != nil {
		t.Fatalf("HEAD %s: %v", url, err)
	}
	resp.Body.Close()
	return resp.StatusCode, resp.Header
}

// fileSHA256 returns the digest of a file's content.
func fileDigest(t testing.TB, path string) v1.Hash {
	t.Helper()
	f, err := os.Open(path)
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	h, _, err := v1.SHA256(f)
	if err != nil {
		t.Fatal(err)
	}
	return h
}

// mkdir makes a directory below base and returns its path.
func mkdir(t testing.TB, base, elem string) string {
	t.Helper()
	p := filepath.Join(base, elem)
	if err := os.MkdirAll(p, 0o755); err != nil {
		t.Fatal(err)
	}
	return p
}
