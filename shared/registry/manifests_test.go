package registry_test

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"net/http"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	digest "github.com/opencontainers/go-digest"
	"github.com/opencontainers/image-spec/specs-go"
	ocispec "github.com/opencontainers/image-spec/specs-go/v1"

	"github.com/airlock-registry/airlock/shared/registry"
	"github.com/airlock-registry/airlock/shared/storage"
)

// TestManifestKinds pushes each supported manifest type by tag and by digest
// and reads it back with GET and HEAD, then deletes it.
func TestManifestKinds(t *testing.T) {
	e := newEnv(t)
	kinds := []struct {
		name, image, list string
	}{
		{"docker", mtDockerManifest, mtDockerList},
		{"oci", ocispec.MediaTypeImageManifest, ocispec.MediaTypeImageIndex},
	}
	for _, k := range kinds {
		t.Run(k.name, func(t *testing.T) {
			e := e.sub(t)
			name := "kinds/" + k.name
			m1, d1 := e.pushImage(name, "amd64", k.image)
			m2, d2 := e.pushImage(name, "", k.image) // by digest
			idx := indexJSON(k.list, desc(k.image, m1), desc(k.image, m2))
			di := digest.FromBytes(idx)
			r := e.putManifest(name, "multi", k.list, idx)
			wantStatus(t, "PUT index", r, http.StatusCreated)
			wantHeader(t, "PUT index", r, "Location", "/v2/"+name+"/manifests/"+di.String())
			wantHeader(t, "PUT index", r, "Docker-Content-Digest", di.String())

			for _, c := range []struct {
				ref, mt string
				body    []byte
			}{
				{"amd64", k.image, m1}, {d1.String(), k.image, m1}, {d2.String(), k.image, m2},
				{"multi", k.list, idx}, {di.String(), k.list, idx},
			} {
				e.assertManifest(name, c.ref, c.body, c.mt)
				h := e.do("HEAD", "/v2/"+name+"/manifests/"+c.ref, nil, "Accept", c.mt)
				wantStatus(t, "HEAD "+c.ref, h, http.StatusOK)
				wantHeader(t, "HEAD "+c.ref, h, "Content-Length", strconv.Itoa(len(c.body)))
				wantHeader(t, "HEAD "+c.ref, h, "Content-Type", c.mt)
				wantHeader(t, "HEAD "+c.ref, h, "Docker-Content-Digest", digest.FromBytes(c.body).String())
				wantHeader(t, "HEAD "+c.ref, h, "ETag", `"`+digest.FromBytes(c.body).String()+`"`)
			}
			if got := e.tags(name); strings.Join(got, ",") != "amd64,multi" {
				t.Errorf("tags = %v", got)
			}

			// DELETE by tag removes only the tag.
			wantStatus(t, "DELETE tag", e.do("DELETE", "/v2/"+name+"/manifests/multi", nil), http.StatusAccepted)
			wantErr(t, "GET deleted tag", e.do("GET", "/v2/"+name+"/manifests/multi", nil, "Accept", k.list), http.StatusNotFound, registry.CodeManifestUnknown)
			e.assertManifest(name, di.String(), idx, k.list)
			// DELETE by digest removes the manifest and the tags pointing at it.
			wantStatus(t, "DELETE digest", e.do("DELETE", "/v2/"+name+"/manifests/"+d1.String(), nil), http.StatusAccepted)
			wantErr(t, "GET deleted digest", e.do("GET", "/v2/"+name+"/manifests/"+d1.String(), nil), http.StatusNotFound, registry.CodeManifestUnknown)
			wantErr(t, "HEAD deleted digest", e.do("HEAD", "/v2/"+name+"/manifests/"+d1.String(), nil), http.StatusNotFound, "")
			wantErr(t, "GET tag of deleted digest", e.do("GET", "/v2/"+name+"/manifests/amd64", nil), http.StatusNotFound, registry.CodeManifestUnknown)
			wantErr(t, "DELETE digest again", e.do("DELETE", "/v2/"+name+"/manifests/"+d1.String(), nil), http.StatusNotFound, registry.CodeManifestUnknown)
			wantErr(t, "DELETE unknown tag", e.do("DELETE", "/v2/"+name+"/manifests/nope", nil), http.StatusNotFound, registry.CodeManifestUnknown)
			if got := e.tags(name); len(got) != 0 {
				t.Errorf("tags after deletes = %v, want none", got)
			}
		})
	}
}

