package registry_test

import (
	"encoding/json"
	"net/http"
	"strings"
	"testing"

	gname "github.com/google/go-containerregistry/pkg/name"
	"github.com/google/go-containerregistry/pkg/v1/remote"
	digest "github.com/opencontainers/go-digest"

	"github.com/airlock-registry/airlock/shared/registry"
	"github.com/airlock-registry/airlock/shared/storage"
	"github.com/airlock-registry/airlock/shared/upstream/upstreamtest"
)

// groupConfig: hosted local, proxy hub of %s, group docker = [local, hub]
// (writable local, the default), group hubfirst = [hub, local] (read-only).
const groupConfig = `
default: docker
repositories:
- {name: local, kind: hosted}
- {name: hub, kind: proxy, remote: %q}
- {name: docker, kind: group, members: [local, hub], writeMember: local}
- {name: hubfirst, kind: group, members: [hub, local]}
`

func newGroupEnv(t *testing.T, up *upstreamtest.Upstream) *proxyEnv {
	return newProxyEnv(t, up, "", func(d *registry.Deps) { d.Config = mustConfig(t, sprintf(groupConfig, up.URL)) })
}

// pushVia pushes img through the registry under name:tag with go-containerregistry.
func (e *proxyEnv) pushVia(name, tag string, img *upstreamtest.Image) error {
	ref, err := gname.ParseReference(strings.TrimPrefix(e.srv.URL, "http://")+"/"+name+":"+tag, gname.Insecure)
	if err != nil {
		return err
	}
	return remote.Write(ref, img.Image)
}

// TestGroupPull: an image only in the hosted member and one only upstream
// both pull through the group; a hosted hit asks the upstream nothing;
// member order decides when both have the tag.
func TestGroupPull(t *testing.T) {
	up := upstreamtest.New(t)
	remoteOnly := up.PushImage(t, "library/alpine", "3", 2, 1000)
	both := up.PushImage(t, "team/app", "1", 1, 1000)
	e := newGroupEnv(t, up)
	src := upstreamtest.New(t)
	hostedOnly := src.PushImage(t, "team/private", "1", 2, 1000)
	hostedApp := src.PushImage(t, "team/app", "1", 1, 1000)
	for _, p := range []struct {
		name string
		img  *upstreamtest.Image
	}{{"local/team/private", hostedOnly}, {"local/team/app", hostedApp}} {
		if err := e.pushVia(p.name, "1", p.img); err != nil {
			t.Fatalf("push %s: %v", p.name, err)
		}
	}

	up.Reset()
	e.pull("docker/team/private", "1", hostedOnly)
	e.pull("team/private", "1", hostedOnly) // the default repository is the group
	if n := len(up.Requests()); n != 0 {
		t.Errorf("a hosted hit through the group asked the upstream %d times: %+v", n, up.Requests())
	}
	e.pull("docker/library/alpine", "3", remoteOnly)
	e.pull("library/alpine", "3", remoteOnly)
	// Both members have team/app:1: the first member wins.
	e.pull("docker/team/app", "1", hostedApp)
	e.pull("hubfirst/team/app", "1", both)

	// A blob neither has: BLOB_UNKNOWN; a manifest neither has: MANIFEST_UNKNOWN.
	if r := e.do(http.MethodGet, "/v2/docker/team/nope/manifests/1"); r.Status != http.StatusNotFound || errCode(r) != registry.CodeManifestUnknown {
		t.Errorf("unknown manifest through the group: %s", r)
	}
	if r := e.do(http.MethodGet, "/v2/docker/team/private/blobs/sha256:"+strings.Repeat("0", 64)); r.Status != http.StatusNotFound || errCode(r) != registry.CodeBlobUnknown {
		t.Errorf("a blob no member has: %s, want 404 BLOB_UNKNOWN", r)
	}
	// A blob the proxy member holds under another image name (both's layer,
	// pulled as hubfirst/team/app) is served under any name of the group.
	if got, r := e.pullBlob("/v2/docker/team/private/blobs/" + both.Layers[0]); got != both.Layers[0] {
		t.Errorf("a blob the proxy member holds, through the group under another name: %q %s", got, r)
	}
	// The upstream down: hosted content still pulls through the group.
	up.SetFault(upstreamtest.FaultDown)
	e.pull("docker/team/private", "1", hostedOnly)
}

// TestGroupPush: pushes through the group land in the writable member; the
// layers a member already has (the proxy's cache) are not uploaded again and
// the manifest PUT links them; a group without writeMember refuses pushes.
func TestGroupPush(t *testing.T) {
	up := upstreamtest.New(t)
	base := up.PushImage(t, "library/base", "1", 2, 3000)
	e := newGroupEnv(t, up)
	e.pull("docker/library/base", "1", base) // the proxy caches its layers

	// Push the same image through the group as team/app:1.
	e.log.reset()
	if err := e.pushVia("team/app", "1", base); err != nil {
		t.Fatalf("push through the group: %v", err)
	}
	for _, l := range e.log.all() {
		if strings.HasPrefix(l, "POST ") || strings.HasPrefix(l, "PATCH ") {
			t.Errorf("an upload for layers the group has: %s", l)
		}
	}
	img := storage.Image{Repo: "local", Name: "team/app"}
	if d, err := e.store.ResolveTag(t.Context(), img, "1"); err != nil || d.String() != base.Digest {
		t.Errorf("pushed through the group: local/team/app:1 = %s %v, want %s", d, err, base.Digest)
	}
	for _, b := range base.Blobs() {
		if _, err := e.store.StatBlob(t.Context(), img, digestOf(b)); err != nil {
			t.Errorf("blob %s not linked into the writable member: %v", b, err)
		}
	}
	e.pull("local/team/app", "1", base)

	// A fresh image: uploaded to local through the group.
	src := upstreamtest.New(t)
	fresh := src.PushImage(t, "x", "1", 1, 2000)
	if err := e.pushVia("docker/team/fresh", "2", fresh); err != nil {
		t.Fatalf("push a fresh image through the group: %v", err)
	}
	e.pull("local/team/fresh", "2", fresh)

	// No writeMember: DENIED naming the hosted members.
	r := e.do(http.MethodPost, "/v2/hubfirst/team/app/blobs/uploads/")
	if r.Status != http.StatusForbidden || errCode(r) != registry.CodeDenied || !strings.Contains(string(r.Body), "local") {
		t.Errorf("push to a group without writeMember: %s", r)
	}
}

