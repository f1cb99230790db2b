package config

import (
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"
)

func TestParse(t *testing.T) {
	c, err := Parse([]byte("default: local\nrepositories:\n  - name: local\n    kind: hosted\n  - name: rel\n    kind: hosted\n    policy: disable-redeploy\n"))
	if err != nil {
		t.Fatal(err)
	}
	if c.Default != "local" || len(c.Repositories) != 2 {
		t.Fatalf("got %+v", c)
	}
	if r, ok := c.Repository("local"); !ok || r.Policy != PolicyAllow {
		t.Fatalf("local: %+v %v (policy should default to allow)", r, ok)
	}
	if r, ok := c.Repository("rel"); !ok || r.Policy != PolicyDisableRedeploy {
		t.Fatalf("rel: %+v %v", r, ok)
	}
	if _, ok := c.Repository("nope"); ok {
		t.Fatal("unknown repository found")
	}
}

func TestParseErrors(t *testing.T) {
	for name, doc := range map[string]string{
		"no repositories":        "default: x\n",
		"unknown field":          "repositories:\n  - name: a\n    kind: hosted\n    colour: red\n",
		"bad name":               "repositories:\n  - name: A_\n    kind: hosted\n",
		"duplicate":              "repositories:\n  - name: a\n    kind: hosted\n  - name: a\n    kind: hosted\n",
		"bad kind":               "repositories:\n  - name: a\n    kind: mirror\n",
		"bad policy":             "repositories:\n  - name: a\n    kind: hosted\n    policy: sometimes\n",
		"unknown default":        "default: b\nrepositories:\n  - name: a\n    kind: hosted\n",
		"not yaml":               "repositories: [\n",
		"group not yet":          "repositories:\n  - name: g\n    kind: group\n    members: [a]\n",
		"proxy no remote":        "repositories:\n  - name: hub\n    kind: proxy\n",
		"proxy bad remote":       "repositories:\n  - name: hub\n    kind: proxy\n    remote: ftp://x\n",
		"proxy user in url":      "repositories:\n  - name: hub\n    kind: proxy\n    remote: https://bob:pw@x.io\n",
		"proxy policy":           "repositories:\n  - name: hub\n    kind: proxy\n    remote: https://x.io\n    policy: allow\n",
		"proxy bad age":          "repositories:\n  - name: hub\n    kind: proxy\n    remote: https://x.io\n    metadataMaxAge: 6 hours\n",
		"proxy numeric age":      "repositories:\n  - name: hub\n    kind: proxy\n    remote: https://x.io\n    metadataMaxAge: 60\n",
		"proxy negative":         "repositories:\n  - name: hub\n    kind: proxy\n    remote: https://x.io\n    negativeCacheTTL: -1m\n",
		"proxy ontimeout":        "repositories:\n  - name: hub\n    kind: proxy\n    remote: https://x.io\n    fill:\n      onTimeout: wait\n",
		"proxy tiny budget":      "repositories:\n  - name: hub\n    kind: proxy\n    remote: https://x.io\n    fill:\n      budget: 10ms\n",
		"proxy bad regex":        "repositories:\n  - name: hub\n    kind: proxy\n    remote: https://x.io\n    foreignLayers:\n      enabled: true\n      allow: ['(']\n",
		"proxy foreign no allow": "repositories:\n  - name: hub\n    kind: proxy\n    remote: https://x.io\n    foreignLayers:\n      enabled: true\n",
		"proxy creds both":       "repositories:\n  - name: hub\n    kind: proxy\n    remote: https://x.io\n    credentials:\n      username: bob\n      passwordEnv: A\n      passwordSecret: B\n",
		"proxy creds none":       "repositories:\n  - name: hub\n    kind: proxy\n    remote: https://x.io\n    credentials:\n      username: bob\n",
		"proxy password inline":  "repositories:\n  - name: hub\n    kind: proxy\n    remote: https://x.io\n    credentials:\n      username: bob\n      password: hunter2\n",
		"hosted remote":          "repositories:\n  - name: a\n    kind: hosted\n    remote: https://x.io\n",
	} {
		if _, err := Parse([]byte(doc)); err == nil {
			t.Errorf("%s: accepted", name)
		}
	}
}