func TestManifestIfNoneMatchAndAccept(t *testing.T) {
	e := newEnv(t)
	m, d := e.pushImage("app", "v1", ocispec.MediaTypeImageManifest)
	idx := indexJSON(ocispec.MediaTypeImageIndex, desc(ocispec.MediaTypeImageManifest, m))
	wantStatus(t, "PUT index", e.putManifest("app", "idx", ocispec.MediaTypeImageIndex, idx), http.StatusCreated)
	etag := `"` + d.String() + `"`

	tests := []struct {
		name   string
		method string
		ref    string
		hdr    []string
		status int
		code   registry.Code
	}{
		{"If-None-Match matches", "GET", "v1", []string{"If-None-Match", etag}, http.StatusNotModified, ""},
		{"If-None-Match matches by digest", "GET", d.String(), []string{"If-None-Match", etag}, http.StatusNotModified, ""},
		{"If-None-Match in a list", "HEAD", "v1", []string{"If-None-Match", `"sha256:00", ` + etag}, http.StatusNotModified, ""},
		{"If-None-Match other", "GET", "v1", []string{"If-None-Match", `"` + digest.FromString("x").String() + `"`}, http.StatusOK, ""},
		{"no Accept serves an index", "GET", "idx", nil, http.StatusOK, ""},
		{"Accept lists the index type", "GET", "idx", []string{"Accept", ocispec.MediaTypeImageManifest + ", " + ocispec.MediaTypeImageIndex}, http.StatusOK, ""},
		{"Accept with parameters", "GET", "idx", []string{"Accept", ocispec.MediaTypeImageIndex + ";q=0.9"}, http.StatusOK, ""},
		{"Accept */*", "GET", "idx", []string{"Accept", "*/*"}, http.StatusOK, ""},
		{"Accept lacks the index type", "GET", "idx", []string{"Accept", ocispec.MediaTypeImageManifest}, http.StatusNotFound, registry.CodeManifestUnknown},
		{"Accept lacks the index type, HEAD", "HEAD", "idx", []string{"Accept", mtDockerManifest}, http.StatusNotFound, ""},
		{"image manifest served whatever Accept says", "GET", "v1", []string{"Accept", mtDockerManifest}, http.StatusOK, ""},
		{"unknown tag", "GET", "v2", nil, http.StatusNotFound, registry.CodeManifestUnknown},
		{"unknown digest", "GET", digest.FromString("x").String(), nil, http.StatusNotFound, registry.CodeManifestUnknown},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			e := e.sub(t)
			r := e.do(tc.method, "/v2/app/manifests/"+tc.ref, nil, tc.hdr...)
			if tc.status >= 400 {
				wantErr(t, tc.name, r, tc.status, tc.code)
				return
			}
			wantStatus(t, tc.name, r, tc.status)
			if tc.status == http.StatusNotModified {
				wantHeader(t, tc.name, r, "ETag", etag)
				wantHeader(t, tc.name, r, "Docker-Content-Digest", d.String())
				if len(r.Body) != 0 {
					t.Errorf("304 with a body")
				}
			}
		})
	}
}

