//go:build e2e

package e2e

import (
	"context"
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"fmt"
	"io"
	"log"
	"net/http/httptest"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/chromedp/chromedp"
	ggcrregistry "github.com/google/go-containerregistry/pkg/registry"
)

// uiConfig is TestUI's Airlock: hosted "local" (the default), "pub" that
// anyone may pull, "secret" that only admins see, and "hub", a proxy of an
// upstream registry (%s). The role team may read and browse local and pub.
const uiConfig = `default: local
repositories:
  - {name: local, kind: hosted}
  - {name: pub, kind: hosted, anonymousPull: true}
  - {name: secret, kind: hosted}
  - {name: hub, kind: proxy, remote: %q}
auth:
  adminPasswordEnv: ` + authAdminEnv + `
  roles:
    - name: team
      privileges: [{repositories: [local, pub], actions: [read, browse]}]
`

// markup is an annotation value the UI must show as text: were it parsed as
// HTML, the page would get an element #pwn and a <b>.
// (No quotes nor commas: crane's --annotation parses its value as CSV.)
const markup = `<img src=x id=pwn onerror=document.title=/pwned/.source><b id=bold>bold</b>`

// TestUI drives the web UI in headless Chromium against localdev (auth on):
// the repositories page, images, tags (digests and total sizes checked
// against what crane reads from the registry), an index's platforms each
// opened from its page (and back), search, what a user without
// browse on a repository sees (nothing of it), markup in an annotation and
// in a URL rendered as text, the admin's proxy status and "refresh this
// tag". A screenshot of the tags page goes to dist/ui-tags.png.
func TestUI(t *testing.T) {
	t.Parallel()
	chrome := findChromium(t)
	up := httptest.NewServer(ggcrregistry.New(ggcrregistry.Logger(log.New(io.Discard, "", 0))))
	t.Cleanup(up.Close)
	reg := startRegistry(t, registryOpts{Config: fmt.Sprintf(uiConfig, up.URL), Env: []string{authAdminEnv + "=" + authAdminPW}})
	createUser(t, reg.URL, "alice", alicePW, "team")
	crane := tool(t, "crane")
	adminEnv := craneAs(t, reg.Host, "admin", authAdminPW)

	// Two images pushed with crane (and one only admins may see), an annotated
	// copy of the first, and an image of the upstream cached through hub.
	push := func(env []string, ref string, layers int, size int64) {
		tarPath := filepath.Join(t.TempDir(), "img.tar")
		writeDockerTarball(t, tarPath, "e2e/ui:1", smallDockerImage(t, layers, size))
		mustRun(t, 2*time.Minute, env, crane, "push", "--insecure", tarPath, ref)
	}
	push(adminEnv, reg.Host+"/pub/demo/alpha:1", 2, 300<<10)
	push(adminEnv, reg.Host+"/local/team/beta:2", 1, 100<<10)
	push(adminEnv, reg.Host+"/secret/hidden:1", 1, 10<<10)
	mustRun(t, time.Minute, adminEnv, crane, "mutate", "--insecure", "--annotation", "org.opencontainers.image.description="+markup,
		reg.Host+"/pub/demo/alpha:1", "-t", reg.Host+"/pub/demo/alpha:markup")
	mustRun(t, time.Minute, adminEnv, crane, "mutate", "--insecure", "--set-platform", "linux/arm64/v8",
		reg.Host+"/pub/demo/alpha:1", "-t", reg.Host+"/pub/demo/alpha:arm64")
	mustRun(t, time.Minute, adminEnv, crane, "index", "append", "--insecure", "-m", reg.Host+"/pub/demo/alpha:1",
		"-m", reg.Host+"/pub/demo/alpha:arm64", "-t", reg.Host+"/pub/demo/alpha:multi")
	push(nil, strings.TrimPrefix(up.URL, "http://")+"/demo/cached:1", 1, 50<<10)
	mustRun(t, time.Minute, adminEnv, crane, "manifest", "--insecure", reg.Host+"/hub/demo/cached:1") // fills hub's cache

	// What the UI must show, as crane reads it from the registry.
	type want struct {
		digest, tag string
		total       int64
		platforms   string
	}
	type descriptor struct {
		Digest   string `json:"digest"`
		Size     int64  `json:"size"`
		Platform *struct {
			OS           string `json:"os"`
			Architecture string `json:"architecture"`
			Variant      string `json:"variant"`
		} `json:"platform"`
	}
	// manifest reads a manifest with crane: its exact bytes and descriptors.
	manifest := func(ref string) (raw string, config *descriptor, layers, children []descriptor) {
		d := strings.TrimSpace(mustRun(t, time.Minute, adminEnv, crane, "digest", "--insecure", ref))
		body := mustRun(t, time.Minute, adminEnv, crane, "manifest", "--insecure", ref)
		var m struct {
			Config    *descriptor  `json:"config"`
			Layers    []descriptor `json:"layers"`
			Manifests []descriptor `json:"manifests"`
		}
		if err := json.Unmarshal([]byte(body), &m); err != nil {
			t.Fatalf("crane manifest %s: %v\n%s", ref, err, body)
		}
		raw = body
		for _, cand := range []string{body, strings.TrimRight(body, "\n")} { // the exact bytes: their digest
			if sum := sha256.Sum256([]byte(cand)); "sha256:"+hex.EncodeToString(sum[:]) == d {
				raw = cand
			}
		}
		return raw, m.Config, m.Layers, m.Manifests
	}
	// expect is what the tags page must show of ref: its digest, and the
	// manifest's size with its config's and layers' (an index: its
	// children's too), each distinct blob once; an index's platforms.
	expect := func(ref string) want {
		d := strings.TrimSpace(mustRun(t, time.Minute, adminEnv, crane, "digest", "--insecure", ref))
		raw, cfg, layers, children := manifest(ref)
		seen := map[string]bool{}
		total := int64(len(raw))
		add := func(ds ...descriptor) {
			for _, x := range ds {
				if !seen[x.Digest] {
					seen[x.Digest] = true
					total += x.Size
				}
			}
		}
		if cfg != nil {
			add(*cfg)
		}
		add(layers...)
		var platforms []string
		for _, c := range children {
			_, ccfg, clayers, _ := manifest(ref[:strings.LastIndex(ref, ":")] + "@" + c.Digest)
			add(c, *ccfg)
			add(clayers...)
			platforms = append(platforms, strings.TrimSuffix(c.Platform.OS+"/"+c.Platform.Architecture+"/"+c.Platform.Variant, "/"))
		}
		return want{digest: d, tag: ref[strings.LastIndex(ref, ":")+1:], total: total, platforms: strings.Join(platforms, ", ")}
	}
	alpha1, alphaMarkup := expect(reg.Host+"/pub/demo/alpha:1"), expect(reg.Host+"/pub/demo/alpha:markup")
	alphaArm, alphaMulti := expect(reg.Host+"/pub/demo/alpha:arm64"), expect(reg.Host+"/pub/demo/alpha:multi")
	if alphaMulti.platforms != "linux/amd64, linux/arm64/v8" {
		t.Fatalf("the index pub/demo/alpha:multi has platforms %q, want linux/amd64, linux/arm64/v8", alphaMulti.platforms)
	}
	beta := expect(reg.Host + "/local/team/beta:2")

	b := startBrowser(t, chrome)
	base := reg.URL + "/ui/"

	// Anonymous: the root redirects to the UI; only pub is listed.
	b.do(chromedp.Navigate(reg.URL + "/"))
	b.waitRender()
	if p := b.eval(`location.pathname`); p != "/ui/" {
		t.Errorf("GET / took the browser to %q, want /ui/", p)
	}
	if got := b.list(`#repos tbody tr`, `r.dataset.name`); !slices.Equal(got, []string{"pub"}) {
		t.Errorf("repositories as anonymous: %v, want [pub] (anonymousPull)", got)
	}
	if got := b.eval(`document.getElementById('login-link') ? 'yes' : 'no'`); got != "yes" {
		t.Errorf("anonymous visitor: no Log in link")
	}

	// A wrong password: an error on the page, no browser prompt, no session.
	b.login(base, "alice", "not-the-password-1")
	if msg := b.eval(`document.getElementById('login-error').textContent`); !strings.Contains(msg, "Wrong user name or password") {
		t.Errorf("login with a wrong password shows %q, want 'Wrong user name or password'", msg)
	}
	// alice (role team): local and pub, never secret nor hub.
	b.login(base, "alice", alicePW)
	if u := b.eval(`document.getElementById('user').textContent`); u != "alice" {
		t.Errorf("after login the header shows %q, want alice", u)
	}
	if s := b.eval(`JSON.stringify(Object.keys(sessionStorage)) + JSON.stringify(Object.keys(localStorage)) + document.cookie`); s != `["airlock.session"][]` {
		t.Errorf("after login the tab keeps %s, want the session in sessionStorage only (no localStorage, no cookie)", s)
	}
	b.show(base + "#/")
	if got := b.list(`#repos tbody tr`, `r.dataset.name`); !slices.Equal(got, []string{"local", "pub"}) {
		t.Errorf("repositories as alice: %v, want [local pub]", got)
	}
	// An access token the registry refuses (as an expired one): the refresh
	// token gets a new one and the page is alice's.
	b.eval(`(() => { const s = JSON.parse(sessionStorage.getItem('airlock.session')); s.token = 'not-a-token'; sessionStorage.setItem('airlock.session', JSON.stringify(s)); return '' })()`)
	b.show(base + "#/")
	if got, tok := b.list(`#repos tbody tr`, `r.dataset.name`), b.eval(`JSON.parse(sessionStorage.getItem('airlock.session')).token`); !slices.Equal(got, []string{"local", "pub"}) || tok == "not-a-token" {
		t.Errorf("after a refused access token: repositories %v (token %.12s…), want [local pub] with a refreshed token", got, tok)
	}
	b.show(base + "#/images?repo=pub")
	if got := b.list(`#images li`, `r.dataset.name`); !slices.Equal(got, []string{"demo/alpha"}) {
		t.Errorf("images of pub: %v, want [demo/alpha]", got)
	}
	b.show(base + "#/images?repo=local")
	if got := b.list(`#images li`, `r.dataset.name`); !slices.Equal(got, []string{"team/beta"}) {
		t.Errorf("images of local: %v, want [team/beta]", got)
	}

	// Tags with digests and total sizes.
	type row struct {
		Tag    string `json:"tag"`
		Digest string `json:"digest"`
		Bytes  int64  `json:"bytes"`
		Text   string `json:"text"`
		Pull   string `json:"pull"`
		Plat   string `json:"platforms"`
	}
	tagRows := func() []row {
		var rows []row
		b.evalInto(`[...document.querySelectorAll('#tags tbody tr')].map(r => ({tag: r.dataset.tag,
			digest: r.querySelector('td.digest').dataset.digest, bytes: Number(r.querySelector('td.size').dataset.bytes),
			text: r.querySelector('td.size').textContent, pull: r.querySelector('.cmd input').value,
			platforms: r.querySelector('td.platforms').textContent}))`, &rows)
		return rows
	}
	check := func(what string, rows []row, repoImage string, ws ...want) {
		if len(rows) != len(ws) {
			t.Errorf("%s: %d rows %+v, want %d", what, len(rows), rows, len(ws))
			return
		}
		for i, w := range ws {
			r := rows[i]
			if r.Tag != w.tag || r.Digest != w.digest || r.Bytes != w.total || !strings.HasSuffix(r.Text, "B") || r.Plat != w.platforms {
				t.Errorf("%s: row %+v, want tag %s digest %s total %d bytes, platforms %q", what, r, w.tag, w.digest, w.total, w.platforms)
			}
			if wantPull := "docker pull " + reg.Host + "/" + repoImage + ":" + w.tag; r.Pull != wantPull {
				t.Errorf("%s: pull command %q, want %q", what, r.Pull, wantPull)
			}
		}
	}
	b.show(base + "#/tags?repo=pub&image=demo/alpha")
	check("tags of pub/demo/alpha", tagRows(), "pub/demo/alpha", alpha1, alphaArm, alphaMarkup, alphaMulti)
	shot := b.screenshot(filepath.Join(rootDir, "dist", "ui-tags.png"))
	t.Logf("screenshot of the tags page: %s (%d bytes)", shot.path, shot.size)
	b.show(base + "#/tags?repo=local&image=team/beta")
	check("tags of local/team/beta", tagRows(), "local/team/beta", beta)

	// The manifest page's pull commands, and the crane one works as shown.
	b.show(base + "#/manifest?repo=pub&image=demo/alpha&ref=1")
	cmds := b.list(`#pull input`, `r.value`)
	alphaRef := reg.Host + "/pub/demo/alpha"
	if want := []string{"docker pull " + alphaRef + ":1", "docker pull " + alphaRef + "@" + alpha1.digest,
		"crane pull --insecure " + alphaRef + "@" + alpha1.digest + " image.tar"}; !slices.Equal(cmds, want) {
		t.Errorf("pull commands of pub/demo/alpha:1: %q, want %q", cmds, want)
	} else {
		dir := t.TempDir()
		args := strings.Fields(cmds[2])[1:]
		if _, err := runIn(t, dir, 2*time.Minute, []string{"DOCKER_CONFIG=" + dir}, crane, args...); err != nil { // anonymous: pub has anonymousPull
			t.Errorf("the page's crane command failed: %v", err)
		} else if fi, err := os.Stat(filepath.Join(dir, "image.tar")); err != nil || fi.Size() < 300<<10 {
			t.Errorf("the page's crane pull wrote no image.tar of the image's size: %v", err)
		}
	}
	if got := b.eval(`document.getElementById('total').dataset.bytes`); got != fmt.Sprint(alpha1.total) {
		t.Errorf("manifest page of pub/demo/alpha:1: total %s bytes, want %d", got, alpha1.total)
	}

	// An index's page lists each platform (digest, total size) linking to its
	// own page, which names the platform in its header and links back.
	_, _, _, children := manifest(alphaRef + ":multi")
	type platformRow struct {
		Platform string `json:"platform"`
		Digest   string `json:"digest"`
		Bytes    int64  `json:"bytes"`
		Href     string `json:"href"`
	}
	var wantRows []platformRow
	childLayers := map[string]int{}
	for _, c := range children {
		_, ccfg, clayers, _ := manifest(alphaRef + "@" + c.Digest)
		total, seen := c.Size+ccfg.Size, map[string]bool{ccfg.Digest: true}
		for _, l := range clayers {
			if !seen[l.Digest] {
				seen[l.Digest], total = true, total+l.Size
			}
		}
		childLayers[c.Digest] = len(clayers)
		wantRows = append(wantRows, platformRow{Platform: strings.TrimSuffix(c.Platform.OS+"/"+c.Platform.Architecture+"/"+c.Platform.Variant, "/"),
			Digest: c.Digest, Bytes: total, Href: "#/manifest?" + "repo=pub&image=demo%2Falpha&ref=" + strings.ReplaceAll(c.Digest, ":", "%3A") + "&index=" + strings.ReplaceAll(alphaMulti.digest, ":", "%3A")})
	}
	b.show(base + "#/manifest?repo=pub&image=demo/alpha&ref=multi")
	var gotRows []platformRow
	b.evalInto(`[...document.querySelectorAll('#children tbody tr')].map(r => ({platform: r.querySelector('a.platform').textContent,
		digest: r.dataset.digest, bytes: Number(r.querySelector('td.size').dataset.bytes), href: r.querySelector('a.platform').getAttribute('href')}))`, &gotRows)
	if !slices.Equal(gotRows, wantRows) || len(wantRows) != 2 {
		t.Errorf("platforms of the index pub/demo/alpha:multi:\n got %+v\nwant %+v", gotRows, wantRows)
	} else {
		arm := wantRows[1]
		b.eval(`(document.getElementById('main').removeAttribute('data-ready'), '')`)
		b.do(chromedp.Click(chromedp.CSS(`#children tbody tr[data-platform="linux/arm64/v8"] a.platform`)))
		b.waitRender()
		var page struct {
			Hash     string `json:"hash"`
			Digest   string `json:"digest"`
			Platform string `json:"platform"`
			Header   string `json:"header"`
			Total    int64  `json:"total"`
			Layers   int    `json:"layers"`
			Config   int    `json:"config"`
			Back     string `json:"back"`
		}
		b.evalInto(`({hash: location.hash, digest: document.getElementById('digest').textContent,
			platform: document.getElementById('platform') ? document.getElementById('platform').textContent : '',
			header: document.querySelector('main h1').textContent, total: Number(document.getElementById('total').dataset.bytes),
			layers: document.querySelectorAll('#layers tbody tr[data-digest]').length, config: document.querySelectorAll('#layers tr.config').length,
			back: document.querySelector('#in-index a') ? document.querySelector('#in-index a').textContent : ''})`, &page)
		if page.Hash != arm.Href || page.Digest != arm.Digest || page.Platform != "linux/arm64/v8" || !strings.Contains(page.Header, "linux/arm64/v8") ||
			page.Total != arm.Bytes || page.Layers != childLayers[arm.Digest] || page.Config != 1 || page.Back != alphaMulti.digest {
			t.Errorf("the linux/arm64/v8 page of the index: %+v, want %s, digest %s, platform in the header, total %d, %d layers and a config, back to %s",
				page, arm.Href, arm.Digest, arm.Bytes, childLayers[arm.Digest], alphaMulti.digest)
		}
		b.eval(`(document.getElementById('main').removeAttribute('data-ready'), '')`)
		b.do(chromedp.Click(chromedp.CSS(`#in-index a`)))
		b.waitRender()
		if d, n := b.eval(`document.getElementById('digest').textContent`), b.eval(`String(document.querySelectorAll('#children tbody tr').length)`); d != alphaMulti.digest || n != "2" {
			t.Errorf("back from the platform page: digest %s with %s platforms, want the index %s with 2", d, n, alphaMulti.digest)
		}
	}

	// Search by substring.
	b.search("alph")
	if got := b.list(`#results li`, `r.dataset.name`); !slices.Equal(got, []string{"pub/demo/alpha"}) {
		t.Errorf("search alph: %v, want [pub/demo/alpha]", got)
	}
	b.search("e") // every image name has an e: alice sees hers only
	if got := b.list(`#results li`, `r.dataset.name`); !slices.Equal(got, []string{"local/team/beta", "pub/demo/alpha"}) {
		t.Errorf("search e as alice: %v, want [local/team/beta pub/demo/alpha] (not secret/hidden)", got)
	}

	// No browse on secret: asking for it directly shows nothing of it.
	b.show(base + "#/images?repo=secret")
	if e := b.eval(`document.getElementById('error') ? document.getElementById('error').textContent : ''`); !strings.Contains(e, `no repository "secret"`) || b.eval(`String(document.querySelectorAll('#images li').length)`) != "0" {
		t.Errorf("images of secret as alice: error %q, want `no repository \"secret\"` and no list", e)
	}
	b.show(base + "#/tags?repo=secret&image=hidden")
	if got := b.eval(`String(document.querySelectorAll('#tags tbody tr').length)`); got != "0" {
		t.Errorf("tags of secret/hidden as alice: %s rows, want none", got)
	}

	// Markup renders as text: in an annotation, and in a name taken from the URL.
	b.show(base + "#/manifest?repo=pub&image=demo/alpha&ref=markup")
	if v := b.eval(`[...document.querySelectorAll('#annotations td.value')].map(td => td.textContent).join()`); v != markup {
		t.Errorf("annotation shown as %q, want the text %q", v, markup)
	}
	b.show(base + "#/images?repo=" + `%3Cimg%20src%3Dx%20id%3Dpwn%3E`)
	if e := b.eval(`document.getElementById('error').textContent`); !strings.Contains(e, `<img src=x id=pwn>`) {
		t.Errorf("unknown repository named with markup: error %q, want it as text", e)
	}
	if got := b.eval(`[document.getElementById('pwn'), document.getElementById('bold'), document.querySelector('main img, main b')].filter(Boolean).length + ' ' + document.title`); !strings.HasPrefix(got, "0 ") || strings.Contains(got, "pwned") {
		t.Errorf("markup became HTML: %s", got)
	}

	// The admin: every repository, the proxy status, and "refresh this tag" on hub.
	b.eval(`(document.getElementById('main').removeAttribute('data-ready'), '')`)
	b.do(chromedp.Click(`#logout`))
	b.waitRender()
	b.show(base + "#/")
	if got, kept := b.list(`#repos tbody tr`, `r.dataset.name`), b.eval(`String(sessionStorage.length)`); !slices.Equal(got, []string{"pub"}) || kept != "0" {
		t.Errorf("after Log out: repositories %v, %s items in sessionStorage; want [pub] and none", got, kept)
	}
	b.login(base, "admin", authAdminPW)
	b.show(base + "#/")
	if got := b.list(`#repos tbody tr`, `r.dataset.name`); !slices.Equal(got, []string{"local", "pub", "secret", "hub"}) {
		t.Errorf("repositories as admin: %v, want [local pub secret hub]", got)
	}
	if got := b.list(`#proxies tbody tr`, `r.dataset.name`); !slices.Equal(got, []string{"hub"}) {
		t.Errorf("proxy status as admin: %v, want [hub]", got)
	}
	b.show(base + "#/tags?repo=hub&image=demo/cached")
	cached := expect(reg.Host + "/hub/demo/cached:1")
	check("tags of hub/demo/cached", tagRows(), "hub/demo/cached", cached)
	b.do(chromedp.Click(`#tags tbody tr button.refresh`))
	got, err := chromedp.Run(b.ctx, chromedp.Poll[string](`document.querySelector('.refresh-status').textContent.trim() !== 'refreshing…' &&
		document.querySelector('.refresh-status').textContent.trim() !== '' && (document.querySelector('.refresh-status').dataset.digest || document.querySelector('.refresh-status').textContent)`, chromedp.WithPollingTimeout(30*time.Second)))
	if err != nil || got != cached.digest {
		t.Errorf("refresh this tag: %q (%v), want the digest %s", got, err, cached.digest)
	}

	// Both tokens refused (a session past its refresh token): the anonymous
	// view, saying so.
	b.eval(`(() => { sessionStorage.setItem('airlock.session', JSON.stringify({user: 'admin', token: 'x', refresh: 'y'})); return '' })()`)
	b.show(base + "#/")
	if got, note := b.list(`#repos tbody tr`, `r.dataset.name`), b.eval(`document.querySelector('main .notice') ? document.querySelector('main .notice').textContent : ''`); !slices.Equal(got, []string{"pub"}) || !strings.Contains(note, "session ended") {
		t.Errorf("with refused tokens: repositories %v, notice %q; want [pub] and 'Your session ended'", got, note)
	}
	b.finish()
}

