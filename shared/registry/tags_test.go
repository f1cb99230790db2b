package registry_test

import (
	"encoding/json"
	"fmt"
	"net/http"
	"net/url"
	"regexp"
	"slices"
	"strings"
	"sync"
	"testing"

	digest "github.com/opencontainers/go-digest"
	ocispec "github.com/opencontainers/image-spec/specs-go/v1"

	"github.com/airlock-registry/airlock/shared/registry"
	"github.com/airlock-registry/airlock/shared/upstream/upstreamtest"
)

var linkRe = regexp.MustCompile(`^<([^>]+)>; rel="next"$`)

// pages follows a listing from first through its Link headers and returns
// every page's items (field is "tags" or "repositories").
func (e *env) pages(first, field string) [][]string {
	e.t.Helper()
	var out [][]string
	next := first
	for next != "" && len(out) < 50 {
		cur := next
		r := e.do("GET", next, nil)
		wantStatus(e.t, "GET "+next, r, http.StatusOK)
		wantHeader(e.t, "GET "+next, r, "Content-Type", "application/json")
		var body map[string]json.RawMessage
		var items []string
		if err := json.Unmarshal(r.Body, &body); err != nil || json.Unmarshal(body[field], &items) != nil || items == nil {
			e.t.Fatalf("GET %s: %s: want a %q list (never null)", next, r.Body, field)
		}
		out = append(out, items)
		next = ""
		if l := r.Header.Get("Link"); l != "" {
			m := linkRe.FindStringSubmatch(l)
			if m == nil {
				e.t.Fatalf("GET %s: malformed Link %q", first, l)
			}
			u, err := url.Parse(m[1])
			if err != nil || u.Path != strings.Split(first, "?")[0] {
				e.t.Fatalf("GET %s: Link %q points elsewhere", first, l)
			}
			if m[1] == cur {
				e.t.Fatalf("GET %s: Link %q points at the same page", cur, l)
			}
			next = m[1]
		}
	}
	return out
}

func TestTagsList(t *testing.T) {
	e := newEnv(t)
	want := []string{"1.0", "1.10", "1.2", "Latest", "a", "b-c", "b_c", "latest", "v1", "z"}
	order := slices.Clone(want)
	slices.Reverse(order) // pushed out of order
	_, d := e.pushImage("app", "", ocispec.MediaTypeImageManifest)
	m := e.do("GET", "/v2/app/manifests/"+d.String(), nil)
	for _, tag := range order {
		wantStatus(t, "tag "+tag, e.putManifest("app", tag, ocispec.MediaTypeImageManifest, m.Body), http.StatusCreated)
	}
	r := e.do("GET", "/v2/app/tags/list", nil)
	var l struct {
		Name string   `json:"name"`
		Tags []string `json:"tags"`
	}
	if err := json.Unmarshal(r.Body, &l); err != nil || l.Name != "app" || !slices.Equal(l.Tags, want) {
		t.Fatalf("tags list = %s, want name app and %v", r.Body, want)
	}
	if r.Header.Get("Link") != "" {
		t.Errorf("complete list has Link %q", r.Header.Get("Link"))
	}

	tests := []struct {
		query string
		pages [][]string
	}{
		{"?n=3", [][]string{want[:3], want[3:6], want[6:9], want[9:]}},
		{"?n=5", [][]string{want[:5], want[5:]}},
		{"?n=10", [][]string{want}},
		{"?n=100", [][]string{want}},
		{"?n=4&last=Latest", [][]string{want[4:8], want[8:]}},
		{"?last=b_c", [][]string{want[7:]}},
		{"?last=b", [][]string{want[5:]}}, // last need not be a tag
		{"?last=zz", [][]string{{}}},
		{"?n=0", [][]string{{}}},
	}
	for _, tc := range tests {
		t.Run(tc.query, func(t *testing.T) {
			e := e.sub(t)
			got := e.pages("/v2/app/tags/list"+tc.query, "tags")
			if fmt.Sprint(got) != fmt.Sprint(tc.pages) {
				t.Errorf("pages = %v, want %v", got, tc.pages)
			}
		})
	}
	wantErr(t, "n=-1", e.do("GET", "/v2/app/tags/list?n=-1", nil), http.StatusBadRequest, "")
	wantErr(t, "n=x", e.do("GET", "/v2/app/tags/list?n=x", nil), http.StatusBadRequest, "")
	// The same image through the repository prefix.
	if got := e.tags("local/app"); !slices.Equal(got, want) {
		t.Errorf("local/app tags = %v", got)
	}
	if got := e.tags("other/app"); len(got) != 0 {
		t.Errorf("other/app tags = %v, want none", got)
	}
}

