package repo_test

import (
	"context"
	"encoding/json"
	"errors"
	"strings"
	"testing"

	"github.com/airlock-registry/airlock/shared/config"
	"github.com/airlock-registry/airlock/shared/repo"
	"github.com/airlock-registry/airlock/shared/storage"
	"github.com/airlock-registry/airlock/shared/storage/memstore"
)

func newSet(t *testing.T, doc string) (*repo.Set, *memstore.Store) {
	t.Helper()
	cfg, err := config.Parse([]byte(doc))
	if err != nil {
		t.Fatal(err)
	}
	st := memstore.New()
	t.Cleanup(func() { st.Close() })
	s, err := repo.New(context.Background(), cfg, repo.Deps{Meta: st, Blobs: st})
	if err != nil {
		t.Fatal(err)
	}
	return s, st
}

const doc = `
default: local
repositories:
- {name: local, kind: hosted}
- {name: ro, kind: hosted, policy: read-only}
- {name: hub, kind: proxy, remote: "https://registry-1.docker.io"}
- {name: quay, kind: proxy, remote: "https://quay.io"}
`

func TestResolve(t *testing.T) {
	s, _ := newSet(t, doc)
	for _, c := range []struct{ name, ns, repo, image string }{
		{"local/team/app", "", "local", "team/app"},
		{"team/app", "", "local", "team/app"},
		{"hub/library/alpine", "", "hub", "library/alpine"},
		{"hub", "", "local", "hub"}, // a repository name alone is an image of the default
		{"library/alpine", "docker.io", "hub", "library/alpine"},
		{"coreos/etcd", "quay.io", "quay", "coreos/etcd"},
		{"hub/library/alpine", "quay.io", "quay", "hub/library/alpine"}, // quay.io's name, not our hub's
		{"local/team/app", "docker.io", "hub", "local/team/app"},
		{"coreos/etcd", "QUAY.IO", "quay", "coreos/etcd"},
	} {
		r, image, err := s.Resolve(c.name, c.ns)
		if err != nil || r.Name() != c.repo || image != c.image {
			t.Errorf("Resolve(%q, ns %q) = %v %q %v, want %s %q", c.name, c.ns, r, image, err, c.repo, c.image)
		}
	}
	// A registry with no proxy of it: refused (not served from the default
	// or a repository named like the first component).
	for _, name := range []string{"library/alpine", "local/team/app"} {
		if r, _, err := s.Resolve(name, "ghcr.io"); !errors.Is(err, storage.ErrNotFound) || !strings.Contains(err.Error(), "remote: https://ghcr.io") {
			t.Errorf("Resolve(%q, ns ghcr.io) = %v, %v; want not found naming the proxy to add", name, r, err)
		}
	}
	// Without a Docker Hub proxy, ns=docker.io resolves as without ns.
	noHub, _ := newSet(t, "default: local\nrepositories:\n- {name: local, kind: hosted}\n- {name: quay, kind: proxy, remote: \"https://quay.io\"}\n")
	for _, c := range []struct{ name, repo, image string }{{"library/alpine", "local", "library/alpine"}, {"quay/coreos/etcd", "quay", "coreos/etcd"}} {
		if r, image, err := noHub.Resolve(c.name, "docker.io"); err != nil || r.Name() != c.repo || image != c.image {
			t.Errorf("no Docker Hub proxy: Resolve(%q, ns docker.io) = %v %q %v, want %s %q", c.name, r, image, err, c.repo, c.image)
		}
	}
	noDefault, _ := newSet(t, "repositories:\n- {name: local, kind: hosted}\n")
	if _, _, err := noDefault.Resolve("team/app", ""); !errors.Is(err, storage.ErrNotFound) {
		t.Errorf("no default repository: %v", err)
	}
}

func TestPush(t *testing.T) {
	s, _ := newSet(t, doc)
	local, _ := s.Get("local")
	if h, err := local.Push(); err != nil || h.Name() != "local" {
		t.Errorf("hosted Push: %v %v", h, err)
	}
	var denied *repo.DeniedError
	ro, _ := s.Get("ro")
	if _, err := ro.Push(); !errors.As(err, &denied) || !strings.Contains(denied.Msg, "read-only") {
		t.Errorf("read-only Push: %v", err)
	}
	hub, _ := s.Get("hub")
	if _, err := hub.Push(); !errors.As(err, &denied) || !strings.Contains(denied.Msg, "local, ro") {
		t.Errorf("proxy Push: %v, want DENIED naming local and ro", err)
	}
}

func TestCredentials(t *testing.T) {
	cfg, err := config.Parse([]byte("repositories:\n- name: hub\n  kind: proxy\n  remote: https://x.io\n  credentials: {username: bob, passwordEnv: AIRLOCK_TEST_UNSET_PW}\n"))
	if err != nil {
		t.Fatal(err)
	}
	st := memstore.New()
	defer st.Close()
	if _, err := repo.New(context.Background(), cfg, repo.Deps{Meta: st, Blobs: st}); err == nil || !strings.Contains(err.Error(), "AIRLOCK_TEST_UNSET_PW") {
		t.Errorf("unset passwordEnv: %v, want an error naming the variable", err)
	}
	t.Setenv("AIRLOCK_TEST_UNSET_PW", "s3cret")
	if _, err := repo.New(context.Background(), cfg, repo.Deps{Meta: st, Blobs: st}); err != nil {
		t.Errorf("set passwordEnv: %v", err)
	}
	sec, _ := config.Parse([]byte("repositories:\n- name: hub\n  kind: proxy\n  remote: https://x.io\n  credentials: {username: bob, passwordSecret: arn:x}\n"))
	if _, err := repo.New(context.Background(), sec, repo.Deps{Meta: st, Blobs: st}); err == nil || !strings.Contains(err.Error(), "passwordEnv") {
		t.Errorf("passwordSecret without a resolver: %v", err)
	}
	got := ""
	opts := repo.ProxyOptions{Secret: func(_ context.Context, ref string) (string, error) { got = ref; return "pw", nil }}
	if _, err := repo.New(context.Background(), sec, repo.Deps{Meta: st, Blobs: st, Proxy: opts}); err != nil || got != "arn:x" {
		t.Errorf("passwordSecret with a resolver: %v (asked %q)", err, got)
	}
}

func TestFetchEvent(t *testing.T) {
	s, _ := newSet(t, doc)
	bad, _ := json.Marshal(repo.FillJob{Repo: "local", Image: "x", Digest: "sha256:00"})
	if err := s.FetchEvent(context.Background(), bad); err == nil {
		t.Error("a fill job for a hosted repository was accepted")
	}
	bad, _ = json.Marshal(repo.FillJob{Repo: "hub", Image: "x", Digest: "sha256:zz"})
	if err := s.FetchEvent(context.Background(), bad); err == nil {
		t.Error("a fill job with an invalid digest was accepted")
	}
	// A scheduled event (anything else): nothing parked, nothing to do.
	if err := s.FetchEvent(context.Background(), json.RawMessage(`{"source":"aws.events"}`)); err != nil {
		t.Errorf("scheduled event: %v", err)
	}
}
