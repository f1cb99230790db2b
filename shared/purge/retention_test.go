package purge_test

import (
	"slices"
	"strings"
	"testing"
	"time"

	digest "github.com/opencontainers/go-digest"

	"github.com/airlock-registry/airlock/shared/config"
	"github.com/airlock-registry/airlock/shared/purge"
	"github.com/airlock-registry/airlock/shared/storage"
	"github.com/airlock-registry/airlock/shared/storage/memstore"
)

func rule(tags string, keep int, olderThan time.Duration, latest bool) config.RetentionRule {
	r := config.RetentionRule{Tags: tags, KeepNewest: keep, IncludeLatest: latest}
	if olderThan > 0 {
		r.OlderThan = &config.Duration{Duration: olderThan}
	}
	return r
}

func tagsOf(t *testing.T, s store, img storage.Image) map[string]digest.Digest {
	t.Helper()
	items, err := s.ListImage(t.Context(), img)
	if err != nil {
		t.Fatal(err)
	}
	out := map[string]digest.Digest{}
	for _, tg := range items.Tags {
		out[tg.Tag] = tg.Digest
	}
	return out
}

func names(m map[string]digest.Digest) []string {
	var out []string
	for k := range m {
		out = append(out, k)
	}
	slices.Sort(out)
	return out
}

// TestRetention: keepNewest keeps the newest matching tags, olderThan keeps
// the young ones, latest and tags no rule matches stay; only tags go (the
// manifests stay for untagged-manifests); a dry run reports what the real
// run then deletes; a tag pushed again between decision and delete stays.
func TestRetention(t *testing.T) {
	for _, b := range backends(t) {
		t.Run(b.name, func(t *testing.T) {
			s := collectorOf(t, b)
			app, other := storage.Image{Repo: "apps", Name: "app"}, storage.Image{Repo: "plain", Name: "app"}
			var ms []storage.Manifest
			for _, n := range []string{"m1", "m2", "m3", "m4"} {
				ms = append(ms, put(t, s, app, n, nil))
			}
			for i, tg := range []string{"pr-1", "pr-2", "pr-3", "pr-4"} { // written in this order (ties: the greater name is newer)
				tag(t, s, app, tg, ms[i])
			}
			tag(t, s, app, "v1", ms[0])
			tag(t, s, app, "old", ms[0]) // pushed again below, while the purge deletes it
			tag(t, s, app, "latest", ms[0])
			tag(t, s, app, "main", ms[1])
			tag(t, s, other, "pr-0", put(t, s, other, "o", nil))
			time.Sleep(400 * time.Millisecond) // v1 is older than olderThan (setup wait; nothing timed is asserted)
			now := time.Now()
			tag(t, s, app, "v2", ms[2]) // written after the purge's now: young
			c := taskConfig(t, 0, 0, rule("pr-.*", 2, 0, false), rule("v.*|old", 0, 300*time.Millisecond, false))
			before0 := tagsOf(t, s, app)

			p := newPurger(t, s, c, 0, func() time.Time { return now })
			dry, err := p.Run(t.Context(), purge.TaskRetention, true)
			if err != nil {
				t.Fatal(err)
			}
			want := []string{"apps/app old", "apps/app pr-1", "apps/app pr-2", "apps/app v1"}
			if got := sorted(deleted(dry)); !slices.Equal(got, want) || dry.Considered != 9 || len(dry.Errors) != 0 {
				t.Fatalf("dry run: deleted %v, considered %d, errors %v; want %v of 9", got, dry.Considered, dry.Errors, want)
			}
			wantSkip := map[string]int{"kept-newest": 2, "young": 1, "latest": 1, "no-rule": 1}
			for k, v := range wantSkip {
				if dry.Skipped[k] != v {
					t.Errorf("dry run skipped %v, want %v", dry.Skipped, wantSkip)
					break
				}
			}
			if got := tagsOf(t, s, app); len(got) != len(before0) {
				t.Fatalf("the dry run deleted tags: %v", names(got))
			}

			rc := racer{store: s, onTag: func(img storage.Image, tg string, _ digest.Digest) {
				if tg == "old" { // pushed again, at another manifest
					tag(t, s, img, "old", ms[3])
				}
			}}
			p = newPurger(t, rc, c, 0, func() time.Time { return now })
			real, err := p.Run(t.Context(), purge.TaskRetention, false)
			if err != nil {
				t.Fatal(err)
			}
			if got, want := sorted(deleted(real)), []string{"apps/app pr-1", "apps/app pr-2", "apps/app v1"}; !slices.Equal(got, want) || real.Skipped["busy"] != 1 || len(real.Errors) != 0 {
				t.Fatalf("real run: deleted %v, skipped %v, errors %v; want %v and old busy", got, real.Skipped, real.Errors, want)
			}
			left := tagsOf(t, s, app)
			if got, want := names(left), []string{"latest", "main", "old", "pr-3", "pr-4", "v2"}; !slices.Equal(got, want) || left["old"] != ms[3].Digest {
				t.Errorf("tags left %v (old -> %s); want %v, old at the re-pushed %s", got, left["old"], want, ms[3].Digest)
			}
			if got := tagsOf(t, s, other); len(got) != 1 {
				t.Errorf("plain/app (no rules) lost tags: %v", names(got))
			}
			if got := state(t, s, app); len(slices.DeleteFunc(got, func(l string) bool { return strings.Contains(l, " -> ") })) != 4 {
				t.Errorf("manifests left %v, want all 4 (retention deletes tags only)", got)
			}
		})
	}
}

