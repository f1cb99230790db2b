//go:build e2e

package e2e

import (
	"encoding/json"
	"fmt"
	"net/http"
	"path/filepath"
	"strings"
	"testing"
	"time"

	v1 "github.com/google/go-containerregistry/pkg/v1"
)

// groupConfig is the configuration of the Airlock under test in TestGroup:
// hosted "local", proxy "hub" of the upstream's counting front, group
// "docker" = [local, hub] writing to local (the default repository: one URL
// for pull and push), and group "ro" = [local, hub] without writeMember.
func groupConfig(hub string) string {
	return fmt.Sprintf(`default: docker
repositories:
  - {name: local, kind: hosted}
  - {name: hub, kind: proxy, remote: %q, metadataMaxAge: 1h}
  - {name: docker, kind: group, members: [local, hub], writeMember: local}
  - {name: ro, kind: group, members: [local, hub]}
`, hub)
}

// searchNames parses the table `docker search` prints (NAME DESCRIPTION
// STARS OFFICIAL AUTOMATED) and returns the NAME column.
func searchNames(t testing.TB, out string) []string {
	t.Helper()
	lines := strings.Split(strings.TrimRight(out, "\n"), "\n")
	if len(lines) == 0 || !strings.HasPrefix(strings.TrimSpace(lines[0]), "NAME") {
		t.Fatalf("docker search printed no NAME header:\n%s", out)
	}
	var names []string
	for _, l := range lines[1:] {
		if f := strings.Fields(l); len(f) > 0 {
			names = append(names, f[0])
		}
	}
	return names
}