// TestGroupTags: tags/list merges the members (deduplicated, lexical) and
// pages with n/last and Link exactly as for one repository.
func TestGroupTags(t *testing.T) {
	up := upstreamtest.New(t)
	for _, tag := range []string{"b", "d", "shared"} {
		up.PushImage(t, "team/app", tag, 1, 10)
	}
	e := newGroupEnv(t, up)
	src := upstreamtest.New(t)
	for _, tag := range []string{"a", "c", "shared"} {
		if err := e.pushVia("local/team/app", tag, src.PushImage(t, "x", tag, 1, 10)); err != nil {
			t.Fatal(err)
		}
	}
	var got []string
	next := "/v2/docker/team/app/tags/list?n=2"
	for next != "" && len(got) < 10 {
		r := e.do(http.MethodGet, next)
		var doc struct{ Tags []string }
		if r.Status != http.StatusOK || json.Unmarshal(r.Body, &doc) != nil {
			t.Fatalf("%s: %s", next, r)
		}
		got = append(got, doc.Tags...)
		next = ""
		if l := r.Header.Get("Link"); l != "" {
			next = strings.TrimSuffix(strings.TrimPrefix(strings.Split(l, ";")[0], "<"), ">")
		}
	}
	if strings.Join(got, ",") != "a,b,c,d,shared" {
		t.Errorf("merged tags over pages of 2: %v, want a,b,c,d,shared", got)
	}
}

func digestOf(s string) digest.Digest { return digest.Digest(s) }

// TestGroupPushProxiedLayers: layers the proxy cached under one name
// (library/base) are "already there" for a push through the group under
// another name (a HEAD answers 200, no upload), and the manifest PUT links
// them into the writable member.
func TestGroupPushProxiedLayers(t *testing.T) {
	up := upstreamtest.New(t)
	base := up.PushImage(t, "library/base", "1", 2, 3000)
	e := newGroupEnv(t, up)
	e.pull("library/base", "1", base)
	for _, b := range base.Blobs() {
		if r := e.do(http.MethodHead, "/v2/team/derived/blobs/"+b); r.Status != http.StatusOK {
			t.Errorf("HEAD through the group of a layer the proxy holds under another name: %s", r)
		}
	}
	up.Reset()
	e.log.reset()
	if err := e.pushVia("team/derived", "1", base); err != nil {
		t.Fatalf("push: %v", err)
	}
	for _, l := range e.log.all() {
		if strings.HasPrefix(l, "POST ") || strings.HasPrefix(l, "PATCH ") {
			t.Errorf("an upload of a layer the proxy holds: %s", l)
		}
	}
	if n := up.Count(http.MethodGet, "blob"); n != 0 {
		t.Errorf("the push fetched %d blobs from the upstream", n)
	}
	e.pull("local/team/derived", "1", base)
}

// TestGroupPushOffline: with the proxy member's upstream down (an
// air-gapped make run), pushes through the group work: blob HEADs answer
// 404 (upload it) instead of the upstream's 503, and the tags of a hosted
// image list; a GET of a blob nobody has still says the upstream is down.
func TestGroupPushOffline(t *testing.T) {
	up := upstreamtest.New(t)
	e := newGroupEnv(t, up)
	up.SetFault(upstreamtest.FaultDown)
	img := upstreamtest.New(t).PushImage(t, "x", "1", 2, 1000)
	for range 2 { // the second time with the upstream auto-blocked
		if err := e.pushVia("team/offline", "1", img); err != nil {
			t.Fatalf("push through the group with the upstream down: %v", err)
		}
	}
	e.pull("team/offline", "1", img)
	r := e.do(http.MethodGet, "/v2/team/offline/tags/list")
	if r.Status != http.StatusOK || !strings.Contains(string(r.Body), `"1"`) {
		t.Errorf("tags through the group with the upstream down: %s", r)
	}
	if r := e.do(http.MethodGet, "/v2/team/new/tags/list"); r.Status != http.StatusOK {
		t.Errorf("tags of an unknown image with the upstream down: %s, want an empty list", r)
	}
	if r := e.do(http.MethodGet, "/v2/team/offline/blobs/sha256:"+strings.Repeat("a", 64)); r.Status != http.StatusServiceUnavailable && r.Status != http.StatusNotFound {
		t.Errorf("GET of an unknown blob: %s", r)
	}
}