func TestLoadAndFromEnv(t *testing.T) {
	p := filepath.Join(t.TempDir(), "c.yaml")
	doc := "repositories:\n  - name: a\n    kind: hosted\n"
	if err := os.WriteFile(p, []byte(doc), 0o644); err != nil {
		t.Fatal(err)
	}
	if _, err := Load(p); err != nil {
		t.Fatal(err)
	}
	t.Setenv("AIRLOCK_TEST_CONFIG", "file:"+p)
	if _, err := FromEnv("AIRLOCK_TEST_CONFIG"); err != nil {
		t.Fatal(err)
	}
	t.Setenv("AIRLOCK_TEST_CONFIG", doc)
	if c, err := FromEnv("AIRLOCK_TEST_CONFIG"); err != nil || c.Repositories[0].Name != "a" {
		t.Fatal(c, err)
	}
	t.Setenv("AIRLOCK_TEST_CONFIG", "")
	if _, err := FromEnv("AIRLOCK_TEST_CONFIG"); err == nil || !strings.Contains(err.Error(), "not set") {
		t.Fatal("empty env accepted:", err)
	}
}

func TestParseProxy(t *testing.T) {
	doc := `default: local
repositories:
  - name: local
    kind: hosted
  - name: hub
    kind: proxy
    remote: https://registry-1.docker.io/
    credentials:
      username: bob
      passwordEnv: HUB_TOKEN
    metadataMaxAge: 0s
    negativeCacheTTL: 30s
    fill:
      budget: 5s
      onTimeout: redirect
    foreignLayers:
      enabled: true
      allow: ['https://mcr\.microsoft\.com/.*']
  - name: quay
    kind: proxy
    remote: http://127.0.0.1:8080
`
	c, err := Parse([]byte(doc))
	if err != nil {
		t.Fatal(err)
	}
	hub, _ := c.Repository("hub")
	if hub.Kind != KindProxy || hub.Remote != "https://registry-1.docker.io" {
		t.Errorf("hub: %+v (remote without the trailing slash)", hub)
	}
	if hub.MaxAge() != 0 || hub.NegativeTTL() != 30*time.Second || hub.FillBudget() != 5*time.Second || hub.FillOnTimeout() != OnTimeoutRedirect {
		t.Errorf("hub settings: maxAge %v negative %v budget %v onTimeout %v", hub.MaxAge(), hub.NegativeTTL(), hub.FillBudget(), hub.FillOnTimeout())
	}
	if !hub.ForeignAllowed("https://mcr.microsoft.com/v2/windows/blobs/sha256:00") {
		t.Error("allowed foreign URL refused")
	}
	for _, u := range []string{"https://mcr.microsoft.com.evil.io/x", "http://mcr.microsoft.com/x", "https://evil.io/?https://mcr.microsoft.com/"} {
		if hub.ForeignAllowed(u) {
			t.Errorf("foreign URL %s allowed (regexes must match the whole URL)", u)
		}
	}
	quay, _ := c.Repository("quay")
	if quay.MaxAge() != DefaultMetadataMaxAge || quay.NegativeTTL() != DefaultNegativeCacheTTL || quay.FillBudget() != DefaultFillBudget || quay.FillOnTimeout() != OnTimeoutRetry {
		t.Errorf("quay defaults: %v %v %v %v", quay.MaxAge(), quay.NegativeTTL(), quay.FillBudget(), quay.FillOnTimeout())
	}
	if quay.ForeignAllowed("https://mcr.microsoft.com/x") {
		t.Error("foreign layers allowed while disabled")
	}
}

func TestParseGroup(t *testing.T) {
	c, err := Parse([]byte(`default: docker
repositories:
  - {name: local, kind: hosted}
  - {name: hub, kind: proxy, remote: "https://registry-1.docker.io"}
  - {name: inner, kind: group, members: [local, hub]}
  - {name: docker, kind: group, members: [inner, local, other], writeMember: local}
  - {name: other, kind: hosted}
`))
	if err != nil {
		t.Fatal(err)
	}
	if got := strings.Join(c.Reachable("docker"), ","); got != "local,hub,other" {
		t.Errorf("reachable: %s, want local,hub,other (depth first, each once)", got)
	}
	for name, want := range map[string]string{
		"cycle":   "cycle: g -> h -> g",
		"outside": `writeMember "b" is not one of its members`,
		"proxy":   `writeMember "p" is a proxy repository`,
	} {
		doc := map[string]string{
			"cycle":   "repositories:\n- {name: a, kind: hosted}\n- {name: g, kind: group, members: [a, h]}\n- {name: h, kind: group, members: [g]}\n",
			"outside": "repositories:\n- {name: a, kind: hosted}\n- {name: b, kind: hosted}\n- {name: g, kind: group, members: [a], writeMember: b}\n",
			"proxy":   "repositories:\n- {name: p, kind: proxy, remote: 'https://x.io'}\n- {name: g, kind: group, members: [p], writeMember: p}\n",
		}[name]
		_, err := Parse([]byte(doc))
		if err == nil || !strings.Contains(err.Error(), want) || !strings.Contains(err.Error(), `repository "g"`) {
			t.Errorf("%s: %v, want an error naming repository g and saying %q", name, err, want)
		}
	}
}

