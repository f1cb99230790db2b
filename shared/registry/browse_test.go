package registry_test

import (
	"context"
	"encoding/json"
	"fmt"
	"net/http"
	"net/http/httptest"
	"net/url"
	"slices"
	"strings"
	"testing"
	"time"

	digest "github.com/opencontainers/go-digest"
	"github.com/opencontainers/image-spec/specs-go"
	ocispec "github.com/opencontainers/image-spec/specs-go/v1"

	"github.com/airlock-registry/airlock/shared/auth"
	"github.com/airlock-registry/airlock/shared/registry"
	"github.com/airlock-registry/airlock/shared/storage/memstore"
	"github.com/airlock-registry/airlock/shared/ui"
	"github.com/airlock-registry/airlock/shared/upstream/upstreamtest"
)

// browseRepos are the repositories of the browse tests (%s: the proxy's
// upstream); browseAuth is the auth section of the viewing registry.
const (
	browseRepos = `
default: local
repositories:
- {name: local, kind: hosted}
- {name: pub, kind: hosted, anonymousPull: true}
- {name: hub, kind: proxy, remote: %q, searchIndex: none}
- {name: docker, kind: group, members: [local, pub, hub], writeMember: local}
`
	browseAuth = `
auth:
  roles:
  - name: team-a
    privileges:
    - repositories: [local, docker]
      selector: 'path =^ "/v2/team-a/"'
      actions: [browse]
  - name: reader
    privileges:
    - repositories: ['*']
      actions: [read]
`
)

// browseEnv is content pushed through a registry without auth (push) and
// viewed through one with auth over the same memstore (view).
type browseEnv struct {
	push *env
	view *authEnv
	up   *upstreamtest.Upstream
}

func newBrowseEnv(t *testing.T) *browseEnv {
	t.Helper()
	up := upstreamtest.New(t)
	st := memstore.New()
	t.Cleanup(func() { st.Close() })
	repos := sprintf(browseRepos, up.URL)
	p := &env{t: t, meta: st, blobs: st}
	p.deps = registry.Deps{Meta: st, Blobs: st, Config: mustConfig(t, repos)}
	p.serve()
	v := &authEnv{t: t, clock: &clock{now: time.Now()}}
	reg, err := registry.New(registry.Deps{Meta: st, Blobs: st, Config: mustConfig(t, repos+browseAuth), AuthOptions: auth.Options{BcryptCost: 4}})
	if err != nil {
		t.Fatal(err)
	}
	v.reg = reg
	v.srv = httptest.NewServer(reg)
	t.Cleanup(v.srv.Close)
	v.host = strings.TrimPrefix(v.srv.URL, "http://")
	ctx := context.Background()
	if _, err := reg.Auth().Users.Bootstrap(ctx, "admin", "admin-password-1234"); err != nil {
		t.Fatal(err)
	}
	for _, u := range []struct{ name, role string }{{"alice", "team-a"}, {"rita", "reader"}} {
		if err := reg.Auth().Users.CreateUser(ctx, u.name, u.name+"-password-1234", []string{u.role}); err != nil {
			t.Fatal(err)
		}
	}
	return &browseEnv{push: p, view: v, up: up}
}

// get calls a browse endpoint as user ("" anonymous) and decodes a 200 into out.
func (b *browseEnv) get(user, path string, out any) resp {
	b.view.t.Helper()
	tok := ""
	if user != "" {
		var r resp
		if tok, r = b.view.token(user); tok == "" {
			b.view.t.Fatalf("token for %s: %s", user, r)
		}
	}
	r := b.view.req(http.MethodGet, "/airlock/api/browse/"+path, tok)
	if r.Status == http.StatusOK && out != nil {
		if err := json.Unmarshal(r.Body, out); err != nil {
			b.view.t.Fatalf("GET %s: %v: %s", path, err, r.Body)
		}
	}
	return r
}

type browseImages struct {
	Repository string `json:"repository"`
	Images     []struct {
		Name string `json:"name"`
	} `json:"images"`
	Next string `json:"next"`
}

