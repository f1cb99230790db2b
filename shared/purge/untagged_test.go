package purge_test

import (
	"context"
	"fmt"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"

	digest "github.com/opencontainers/go-digest"

	"github.com/airlock-registry/airlock/shared/config"
	"github.com/airlock-registry/airlock/shared/purge"
	"github.com/airlock-registry/airlock/shared/storage"
	"github.com/airlock-registry/airlock/shared/storage/memstore"
)

// store is what the tests of the catalog tasks write through.
type store interface {
	meta
	storage.Collector
}

func collectorOf(t *testing.T, b backend) store {
	t.Helper()
	s, ok := b.meta.(store)
	if !ok {
		t.Fatalf("%s: %T does not implement storage.Collector", b.name, b.meta)
	}
	return s
}

// taskConfig is the configuration of the catalog tasks' tests: hosted
// "apps" with untaggedAfter and retention rules, hosted "plain" and
// "apps-x" with nothing, proxy "hub" with evictAfter. Durations are set
// after parsing, below the minimums when a test runs on the emulators'
// real clocks (their stores stamp touch times with the time of day).
func taskConfig(t *testing.T, untagged, evict time.Duration, rules ...config.RetentionRule) *config.Config {
	t.Helper()
	c, err := config.Parse([]byte(`repositories:
- {name: apps, kind: hosted, purge: {untaggedAfter: 24h, evictAfter: null}}
- {name: apps-x, kind: hosted}
- {name: plain, kind: hosted}
- {name: hub, kind: proxy, remote: "https://registry-1.docker.io", purge: {evictAfter: 24h}}
`))
	if err != nil {
		t.Fatal(err)
	}
	apps, _ := c.Repository("apps")
	apps.Purge.UntaggedAfter = &config.Duration{Duration: untagged}
	apps.Purge.Retention = rules
	hub, _ := c.Repository("hub")
	hub.Purge.EvictAfter = &config.Duration{Duration: evict}
	return c
}

func newPurger(t *testing.T, m storage.Metadata, c *config.Config, max int, now func() time.Time) *purge.Purger {
	t.Helper()
	p, err := purge.New(purge.Deps{Meta: m, Blobs: memstore.New(), Config: c, MaxPerRun: max, Now: now})
	if err != nil {
		t.Fatal(err)
	}
	return p
}

// put stores a manifest named name in img (an image manifest; an index
// when children are given; a referrer of subject when it is set) and
// returns it.
func put(t *testing.T, s store, img storage.Image, name string, subject *storage.Manifest, children ...storage.Manifest) storage.Manifest {
	t.Helper()
	m := storage.Manifest{MediaType: "application/vnd.oci.image.manifest.v1+json", Created: time.Now().UTC()}
	body := fmt.Sprintf(`{"schemaVersion":2,"mediaType":%q,"annotations":{"name":%q}`, m.MediaType, name)
	if len(children) > 0 {
		m.MediaType = "application/vnd.oci.image.index.v1+json"
		body = fmt.Sprintf(`{"schemaVersion":2,"mediaType":%q,"annotations":{"name":%q},"manifests":[`, m.MediaType, name)
		for i, c := range children {
			m.Children = append(m.Children, c.Digest)
			body += fmt.Sprintf(`%s{"mediaType":%q,"digest":%q,"size":%d}`, map[bool]string{true: "", false: ","}[i == 0], c.MediaType, c.Digest, c.Size)
		}
		body += "]"
	}
	if subject != nil {
		m.Subject, m.ArtifactType = subject.Digest, "application/vnd.example.signature"
		body += fmt.Sprintf(`,"subject":{"mediaType":%q,"digest":%q,"size":%d}`, subject.MediaType, subject.Digest, subject.Size)
	}
	body += "}"
	m.Body, m.Size, m.Digest = []byte(body), int64(len(body)), digest.FromString(body)
	if err := s.PutManifest(t.Context(), img, m); err != nil {
		t.Fatal(err)
	}
	return m
}

func tag(t *testing.T, s store, img storage.Image, tag string, m storage.Manifest) {
	t.Helper()
	if err := s.PutTag(t.Context(), img, tag, m.Digest, storage.TagOverwrite); err != nil {
		t.Fatal(err)
	}
}

// state is what is stored under some images: "<image> <tag> -> <digest>"
// and "<image> <digest>" lines, sorted.
func state(t *testing.T, s store, imgs ...storage.Image) []string {
	t.Helper()
	var out []string
	for _, img := range imgs {
		items, err := s.ListImage(t.Context(), img)
		if err != nil {
			t.Fatal(err)
		}
		for _, tg := range items.Tags {
			out = append(out, fmt.Sprintf("%s %s -> %s", img, tg.Tag, tg.Digest))
		}
		for _, m := range items.Manifests {
			out = append(out, fmt.Sprintf("%s %s", img, m.Digest))
		}
	}
	slices.Sort(out)
	return out
}