// findChromium returns Debian's chromium (or another Chrome) or skips.
func findChromium(t *testing.T) string {
	for _, name := range []string{"chromium", "chromium-browser", "google-chrome"} {
		if p, err := exec.LookPath(name); err == nil {
			return p
		}
	}
	t.Skip("chromium not installed (apt-get install chromium; make tools installs it as root on Debian)")
	return ""
}

// browser is one headless Chromium tab; its console is collected and
// checked for exceptions and policy violations at the end.
type browser struct {
	t   *testing.T
	ctx context.Context

	mu      sync.Mutex
	console []chromedp.ConsoleMessage
}

func startBrowser(t *testing.T, path string) *browser {
	opts := append(chromedp.DefaultExecAllocatorOptions[:], chromedp.ExecPath(path), chromedp.WindowSize(1280, 900),
		chromedp.UserDataDir(t.TempDir()))
	if os.Geteuid() == 0 {
		opts = append(opts, chromedp.NoSandbox) // Chromium's sandbox refuses to run as root
		t.Logf("running %s as root: --no-sandbox", path)
	}
	actx, cancelAlloc := chromedp.NewExecAllocator(context.Background(), opts...)
	ctx, cancel := chromedp.NewContext(actx)
	ctx, cancelTime := context.WithTimeout(ctx, 5*time.Minute)
	t.Cleanup(func() { cancelTime(); cancel(); cancelAlloc() })
	b := &browser{t: t, ctx: ctx}
	if err := chromedp.Do(ctx); err != nil { // starts the browser
		t.Fatalf("start %s: %v", path, err)
	}
	v, err := chromedp.Run(ctx, chromedp.Evaluate[string](`navigator.userAgent`))
	if err != nil {
		t.Fatalf("%s: %v", path, err)
	}
	t.Logf("browser: %s", v)
	msgs := chromedp.Console(ctx)
	go func() {
		for m, err := range msgs {
			if err != nil {
				return
			}
			b.mu.Lock()
			b.console = append(b.console, m)
			b.mu.Unlock()
		}
	}()
	return b
}

