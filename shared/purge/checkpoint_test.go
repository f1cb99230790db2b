package purge_test

import (
	"encoding/json"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/airlock-registry/airlock/shared/config"
	"github.com/airlock-registry/airlock/shared/purge"
	"github.com/airlock-registry/airlock/shared/storage"
	"github.com/airlock-registry/airlock/shared/storage/memstore"
)

// catalogTasks are the tasks that walk the catalog.
var catalogTasks = []string{purge.TaskRetention, purge.TaskUntaggedManifests, purge.TaskProxyEvict}

// walkFixture stores four images in apps (each a tagged manifest, an
// untagged one and tags pr-1..3), one in apps-x (sorts before apps/ in the
// catalog) and plain, and evictFixture's proxy images. It returns every
// image, the purges' now and the configuration.
func walkFixture(t *testing.T, s store) ([]storage.Image, time.Time, *config.Config) {
	var imgs []storage.Image
	for _, name := range []string{"a", "b", "c", "d"} {
		img := storage.Image{Repo: "apps", Name: name}
		m := put(t, s, img, name, nil)
		for _, tg := range []string{"pr-1", "pr-2", "pr-3"} {
			tag(t, s, img, tg, m)
		}
		put(t, s, img, "untagged "+name, nil)
		imgs = append(imgs, img)
	}
	for _, img := range []storage.Image{{Repo: "apps-x", Name: "y"}, {Repo: "plain", Name: "z"}} {
		put(t, s, img, "untagged", nil)
		imgs = append(imgs, img)
	}
	now, more, _, _, _ := evictFixture(t, s) // sleeps: everything above is old too
	c := taskConfig(t, 300*time.Millisecond, 300*time.Millisecond, rule("pr-.*", 1, 0, false))
	return append(imgs, more...), now, c
}

// checkpoint returns the last image of the task's checkpoint ("": none)
// and the pass it names.
func checkpoint(t *testing.T, s store, task string) (last, pass string) {
	t.Helper()
	m, err := s.GetMarker(t.Context(), "purge", task)
	if err != nil {
		return "", ""
	}
	var cp struct{ Last, Pass string }
	if err := json.Unmarshal([]byte(m.Value), &cp); err != nil || cp.Last == "" || cp.Pass == "" {
		t.Fatalf("%s checkpoint %q: want {\"pass\": ..., \"last\": ...} (%v)", task, m.Value, err)
	}
	return cp.Last, cp.Pass
}

// listedLines returns what the runs of rs deleted as "image id", read from
// their full lists (fullList).
func listedLines(t *testing.T, b backend, rs ...purge.Report) []string {
	t.Helper()
	out := []string{}
	for _, it := range fullList(t, b.blobs, rs...) {
		out = append(out, it.Image+" "+it.ID)
	}
	return out
}

// TestResumable: with MaxPerRun 1 every catalog task does one image per
// run, continues after its checkpoint, ends with More false and no
// checkpoint, and leaves exactly the state of one unbounded run. A dry
// pass run alongside, one run before each real one, keeps a checkpoint of
// its own (another pass) in step with the real one and reports exactly
// what the real run then deletes.
func TestResumable(t *testing.T) {
	againstOneRun(t, func(t *testing.T, b backend, s store, imgs []storage.Image, now time.Time, c *config.Config, want []string) {
		p, err := purge.New(purge.Deps{Meta: s, Blobs: b.blobs, Config: c, MaxPerRun: 1, Now: func() time.Time { return now }})
		if err != nil {
			t.Fatal(err)
		}
		for _, task := range catalogTasks {
			var runs int
			var seen []string
			for more := true; more; runs++ {
				if runs > 10 {
					t.Fatalf("%s: still more after %d runs", task, runs)
				}
				cp, pass := checkpoint(t, s, task)
				dry, err := p.Run(t.Context(), task, true)
				if err != nil {
					t.Fatal(err)
				}
				if dryCp, dryPass := checkpoint(t, s, task+"-dry"); dry.More != (dryCp != "") || dry.More && (dryPass != dry.Pass || !strings.HasPrefix(dryPass, "dry-")) {
					t.Fatalf("%s dry run %d: more %v, pass %q, dry checkpoint %q of pass %q: want one of its own while more", task, runs, dry.More, dry.Pass, dryCp, dryPass)
				}
				if again, _ := checkpoint(t, s, task); again != cp {
					t.Fatalf("%s dry run %d moved the real checkpoint %q to %q", task, runs, cp, again)
				}
				r, err := p.Run(t.Context(), task, false)
				if err != nil || len(r.Errors) != 0 {
					t.Fatalf("%s run %d: %v %v", task, runs, err, r.Errors)
				}
				if got, dryGot := listedLines(t, b, r), listedLines(t, b, dry); !slices.Equal(got, dryGot) {
					t.Fatalf("%s run %d (after checkpoint %q): deleted %v, the dry run before reported %v", task, runs, cp, got, dryGot)
				}
				if cp != "" && r.Pass != pass || r.Pass == dry.Pass {
					t.Fatalf("%s run %d: pass %q (checkpoint's %q, the dry pass %q): want the checkpoint's, never the dry one", task, runs, r.Pass, pass, dry.Pass)
				}
				more = r.More
				next, _ := checkpoint(t, s, task)
				if more == (next == "") || more && next <= cp {
					t.Fatalf("%s run %d: more %v, checkpoint %q -> %q: want it to move forward while more", task, runs, more, cp, next)
				}
				seen = append(seen, next)
			}
			wantRuns := map[string]int{purge.TaskProxyEvict: 3}[task] // hub: alpine, half, old
			if wantRuns == 0 {
				wantRuns = 5 // apps: a, app (evictFixture's), b, c, d; apps-x and plain are not walked
			}
			if runs != wantRuns {
				t.Errorf("%s: %d runs (checkpoints %q), want %d: one per image", task, runs, seen, wantRuns)
			}
		}
		if got := state(t, s, imgs...); !slices.Equal(got, want) {
			t.Errorf("bounded runs left\n%v\nan unbounded run\n%v", got, want)
		}
	})
}