// allImages pages through the images of repo n at a time.
func (b *browseEnv) allImages(user, repo string, n int) (names []string, pages int) {
	b.view.t.Helper()
	last := ""
	for {
		var res browseImages
		q := url.Values{"repo": {repo}, "n": {fmt.Sprint(n)}, "last": {last}}
		if r := b.get(user, "images?"+q.Encode(), &res); r.Status != http.StatusOK {
			b.view.t.Fatalf("images of %s as %q: %s", repo, user, r)
		}
		pages++
		if len(res.Images) > n {
			b.view.t.Fatalf("images of %s: %d on a page of %d", repo, len(res.Images), n)
		}
		for _, i := range res.Images {
			names = append(names, i.Name)
		}
		if res.Next == "" {
			return names, pages
		}
		if pages > 50 {
			b.view.t.Fatalf("images of %s: more than 50 pages", repo)
		}
		last = res.Next
	}
}

type browseTag struct {
	Tag        string             `json:"tag"`
	Digest     string             `json:"digest"`
	MediaType  string             `json:"mediaType"`
	Size       int64              `json:"size"`
	TotalSize  int64              `json:"totalSize"`
	Incomplete bool               `json:"incomplete"`
	Pushed     time.Time          `json:"pushed"`
	Platforms  []ocispec.Platform `json:"platforms"`
	Member     string             `json:"member"`
	MemberKind string             `json:"memberKind"`
}

type browseTags struct {
	Kind string      `json:"kind"`
	Tags []browseTag `json:"tags"`
	Next string      `json:"next"`
}

// totalOf is what the tags page must report for an image manifest body.
func totalOf(t *testing.T, body []byte) int64 {
	var m ocispec.Manifest
	if err := json.Unmarshal(body, &m); err != nil {
		t.Fatal(err)
	}
	n := int64(len(body)) + m.Config.Size
	for _, l := range m.Layers {
		n += l.Size
	}
	return n
}