func (b *browser) do(actions ...chromedp.Action[chromedp.Void]) {
	b.t.Helper()
	if err := chromedp.Do(b.ctx, actions...); err != nil {
		b.t.Fatalf("browser: %v", err)
	}
}

// eval evaluates a JavaScript expression giving a string.
func (b *browser) eval(js string) string {
	b.t.Helper()
	v, err := chromedp.Run(b.ctx, chromedp.Evaluate[string](js))
	if err != nil {
		b.t.Fatalf("evaluate %s: %v", js, err)
	}
	return v
}

func (b *browser) evalInto(js string, out any) {
	b.t.Helper()
	s := b.eval(`JSON.stringify(` + js + `)`)
	if err := json.Unmarshal([]byte(s), out); err != nil {
		b.t.Fatalf("evaluate %s: %v: %s", js, err, s)
	}
}

// list maps the elements matching sel with the expression expr (of r).
func (b *browser) list(sel, expr string) []string {
	b.t.Helper()
	var out []string
	b.evalInto(fmt.Sprintf(`[...document.querySelectorAll(%q)].map(r => %s)`, sel, expr), &out)
	return out
}

// waitRender waits for the page to finish rendering its route (main[data-ready]).
func (b *browser) waitRender() {
	b.t.Helper()
	ctx, cancel := context.WithTimeout(b.ctx, time.Minute) // a page that never renders fails here, not at the test's deadline
	defer cancel()
	if err := chromedp.Do(ctx, chromedp.WaitReady(chromedp.CSS(`#main[data-ready]`))); err != nil {
		b.mu.Lock()
		defer b.mu.Unlock()
		var msgs []string
		for _, m := range b.console {
			msgs = append(msgs, fmt.Sprintf("%s (%s:%d)", m, m.URL, m.Line+1))
		}
		b.t.Fatalf("the page did not render (%v); browser console:\n%s", err, strings.Join(msgs, "\n"))
	}
}

