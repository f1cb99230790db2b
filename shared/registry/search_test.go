package registry_test

import (
	"encoding/json"
	"net/http"
	"net/http/httptest"
	"strings"
	"sync/atomic"
	"testing"

	"github.com/airlock-registry/airlock/shared/registry"
	"github.com/airlock-registry/airlock/shared/upstream/upstreamtest"
)

type searchDoc struct {
	NumResults int    `json:"num_results"`
	Query      string `json:"query"`
	Page       int    `json:"page"`
	NumPages   int    `json:"num_pages"`
	PageSize   int    `json:"page_size"`
	Results    []struct {
		Name        string `json:"name"`
		Description string `json:"description"`
		StarCount   int    `json:"star_count"`
		IsOfficial  bool   `json:"is_official"`
		IsAutomated bool   `json:"is_automated"`
	} `json:"results"`
}

// TestSearch: docker search finds hosted images and proxy caches by
// substring, merges a Docker-Hub-like index (cached; its failure leaves the
// local results), pages, and refuses bad n/page; a deleted image is gone.
func TestSearch(t *testing.T) {
	var asked atomic.Int32
	var fail atomic.Bool
	index := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		asked.Add(1)
		if fail.Load() || r.URL.Path != "/v1/search" {
			http.Error(w, "down", http.StatusBadGateway)
			return
		}
		_, _ = w.Write([]byte(`{"num_results":2,"results":[{"name":"redis","description":"official redis","star_count":9000,"is_official":true},{"name":"bitnami/redis","star_count":5}]}`))
	}))
	t.Cleanup(index.Close)
	up := upstreamtest.New(t)
	cached := up.PushImage(t, "library/redis-cached", "1", 1, 10)
	e := newProxyEnv(t, up, "", func(d *registry.Deps) {
		d.Config = mustConfig(t, sprintf(`
default: docker
repositories:
- {name: local, kind: hosted}
- {name: hub, kind: proxy, remote: %q, searchIndex: %q}
- {name: docker, kind: group, members: [local, hub], writeMember: local}
`, up.URL, index.URL))
	})
	src := upstreamtest.New(t)
	for _, n := range []string{"team/redis-tools", "team/postgres"} {
		if err := e.pushVia(n, "1", src.PushImage(t, "x", "1", 1, 10)); err != nil {
			t.Fatal(err)
		}
	}
	e.pull("hub/library/redis-cached", "1", cached)

	search := func(q string) (searchDoc, resp) {
		r := e.do(http.MethodGet, "/v1/search?"+q)
		var doc searchDoc
		if r.Status == http.StatusOK {
			if err := json.Unmarshal(r.Body, &doc); err != nil {
				t.Fatalf("search %s: %v", q, err)
			}
		}
		return doc, r
	}
	doc, r := search("q=redis")
	var names []string
	for _, x := range doc.Results {
		names = append(names, x.Name)
	}
	// Not a Docker Hub remote: the index's names are kept (no library/).
	want := "hub/library/redis-cached,local/team/redis-tools,hub/redis,hub/bitnami/redis"
	if r.Status != http.StatusOK || strings.Join(names, ",") != want || doc.NumResults != 4 || doc.Query != "redis" || doc.Page != 1 || doc.PageSize != 25 || doc.NumPages != 1 {
		t.Fatalf("search redis: %s: %+v, want %s", r, doc, want)
	}
	if !doc.Results[2].IsOfficial || doc.Results[2].StarCount != 9000 {
		t.Errorf("index fields lost: %+v", doc.Results[2])
	}
	// Cached: the index is not asked again; its failure leaves the local results.
	n := asked.Load()
	search("q=redis")
	if asked.Load() != n {
		t.Errorf("the index was asked again within its cache time")
	}
	fail.Store(true)
	if doc, _ := search("q=postgres"); doc.NumResults != 1 || doc.Results[0].Name != "local/team/postgres" {
		t.Errorf("search with the index down: %+v", doc)
	}
	// Paging.
	if doc, _ := search("q=redis&n=3&page=2"); doc.NumResults != 4 || len(doc.Results) != 1 || doc.NumPages != 2 || doc.Results[0].Name != "hub/bitnami/redis" {
		t.Errorf("page 2 of 3: %+v", doc)
	}
	if doc, _ := search("q=redis&n=500"); doc.PageSize != 100 {
		t.Errorf("n=500: page_size %d, want the cap 100", doc.PageSize)
	}
	for _, q := range []string{"q=x&n=0", "q=x&n=abc", "q=x&page=0", "q=x&page=-1", "q=" + strings.Repeat("a", 300)} {
		if _, r := search(q); r.Status != http.StatusBadRequest {
			t.Errorf("search %.40s: %s, want 400", q, r)
		}
	}
	// Catalog hygiene: an image whose last manifest is deleted is not found.
	pg := e.do(http.MethodGet, "/v2/local/team/postgres/manifests/1", "Accept", "*/*")
	if r := e.do(http.MethodDelete, "/v2/local/team/postgres/manifests/"+pg.Header.Get("Docker-Content-Digest")); r.Status != http.StatusAccepted {
		t.Fatalf("delete: %s", r)
	}
	if doc, _ := search("q=postgres"); doc.NumResults != 0 {
		t.Errorf("a deleted image is still found: %+v", doc)
	}
	if r := e.do(http.MethodGet, "/v1/_ping"); r.Status != http.StatusOK {
		t.Errorf("/v1/_ping: %s", r)
	}
}