func TestBrowseImagesPagingAndAuth(t *testing.T) {
	b := newBrowseEnv(t)
	local := []string{"other/y", "team-a/app1", "team-a/app2", "team-a/app3", "team-a/app4", "team-a/app5", "team-b/x"}
	for _, n := range local {
		b.push.pushImage("local/"+n, "1", ocispec.MediaTypeImageManifest)
	}
	b.push.pushImage("pub/team-a/app1", "1", ocispec.MediaTypeImageManifest) // also in local: the group lists it once
	b.push.pushImage("pub/tools", "1", ocispec.MediaTypeImageManifest)
	b.push.pushImage("localx/not-a-repo", "1", ocispec.MediaTypeImageManifest) // the default repository takes it: local/localx/...
	all := slices.Sorted(slices.Values(append(slices.Clone(local), "localx/not-a-repo")))

	for _, c := range []struct {
		user, repo string
		n          int
		want       []string
		pages      int
	}{
		{"admin", "local", 2, all, 4},
		{"admin", "local", 200, all, 1},
		{"rita", "local", 3, all, 3},
		{"alice", "local", 2, []string{"team-a/app1", "team-a/app2", "team-a/app3", "team-a/app4", "team-a/app5"}, 3},
		{"alice", "docker", 2, []string{"team-a/app1", "team-a/app2", "team-a/app3", "team-a/app4", "team-a/app5"}, 3},
		{"admin", "docker", 3, slices.Sorted(slices.Values(append(slices.Clone(all), "tools"))), 3},
		{"", "pub", 1, []string{"team-a/app1", "tools"}, 2},
		{"alice", "pub", 5, []string{"team-a/app1", "tools"}, 1},
		{"admin", "hub", 5, nil, 1},
	} {
		got, pages := b.allImages(c.user, c.repo, c.n)
		if !slices.Equal(got, c.want) || pages != c.pages {
			t.Errorf("images of %s as %q, %d a page: %v in %d pages, want %v in %d", c.repo, c.user, c.n, got, pages, c.want, c.pages)
		}
	}

	// Repositories: what each caller may see, members filtered alike.
	type repoList struct {
		Repositories []struct {
			Name    string   `json:"name"`
			Kind    string   `json:"kind"`
			Policy  string   `json:"policy"`
			Members []string `json:"members"`
			Remote  string   `json:"remote"`
			Health  *struct {
				Blocked bool `json:"blocked"`
			} `json:"health"`
		} `json:"repositories"`
	}
	for _, c := range []struct {
		user    string
		want    []string
		members []string // of docker, when listed
	}{
		{"", []string{"pub"}, nil},
		{"alice", []string{"local", "pub", "docker"}, []string{"local", "pub"}},
		{"rita", []string{"local", "pub", "hub", "docker"}, []string{"local", "pub", "hub"}},
		{"admin", []string{"local", "pub", "hub", "docker"}, []string{"local", "pub", "hub"}},
	} {
		var rl repoList
		if r := b.get(c.user, "repositories", &rl); r.Status != http.StatusOK {
			t.Fatalf("repositories as %q: %s", c.user, r)
		}
		var names []string
		for _, r := range rl.Repositories {
			names = append(names, r.Name)
			switch r.Name {
			case "docker":
				if !slices.Equal(r.Members, c.members) {
					t.Errorf("repositories as %q: docker's members %v, want %v", c.user, r.Members, c.members)
				}
			case "hub":
				if r.Kind != "proxy" || r.Remote != b.up.URL || r.Health == nil || r.Health.Blocked {
					t.Errorf("repositories as %q: hub %+v, want a proxy of %s, healthy", c.user, r, b.up.URL)
				}
			case "local":
				if r.Policy != "allow" {
					t.Errorf("local's policy %q, want allow", r.Policy)
				}
			}
		}
		if !slices.Equal(names, c.want) {
			t.Errorf("repositories as %q: %v, want %v", c.user, names, c.want)
		}
	}

	// What a caller may not see answers like what does not exist.
	for _, c := range []struct {
		user, path string
		status     int
		code       registry.Code
	}{
		{"alice", "images?repo=hub", http.StatusNotFound, registry.CodeNameUnknown},
		{"alice", "images?repo=nothere", http.StatusNotFound, registry.CodeNameUnknown},
		{"", "images?repo=local", http.StatusUnauthorized, registry.CodeUnauthorized},
		{"alice", "tags?repo=local&image=team-b/x", http.StatusNotFound, registry.CodeNameUnknown},
		{"alice", "tags?repo=local&image=team-b/nothere", http.StatusNotFound, registry.CodeNameUnknown},
		{"alice", "manifest?repo=local&image=other/y&ref=1", http.StatusNotFound, registry.CodeNameUnknown},
		{"", "tags?repo=local&image=team-a/app1", http.StatusUnauthorized, registry.CodeUnauthorized},
		{"", "tags?repo=pub&image=tools", http.StatusOK, ""},
		{"alice", "tags?repo=local&image=team-a/app1", http.StatusOK, ""},
	} {
		r := b.get(c.user, c.path, nil)
		if r.Status != c.status || c.code != "" && errCode(r) != c.code {
			t.Errorf("GET %s as %q: %s, want %d %s", c.path, c.user, r, c.status, c.code)
		}
		if r.Status == http.StatusNotFound && c.user != "" && !strings.Contains(errMessage(r), "or you may not browse it") {
			t.Errorf("GET %s as %q: message %q does not say the caller may lack the privilege", c.path, c.user, errMessage(r))
		}
	}
	if r := b.view.req(http.MethodGet, "/airlock/api/browse/repositories", "not-a-token"); r.Status != http.StatusUnauthorized {
		t.Errorf("a bad bearer token: %s, want 401", r)
	}

	// Search: substring, what the caller may see, paged.
	type found struct {
		Total   int `json:"total"`
		Pages   int `json:"pages"`
		Results []struct {
			Name       string `json:"name"`
			Repository string `json:"repository"`
			Image      string `json:"image"`
		} `json:"results"`
	}
	for _, c := range []struct {
		user, q string
		n, page int
		want    []string
		total   int
	}{
		{"alice", "APP", 25, 1, []string{"local/team-a/app1", "local/team-a/app2", "local/team-a/app3", "local/team-a/app4", "local/team-a/app5", "pub/team-a/app1"}, 6},
		{"alice", "app", 4, 2, []string{"local/team-a/app5", "pub/team-a/app1"}, 6},
		{"", "app", 25, 1, []string{"pub/team-a/app1"}, 1},
		{"admin", "team-b", 25, 1, []string{"local/team-b/x"}, 1},
		{"alice", "team-b", 25, 1, nil, 0},
		{"rita", "zzz", 25, 1, nil, 0},
	} {
		var f found
		q := url.Values{"q": {c.q}, "n": {fmt.Sprint(c.n)}, "page": {fmt.Sprint(c.page)}}
		if r := b.get(c.user, "search?"+q.Encode(), &f); r.Status != http.StatusOK {
			t.Fatalf("search %s as %q: %s", c.q, c.user, r)
		}
		var names []string
		for _, r := range f.Results {
			names = append(names, r.Name)
			if r.Repository+"/"+r.Image != r.Name {
				t.Errorf("search result %+v: repository and image do not make the name", r)
			}
		}
		if !slices.Equal(names, c.want) || f.Total != c.total {
			t.Errorf("search %q as %q (n %d, page %d): %v of %d, want %v of %d", c.q, c.user, c.n, c.page, names, f.Total, c.want, c.total)
		}
	}
}