func TestParseAuth(t *testing.T) {
	base := "repositories:\n- {name: local, kind: hosted, anonymousPull: true}\n"
	ok := base + `auth:
  tokenLifetime: 10m
  anonymous: [viewer]
  roles:
  - name: viewer
    privileges:
    - {repositories: ['*'], actions: [read, browse]}
  - name: team-a
    privileges:
    - {repositories: [local], selector: 'path =^ "/v2/team-a/"', actions: [read, add, edit]}
`
	c, err := Parse([]byte(ok))
	if err != nil {
		t.Fatal(err)
	}
	if !c.Auth.Enabled() || c.Auth.Lifetime() != 10*time.Minute || !c.Repositories[0].AnonymousPull {
		t.Errorf("auth: %+v", c.Auth)
	}
	r, _ := c.Auth.Role("team-a")
	p := &r.Privileges[0]
	if !p.Match("local", "/v2/team-a/app/", ActionAdd) || p.Match("local", "/v2/team-b/app/", ActionAdd) || p.Match("local", "/v2/team-a/app/", ActionDelete) || p.Match("other", "/v2/team-a/app/", ActionRead) {
		t.Error("privilege matching")
	}
	if c, _ := Parse([]byte(base + "auth: {}\n")); !c.Auth.Enabled() || c.Auth.Lifetime() != 5*time.Minute {
		t.Error("auth: {} must enable auth with defaults")
	}
	if c, _ := Parse([]byte(base + "auth: {disabled: true}\n")); c.Auth.Enabled() {
		t.Error("auth: {disabled: true} must disable auth")
	}
	if c, _ := Parse([]byte(base)); c.Auth.Enabled() {
		t.Error("no auth section: auth off")
	}
	for name, c := range map[string]struct{ doc, want string }{
		"bad action":      {"auth:\n  roles:\n  - {name: r, privileges: [{repositories: [local], actions: [pull]}]}\n", `unknown action "pull"`},
		"bad selector":    {"auth:\n  roles:\n  - {name: r, privileges: [{repositories: [local], selector: 'path =~ \"(\"', actions: [read]}]}\n", "column"},
		"bad attribute":   {"auth:\n  roles:\n  - {name: r, privileges: [{repositories: [local], selector: 'coordinate == \"x\"', actions: [read]}]}\n", "coordinate"},
		"unknown repo":    {"auth:\n  roles:\n  - {name: r, privileges: [{repositories: [nope], actions: [read]}]}\n", `repository "nope"`},
		"no repos":        {"auth:\n  roles:\n  - {name: r, privileges: [{actions: [read]}]}\n", "repositories is required"},
		"twice":           {"auth:\n  roles:\n  - {name: r, privileges: []}\n  - {name: r, privileges: []}\n", "twice"},
		"admin redefined": {"auth:\n  roles:\n  - {name: admin, privileges: []}\n", "twice"},
		"anon unknown":    {"auth:\n  anonymous: [ghost]\n", `"ghost"`},
		"anon admin":      {"auth:\n  anonymous: [admin]\n", `"admin"`},
		"short lifetime":  {"auth:\n  tokenLifetime: 30s\n", "at least 60s"},
		"disabled plus":   {"auth:\n  disabled: true\n  tokenLifetime: 10m\n", "no other setting"},
		"both secrets":    {"auth:\n  adminPasswordEnv: A\n  adminPasswordSecret: B\n", "at most one"},
		"unknown field":   {"auth:\n  users: []\n", "unknown field"},
	} {
		_, err := Parse([]byte(base + c.doc))
		if err == nil || !strings.Contains(err.Error(), c.want) {
			t.Errorf("%s: %v, want an error containing %q", name, err, c.want)
		}
	}
}
