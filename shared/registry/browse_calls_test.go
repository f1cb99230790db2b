package registry_test

import (
	"context"
	"maps"
	"net/http"
	"testing"

	digest "github.com/opencontainers/go-digest"
	ocispec "github.com/opencontainers/image-spec/specs-go/v1"

	"github.com/airlock-registry/airlock/shared/auth"
	"github.com/airlock-registry/airlock/shared/registry"
	"github.com/airlock-registry/airlock/shared/upstream/upstreamtest"
)

// TestBrowseCalls pins the AWS calls of each page view of the web UI (the
// browse endpoint a page reads; README, Web UI) on the emulators: listings
// are one Query per repository read, a tags page one GetItem per tag and one
// per manifest, nothing scans. With auth on, a logged-in viewer's request
// adds one GetItem (the user's roles).
func TestBrowseCalls(t *testing.T) {
	up := upstreamtest.New(t)
	repos := sprintf(`
default: local
repositories:
- {name: local, kind: hosted}
- {name: other, kind: hosted}
- {name: hub, kind: proxy, remote: %q, searchIndex: none}
- {name: docker, kind: group, members: [local, other, hub], writeMember: local}
`, up.URL)
	e, c := newCountedEnv(t, func(d *registry.Deps) { d.Config = mustConfig(t, repos) })
	for _, tag := range []string{"1", "2", "3"} {
		e.pushImage("local/team/app", tag, ocispec.MediaTypeImageManifest)
	}
	e.pushImage("other/team/app", "9", ocispec.MediaTypeImageManifest)
	cfgA, layer := []byte(`{"architecture":"amd64","os":"linux"}`), randBytes(500)
	e.pushBlob("local/team/multi", cfgA)
	e.pushBlob("local/team/multi", layer)
	child := manifestJSON(ocispec.MediaTypeImageManifest, desc(ocispec.MediaTypeImageConfig, cfgA), desc(ocispec.MediaTypeImageLayerGzip, layer))
	wantStatus(t, "child", e.putManifest("local/team/multi", digest.FromBytes(child).String(), ocispec.MediaTypeImageManifest, child), http.StatusCreated)
	d1, d2 := desc(ocispec.MediaTypeImageManifest, child), desc(ocispec.MediaTypeImageManifest, child)
	d1.Platform, d2.Platform = &ocispec.Platform{OS: "linux", Architecture: "amd64"}, &ocispec.Platform{OS: "linux", Architecture: "arm64"}
	index := indexJSON(ocispec.MediaTypeImageIndex, d1, d2)
	wantStatus(t, "index", e.putManifest("local/team/multi", "latest", ocispec.MediaTypeImageIndex, index), http.StatusCreated)
	platformOf := "&ref=" + digest.FromBytes(child).String() + "&index=" + digest.FromBytes(index).String()

	for _, v := range []struct {
		page, path string
		want       map[string]int
	}{
		{"who am I", "me", map[string]int{}},
		{"repositories (one proxy: its health)", "repositories", map[string]int{"DynamoDB.GetItem": 1, "DynamoDB.Query": 1}},
		{"images of a hosted repository", "images?repo=local", map[string]int{"DynamoDB.Query": 1}},
		{"images of a group of 3", "images?repo=docker", map[string]int{"DynamoDB.Query": 3}},
		{"tags of a hosted image (3 tags)", "tags?repo=local&image=team/app", map[string]int{"DynamoDB.Query": 1, "DynamoDB.GetItem": 6}},
		{"tags through a group of 3 (4 tags)", "tags?repo=docker&image=team/app", map[string]int{"DynamoDB.Query": 3, "DynamoDB.BatchGetItem": 4, "DynamoDB.GetItem": 4}},
		{"tags of an index of 2", "tags?repo=local&image=team/multi", map[string]int{"DynamoDB.Query": 1, "DynamoDB.GetItem": 4}},
		{"manifest by tag", "manifest?repo=local&image=team/app&ref=1", map[string]int{"DynamoDB.GetItem": 3, "DynamoDB.Query": 1, "S3.GetObject": 1}},
		{"manifest by digest through a group", "manifest?repo=docker&image=team/multi&ref=" + digest.FromBytes(child).String(),
			map[string]int{"DynamoDB.BatchGetItem": 1, "DynamoDB.GetItem": 2, "DynamoDB.Query": 3, "S3.GetObject": 1}},
		{"index by tag", "manifest?repo=local&image=team/multi&ref=latest", map[string]int{"DynamoDB.GetItem": 4, "DynamoDB.Query": 1}},
		{"one platform of an index", "manifest?repo=local&image=team/multi" + platformOf,
			map[string]int{"DynamoDB.GetItem": 3, "DynamoDB.Query": 1, "S3.GetObject": 1}},
		{"one platform of an index through a group", "manifest?repo=docker&image=team/multi" + platformOf,
			map[string]int{"DynamoDB.BatchGetItem": 1, "DynamoDB.GetItem": 3, "DynamoDB.Query": 3, "S3.GetObject": 1}},
		{"search", "search?q=app", map[string]int{"DynamoDB.Query": 1}},
	} {
		got := calls(c, func() {
			if r := e.do(http.MethodGet, "/airlock/api/browse/"+v.path, nil); r.Status != http.StatusOK {
				t.Fatalf("%s: %s", v.page, r)
			}
		})
		t.Logf("%-40s %v", v.page, got)
		if !maps.Equal(got, v.want) && !(len(got) == 0 && len(v.want) == 0) {
			t.Errorf("%s: calls %v, want exactly %v", v.page, got, v.want)
		}
	}

	// With auth on: the same reads, and one GetItem for the viewer's roles.
	e2 := e.withConfig(repos + "auth: {}\n")
	reg, err := registry.New(registry.Deps{Meta: e.meta, Blobs: e.blobs, Config: e2.deps.Config, AuthOptions: auth.Options{BcryptCost: 4}})
	if err != nil {
		t.Fatal(err)
	}
	if _, err := reg.Auth().Users.Bootstrap(context.Background(), "admin", "admin-password-1234"); err != nil {
		t.Fatal(err)
	}
	ae := &authEnv{t: t, srv: e2.srv, host: e2.srv.URL[len("http://"):]}
	tok, r := ae.token("admin")
	if tok == "" {
		t.Fatalf("token: %s", r)
	}
	got := calls(c, func() {
		if r := ae.req(http.MethodGet, "/airlock/api/browse/images?repo=local", tok); r.Status != http.StatusOK {
			t.Fatalf("images as admin: %s", r)
		}
	})
	t.Logf("%-40s %v", "images of local, logged in", got)
	if want := map[string]int{"DynamoDB.GetItem": 1, "DynamoDB.Query": 1}; !maps.Equal(got, want) {
		t.Errorf("images of local, logged in: calls %v, want exactly %v", got, want)
	}
}