func TestCatalog(t *testing.T) {
	e := newEnv(t)
	names := []string{"b/x", "a", "local/c/d", "other/a", "strict/q", "a/b/c"}
	for _, n := range names {
		e.pushImage(n, "v1", ocispec.MediaTypeImageManifest)
	}
	want := []string{"local/a", "local/a/b/c", "local/b/x", "local/c/d", "other/a", "strict/q"}
	if got := e.catalog(); !slices.Equal(got, want) {
		t.Fatalf("catalog = %v, want %v", got, want)
	}
	for q, pages := range map[string][][]string{
		"?n=2":                {want[:2], want[2:4], want[4:]},
		"?n=4":                {want[:4], want[4:]},
		"?n=2&last=local/b/x": {want[3:5], want[5:]},
		"?last=other/a":       {want[5:]},
		"?n=0":                {{}},
		"?last=strict/q":      {{}},
	} {
		if got := e.pages("/v2/_catalog"+q, "repositories"); fmt.Sprint(got) != fmt.Sprint(pages) {
			t.Errorf("catalog%s = %v, want %v", q, got, pages)
		}
	}
	wantErr(t, "DELETE catalog", e.do("DELETE", "/v2/_catalog", nil), http.StatusMethodNotAllowed, registry.CodeUnsupported)
}

// TestDefaultRepository: a name whose first component is no repository lands
// in the default one, and both spellings address the same image.
func TestDefaultRepository(t *testing.T) {
	e := newEnv(t)
	body, d := e.pushImage("library/alpine", "3", ocispec.MediaTypeImageManifest)
	e.assertManifest("local/library/alpine", "3", body, ocispec.MediaTypeImageManifest)
	e.assertManifest("library/alpine", d.String(), body, ocispec.MediaTypeImageManifest)
	wantErr(t, "other repo", e.do("GET", "/v2/other/library/alpine/manifests/3", nil), http.StatusNotFound, registry.CodeManifestUnknown)
	if got := e.catalog(); !slices.Equal(got, []string{"local/library/alpine"}) {
		t.Errorf("catalog = %v", got)
	}
	// A one-component name equal to a repository name is an image in the default repository.
	e.pushImage("other", "v1", ocispec.MediaTypeImageManifest)
	if got := e.tags("local/other"); !slices.Equal(got, []string{"v1"}) {
		t.Errorf("local/other tags = %v", got)
	}

	// Without a default repository such names are unknown.
	e2 := e.withConfig("repositories:\n- {name: local, kind: hosted}\n")
	wantErr(t, "no default", e2.do("GET", "/v2/library/alpine/manifests/3", nil), http.StatusNotFound, registry.CodeNameUnknown)
	e2.assertManifest("local/library/alpine", "3", body, ocispec.MediaTypeImageManifest)
}

// manifestVariant returns a second valid manifest over the same blobs.
func manifestVariant(body []byte, n int) []byte {
	var m ocispec.Manifest
	_ = json.Unmarshal(body, &m)
	m.Annotations = map[string]string{"variant": fmt.Sprint(n)}
	return mustJSON(m)
}

