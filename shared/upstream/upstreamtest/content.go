package upstreamtest

import (
	"fmt"
	"net/http"
	"net/http/httptest"
	"testing"

	"github.com/google/go-containerregistry/pkg/name"
	v1 "github.com/google/go-containerregistry/pkg/v1"
	"github.com/google/go-containerregistry/pkg/v1/empty"
	"github.com/google/go-containerregistry/pkg/v1/mutate"
	"github.com/google/go-containerregistry/pkg/v1/random"
	"github.com/google/go-containerregistry/pkg/v1/remote"
	"github.com/google/go-containerregistry/pkg/v1/types"
)

// Image is an image pushed to the Upstream, with its digests at hand.
type Image struct {
	// Image is the image itself.
	Image v1.Image
	// Repo and Tag are where it was pushed; Ref is "<Host>/<Repo>:<Tag>".
	Repo, Tag, Ref string
	// Digest is the manifest's digest ("sha256:..."), MediaType its media
	// type and Manifest its bytes as served.
	Digest    string
	MediaType types.MediaType
	Manifest  []byte
	// Config is the config blob's digest; Layers the layer blobs' (as
	// stored, compressed) in manifest order.
	Config string
	Layers []string
}

// Blobs returns the digests of every blob of the image: config, then layers.
func (i *Image) Blobs() []string { return append([]string{i.Config}, i.Layers...) }

// Index is an image index pushed to the Upstream.
type Index struct {
	// Index is the index itself.
	Index v1.ImageIndex
	// Repo and Tag are where it was pushed; Ref is "<Host>/<Repo>:<Tag>".
	Repo, Tag, Ref string
	// Digest, MediaType and Manifest describe the index manifest.
	Digest    string
	MediaType types.MediaType
	Manifest  []byte
	// Images are its images in order, pushed by digest to Repo.
	Images []*Image
}

// PushImage pushes a random image of layers layers of layerSize random
// bytes each (gzipped tar layers, Docker schema 2 manifest) to repo:tag and
// returns it. Like every content helper it goes straight to the inner
// registry: no auth, no faults, not counted.
func (u *Upstream) PushImage(t testing.TB, repo, tag string, layers int, layerSize int64) *Image {
	t.Helper()
	img, err := random.Image(layerSize, int64(layers))
	if err != nil {
		t.Fatalf("upstreamtest: random image: %v", err)
	}
	return u.Push(t, repo, tag, img)
}

// Push pushes img (its blobs, then its manifest) to repo:tag, moving the
// tag if it named something else, and returns it with its digests.
func (u *Upstream) Push(t testing.TB, repo, tag string, img v1.Image) *Image {
	t.Helper()
	ref, err := name.ParseReference(u.Ref(repo, tag), name.Insecure)
	if err != nil {
		t.Fatalf("upstreamtest: %v", err)
	}
	if err := remote.Write(ref, img, u.direct()); err != nil {
		t.Fatalf("upstreamtest: pushing %s: %v", ref, err)
	}
	out := describe(t, img)
	out.Repo, out.Tag, out.Ref = repo, tag, ref.String()
	return out
}

// Retag points repo:tag at img, pushing img if need be: the upstream tag
// "moves", as revalidation tests need. It is Push under another name.
func (u *Upstream) Retag(t testing.TB, repo, tag string, img v1.Image) *Image {
	t.Helper()
	return u.Push(t, repo, tag, img)
}

// platforms are handed to the images of PushIndex in turn.
var platforms = []v1.Platform{
	{OS: "linux", Architecture: "amd64"},
	{OS: "linux", Architecture: "arm64", Variant: "v8"},
	{OS: "linux", Architecture: "arm", Variant: "v7"},
	{OS: "linux", Architecture: "ppc64le"},
	{OS: "linux", Architecture: "s390x"},
	{OS: "linux", Architecture: "386"},
}

