package registry_test

import (
	"encoding/json"
	"net/http"
	"testing"

	digest "github.com/opencontainers/go-digest"
	ocispec "github.com/opencontainers/image-spec/specs-go/v1"

	"github.com/airlock-registry/airlock/shared/registry"
	"github.com/airlock-registry/airlock/shared/upstream/upstreamtest"
)

// TestGroupCalls pins the DynamoDB calls of group pulls on the emulators:
// the hosted members are read in one BatchGetItem, so a hosted hit costs
// what a hosted pull costs, and a proxy hit adds the proxy's own reads.
func TestGroupCalls(t *testing.T) {
	up := upstreamtest.New(t)
	remoteImg := up.PushImage(t, "library/alpine", "3", 1, 1000)
	e, c := newCountedEnv(t, func(d *registry.Deps) {
		d.Config = mustConfig(t, sprintf(`
default: docker
repositories:
- {name: local, kind: hosted}
- {name: other, kind: hosted}
- {name: hub, kind: proxy, remote: %q}
- {name: docker, kind: group, members: [local, other, hub], writeMember: local}
`, up.URL))
	})
	body, d := e.pushImage("local/team/app", "1", ocispec.MediaTypeImageManifest)
	var m ocispec.Manifest
	if err := json.Unmarshal(body, &m); err != nil {
		t.Fatal(err)
	}
	layer := digest.Digest(remoteImg.Layers[0])
	// Warm the proxy's cache through the group.
	if r := e.do(http.MethodGet, "/v2/docker/library/alpine/manifests/3", nil, "Accept", string(remoteImg.MediaType)); r.Status != http.StatusOK {
		t.Fatalf("cold proxy manifest through the group: %s", r)
	}
	e.pullBlob("docker/library/alpine", layer)

	for _, c2 := range []struct {
		what, path, accept string
		want               map[string]int
	}{
		{"hosted hit, manifest by tag", "/v2/docker/team/app/manifests/1", ocispec.MediaTypeImageManifest, map[string]int{"DynamoDB.BatchGetItem": 1, "DynamoDB.GetItem": 1}},
		{"hosted hit, manifest by digest", "/v2/docker/team/app/manifests/" + d.String(), ocispec.MediaTypeImageManifest, map[string]int{"DynamoDB.BatchGetItem": 1, "DynamoDB.GetItem": 1}},
		{"hosted hit, blob", "/v2/docker/team/app/blobs/" + m.Layers[0].Digest.String(), "", map[string]int{"DynamoDB.BatchGetItem": 1}},
		{"proxy hit, manifest by tag", "/v2/docker/library/alpine/manifests/3", string(remoteImg.MediaType), map[string]int{"DynamoDB.BatchGetItem": 1, "DynamoDB.GetItem": 2}},
		{"proxy hit, blob", "/v2/docker/library/alpine/blobs/" + layer.String(), "", map[string]int{"DynamoDB.BatchGetItem": 1, "DynamoDB.GetItem": 1}},
	} {
		got := calls(c, func() {
			if r := e.do(http.MethodGet, c2.path, nil, "Accept", c2.accept); r.Status != http.StatusOK && r.Status != http.StatusTemporaryRedirect {
				t.Fatalf("%s: %s", c2.what, r)
			}
		})
		t.Logf("%s: %v", c2.what, got)
		for k, v := range c2.want {
			if got[k] != v {
				t.Errorf("%s: calls %v, want %v", c2.what, got, c2.want)
				break
			}
		}
		if sum(got, "DynamoDB.") != c2.want["DynamoDB.BatchGetItem"]+c2.want["DynamoDB.GetItem"] || sum(got, "S3.") != 0 {
			t.Errorf("%s: calls %v, want exactly %v", c2.what, got, c2.want)
		}
	}
}
