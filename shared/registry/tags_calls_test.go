package registry_test

import (
	"maps"
	"net/http"
	"testing"

	ocispec "github.com/opencontainers/image-spec/specs-go/v1"
)

// TestTagsListCalls pins the AWS calls of tags/list on the emulators: a
// page with tags is one Query (the tags); only an empty page adds one
// GetItem of the image's catalog entry (Metadata.HasImage) to tell an
// unknown name (404) from a known image without tags, or a page past the end.
func TestTagsListCalls(t *testing.T) {
	e, c := newCountedEnv(t)
	e.pushImage("team/app", "v1", ocispec.MediaTypeImageManifest)
	e.pushImage("team/untagged", "", ocispec.MediaTypeImageManifest)
	e.pushImage("team/app-x", "", ocispec.MediaTypeImageManifest) // the catalog's next name after team/app
	for _, v := range []struct {
		what, path string
		status     int
		want       map[string]int
	}{
		{"tags", "/v2/team/app/tags/list", http.StatusOK, map[string]int{"DynamoDB.Query": 1}},
		{"a page of tags", "/v2/team/app/tags/list?n=1", http.StatusOK, map[string]int{"DynamoDB.Query": 1}},
		{"past the end", "/v2/team/app/tags/list?last=v1", http.StatusOK, map[string]int{"DynamoDB.Query": 1, "DynamoDB.GetItem": 1}},
		{"untagged image", "/v2/team/untagged/tags/list", http.StatusOK, map[string]int{"DynamoDB.Query": 1, "DynamoDB.GetItem": 1}},
		{"unknown name", "/v2/team/aap/tags/list", http.StatusNotFound, map[string]int{"DynamoDB.Query": 1, "DynamoDB.GetItem": 1}},
		{"unknown name sorting right before a known one", "/v2/team/ap/tags/list", http.StatusNotFound, map[string]int{"DynamoDB.Query": 1, "DynamoDB.GetItem": 1}},
	} {
		got := calls(c, func() {
			if r := e.do(http.MethodGet, v.path, nil); r.Status != v.status {
				t.Errorf("%s: %s, want %d", v.what, r, v.status)
			}
		})
		if !maps.Equal(got, v.want) {
			t.Errorf("%s: calls %v, want exactly %v", v.what, got, v.want)
		}
	}
}