// TestGroup drives group repositories end to end: "upstream" is a localdev
// with a hosted repository behind a counting front (upFront); the Airlock
// under test ("airlock", groupConfig, its proxy hub → upFront) is itself
// behind a counting front (front) that every client talks to, so the test
// sees both what clients asked and what reached the upstream. crane pulls
// and pushes through the default group; docker (dockerd 20.10) pushes,
// pulls and searches it; a group without writeMember refuses pushes.
// Every subtest uses images of its own, so any one runs alone
// (-run 'TestGroup/<name>').
func TestGroup(t *testing.T) {
	t.Parallel()
	start := time.Now()
	upstream := startRegistry(t, registryOpts{})
	upFront := startFront(t, upstream.URL)
	airlock := startRegistry(t, registryOpts{Config: groupConfig(upFront.URL)})
	front := startFront(t, airlock.URL)
	reg := front.Host // what clients use: 127.0.0.1:PORT of the counting front
	t.Logf("upstream %s behind %s; airlock %s behind %s; started in %s",
		upstream.URL, upFront.URL, airlock.URL, front.URL, time.Since(start).Round(time.Millisecond))
	crane := tool(t, "crane")

	t.Run("pull-push", func(t *testing.T) {
		// U lives only upstream: through the group the hosted member misses,
		// then hub fetches it from the upstream.
		u := layeredImage(t, 256*1024, 1*mib)
		uDigest := digestOf(t, u)
		pushImage(t, u, upstream.Host+"/local/grp/base:1")

		m := upFront.mark()
		cranePull(t, reg+"/grp/base:1", u) // the default repository is the group
		hs := upFront.since(m)
		t.Logf("upstream saw during the cold pull of grp/base:1 through the default group:\n%s", fmtHits(hs))
		if got := filterHits(hs, func(h hit) bool { return h.Path == "/v2/grp/base/manifests/1" && h.Status == http.StatusOK }); len(got) == 0 {
			t.Errorf("cold pull through the group: the upstream served no manifest grp/base:1:\n%s", fmtHits(hs))
		}
		for _, d := range blobDigests(t, u) {
			if got := filterHits(hs, func(h hit) bool { return h.Method == http.MethodGet && h.Path == "/v2/grp/base/blobs/"+d.String() }); len(got) != 1 {
				t.Errorf("cold pull through the group: upstream saw for blob %s:\n%s\nwant one GET", d, fmtHits(got))
			}
		}
		m = upFront.mark()
		cranePull(t, reg+"/docker/grp/base:1", u) // the group by name
		if hs := filterHits(upFront.since(m), func(h hit) bool { return isManifestHit(h) || isBlobHit(h) }); len(hs) != 0 {
			t.Errorf("warm pull through docker/ (hub's tag is fresh, metadataMaxAge 1h): upstream saw:\n%s\nwant nothing", fmtHits(hs))
		}
		d1 := strings.TrimSpace(mustRun(t, time.Minute, nil, crane, "digest", "--insecure", reg+"/grp/base:1"))
		d2 := strings.TrimSpace(mustRun(t, time.Minute, nil, crane, "digest", "--insecure", reg+"/docker/grp/base:1"))
		if d1 != uDigest.String() || d2 != uDigest.String() {
			t.Errorf("crane digest grp/base:1 = %s, docker/grp/base:1 = %s; want both %s (the upstream's)", d1, d2, uDigest)
		}

		// H pushed to the default group lands in local under the client's name.
		h := layeredImage(t, 512*1024, 2*mib)
		hDigest := digestOf(t, h)
		m = upFront.mark()
		pushImage(t, h, reg+"/team/h:1")
		t.Logf("upstream saw during the push of team/h:1 through the group:\n%s", fmtHits(upFront.since(m)))
		if w := filterHits(upFront.since(m), func(h hit) bool { return h.Method != http.MethodGet && h.Method != http.MethodHead }); len(w) != 0 {
			t.Errorf("a push through the group sent writes upstream:\n%s", fmtHits(w))
		}
		resp, body := do(t, http.MethodGet, airlock.URL+"/v2/local/team/h/manifests/1", nil, map[string]string{"Accept": manifestAccept})
		if resp.StatusCode != http.StatusOK || resp.Header.Get("Docker-Content-Digest") != hDigest.String() {
			t.Errorf("GET /v2/local/team/h/manifests/1: %s, Docker-Content-Digest %q; want 200 %s (the push through the group)",
				resp.Status, resp.Header.Get("Docker-Content-Digest"), hDigest)
		} else if got, _, _ := v1.SHA256(strings.NewReader(string(body))); got != hDigest {
			t.Errorf("GET /v2/local/team/h/manifests/1: body digest %s, want %s", got, hDigest)
		}
		if code, _ := headStatus(t, airlock.URL+"/v2/hub/team/h/manifests/1", manifestAccept); code == http.StatusOK {
			t.Errorf("HEAD /v2/hub/team/h/manifests/1: 200; a push through the group must not land in the proxy")
		}

		// Pulling H through the group: the hosted member has it, the upstream
		// is asked nothing at all.
		m = upFront.mark()
		cranePull(t, reg+"/team/h:1", h)
		cranePull(t, reg+"/docker/team/h:1", h)
		cranePull(t, reg+"/local/team/h:1", h)
		if hs := upFront.since(m); len(hs) != 0 {
			t.Errorf("pull of team/h:1 (in the hosted member) through the group: the upstream saw %d requests:\n%s\nwant none", len(hs), fmtHits(hs))
		}
	})

	t.Run("push-cached-layers", func(t *testing.T) {
		// The proxy caches C's layers (pulled through the group as
		// grp/cached:1); C pushed through the group as team/copy:1 uploads
		// none of them: the blob HEADs through the group answer 200, the
		// manifest PUT links the blobs into local.
		c := layeredImage(t, 1*mib, 3*mib)
		cDigest := digestOf(t, c)
		blobs := blobDigests(t, c)
		pushImage(t, c, upstream.Host+"/local/grp/cached:1")
		cranePull(t, reg+"/grp/cached:1", c)
		for _, d := range blobs {
			if code, _ := headStatus(t, airlock.URL+"/v2/hub/grp/cached/blobs/"+d.String()); code != http.StatusOK {
				t.Fatalf("HEAD hub/grp/cached blob %s after the pull: %d, want 200 (cached by the proxy)", d, code)
			}
		}

		// A manifest PUT through the group whose blobs only the proxy's
		// cache has (no upload at all): the PUT links them into local.
		raw, err := c.RawManifest()
		if err != nil {
			t.Fatal(err)
		}
		mt, err := c.MediaType()
		if err != nil {
			t.Fatal(err)
		}
		mu := upFront.mark()
		resp, body := do(t, http.MethodPut, front.URL+"/v2/team/linked/manifests/1", strings.NewReader(string(raw)), map[string]string{"Content-Type": string(mt)})
		t.Logf("PUT /v2/team/linked/manifests/1 (blobs never uploaded, cached by hub as grp/cached): %s %s", resp.Status, body)
		t.Logf("the upstream saw during that PUT:\n%s", fmtHits(upFront.since(mu)))
		if resp.StatusCode != http.StatusCreated || resp.Header.Get("Docker-Content-Digest") != cDigest.String() {
			t.Errorf("manifest PUT through the group referencing blobs only the proxy caches: %s %s; want 201 %s (blobs linked into local)", resp.Status, body, cDigest)
		} else {
			assertManifestDigestStr(t, airlock, "local/team/linked", "1", cDigest.String())
			for _, d := range blobs {
				if code, _ := headStatus(t, airlock.URL+"/v2/local/team/linked/blobs/"+d.String()); code != http.StatusOK {
					t.Errorf("HEAD /v2/local/team/linked/blobs/%s: %d, want 200 (linked by the manifest PUT)", d, code)
				}
			}
		}

		// Control: pushed under the name the proxy cached it as, nothing is
		// uploaded (the blobs are found in hub's cache of grp/cached).
		m := front.mark()
		pushImage(t, c, reg+"/grp/cached:2")
		if up := filterHits(front.since(m), isUploadHit); len(up) != 0 {
			t.Errorf("crane push through the group as grp/cached:2 (the name hub cached): upload requests:\n%s\nwant none", fmtHits(up))
		}
		assertManifestDigestStr(t, airlock, "local/grp/cached", "2", cDigest.String())

		m = front.mark()
		mu = upFront.mark()
		pushImage(t, c, reg+"/team/copy:1") // from an OCI layout: crane knows no mount source
		hs := front.since(m)
		t.Logf("the airlock saw during crane push of team/copy:1:\n%s", fmtHits(hs))
		t.Logf("the upstream saw during crane push of team/copy:1:\n%s", fmtHits(upFront.since(mu)))
		if up := filterHits(hs, isUploadHit); len(up) != 0 {
			t.Errorf("crane push through the group of an image whose %d blobs the proxy caches: %d upload requests:\n%s\nwant none",
				len(blobs), len(up), fmtHits(up))
		}
		for _, d := range blobs {
			got := filterHits(hs, func(h hit) bool { return h.Method == http.MethodHead && h.Path == "/v2/team/copy/blobs/"+d.String() })
			if len(got) == 0 || got[len(got)-1].Status != http.StatusOK {
				t.Errorf("blob HEAD of cached blob %s through the group:\n%s\nwant 200 (the proxy has it)", d, fmtHits(got))
			}
		}
		if got := filterHits(hs, func(h hit) bool { return h.Method == http.MethodPut && h.Path == "/v2/team/copy/manifests/1" }); len(got) != 1 || got[0].Status != http.StatusCreated {
			t.Errorf("manifest PUT through the group:\n%s\nwant one PUT answered 201", fmtHits(got))
		}
		assertManifestDigestStr(t, airlock, "local/team/copy", "1", cDigest.String())
		for _, d := range blobs {
			if code, _ := headStatus(t, airlock.URL+"/v2/local/team/copy/blobs/"+d.String()); code != http.StatusOK {
				t.Errorf("HEAD /v2/local/team/copy/blobs/%s: %d, want 200 (linked into the writable member)", d, code)
			}
		}
		cranePull(t, reg+"/local/team/copy:1", c)

		// crane copy from the group to the group (crane mounts what the
		// target lacks): no byte crosses either.
		m = front.mark()
		mustRun(t, 2*time.Minute, nil, crane, "copy", "--insecure", reg+"/grp/cached:1", reg+"/team/copy2:1")
		hs = front.since(m)
		t.Logf("the airlock saw during crane copy grp/cached:1 -> team/copy2:1:\n%s", fmtHits(hs))
		if up := filterHits(hs, func(h hit) bool { return isUploadHit(h) && !(isMountHit(h) && h.Status == http.StatusCreated) }); len(up) != 0 {
			t.Errorf("crane copy through the group of cached blobs: upload requests other than mounts answered 201:\n%s\nwant none", fmtHits(up))
		}
		assertManifestDigestStr(t, airlock, "local/team/copy2", "1", cDigest.String())
	})

	t.Run("docker", func(t *testing.T) {
		d := startDockerd(t, "") // skips without dockerd or root
		img := smallDockerImage(t, 2, 1*mib)
		cfgDigest, err := img.ConfigName()
		if err != nil {
			t.Fatal(err)
		}
		loaded := "e2e/groupapp:1"
		tarPath := filepath.Join(t.TempDir(), "image.tar")
		writeDockerTarball(t, tarPath, loaded, img)
		d.mustDocker(t, 2*time.Minute, "load", "-i", tarPath)
		ref := reg + "/team/app:1" // the default group
		d.mustDocker(t, time.Minute, "tag", loaded, ref)
		id := strings.TrimSpace(d.mustDocker(t, time.Minute, "image", "inspect", "--format", "{{.Id}}", ref))
		if id != cfgDigest.String() {
			t.Fatalf("loaded image ID %s, want the config digest %s", id, cfgDigest)
		}

		m := front.mark()
		out := d.mustDocker(t, 5*time.Minute, "push", ref)
		mm := pushDigest.FindStringSubmatch(out)
		if mm == nil {
			t.Fatalf("no digest in docker push output:\n%s", out)
		}
		pushed := mm[1]
		if ph := filterHits(front.since(m), func(h hit) bool { return isUploadHit(h) && h.Status >= 400 }); len(ph) != 0 {
			t.Errorf("docker push through the group: failed upload requests:\n%s", fmtHits(ph))
		}
		assertManifestDigestStr(t, airlock, "local/team/app", "1", pushed)

		d.mustDocker(t, time.Minute, "rmi", ref, loaded)
		if _, err := d.docker(t, time.Minute, "image", "inspect", id); err == nil {
			t.Fatalf("image %s still present after docker rmi of both tags", id)
		}
		mu := upFront.mark()
		out = d.mustDocker(t, 5*time.Minute, "pull", ref)
		if mm := pullDigest.FindStringSubmatch(out); mm == nil || mm[1] != pushed {
			t.Fatalf("docker pull %s: digest %v, pushed %s:\n%s", ref, mm, pushed, out)
		}
		if got := strings.TrimSpace(d.mustDocker(t, time.Minute, "image", "inspect", "--format", "{{.Id}}", ref)); got != id {
			t.Errorf("image ID after docker pull %s, before the push %s", got, id)
		}
		if rd := d.repoDigests(t, ref); !strings.Contains(rd, reg+"/team/app@"+pushed) {
			t.Errorf("RepoDigests %s do not name %s/team/app@%s", rd, reg, pushed)
		}
		if hs := upFront.since(mu); len(hs) != 0 {
			t.Errorf("docker pull of team/app:1 (in the hosted member) through the group: the upstream saw:\n%s\nwant nothing", fmtHits(hs))
		}

		// docker search needs no daemon setting for a plain-http 127.0.0.1
		// registry: dockerd 20.10 pings https://<host>/v1/_ping, and since
		// 127.0.0.0/8 is an insecure registry by default it falls back to
		// http://<host>/v1/_ping (whose status and body it does not check:
		// only a failed connection stops the search), then sends
		// GET /v1/search?q=<term>&n=25 (the term without the host).
		resp, body := do(t, http.MethodGet, front.URL+"/v1/_ping", nil, nil)
		if resp.StatusCode != http.StatusOK {
			t.Errorf("GET /v1/_ping: %s %s, want 200", resp.Status, body)
		}
		m = front.mark()
		out = d.mustDocker(t, time.Minute, "search", "--no-trunc", reg+"/app")
		t.Logf("docker search %s/app:\n%s", reg, out)
		hs := front.since(m)
		t.Logf("the airlock saw during docker search:\n%s", fmtHits(hs))
		if got := filterHits(hs, func(h hit) bool { return h.Path == "/v1/search" }); len(got) != 1 || got[0].Method != http.MethodGet ||
			got[0].Query != "q=app&n=25" || got[0].Status != http.StatusOK {
			t.Errorf("docker search: the airlock saw for /v1/search:\n%s\nwant one GET ?q=app&n=25 answered 200", fmtHits(got))
		}
		names := searchNames(t, out)
		found := false
		for _, n := range names {
			found = found || n == "local/team/app"
			if !strings.Contains(n, "app") {
				t.Errorf("docker search %s/app listed %q, which does not contain app", reg, n)
			}
		}
		if !found {
			t.Errorf("docker search %s/app: names %q; want local/team/app (pushed through the group) among them", reg, names)
		}
		out = d.mustDocker(t, time.Minute, "search", "--no-trunc", reg+"/nomatch-e2e-zz")
		if names := searchNames(t, out); len(names) != 0 {
			t.Errorf("docker search %s/nomatch-e2e-zz: listed %q, want nothing:\n%s", reg, names, out)
		}
		// An image only upstream: docker pulls it through the group (hub
		// fetches it) and docker search lists the proxy's cached copy.
		base := smallDockerImage(t, 2, 1*mib)
		baseDigest := digestOf(t, base).String()
		baseTar := filepath.Join(t.TempDir(), "base.tar")
		writeDockerTarball(t, baseTar, "e2e/groupbase:1", base)
		mustRun(t, 2*time.Minute, nil, tool(t, "crane"), "push", "--insecure", baseTar, upstream.Host+"/local/grp/dockerbase:1")
		mu = upFront.mark()
		out = d.mustDocker(t, 5*time.Minute, "pull", reg+"/grp/dockerbase:1")
		if mm := pullDigest.FindStringSubmatch(out); mm == nil || mm[1] != baseDigest {
			t.Fatalf("docker pull %s/grp/dockerbase:1 (upstream only) digest %v, want %s:\n%s", reg, mm, baseDigest, out)
		}
		if got := filterHits(upFront.since(mu), func(h hit) bool { return h.Path == "/v2/grp/dockerbase/manifests/1" && h.Status == http.StatusOK }); len(got) == 0 {
			t.Errorf("docker pull of an upstream-only image through the group: the upstream served no manifest:\n%s", fmtHits(upFront.since(mu)))
		}
		out = d.mustDocker(t, time.Minute, "search", "--no-trunc", reg+"/dockerbase")
		if names := searchNames(t, out); len(names) != 1 || names[0] != "hub/grp/dockerbase" {
			t.Errorf("docker search %s/dockerbase: %q, want [hub/grp/dockerbase] (the proxy's cache):\n%s", reg, names, out)
		}

		// The same image pushed through the group under another name: every
		// blob is one the proxy caches, so docker uploads none (it mounts
		// the layers from grp/dockerbase, where it pulled them, and HEADs
		// the config: "Mounted from" / "Layer already exists").
		derived := reg + "/team/derived:1"
		d.mustDocker(t, time.Minute, "tag", reg+"/grp/dockerbase:1", derived)
		m = front.mark()
		out = d.mustDocker(t, 5*time.Minute, "push", derived)
		hs = front.since(m)
		t.Logf("docker push %s:\n%s", derived, out)
		t.Logf("the airlock saw during docker push %s:\n%s", derived, fmtHits(hs))
		if up := filterHits(hs, func(h hit) bool { return isUploadHit(h) && !(isMountHit(h) && h.Status == http.StatusCreated) }); len(up) != 0 {
			t.Errorf("docker push through the group of an image whose blobs the proxy caches: uploads (other than mounts answered 201):\n%s\nwant none", fmtHits(up))
		}
		// docker writes the manifest anew (its digest may differ from the
		// upstream's): same config and layers.
		mm = pushDigest.FindStringSubmatch(out)
		if mm == nil {
			t.Fatalf("no digest in docker push output:\n%s", out)
		}
		assertManifestDigestStr(t, airlock, "local/team/derived", "1", mm[1])
		resp, body = do(t, http.MethodGet, airlock.URL+"/v2/local/team/derived/manifests/1", nil, map[string]string{"Accept": manifestAccept})
		got, err := v1.ParseManifest(strings.NewReader(string(body)))
		if resp.StatusCode != http.StatusOK || err != nil {
			t.Fatalf("GET local/team/derived:1: %s %s (%v)", resp.Status, body, err)
		}
		var gotBlobs []v1.Hash
		gotBlobs = append(gotBlobs, got.Config.Digest)
		for _, l := range got.Layers {
			gotBlobs = append(gotBlobs, l.Digest)
		}
		if want := blobDigests(t, base); fmt.Sprint(gotBlobs) != fmt.Sprint(want) {
			t.Errorf("local/team/derived:1 (docker push) has config and layers %v, want grp/dockerbase's %v", gotBlobs, want)
		}

		// The v1 answer itself.
		resp, body = do(t, http.MethodGet, front.URL+"/v1/search?q=team/app&n=25", nil, nil)
		var doc struct {
			NumResults int    `json:"num_results"`
			Query      string `json:"query"`
			Results    []struct {
				Name string `json:"name"`
			} `json:"results"`
		}
		if err := json.Unmarshal(body, &doc); err != nil || resp.StatusCode != http.StatusOK || doc.Query != "team/app" ||
			doc.NumResults != len(doc.Results) || len(doc.Results) == 0 || doc.Results[0].Name != "local/team/app" {
			t.Errorf("GET /v1/search?q=team/app: %s %s (%v); want 200 listing local/team/app", resp.Status, body, err)
		}
	})

	t.Run("no-write-member", func(t *testing.T) {
		// ro reads like docker: an upstream image pulls through it.
		r := layeredImage(t, 64*1024)
		pushImage(t, r, upstream.Host+"/local/grp/ro:1")
		cranePull(t, reg+"/ro/grp/ro:1", r)

		x := layeredImage(t, 64*1024)
		dir := filepath.Join(t.TempDir(), "layout")
		writeLayout(t, dir, x, "1")
		m, mu := front.mark(), upFront.mark()
		out, err := run(t, 2*time.Minute, nil, crane, "push", "--insecure", dir, reg+"/ro/x:1")
		if err == nil {
			t.Fatalf("crane push %s/ro/x:1 to a group without writeMember succeeded:\n%s", reg, out)
		}
		if !strings.Contains(out, "DENIED") {
			t.Errorf("crane push to a group without writeMember: output lacks DENIED:\n%s", out)
		}
		hs := front.since(m)
		t.Logf("the airlock saw during crane push ro/x:1:\n%s", fmtHits(hs))
		// crane sends its blob POSTs in parallel and cancels the others once
		// one is refused (the front then logs 502 for them): none may succeed.
		writes := filterHits(hs, func(h hit) bool { return isUploadHit(h) || h.Method == http.MethodPut })
		if len(filterHits(writes, func(h hit) bool { return h.Status == http.StatusForbidden })) == 0 {
			t.Errorf("push to ro: no write answered 403:\n%s", fmtHits(writes))
		}
		if ok := filterHits(writes, func(h hit) bool { return h.Status < 300 }); len(ok) != 0 {
			t.Errorf("push to ro: writes accepted:\n%s\nwant none", fmtHits(ok))
		}
		if w := filterHits(upFront.since(mu), func(h hit) bool { return h.Method != http.MethodGet && h.Method != http.MethodHead }); len(w) != 0 {
			t.Errorf("a push to ro sent writes upstream:\n%s", fmtHits(w))
		}
		// Upload, mount (of a blob ro serves) and manifest PUT: all DENIED.
		rRaw, err := r.RawManifest()
		if err != nil {
			t.Fatal(err)
		}
		rType, err := r.MediaType()
		if err != nil {
			t.Fatal(err)
		}
		rBlobs := blobDigests(t, r)
		for _, c := range []struct {
			method, path string
			body         string
			hdr          map[string]string
		}{
			{http.MethodPost, "/v2/ro/x/blobs/uploads/", "", nil},
			{http.MethodPost, "/v2/ro/x/blobs/uploads/?mount=" + rBlobs[1].String() + "&from=ro/grp/ro", "", nil},
			{http.MethodPut, "/v2/ro/x/manifests/1", string(rRaw), map[string]string{"Content-Type": string(rType)}},
		} {
			resp, body := do(t, c.method, front.URL+c.path, strings.NewReader(c.body), c.hdr)
			if resp.StatusCode != http.StatusForbidden || parseErrors(t, body).Errors[0].Code != "DENIED" {
				t.Errorf("%s %s: %s %s; want 403 DENIED", c.method, c.path, resp.Status, body)
			} else {
				t.Logf("%s %s: %s %s", c.method, c.path, resp.Status, body)
			}
		}
		for _, p := range []string{"/v2/local/x/manifests/1", "/v2/ro/x/manifests/1"} {
			if code, _ := headStatus(t, airlock.URL+p, manifestAccept); code != http.StatusNotFound {
				t.Errorf("HEAD %s after the refused push: %d, want 404", p, code)
			}
		}
	})
	t.Logf("TestGroup took %s", time.Since(start).Round(time.Millisecond))
}