// deleted returns the report's items as "<image> <id>", in report order.
func deleted(r purge.Report) []string {
	out := []string{}
	for _, it := range r.Deleted {
		out = append(out, it.Image+" "+it.ID)
	}
	return out
}

func item(img storage.Image, id any) string { return fmt.Sprintf("%s %v", img, id) }

// without returns st minus the lines of gone ("<image> <digest>" and the
// tags pointing at such a digest).
func without(st []string, gone ...string) []string {
	var out []string
	for _, l := range st {
		if !slices.ContainsFunc(gone, func(g string) bool {
			i := strings.LastIndex(g, " ")
			return l == g || strings.HasPrefix(l, g[:i]+" ") && strings.HasSuffix(l, " -> "+g[i+1:])
		}) {
			out = append(out, l)
		}
	}
	return out
}

// untaggedFixture stores, in apps/app: T tagged v1; index I tagged multi of
// C1, C2; untagged index U of U1 and C2; signature S of T and SBOM SB of S;
// untagged X and its signature S2; untagged nested indexes N2 -> N1 -> N0;
// in apps/other an untagged O; in plain/app (no purge settings) an untagged
// K. It returns every image and what an untagged-manifests run must delete,
// in a valid order per image.
func untaggedFixture(t *testing.T, s store) (imgs []storage.Image, gone []string) {
	app, other, plain := storage.Image{Repo: "apps", Name: "app"}, storage.Image{Repo: "apps", Name: "other"}, storage.Image{Repo: "plain", Name: "app"}
	T := put(t, s, app, "T", nil)
	tag(t, s, app, "v1", T)
	C1, C2 := put(t, s, app, "C1", nil), put(t, s, app, "C2", nil)
	I := put(t, s, app, "I", nil, C1, C2)
	tag(t, s, app, "multi", I)
	U1 := put(t, s, app, "U1", nil)
	U := put(t, s, app, "U", nil, U1, C2)
	S := put(t, s, app, "S", &T)
	put(t, s, app, "SB", &S)
	X := put(t, s, app, "X", nil)
	S2 := put(t, s, app, "S2", &X)
	N0 := put(t, s, app, "N0", nil)
	N1 := put(t, s, app, "N1", nil, N0)
	N2 := put(t, s, app, "N2", nil, N1)
	O := put(t, s, other, "O", nil)
	put(t, s, plain, "K", nil)
	return []storage.Image{app, other, plain}, []string{
		item(app, U.Digest), item(app, U1.Digest), item(app, X.Digest), item(app, S2.Digest),
		item(app, N2.Digest), item(app, N1.Digest), item(app, N0.Digest), item(other, O.Digest),
	}
}

// before reports whether a comes before b in list.
func before(list []string, a, b string) bool {
	i, j := slices.Index(list, a), slices.Index(list, b)
	return i >= 0 && j >= 0 && i < j
}

// TestUntaggedManifests: exactly the manifests no tag, kept index or kept
// subject reaches go (indexes before their children), nothing in a
// repository without untaggedAfter; a dry run reports the same set first
// and deletes nothing; a second run finds nothing.
func TestUntaggedManifests(t *testing.T) {
	for _, b := range backends(t) {
		t.Run(b.name, func(t *testing.T) {
			s := collectorOf(t, b)
			imgs, gone := untaggedFixture(t, s)
			before0 := state(t, s, imgs...)
			p := newPurger(t, s, taskConfig(t, 24*time.Hour, 0), 0, func() time.Time { return time.Now().Add(48 * time.Hour) })

			dry, err := p.Run(t.Context(), purge.TaskUntaggedManifests, true)
			if err != nil {
				t.Fatal(err)
			}
			if got := state(t, s, imgs...); !slices.Equal(got, before0) {
				t.Fatalf("the dry run changed the store:\n%v\nwas\n%v", got, before0)
			}
			checkUntaggedReport(t, dry, gone)
			real, err := p.Run(t.Context(), purge.TaskUntaggedManifests, false)
			if err != nil {
				t.Fatal(err)
			}
			checkUntaggedReport(t, real, gone)
			if !slices.Equal(deleted(real), deleted(dry)) || real.Bytes != dry.Bytes || real.Bytes == 0 {
				t.Errorf("real run deleted %v (%d bytes); the dry run reported %v (%d bytes)", deleted(real), real.Bytes, deleted(dry), dry.Bytes)
			}
			if got, want := state(t, s, imgs...), without(before0, gone...); !slices.Equal(got, want) {
				t.Errorf("left after the run:\n%v\nwant\n%v", got, want)
			}
			again, err := p.Run(t.Context(), purge.TaskUntaggedManifests, false)
			if err != nil || len(again.Deleted) != 0 || again.Considered != 6 || len(again.Errors) != 0 {
				t.Errorf("second run: %+v, %v; want nothing deleted, the 6 kept considered", again, err)
			}
		})
	}
}