// PushIndex pushes an index of images to repo:tag: each image by digest to
// repo, then the index, a Docker manifest list if the first image is Docker
// schema 2 and an OCI index otherwise. Each descriptor carries its image's
// platform; an image whose config names none (random ones) is given
// linux/amd64, linux/arm64/v8, linux/arm/v7, linux/ppc64le, linux/s390x,
// linux/386 in turn, written into its config, which changes its digest:
// Index.Images are the images as pushed.
func (u *Upstream) PushIndex(t testing.TB, repo, tag string, images ...v1.Image) *Index {
	t.Helper()
	mt := types.OCIImageIndex
	if len(images) > 0 {
		if m, err := images[0].MediaType(); err == nil && m == types.DockerManifestSchema2 {
			mt = types.DockerManifestList
		}
	}
	var idx v1.ImageIndex = mutate.IndexMediaType(empty.Index, mt)
	out := &Index{Repo: repo, Tag: tag}
	for i, img := range images {
		img, p := withPlatform(t, img, i)
		idx = mutate.AppendManifests(idx, mutate.IndexAddendum{
			Add:        img,
			Descriptor: v1.Descriptor{Platform: &p},
		})
		d := describe(t, img)
		d.Repo, d.Ref = repo, u.Ref(repo, d.Digest)
		out.Images = append(out.Images, d)
	}
	ref, err := name.ParseReference(u.Ref(repo, tag), name.Insecure)
	if err != nil {
		t.Fatalf("upstreamtest: %v", err)
	}
	if err := remote.WriteIndex(ref, idx, u.direct()); err != nil {
		t.Fatalf("upstreamtest: pushing index %s: %v", ref, err)
	}
	out.Index, out.Ref, out.MediaType = idx, ref.String(), mt
	h, err := idx.Digest()
	if err != nil {
		t.Fatalf("upstreamtest: %v", err)
	}
	out.Digest = h.String()
	if out.Manifest, err = idx.RawManifest(); err != nil {
		t.Fatalf("upstreamtest: %v", err)
	}
	return out
}

// withPlatform returns img and its platform, giving it the i-th of
// platforms if its config names none.
func withPlatform(t testing.TB, img v1.Image, i int) (v1.Image, v1.Platform) {
	t.Helper()
	cf, err := img.ConfigFile()
	if err != nil {
		t.Fatalf("upstreamtest: config of image %d: %v", i, err)
	}
	if cf.OS != "" || cf.Architecture != "" {
		return img, *cf.Platform()
	}
	p := platforms[i%len(platforms)]
	if i >= len(platforms) {
		p.Variant = fmt.Sprintf("x%d", i)
	}
	cf = cf.DeepCopy()
	cf.OS, cf.Architecture, cf.Variant = p.OS, p.Architecture, p.Variant
	if img, err = mutate.ConfigFile(img, cf); err != nil {
		t.Fatalf("upstreamtest: setting platform of image %d: %v", i, err)
	}
	return img, p
}

// DeleteTag deletes the tag repo:tag; the manifest stays reachable by
// digest. It fails the test if the tag does not exist.
func (u *Upstream) DeleteTag(t testing.TB, repo, tag string) {
	t.Helper()
	u.deleteDirect(t, "/v2/"+repo+"/manifests/"+tag)
}

// DeleteBlob deletes blob digest d. The inner registry keeps one blob store
// for all repositories, so it goes from every repository at once.
func (u *Upstream) DeleteBlob(t testing.TB, d string) {
	t.Helper()
	u.deleteDirect(t, "/v2/_/blobs/"+d)
}

func (u *Upstream) deleteDirect(t testing.TB, path string) {
	t.Helper()
	rec := httptest.NewRecorder()
	u.inner.ServeHTTP(rec, httptest.NewRequest(http.MethodDelete, path, nil))
	if rec.Code != http.StatusAccepted {
		t.Fatalf("upstreamtest: DELETE %s: %d %s", path, rec.Code, rec.Body)
	}
}

// describe reads an image's digests.
func describe(t testing.TB, img v1.Image) *Image {
	t.Helper()
	out := &Image{Image: img}
	fail := func(err error) {
		t.Helper()
		t.Fatalf("upstreamtest: describing image: %v", err)
	}
	h, err := img.Digest()
	if err != nil {
		fail(err)
	}
	out.Digest = h.String()
	if out.MediaType, err = img.MediaType(); err != nil {
		fail(err)
	}
	if out.Manifest, err = img.RawManifest(); err != nil {
		fail(err)
	}
	m, err := img.Manifest()
	if err != nil {
		fail(err)
	}
	out.Config = m.Config.Digest.String()
	for _, l := range m.Layers {
		out.Layers = append(out.Layers, l.Digest.String())
	}
	return out
}

// direct is the remote option that sends requests straight to the inner
// registry, bypassing the wrapper.
func (u *Upstream) direct() remote.Option {
	return remote.WithTransport(directTransport{u.inner})
}

// directTransport is an http.RoundTripper that calls a handler in process.
type directTransport struct{ h http.Handler }

func (d directTransport) RoundTrip(r *http.Request) (*http.Response, error) {
	in := r.Clone(r.Context())
	in.RequestURI = r.URL.RequestURI()
	in.URL.Scheme, in.URL.Host = "", ""
	if in.Body == nil {
		in.Body = http.NoBody
	}
	rec := httptest.NewRecorder()
	d.h.ServeHTTP(rec, in)
	if r.Body != nil {
		_ = r.Body.Close()
	}
	resp := rec.Result()
	resp.Request = r
	return resp, nil
}