func TestPolicies(t *testing.T) {
	e := newEnv(t)
	mt := ocispec.MediaTypeImageManifest
	for _, repo := range []string{"strict", "relaxed"} {
		t.Run(repo, func(t *testing.T) {
			e := e.sub(t)
			name := repo + "/app"
			a, da := e.pushImage(name, "v1", mt)
			b := manifestVariant(a, 1)
			wantStatus(t, "re-push same digest", e.putManifest(name, "v1", mt, a), http.StatusCreated)
			r := e.putManifest(name, "v1", mt, b)
			wantErr(t, "redeploy v1", r, http.StatusForbidden, registry.CodeDenied)
			if !strings.Contains(errMessage(r), "disable-redeploy") {
				t.Errorf("DENIED message %q does not name the policy", errMessage(r))
			}
			e.assertManifest(name, "v1", a, mt)
			// By digest and under a new tag is fine.
			wantStatus(t, "push b by digest", e.putManifest(name, digest.FromBytes(b).String(), mt, b), http.StatusCreated)
			wantStatus(t, "push b as v2", e.putManifest(name, "v2", mt, b), http.StatusCreated)
			// latest: only relaxed lets it move.
			wantStatus(t, "latest a", e.putManifest(name, "latest", mt, a), http.StatusCreated)
			r = e.putManifest(name, "latest", mt, b)
			if repo == "relaxed" {
				wantStatus(t, "move latest", r, http.StatusCreated)
				e.assertManifest(name, "latest", b, mt)
			} else {
				wantErr(t, "move latest", r, http.StatusForbidden, registry.CodeDenied)
				e.assertManifest(name, "latest", a, mt)
			}
			// A deleted tag may be pushed again.
			wantStatus(t, "delete v2", e.do("DELETE", "/v2/"+name+"/manifests/v2", nil), http.StatusAccepted)
			wantStatus(t, "push v2 again", e.putManifest(name, "v2", mt, a), http.StatusCreated)
			_ = da
		})
	}
	t.Run("allow", func(t *testing.T) {
		e := e.sub(t)
		a, _ := e.pushImage("app", "v1", mt)
		b := manifestVariant(a, 2)
		wantStatus(t, "redeploy allowed", e.putManifest("app", "v1", mt, b), http.StatusCreated)
		e.assertManifest("app", "v1", b, mt)
	})
}

func TestReadOnly(t *testing.T) {
	e := newEnv(t)
	// Fill "ro" through a registry where it is writable.
	rw := e.withConfig("repositories:\n- {name: ro, kind: hosted}\n")
	body, d := rw.pushImage("ro/app", "v1", ocispec.MediaTypeImageManifest)
	var m ocispec.Manifest
	_ = json.Unmarshal(body, &m)
	layer := m.Layers[0].Digest
	session := rw.startUpload("ro/app", "")

	blob := randBytes(100)
	bd := digest.FromBytes(blob).String()
	writes := []struct {
		name, method, path string
		body               []byte
	}{
		{"POST upload", "POST", "/v2/ro/app/blobs/uploads/", nil},
		{"POST monolithic", "POST", "/v2/ro/app/blobs/uploads/?digest=" + bd, blob},
		{"POST mount", "POST", "/v2/ro/app/blobs/uploads/?mount=" + layer.String() + "&from=ro/app", nil},
		{"PATCH", "PATCH", session, blob},
		{"PUT upload", "PUT", session + "?digest=" + bd, blob},
		{"DELETE upload", "DELETE", session, nil},
		{"DELETE blob", "DELETE", "/v2/ro/app/blobs/" + layer.String(), nil},
		{"PUT manifest", "PUT", "/v2/ro/app/manifests/v2", body},
		{"DELETE tag", "DELETE", "/v2/ro/app/manifests/v1", nil},
		{"DELETE manifest", "DELETE", "/v2/ro/app/manifests/" + d.String(), nil},
	}
	for _, w := range writes {
		t.Run(w.name, func(t *testing.T) {
			e := e.sub(t)
			r := e.do(w.method, w.path, w.body, "Content-Type", ocispec.MediaTypeImageManifest)
			wantErr(t, w.name, r, http.StatusForbidden, registry.CodeDenied)
		})
	}
	// Everything is still there and readable.
	e.assertManifest("ro/app", "v1", body, ocispec.MediaTypeImageManifest)
	if got := e.tags("ro/app"); !slices.Equal(got, []string{"v1"}) {
		t.Errorf("tags = %v", got)
	}
	wantStatus(t, "HEAD layer", e.do("HEAD", "/v2/ro/app/blobs/"+layer.String(), nil), http.StatusOK)
	e.assertBlobAbsent("ro/app", digest.FromBytes(blob))
	wantStatus(t, "session survives", e.do("GET", session, nil), http.StatusNoContent)
}