// TestRetentionRules: latest is matched only with includeLatest; a tag
// that any matching rule keeps stays; of tags written in the same
// millisecond the greater name is newer.
func TestRetentionRules(t *testing.T) {
	c := &clock{now: time.Now()}
	app := storage.Image{Repo: "apps", Name: "app"}
	for _, tc := range []struct {
		name  string
		rules []config.RetentionRule
		want  []string // tags deleted
	}{
		{"latest never matched", []config.RetentionRule{rule(".*", 1, 0, false)}, []string{"a", "v1", "v2", "v3", "v4"}},
		{"includeLatest", []config.RetentionRule{rule(".*", 1, 0, true)}, []string{"a", "latest", "v1", "v2", "v3", "v4"}},
		{"any matching rule keeps", []config.RetentionRule{rule(".*", 1, 0, false), rule("v[0-9]", 2, 0, false)}, []string{"a", "v1", "v2"}},
		{"ties: greater name newer", []config.RetentionRule{rule("[ab]", 1, 0, false)}, []string{"a"}},
		{"older than", []config.RetentionRule{rule("v.*", 0, 30*time.Hour, false)}, []string{"v1", "v2"}},
		{"both", []config.RetentionRule{rule("v.*", 1, 30*time.Hour, false)}, []string{"v1", "v2"}},
		{"both, count wins", []config.RetentionRule{rule("v.*", 3, 30*time.Hour, false)}, []string{"v1"}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			ms := memstore.New(memstore.WithClock(c.Now))
			t.Cleanup(func() { ms.Close() })
			m := put(t, ms, app, "m", nil)
			tag(t, ms, app, "latest", m) // the oldest
			for _, tg := range []string{"v1", "v2", "v3", "v4"} {
				c.Advance(24 * time.Hour)
				tag(t, ms, app, tg, m)
			}
			c.Advance(time.Hour)
			tag(t, ms, app, "b", m) // a and b in the same millisecond: b counts as newer
			tag(t, ms, app, "a", m)
			// now: v1 97 h old, v2 73 h, v3 49 h, v4 25 h, a and b 0 h.
			r, err := newPurger(t, ms, taskConfig(t, 0, 0, tc.rules...), 0, c.Now).Run(t.Context(), purge.TaskRetention, false)
			if err != nil {
				t.Fatal(err)
			}
			var got []string
			for _, it := range r.Deleted {
				got = append(got, it.ID)
			}
			slices.Sort(got)
			if !slices.Equal(got, tc.want) {
				t.Errorf("deleted %v, want %v (skipped %v)", got, tc.want, r.Skipped)
			}
			if left := names(tagsOf(t, ms, app)); len(left)+len(got) != 7 {
				t.Errorf("left %v after deleting %v: want the other tags of 7", left, got)
			}
		})
	}
}