func TestBrowseTagsAndManifest(t *testing.T) {
	b := newBrowseEnv(t)
	e := b.push
	bodies := map[string][]byte{}
	digests := map[string]digest.Digest{}
	for _, tag := range []string{"1", "2", "3", "4", "5"} {
		bodies[tag], digests[tag] = e.pushImage("local/team-a/app", tag, ocispec.MediaTypeImageManifest)
	}
	// Tags come back in pages, each with its digest and sizes.
	var got []browseTag
	last, pages := "", 0
	for {
		var res browseTags
		if r := b.get("alice", "tags?repo=local&image=team-a/app&n=2&last="+last, &res); r.Status != http.StatusOK {
			t.Fatalf("tags: %s", r)
		}
		got, pages = append(got, res.Tags...), pages+1
		if res.Next == "" || pages > 10 {
			break
		}
		last = res.Next
	}
	if pages != 3 || len(got) != 5 {
		t.Fatalf("tags in pages of 2: %d tags in %d pages, want 5 in 3: %+v", len(got), pages, got)
	}
	for i, tg := range got {
		tag := fmt.Sprint(i + 1)
		if tg.Tag != tag || tg.Digest != digests[tag].String() || tg.Size != int64(len(bodies[tag])) || tg.TotalSize != totalOf(t, bodies[tag]) ||
			tg.MediaType != ocispec.MediaTypeImageManifest || tg.Pushed.IsZero() || tg.Member != "" {
			t.Errorf("tag %s: %+v, want digest %s, size %d, total %d", tag, tg, digests[tag], len(bodies[tag]), totalOf(t, bodies[tag]))
		}
	}

	// An index: its platforms, and a total counting each child and blob once.
	cfgA, cfgB, layer := []byte(`{"architecture":"amd64","os":"linux","created":"2026-01-02T03:04:05Z"}`), []byte(`{"architecture":"arm64","os":"linux"}`), randBytes(3000)
	for _, blob := range [][]byte{cfgA, cfgB, layer} {
		e.pushBlob("local/team-a/multi", blob)
	}
	mA := manifestJSON(ocispec.MediaTypeImageManifest, desc(ocispec.MediaTypeImageConfig, cfgA), desc(ocispec.MediaTypeImageLayerGzip, layer))
	mB := manifestJSON(ocispec.MediaTypeImageManifest, desc(ocispec.MediaTypeImageConfig, cfgB), desc(ocispec.MediaTypeImageLayerGzip, layer))
	for _, m := range [][]byte{mA, mB} {
		wantStatus(t, "child", e.putManifest("local/team-a/multi", digest.FromBytes(m).String(), ocispec.MediaTypeImageManifest, m), http.StatusCreated)
	}
	dA, dB := desc(ocispec.MediaTypeImageManifest, mA), desc(ocispec.MediaTypeImageManifest, mB)
	dA.Platform, dB.Platform = &ocispec.Platform{OS: "linux", Architecture: "amd64"}, &ocispec.Platform{OS: "linux", Architecture: "arm64", Variant: "v8"}
	idx := indexJSON(ocispec.MediaTypeImageIndex, dA, dB)
	wantStatus(t, "index", e.putManifest("local/team-a/multi", "latest", ocispec.MediaTypeImageIndex, idx), http.StatusCreated)
	// A signature referring to child A, and the same image in pub (the group shows local's).
	sig := mustJSON(ocispec.Manifest{Versioned: specsV2, MediaType: ocispec.MediaTypeImageManifest, ArtifactType: "application/vnd.dev.cosign.artifact.sig.v1+json",
		Config: ocispec.DescriptorEmptyJSON, Layers: []ocispec.Descriptor{desc("application/octet-stream", layer)}, Subject: &dA,
		Annotations: map[string]string{"note": "<b>signed</b>"}})
	e.pushBlob("local/team-a/multi", ocispec.DescriptorEmptyJSON.Data)
	wantStatus(t, "signature", e.putManifest("local/team-a/multi", digest.FromBytes(sig).String(), ocispec.MediaTypeImageManifest, sig), http.StatusCreated)

	var tags browseTags
	if r := b.get("alice", "tags?repo=local&image=team-a/multi", &tags); r.Status != http.StatusOK || len(tags.Tags) != 1 {
		t.Fatalf("tags of multi: %s", r)
	}
	ix := tags.Tags[0]
	wantTotal := int64(len(idx)+len(mA)+len(mB)+len(cfgA)+len(cfgB)) + int64(len(layer))
	wantPlatforms := []ocispec.Platform{*dA.Platform, *dB.Platform}
	if ix.Digest != digest.FromBytes(idx).String() || ix.TotalSize != wantTotal || ix.Incomplete || len(ix.Platforms) != 2 ||
		ix.Platforms[0].Architecture != "amd64" || ix.Platforms[1].Variant != "v8" {
		t.Errorf("index tag: %+v, want total %d, platforms %v", ix, wantTotal, wantPlatforms)
	}

	type manifestView struct {
		Digest    string            `json:"digest"`
		MediaType string            `json:"mediaType"`
		TotalSize int64             `json:"totalSize"`
		Member    string            `json:"member"`
		Subject   string            `json:"subject"`
		Annot     map[string]string `json:"annotations"`
		Config    *struct {
			Digest       string     `json:"digest"`
			Created      *time.Time `json:"created"`
			Architecture string     `json:"architecture"`
		} `json:"config"`
		Layers    []ocispec.Descriptor `json:"layers"`
		Manifests []struct {
			Digest    string            `json:"digest"`
			Platform  *ocispec.Platform `json:"platform"`
			Stored    bool              `json:"stored"`
			TotalSize int64             `json:"totalSize"`
		} `json:"manifests"`
		Referrers []ocispec.Descriptor `json:"referrers"`
		Platform  *ocispec.Platform    `json:"platform"`
		Index     string               `json:"index"`
	}
	var mv manifestView
	if r := b.get("alice", "manifest?repo=local&image=team-a/multi&ref=latest", &mv); r.Status != http.StatusOK {
		t.Fatalf("manifest of the index: %s", r)
	}
	if len(mv.Manifests) != 2 || !mv.Manifests[0].Stored || mv.Manifests[0].TotalSize != int64(len(mA)+len(cfgA)+len(layer)) || mv.Manifests[1].Platform.Variant != "v8" {
		t.Errorf("index's manifests: %+v", mv.Manifests)
	}
	// Child A by digest, through the group: config read, layers, the signature as referrer.
	if r := b.get("alice", "manifest?repo=docker&image=team-a/multi&ref="+dA.Digest.String(), &mv); r.Status != http.StatusOK {
		t.Fatalf("manifest of child A through the group: %s", r)
	}
	if mv.Digest != dA.Digest.String() || mv.Member != "local" || mv.Config == nil || mv.Config.Architecture != "amd64" || mv.Config.Created == nil ||
		!mv.Config.Created.Equal(time.Date(2026, 1, 2, 3, 4, 5, 0, time.UTC)) || len(mv.Layers) != 1 || mv.Layers[0].Size != int64(len(layer)) {
		t.Errorf("child A: %+v", mv)
	}
	if len(mv.Referrers) != 1 || mv.Referrers[0].Digest != digest.FromBytes(sig) || mv.Referrers[0].Annotations["note"] != "<b>signed</b>" {
		t.Errorf("child A's referrers: %+v, want the signature %s", mv.Referrers, digest.FromBytes(sig))
	}
	if r := b.get("alice", "manifest?repo=local&image=team-a/multi&ref="+digest.FromBytes(sig).String(), &mv); r.Status != http.StatusOK || mv.Subject != dA.Digest.String() {
		t.Errorf("the signature's subject: %q (%s), want %s", mv.Subject, r, dA.Digest)
	}

	// One platform of the index (?index=): the index's platform for it
	// (child B's config has no variant; the index says v8), else the config's.
	idxDigest := digest.FromBytes(idx).String()
	for _, c := range []struct {
		path      string
		wantPlat  ocispec.Platform
		wantIndex string
	}{
		{"manifest?repo=local&image=team-a/multi&ref=" + dB.Digest.String() + "&index=" + idxDigest, *dB.Platform, idxDigest},
		{"manifest?repo=docker&image=team-a/multi&ref=" + dB.Digest.String() + "&index=" + idxDigest, *dB.Platform, idxDigest},
		{"manifest?repo=local&image=team-a/multi&ref=" + dB.Digest.String(), ocispec.Platform{OS: "linux", Architecture: "arm64"}, ""},
		{"manifest?repo=local&image=team-a/multi&ref=" + dA.Digest.String(), ocispec.Platform{OS: "linux", Architecture: "amd64"}, ""},
	} {
		mv = manifestView{}
		r := b.get("alice", c.path, &mv)
		if r.Status != http.StatusOK || mv.Platform == nil || mv.Platform.OS != c.wantPlat.OS || mv.Platform.Architecture != c.wantPlat.Architecture ||
			mv.Platform.Variant != c.wantPlat.Variant || mv.Index != c.wantIndex || mv.Digest != strings.Split(strings.Split(c.path, "ref=")[1], "&")[0] {
			t.Errorf("GET %s: %s %+v, want platform %+v, index %q", c.path, r, mv, c.wantPlat, c.wantIndex)
		}
	}
	mv = manifestView{}
	if r := b.get("alice", "manifest?repo=local&image=team-a/multi&ref=latest", &mv); r.Status != http.StatusOK || mv.Platform != nil || mv.Index != "" {
		t.Errorf("the index itself: %s, platform %+v, index %q; want neither", r, mv.Platform, mv.Index)
	}
	for _, c := range []struct {
		query  string
		status int
		code   registry.Code
		msg    string
	}{
		{"ref=" + dB.Digest.String() + "&index=latest", http.StatusBadRequest, registry.CodeDigestInvalid, "give the digest of the index"},
		{"ref=latest&index=" + idxDigest, http.StatusBadRequest, registry.CodeDigestInvalid, "the ref is the digest of one of the index's manifests"},
		{"ref=" + dB.Digest.String() + "&index=" + digest.FromString("no index").String(), http.StatusNotFound, registry.CodeManifestUnknown, "has no stored index"},
		{"ref=" + digest.FromBytes(sig).String() + "&index=" + idxDigest, http.StatusNotFound, registry.CodeManifestUnknown, "does not list manifest"},
		{"ref=" + dB.Digest.String() + "&index=" + dA.Digest.String(), http.StatusNotFound, registry.CodeManifestUnknown, "does not list manifest"},
	} {
		r := b.get("alice", "manifest?repo=local&image=team-a/multi&"+c.query, nil)
		if r.Status != c.status || errCode(r) != c.code || !strings.Contains(errMessage(r), c.msg) {
			t.Errorf("manifest with %s: %s, want %d %s %q", c.query, r, c.status, c.code, c.msg)
		}
	}
	// ?index= reveals nothing of an image the caller may not see.
	if r := b.get("alice", "manifest?repo=local&image=other/y&ref="+dB.Digest.String()+"&index="+idxDigest, nil); r.Status != http.StatusNotFound || errCode(r) != registry.CodeNameUnknown {
		t.Errorf("?index= on an image alice may not browse: %s, want 404 NAME_UNKNOWN", r)
	}

	// A group merges its members' tags; the first member holding a tag serves it.
	inPub, _ := e.pushImage("pub/team-a/app", "1", ocispec.MediaTypeImageManifest)
	e.pushImage("pub/team-a/app", "9", ocispec.MediaTypeImageManifest)
	var gt browseTags
	if r := b.get("alice", "tags?repo=docker&image=team-a/app&n=100", &gt); r.Status != http.StatusOK {
		t.Fatalf("group tags: %s", r)
	}
	var names []string
	for _, tg := range gt.Tags {
		names = append(names, tg.Tag+"@"+tg.Member)
	}
	if want := []string{"1@local", "2@local", "3@local", "4@local", "5@local", "9@pub"}; gt.Kind != "group" || !slices.Equal(names, want) {
		t.Errorf("group tags: %v (kind %s), want %v", names, gt.Kind, want)
	}
	if gt.Tags[0].Digest == digest.FromBytes(inPub).String() {
		t.Errorf("group tag 1 shows pub's manifest; local comes first")
	}

	// A proxy's cached tag (pulled once through it), with the member's kind.
	img := b.up.PushImage(t, "library/alpine", "3", 1, 500)
	wantStatus(t, "pull through hub", e.do(http.MethodGet, "/v2/hub/library/alpine/manifests/3", nil, "Accept", string(img.MediaType)), http.StatusOK)
	if r := b.get("rita", "tags?repo=docker&image=library/alpine", &gt); r.Status != http.StatusOK || len(gt.Tags) != 1 ||
		gt.Tags[0].Digest != img.Digest || gt.Tags[0].MemberKind != "proxy" || gt.Tags[0].TotalSize != totalOf(t, img.Manifest) {
		t.Errorf("group tags of a cached proxy image: %s %+v, want %s from a proxy", r, gt.Tags, img.Digest)
	}

	// Bad input.
	for _, c := range []struct {
		path   string
		status int
		code   registry.Code
	}{
		{"tags?image=team-a/app", http.StatusBadRequest, registry.CodeNameInvalid},
		{"tags?repo=local", http.StatusBadRequest, registry.CodeNameInvalid},
		{"tags?repo=local&image=Team-A/App", http.StatusBadRequest, registry.CodeNameInvalid},
		{"tags?repo=local&image=team-a/app&n=0", http.StatusBadRequest, registry.CodeUnsupported},
		{"tags?repo=local&image=team-a/app&n=x", http.StatusBadRequest, registry.CodeUnsupported},
		{"tags?repo=local&image=team-a/app&last=" + url.QueryEscape("a/b"), http.StatusBadRequest, registry.CodeUnsupported},
		{"images?repo=local&last=" + strings.Repeat("a", 300), http.StatusBadRequest, registry.CodeUnsupported},
		{"manifest?repo=local&image=team-a/app&ref=" + url.QueryEscape("sha256:xyz"), http.StatusBadRequest, registry.CodeManifestInvalid},
		{"manifest?repo=local&image=team-a/app&ref=nope", http.StatusNotFound, registry.CodeManifestUnknown},
		{"search?q=" + strings.Repeat("a", 300), http.StatusBadRequest, registry.CodeUnsupported},
		{"nothing", http.StatusNotFound, registry.CodeNameUnknown},
	} {
		r := b.get("alice", c.path, nil)
		if r.Status != c.status || errCode(r) != c.code {
			t.Errorf("GET %s: %s, want %d %s", c.path, r, c.status, c.code)
		}
	}
	if r := b.view.req(http.MethodPost, "/airlock/api/browse/tags?repo=local&image=team-a/app", ""); r.Status != http.StatusMethodNotAllowed {
		t.Errorf("POST to a browse endpoint: %s, want 405", r)
	}
}