// show goes to a UI address (a new route of the loaded page, or a first
// load) and waits until it is rendered.
func (b *browser) show(u string) {
	b.t.Helper()
	loaded := b.eval(`document.getElementById('main') && location.pathname === '/ui/' ? 'yes' : 'no'`) == "yes"
	if !loaded {
		b.do(chromedp.Navigate(u))
		b.waitRender()
		return
	}
	hash := u[strings.Index(u, "#"):]
	// The same route fires no hashchange: send one, the UI renders on it.
	b.eval(fmt.Sprintf(`(document.getElementById('main').removeAttribute('data-ready'),
		location.hash === %[1]q ? window.dispatchEvent(new HashChangeEvent('hashchange')) : (location.hash = %[1]q), '')`, hash))
	b.waitRender()
}

// login fills in the login form.
func (b *browser) login(base, user, password string) {
	b.t.Helper()
	b.show(base + "#/login")
	b.eval(`(document.getElementById('main').removeAttribute('data-ready'), '')`)
	b.do(chromedp.SendKeys(chromedp.CSS(`#username`), user), chromedp.SendKeys(chromedp.CSS(`#password`), password),
		chromedp.Click(chromedp.CSS(`#login button[type=submit]`)))
	_, err := chromedp.Run(b.ctx, chromedp.Poll[bool](`!!document.getElementById('main').dataset.ready ||
		!document.getElementById('login-error').hidden`, chromedp.WithPollingTimeout(30*time.Second)))
	if err != nil {
		b.t.Fatalf("login as %s: %v", user, err)
	}
}