func checkUntaggedReport(t *testing.T, r purge.Report, gone []string) {
	t.Helper()
	got := deleted(r)
	if !slices.Equal(sorted(got), sorted(gone)) || len(r.Errors) != 0 || r.More {
		t.Fatalf("dry=%v: deleted %v (errors %v, more %v), want %v", r.DryRun, got, r.Errors, r.More, gone)
	}
	for _, pair := range [][2]int{{0, 1}, {2, 3}, {4, 5}, {5, 6}} { // U before U1, X before its signature S2, N2 > N1 > N0
		if !before(got, gone[pair[0]], gone[pair[1]]) {
			t.Errorf("dry=%v: %s deleted after %s (%v): a parent must go first", r.DryRun, gone[pair[0]], gone[pair[1]], got)
		}
	}
	want := map[string]int{"kept-tagged": 2, "kept-child": 2, "kept-referrer": 2}
	for k, v := range want {
		if r.Skipped[k] != v {
			t.Errorf("dry=%v: skipped %v, want %v", r.DryRun, r.Skipped, want)
			break
		}
	}
	if r.Considered != 14 {
		t.Errorf("dry=%v: considered %d, want 14 (13 manifests of apps/app, 1 of apps/other)", r.DryRun, r.Considered)
	}
}

func sorted(s []string) []string { s = slices.Clone(s); slices.Sort(s); return s }

// clock is a settable clock shared by a memstore and a purger.
type clock struct {
	mu  sync.Mutex
	now time.Time
}

func (c *clock) Now() time.Time { c.mu.Lock(); defer c.mu.Unlock(); return c.now }

func (c *clock) Advance(d time.Duration) { c.mu.Lock(); c.now = c.now.Add(d); c.mu.Unlock() }

// TestUntaggedYoung: an untagged manifest written or touched (an index PUT
// referencing it) within untaggedAfter stays, and so do the children of a
// young index and the old referrers of a young subject.
func TestUntaggedYoung(t *testing.T) {
	c := &clock{now: time.Now()}
	ms := memstore.New(memstore.WithClock(c.Now))
	t.Cleanup(func() { ms.Close() })
	app := storage.Image{Repo: "apps", Name: "app"}
	old := put(t, ms, app, "old", nil)
	child := put(t, ms, app, "child", nil)
	touched := put(t, ms, app, "touched", nil)
	put(t, ms, app, "sig", &touched)
	c.Advance(40 * time.Hour)
	if err := ms.TouchManifest(t.Context(), app, touched.Digest); err != nil {
		t.Fatal(err)
	}
	c.Advance(7 * time.Hour)
	put(t, ms, app, "young", nil, child)
	c.Advance(time.Hour) // 48 h after the first writes
	p := newPurger(t, ms, taskConfig(t, 24*time.Hour, 0), 0, c.Now)
	r, err := p.Run(t.Context(), purge.TaskUntaggedManifests, false)
	if err != nil {
		t.Fatal(err)
	}
	if got, want := deleted(r), []string{item(app, old.Digest)}; !slices.Equal(got, want) || r.Skipped["young"] != 2 || r.Skipped["kept-child"] != 1 || r.Skipped["kept-referrer"] != 1 {
		t.Fatalf("deleted %v, skipped %v; want only %v, young 2 (young, touched), kept-child 1, kept-referrer 1", got, r.Skipped, want)
	}
}

// racer forwards to a store but runs a writer's request just before the
// purge's conditional deletes reach it: real writes on the real store.
type racer struct {
	store
	onTag      func(img storage.Image, tag string, d digest.Digest)
	onManifest func(img storage.Image, d digest.Digest)
}

func (r racer) DeleteTagIf(ctx context.Context, img storage.Image, want storage.TagItem) error {
	if r.onTag != nil {
		r.onTag(img, want.Tag, want.Digest)
	}
	return r.store.DeleteTagIf(ctx, img, want)
}

func (r racer) DeleteManifestIf(ctx context.Context, img storage.Image, d digest.Digest, cut time.Time) error {
	if r.onManifest != nil {
		r.onManifest(img, d)
	}
	return r.store.DeleteManifestIf(ctx, img, d, cut)
}

