package config

import (
	"os"
	"path/filepath"
	"strings"
	"testing"
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
		"no repositories": "default: x\n",
		"unknown field":   "repositories:\n  - name: a\n    kind: hosted\n    colour: red\n",
		"bad name":        "repositories:\n  - name: A_\n    kind: hosted\n",
		"duplicate":       "repositories:\n  - name: a\n    kind: hosted\n  - name: a\n    kind: hosted\n",
		"bad kind":        "repositories:\n  - name: a\n    kind: mirror\n",
		"bad policy":      "repositories:\n  - name: a\n    kind: hosted\n    policy: sometimes\n",
		"unknown default": "default: b\nrepositories:\n  - name: a\n    kind: hosted\n",
		"not yaml":        "repositories: [\n",
		"proxy not yet":   "repositories:\n  - name: hub\n    kind: proxy\n    remote: https://registry-1.docker.io\n",
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