// search submits the search box.
func (b *browser) search(q string) {
	b.t.Helper()
	b.eval(`(document.getElementById('main').removeAttribute('data-ready'), document.getElementById('q').value = '', '')`)
	b.do(chromedp.SendKeys(chromedp.CSS(`#q`), q), chromedp.Click(chromedp.CSS(`#search button`)))
	b.do(chromedp.WaitReady(chromedp.CSS(`#main[data-ready][data-page=search]`)))
}

type shotFile struct {
	path string
	size int
}

// screenshot saves a full-page PNG.
func (b *browser) screenshot(path string) shotFile {
	b.t.Helper()
	png, err := chromedp.Run(b.ctx, chromedp.FullScreenshot(100))
	if err != nil {
		b.t.Fatalf("screenshot: %v", err)
	}
	if err := os.MkdirAll(filepath.Dir(path), 0o755); err != nil {
		b.t.Fatal(err)
	}
	if err := os.WriteFile(path, png, 0o644); err != nil {
		b.t.Fatal(err)
	}
	if len(png) < 8 || string(png[1:4]) != "PNG" {
		b.t.Errorf("screenshot %s is not a PNG (%d bytes)", path, len(png))
	}
	return shotFile{path, len(png)}
}

// finish checks the console: no uncaught exception, no violation of the
// Content-Security-Policy or of Trusted Types (an HTML sink got a string).
func (b *browser) finish() {
	b.t.Helper()
	const end = "airlock-ui-test-end"
	b.eval(`(console.info('` + end + `'), '')`)
	if _, err := chromedp.Run(b.ctx, chromedp.Poll[bool](`true`)); err != nil { // a round trip; then wait for the marker
		b.t.Fatal(err)
	}
	for seen := false; !seen; {
		if b.ctx.Err() != nil {
			b.t.Fatalf("the console never delivered its end marker: %v", b.ctx.Err())
		}
		b.mu.Lock()
		seen = slices.ContainsFunc(b.console, func(m chromedp.ConsoleMessage) bool { return m.Text == end })
		b.mu.Unlock()
		if !seen {
			time.Sleep(20 * time.Millisecond)
		}
	}
	b.mu.Lock()
	defer b.mu.Unlock()
	for _, m := range b.console {
		txt := m.String()
		if m.IsException() || strings.Contains(txt, "Content Security Policy") || strings.Contains(txt, "Trusted Type") {
			b.t.Errorf("browser console: %s (%s:%d)", txt, m.URL, m.Line+1)
		}
	}
	b.t.Logf("browser console: %d messages (failed requests the UI answered, e.g. the 401 of the wrong password)", len(b.console))
}