// TestBrowseMeAndHeaders checks who the caller is and the headers of the
// browse answers (an admin endpoint answers without them and needs the admin role).
func TestBrowseMeAndHeaders(t *testing.T) {
	b := newBrowseEnv(t)
	for _, c := range []struct {
		user string
		want string
	}{
		{"", `{"auth":true,"admin":false}`},
		{"alice", `{"auth":true,"user":"alice","admin":false}`},
		{"admin", `{"auth":true,"user":"admin","admin":true}`},
	} {
		r := b.get(c.user, "me", nil)
		if r.Status != http.StatusOK || string(r.Body) != c.want {
			t.Errorf("me as %q: %s, want %s", c.user, r, c.want)
		}
		for h, v := range map[string]string{"Content-Security-Policy": ui.ContentSecurityPolicy, "X-Content-Type-Options": "nosniff", "Cache-Control": "no-store"} {
			if got := r.Header.Get(h); got != v {
				t.Errorf("me: %s = %q, want %q", h, got, v)
			}
		}
	}
	r := b.push.do(http.MethodGet, "/airlock/api/browse/me", nil)
	if r.Status != http.StatusOK || string(r.Body) != `{"auth":false,"admin":true}` {
		t.Errorf("me without auth: %s, want auth false (everyone may do everything)", r)
	}
	tok, _ := b.view.token("alice")
	if r := b.view.req(http.MethodGet, "/airlock/api/proxies", tok); r.Status != http.StatusForbidden {
		t.Errorf("the admin API as alice: %s, want 403", r)
	}
}