// againstOneRun runs check on each backend with a store s holding
// walkFixture, and want: the state that one unbounded real run of every
// catalog task leaves on a second store holding the same.
func againstOneRun(t *testing.T, check func(t *testing.T, b backend, s store, imgs []storage.Image, now time.Time, c *config.Config, want []string)) {
	bs, refs := backends(t), backends(t)
	for i := range bs {
		t.Run(bs[i].name, func(t *testing.T) {
			s, ref := collectorOf(t, bs[i]), collectorOf(t, refs[i])
			imgs, now, c := walkFixture(t, s)
			_, refNow, _ := walkFixture(t, ref)
			for _, task := range catalogTasks {
				if r, err := newPurger(t, ref, c, 0, func() time.Time { return refNow }).Run(t.Context(), task, false); err != nil || r.More || r.Count == 0 {
					t.Fatalf("unbounded %s: %+v %v", task, r, err)
				}
			}
			check(t, bs[i], s, imgs, now, c, state(t, ref, imgs...))
		})
	}
}

// TestConcurrentRuns: two real runs of every catalog task at once end in
// the state one run leaves, without errors.
func TestConcurrentRuns(t *testing.T) {
	againstOneRun(t, func(t *testing.T, b backend, s store, imgs []storage.Image, now time.Time, c *config.Config, want []string) {
		var wg sync.WaitGroup
		errs := make(chan string, 100)
		for range 2 {
			wg.Add(1)
			go func() {
				defer wg.Done()
				p, err := purge.New(purge.Deps{Meta: s, Blobs: b.blobs, Config: c, MaxPerRun: 2, Now: func() time.Time { return now }})
				if err != nil {
					errs <- err.Error()
					return
				}
				for _, task := range catalogTasks {
					for more := true; more; {
						r, err := p.Run(t.Context(), task, false)
						if err != nil {
							errs <- err.Error()
							return
						}
						for _, e := range r.Errors {
							errs <- e
						}
						more = r.More
					}
				}
			}()
		}
		wg.Wait()
		close(errs)
		for e := range errs {
			t.Error(e)
		}
		if got := state(t, s, imgs...); !slices.Equal(got, want) {
			t.Errorf("two concurrent runs left\n%v\none run\n%v", got, want)
		}
	})
}

// TestTaskList: the catalog tasks run after incomplete-uploads, retention
// before untagged-manifests (the manifests it untags go in the same
// RunAll); an unknown name's error lists them (the admin API's 400).
func TestTaskList(t *testing.T) {
	got := purge.Tasks()
	want := []string{purge.TaskIncompleteUploads, purge.TaskRetention, purge.TaskUntaggedManifests, purge.TaskProxyEvict}
	if len(got) < len(want) || !slices.Equal(got[:len(want)], want) {
		t.Fatalf("tasks %v, want them to start with %v", got, want)
	}
	_, err := newPurger(t, memstore.New(), taskConfig(t, time.Hour, 24*time.Hour), 0, nil).Run(t.Context(), "untagged", true)
	for _, name := range want {
		if err == nil || !strings.Contains(err.Error(), name) {
			t.Errorf("unknown task: error %v, want one listing %s", err, name)
		}
	}
}