// TestReferrers pushes artifacts whose subject is an image and lists them.
func TestReferrers(t *testing.T) {
	e := newEnv(t)
	_, subject := e.pushImage("app", "v1", ocispec.MediaTypeImageManifest)
	empty := []byte("{}")
	e.pushBlob("app", empty)
	sbom := []byte(`{"sbom":true}`)
	e.pushBlob("app", sbom)
	subj := &ocispec.Descriptor{MediaType: ocispec.MediaTypeImageManifest, Digest: subject, Size: 1}

	artifact := func(artifactType string, cfgType string, annotation string) []byte {
		return mustJSON(ocispec.Manifest{
			Versioned: specs.Versioned{SchemaVersion: 2}, MediaType: ocispec.MediaTypeImageManifest,
			ArtifactType: artifactType, Config: desc(cfgType, empty),
			Layers:      []ocispec.Descriptor{desc("application/spdx+json", sbom)},
			Subject:     subj,
			Annotations: map[string]string{"n": annotation},
		})
	}
	a1 := artifact("application/vnd.example.sbom", ocispec.MediaTypeEmptyJSON, "1")
	// No artifactType: the config media type is the artifact type.
	a2 := artifact("", "application/vnd.example.sig", "2")
	for _, a := range [][]byte{a1, a2} {
		r := e.putManifest("app", digest.FromBytes(a).String(), ocispec.MediaTypeImageManifest, a)
		wantStatus(t, "PUT artifact", r, http.StatusCreated)
		wantHeader(t, "PUT artifact", r, "OCI-Subject", subject.String())
	}
	// An unrelated manifest has no OCI-Subject.
	_, _ = e.pushImage("app", "v2", ocispec.MediaTypeImageManifest)

	list := func(query string) (resp, map[digest.Digest]ocispec.Descriptor) {
		r := e.do("GET", "/v2/app/referrers/"+subject.String()+query, nil)
		wantStatus(t, "referrers"+query, r, http.StatusOK)
		wantHeader(t, "referrers"+query, r, "Content-Type", ocispec.MediaTypeImageIndex)
		var idx ocispec.Index
		if err := json.Unmarshal(r.Body, &idx); err != nil || idx.SchemaVersion != 2 || idx.MediaType != ocispec.MediaTypeImageIndex {
			t.Fatalf("referrers%s: %v: %s", query, err, r.Body)
		}
		out := map[digest.Digest]ocispec.Descriptor{}
		for _, m := range idx.Manifests {
			out[m.Digest] = m
		}
		return r, out
	}
	r, all := list("")
	if r.Header.Get("OCI-Filters-Applied") != "" {
		t.Errorf("unfiltered list has OCI-Filters-Applied %q", r.Header.Get("OCI-Filters-Applied"))
	}
	if len(all) != 2 {
		t.Fatalf("referrers = %v, want the two artifacts", all)
	}
	d1 := all[digest.FromBytes(a1)]
	if d1.ArtifactType != "application/vnd.example.sbom" || d1.Size != int64(len(a1)) || d1.MediaType != ocispec.MediaTypeImageManifest || d1.Annotations["n"] != "1" {
		t.Errorf("descriptor of a1 = %+v", d1)
	}
	if at := all[digest.FromBytes(a2)].ArtifactType; at != "application/vnd.example.sig" {
		t.Errorf("a2 artifactType = %q, want the config media type", at)
	}
	r, filtered := list("?artifactType=application/vnd.example.sbom")
	wantHeader(t, "filtered referrers", r, "OCI-Filters-Applied", "artifactType")
	if _, ok := filtered[digest.FromBytes(a1)]; !ok || len(filtered) != 1 {
		t.Errorf("filtered referrers = %v, want only a1", filtered)
	}
	_, none := list("?artifactType=application/none")
	if len(none) != 0 {
		t.Errorf("referrers of a type nobody has = %v", none)
	}
	// A subject that nobody refers to gives an empty index, not 404.
	r = e.do("GET", "/v2/app/referrers/"+digest.FromString("lonely").String(), nil)
	wantStatus(t, "referrers of a lonely digest", r, http.StatusOK)
	wantErr(t, "referrers of a bad digest", e.do("GET", "/v2/app/referrers/sha256:zz", nil), http.StatusBadRequest, registry.CodeDigestInvalid)

	// Deleting an artifact removes it from the list.
	wantStatus(t, "DELETE a2", e.do("DELETE", "/v2/app/manifests/"+digest.FromBytes(a2).String(), nil), http.StatusAccepted)
	if _, l := list(""); len(l) != 1 {
		t.Errorf("referrers after delete = %v, want a1 only", l)
	}
}