var specsV2 = specs.Versioned{SchemaVersion: 2}

// TestBrowseEchoesShort: a browse parameter of 3000 characters is refused
// with a message repeating only its first 64 characters and "…", not the
// whole value.
func TestBrowseEchoesShort(t *testing.T) {
	e := memEnv(t)
	_, _ = e.pushImage("app", "1", ocispec.MediaTypeImageManifest)
	long, digits := strings.Repeat("x!", 1500), strings.Repeat("9", 3000)
	d := digest.FromString("x").String()
	for _, v := range []struct{ query, value string }{
		{"tags?repo=local&image=app&last=" + long, long},
		{"tags?repo=local&image=app&n=" + digits, digits},
		{"images?repo=local&n=" + digits, digits},
		{"images?repo=" + long, long},
		{"manifest?repo=local&image=app&ref=" + long, long},
		{"manifest?repo=local&image=app&ref=" + d + "&index=" + long, long},
		{"manifest?repo=local&image=app&index=" + d + "&ref=" + long, long},
		{"search?q=app&n=" + digits, digits},
		{long, long},
	} {
		what := v.query[:min(len(v.query), 40)]
		r := e.do(http.MethodGet, "/airlock/api/browse/"+v.query, nil)
		if r.Status < 400 || r.Status >= 500 {
			t.Errorf("%s: got %s, want a 4xx", what, r)
			continue
		}
		msg := errMessage(r)
		if !strings.Contains(msg, v.value[:64]+"…") || strings.Contains(msg, v.value[:65]) || len(msg) > 400 {
			t.Errorf("%s: message (%d bytes) %.200q: want the value's first 64 characters and …", what, len(msg), msg)
		}
	}
}