// TestUntaggedRacingWriters: an index pushed again between the purge's
// decision and its delete stays with its children (busy); a new index
// referencing a child (it touches the child) keeps that child; the rest
// goes. Real clocks: untaggedAfter is 300ms and the fixture is older.
func TestUntaggedRacingWriters(t *testing.T) {
	for _, b := range backends(t) {
		t.Run(b.name, func(t *testing.T) {
			s := collectorOf(t, b)
			app := storage.Image{Repo: "apps", Name: "app"}
			a, b2 := put(t, s, app, "a", nil), put(t, s, app, "b", nil)
			U := put(t, s, app, "U", nil, a, b2)
			c1, c2 := put(t, s, app, "c1", nil), put(t, s, app, "c2", nil)
			V := put(t, s, app, "V", nil, c1, c2)
			lone := put(t, s, app, "lone", nil)
			time.Sleep(400 * time.Millisecond) // older than untaggedAfter (a setup wait, nothing timed is asserted)
			var newIndex storage.Manifest
			rc := racer{store: s, onManifest: func(img storage.Image, d digest.Digest) {
				switch d {
				case U.Digest: // the index is pushed again (by digest): the store rewrites it
					if err := s.PutManifest(t.Context(), img, U); err != nil {
						t.Error(err)
					}
				case c2.Digest: // a new index PUT checks (touches) its child c2
					if err := s.TouchManifest(t.Context(), img, c2.Digest); err != nil {
						t.Error(err)
					}
					newIndex = put(t, s, img, "new", nil, c2)
					tag(t, s, img, "new", newIndex)
				}
			}}
			p := newPurger(t, rc, taskConfig(t, 300*time.Millisecond, 0), 0, time.Now)
			r, err := p.Run(t.Context(), purge.TaskUntaggedManifests, false)
			if err != nil {
				t.Fatal(err)
			}
			want := []string{item(app, V.Digest), item(app, c1.Digest), item(app, lone.Digest)}
			if got := deleted(r); !slices.Equal(sorted(got), sorted(want)) || r.Skipped["busy"] != 4 || len(r.Errors) != 0 {
				t.Fatalf("deleted %v, skipped %v, errors %v; want %v and 4 busy (U, a, b, c2)", got, r.Skipped, r.Errors, want)
			}
			left := state(t, s, app)
			for _, m := range []storage.Manifest{U, a, b2, c2, newIndex} {
				if !slices.Contains(left, item(app, m.Digest)) {
					t.Errorf("%s is gone: %v", m.Digest, left)
				}
			}
		})
	}
}

// TestUntaggedDanglingTags: a tag left pointing at a manifest the image does
// not hold (a crash between a manifest delete's writes) is deleted by
// untagged-manifests once older than untaggedAfter, also in a dry run's
// report; a tag pointing at a held manifest and a young dangling tag stay.
func TestUntaggedDanglingTags(t *testing.T) {
	for _, b := range backends(t) {
		t.Run(b.name, func(t *testing.T) {
			s := collectorOf(t, b)
			img := storage.Image{Repo: "apps", Name: "dangling/" + fmt.Sprint(time.Now().UnixNano())}
			m := put(t, s, img, "kept", nil)
			tag(t, s, img, "v1", m)
			if err := s.PutTag(t.Context(), img, "gone", digest.FromString("a manifest deleted"), storage.TagOverwrite); err != nil {
				t.Fatal(err)
			}
			old := newPurger(t, s, taskConfig(t, 24*time.Hour, 0), 0, func() time.Time { return time.Now().Add(48 * time.Hour) })
			young := newPurger(t, s, taskConfig(t, 24*time.Hour, 0), 0, func() time.Time { return time.Now().Add(time.Hour) })
			if r, err := young.Run(t.Context(), purge.TaskUntaggedManifests, false); err != nil || slices.Contains(deleted(r), item(img, "gone")) {
				t.Fatalf("a young dangling tag was deleted: %v %v", deleted(r), err)
			}
			dry, err := old.Run(t.Context(), purge.TaskUntaggedManifests, true)
			if err != nil {
				t.Fatal(err)
			}
			real, err := old.Run(t.Context(), purge.TaskUntaggedManifests, false)
			if err != nil {
				t.Fatal(err)
			}
			for _, r := range []purge.Report{dry, real} {
				if !slices.Contains(deleted(r), item(img, "gone")) || slices.Contains(deleted(r), item(img, "v1")) {
					t.Errorf("dry=%v: deleted %v; want the dangling tag gone and v1 kept", r.DryRun, deleted(r))
				}
			}
			want := []string{fmt.Sprintf("%s %s", img, m.Digest), fmt.Sprintf("%s v1 -> %s", img, m.Digest)}
			slices.Sort(want)
			if got := state(t, s, img); !slices.Equal(got, want) {
				t.Errorf("left: %v, want %v", got, want)
			}
		})
	}
}