// bigManifest is an OCI manifest of about size bytes (padded with an annotation).
func bigManifest(cfg, layer ocispec.Descriptor, size int) []byte {
	m := ocispec.Manifest{Versioned: specs.Versioned{SchemaVersion: 2}, MediaType: ocispec.MediaTypeImageManifest,
		Config: cfg, Layers: []ocispec.Descriptor{layer}, Annotations: map[string]string{"pad": ""}}
	base := len(mustJSON(m))
	m.Annotations["pad"] = strings.Repeat("p", size-base)
	return mustJSON(m)
}

func TestLargeManifests(t *testing.T) {
	e := newEnv(t, func(d *registry.Deps) { d.MaxBody = 6_000_000 })
	cfg, layer := []byte(`{"os":"linux"}`), randBytes(100)
	e.pushBlob("big", cfg)
	e.pushBlob("big", layer)
	cd, ld := desc(ocispec.MediaTypeImageConfig, cfg), desc(ocispec.MediaTypeImageLayer, layer)
	for _, size := range []int{300 << 10, 360 << 10, 400_000, registry.MaxManifestSize - 1000, registry.MaxManifestSize} {
		body := bigManifest(cd, ld, size)
		if len(body) != size {
			t.Fatalf("built %d bytes, want %d", len(body), size)
		}
		tag := "s" + strconv.Itoa(size)
		r := e.putManifest("big", tag, ocispec.MediaTypeImageManifest, body)
		wantStatus(t, "PUT "+tag, r, http.StatusCreated)
		e.assertManifest("big", tag, body, ocispec.MediaTypeImageManifest)
		e.assertManifest("big", digest.FromBytes(body).String(), body, ocispec.MediaTypeImageManifest)
		h := e.do("HEAD", "/v2/big/manifests/"+tag, nil)
		wantHeader(t, "HEAD "+tag, h, "Content-Length", strconv.Itoa(size))
	}
	over := bigManifest(cd, ld, registry.MaxManifestSize+1)
	r := e.putManifest("big", "over", ocispec.MediaTypeImageManifest, over)
	wantErr(t, "PUT manifest over the limit", r, http.StatusRequestEntityTooLarge, registry.CodeSizeInvalid)
	wantErr(t, "GET refused manifest", e.do("GET", "/v2/big/manifests/over", nil), http.StatusNotFound, registry.CodeManifestUnknown)
	if !bytes.Equal(e.pullBlob("big", ld.Digest), layer) {
		t.Error("layer unreadable")
	}
}

// TestManifestManyLayers: a manifest under the inline limit made of layer
// descriptors (not annotations) must still fit its DynamoDB item, whose
// blobs list grows with the layers, and round-trip. Distinct layers are
// linked straight through the Metadata store (thousands of pushes are slow).
func TestManifestManyLayers(t *testing.T) {
	e := newEnv(t)
	cfg := []byte(`{"os":"linux"}`)
	e.pushBlob("app", cfg)
	img := storage.Image{Repo: "local", Name: "app"}
	layers := make([]ocispec.Descriptor, 2200)
	var wg sync.WaitGroup
	for w := range 8 {
		wg.Go(func() {
			for i := w; i < len(layers); i += 8 {
				data := []byte(fmt.Sprintf("layer %d", i))
				layers[i] = desc(ocispec.MediaTypeImageLayerGzip, data)
				b := storage.Blob{Digest: layers[i].Digest, Size: layers[i].Size, Created: time.Now()}
				if _, err := e.meta.PutBlob(context.Background(), b); err != nil { // a link needs its record
					t.Error(err)
					return
				}
				if err := e.meta.LinkBlob(context.Background(), img, b); err != nil {
					t.Error(err)
					return
				}
			}
		})
	}
	wg.Wait()
	for _, n := range []int{1000, 2200} {
		body := manifestJSON(ocispec.MediaTypeImageManifest, desc(ocispec.MediaTypeImageConfig, cfg), layers[:n]...)
		tag := fmt.Sprintf("l%d", n)
		r := e.putManifest("app", tag, ocispec.MediaTypeImageManifest, body)
		wantStatus(t, fmt.Sprintf("PUT %d layers (%d bytes)", n, len(body)), r, http.StatusCreated)
		e.assertManifest("app", tag, body, ocispec.MediaTypeImageManifest)
	}
}