// TestConcurrentTagPush races manifests of different digests to one tag
// under disable-redeploy: exactly one wins.
func TestConcurrentTagPush(t *testing.T) {
	e := newEnv(t)
	mt := ocispec.MediaTypeImageManifest
	base, _ := e.pushImage("strict/race", "", mt)
	const n = 6
	bodies := make([][]byte, n)
	for i := range bodies {
		bodies[i] = manifestVariant(base, i)
	}
	res := make([]resp, n)
	var wg sync.WaitGroup
	for i := range n {
		wg.Go(func() { res[i] = e.putManifest("strict/race", "v1", mt, bodies[i]) })
	}
	wg.Wait()
	win := -1
	for i, r := range res {
		switch r.Status {
		case http.StatusCreated:
			if win >= 0 {
				t.Fatalf("two different manifests were both tagged v1 under disable-redeploy (%d and %d)", win, i)
			}
			win = i
		default:
			wantErr(t, fmt.Sprintf("loser %d", i), r, http.StatusForbidden, registry.CodeDenied)
		}
	}
	if win < 0 {
		t.Fatal("no PUT won")
	}
	e.assertManifest("strict/race", "v1", bodies[win], mt)
}

// TestTagsListUnknownName: the tags of an image that has no tag and no
// manifest answer 404 NAME_UNKNOWN naming the image and the repository (a
// typo, `crane ls host/team/aap`, is not a silent empty list); an image
// whose manifests are all untagged, or a page past the last tag, is known:
// 200 with an empty list.
func TestTagsListUnknownName(t *testing.T) {
	e := newEnv(t)
	e.pushImage("team/app", "v1", ocispec.MediaTypeImageManifest)
	for _, p := range []string{"/v2/team/aap/tags/list", "/v2/team/aap/tags/list?n=5&last=v0", "/v2/local/team/aap/tags/list", "/v2/team/ap/tags/list", "/v2/team/appp/tags/list", "/v2/other/team/app/tags/list"} {
		r := e.do("GET", p, nil)
		wantErr(t, p, r, http.StatusNotFound, registry.CodeNameUnknown)
		msg := errMessage(r)
		repoName := "local"
		if strings.HasPrefix(p, "/v2/other/") {
			repoName = "other"
		}
		image := strings.TrimSuffix(strings.TrimPrefix(strings.TrimPrefix(strings.Split(p, "?")[0], "/v2/"), repoName+"/"), "/tags/list")
		if !strings.Contains(msg, "repository name not known to registry") || !strings.Contains(msg, image) || !strings.Contains(msg, "repository "+repoName) {
			t.Errorf("GET %s: message %q, want it to say the name is not known and name image %s and repository %s", p, msg, image, repoName)
		}
	}
	// Known image: past the end and n=0 stay 200 with an empty list.
	for _, q := range []string{"?last=v1", "?last=zz", "?n=2&last=v1", "?n=0"} {
		if got := e.pages("/v2/team/app/tags/list"+q, "tags"); fmt.Sprint(got) != "[[]]" {
			t.Errorf("team/app tags%s = %v, want one empty page", q, got)
		}
	}

	// Untagged manifests make the image known.
	_, d := e.pushImage("team/untagged", "", ocispec.MediaTypeImageManifest)
	for _, q := range []string{"", "?n=3", "?last=a"} {
		if got := e.pages("/v2/team/untagged/tags/list"+q, "tags"); fmt.Sprint(got) != "[[]]" {
			t.Errorf("untagged image tags%s = %v, want one empty page", q, got)
		}
	}
	// The last tag deleted, its manifest still there: known.
	_, d2 := e.pushImage("team/once", "v1", ocispec.MediaTypeImageManifest)
	wantStatus(t, "delete tag", e.do("DELETE", "/v2/team/once/manifests/v1", nil), http.StatusAccepted)
	if got := e.pages("/v2/team/once/tags/list", "tags"); fmt.Sprint(got) != "[[]]" {
		t.Errorf("image whose tag was deleted: tags = %v, want one empty page", got)
	}
	// The last manifest deleted: unknown again.
	for name, dg := range map[string]digest.Digest{"team/untagged": d, "team/once": d2} {
		wantStatus(t, "delete "+name, e.do("DELETE", "/v2/"+name+"/manifests/"+dg.String(), nil), http.StatusAccepted)
		wantErr(t, name+" after its last manifest went", e.do("GET", "/v2/"+name+"/tags/list", nil), http.StatusNotFound, registry.CodeNameUnknown)
	}
	// Names that neighbour a known one in the catalog's order are not it.
	e.pushImage("team/app-x", "", ocispec.MediaTypeImageManifest)
	e.pushImage("team/ap", "", ocispec.MediaTypeImageManifest)
	wantErr(t, "team/apo", e.do("GET", "/v2/team/apo/tags/list", nil), http.StatusNotFound, registry.CodeNameUnknown)
	wantErr(t, "team/app-", e.do("GET", "/v2/team/app-y/tags/list", nil), http.StatusNotFound, registry.CodeNameUnknown)
	if got := e.pages("/v2/team/ap/tags/list", "tags"); fmt.Sprint(got) != "[[]]" {
		t.Errorf("team/ap tags = %v, want one empty page", got)
	}
}

// TestTagsListUnknownNameGroupProxy: through a group the name is unknown
// only when no member knows it (the proxy member's remote answering 404
// included); a proxy maps its remote's 404 to NAME_UNKNOWN, and a cached
// image listed from the cache while the remote is down stays listed.
func TestTagsListUnknownNameGroupProxy(t *testing.T) {
	up := upstreamtest.New(t)
	remote := up.PushImage(t, "team/remote", "r1", 1, 10)
	e := newGroupEnv(t, up)
	src := upstreamtest.New(t)
	if err := e.pushVia("local/team/untagged", "tmp", src.PushImage(t, "x", "tmp", 1, 10)); err != nil {
		t.Fatal(err)
	}
	if r := e.do(http.MethodDelete, "/v2/local/team/untagged/manifests/tmp"); r.Status != http.StatusAccepted {
		t.Fatalf("delete tag: %s", r)
	}
	tagsOf := func(p string) string {
		t.Helper()
		r := e.do(http.MethodGet, p)
		var doc struct{ Tags []string }
		if r.Status != http.StatusOK || json.Unmarshal(r.Body, &doc) != nil || doc.Tags == nil {
			t.Errorf("GET %s: %s, want 200 and a list", p, r)
		}
		return strings.Join(doc.Tags, ",")
	}
	for _, g := range []string{"docker", "hubfirst"} {
		p := "/v2/" + g + "/team/aap/tags/list"
		r := e.do(http.MethodGet, p)
		wantErr(t, p, r, http.StatusNotFound, registry.CodeNameUnknown)
		if msg := errMessage(r); !strings.Contains(msg, "repository name not known to registry") || !strings.Contains(msg, "team/aap") || !strings.Contains(msg, g) {
			t.Errorf("GET %s: message %q, want it to name team/aap and group %s", p, msg, g)
		}
		if got := tagsOf("/v2/" + g + "/team/untagged/tags/list"); got != "" {
			t.Errorf("%s: untagged hosted image: tags %q, want none", g, got)
		}
		if got := tagsOf("/v2/" + g + "/team/remote/tags/list"); got != "r1" {
			t.Errorf("%s: remote image: tags %q, want r1", g, got)
		}
		if got := tagsOf("/v2/" + g + "/team/remote/tags/list?last=r1"); got != "" {
			t.Errorf("%s: remote image past the end: tags %q, want none", g, got)
		}
	}
	// The proxy alone: the remote's 404 is NAME_UNKNOWN.
	wantErr(t, "hub/team/aap", e.do(http.MethodGet, "/v2/hub/team/aap/tags/list"), http.StatusNotFound, registry.CodeNameUnknown)

	// Remote down: a cached image is still listed from the cache, never 404.
	e.pull("hub/team/remote", "r1", remote)
	up.SetFault(upstreamtest.FaultDown)
	for _, p := range []string{"/v2/hub/team/remote/tags/list", "/v2/docker/team/remote/tags/list"} {
		if got := tagsOf(p); got != "r1" {
			t.Errorf("%s with the remote down: tags %q, want the cached r1", p, got)
		}
	}
}
