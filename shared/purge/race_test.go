package purge_test

import (
	"context"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"math/rand/v2"
	"net/http"
	"net/http/httptest"
	"os"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	digest "github.com/opencontainers/go-digest"

	"github.com/google/go-containerregistry/pkg/name"
	v1 "github.com/google/go-containerregistry/pkg/v1"
	"github.com/google/go-containerregistry/pkg/v1/empty"
	"github.com/google/go-containerregistry/pkg/v1/mutate"
	"github.com/google/go-containerregistry/pkg/v1/remote"
	"github.com/google/go-containerregistry/pkg/v1/static"
	"github.com/google/go-containerregistry/pkg/v1/types"

	"github.com/airlock-registry/airlock/shared/config"
	"github.com/airlock-registry/airlock/shared/purge"
	"github.com/airlock-registry/airlock/shared/registry"
	"github.com/airlock-registry/airlock/shared/storage"
)

// raceGrace is the grace period the race test's purger works with: its
// clock runs the configured 24 h grace minus raceGrace ahead, so its cut is
// raceGrace before the real now. Every request of the test must finish
// within raceGrace - storage.FreshFor (package doc: the safety argument's
// one assumption); 10 s leaves 8 s for a request on a loaded CI machine.
const raceGrace = 10 * time.Second

var raceCfg = func() *config.Config {
	c, err := config.Parse([]byte(`repositories:
  - {name: local, kind: hosted}
  - {name: other, kind: hosted}
  - {name: docker, kind: group, members: [local, other], writeMember: local}
`))
	if err != nil {
		panic(err)
	}
	return c
}()

// TestBlobGCRace: pushes (plain, after cross-repository mounts, and through
// a group) of new images that reuse old, unreferenced layers run while the
// garbage collection runs again and again. Afterwards every image whose push
// succeeded pulls completely with go-containerregistry's client (each blob
// read through the registry's redirect and verified against its digest), and
// the old layers no push reused are gone once past the grace period. A push
// that loses the race is refused with MANIFEST_BLOB_UNKNOWN and is pushed
// again by the test, as a CI job would (counted). Rounds:
// AIRLOCK_GC_RACE_ROUNDS (default 2); seed: AIRLOCK_GC_RACE_SEED.
func TestBlobGCRace(t *testing.T) {
	rounds := 2
	if v, err := strconv.Atoi(os.Getenv("AIRLOCK_GC_RACE_ROUNDS")); err == nil && v > 0 {
		rounds = v
	}
	seed := uint64(time.Now().UnixNano())
	if v, err := strconv.ParseUint(os.Getenv("AIRLOCK_GC_RACE_SEED"), 10, 64); err == nil {
		seed = v
	}
	t.Logf("seed %d (AIRLOCK_GC_RACE_SEED=%d to repeat), %d rounds per backend", seed, seed, rounds)
	for _, b := range backends(t) {
		t.Run(b.name, func(t *testing.T) {
			var tot raceStats
			for round := range rounds {
				s := raceRound(t, b, rand.New(rand.NewPCG(seed, uint64(round))), round)
				tot.add(s)
				if t.Failed() {
					t.Fatalf("round %d failed (seed %d)", round, seed)
				}
			}
			t.Logf("%s: %d rounds: %d images pushed and pulled completely (%d plain, %d after mounts, %d through the group), %d pushes refused and pushed again, %d mounts refused, %d GC runs during pushes deleted %d links, %d records, %d objects; %d unreused old layers collected",
				b.name, rounds, tot.pushed, tot.byKind[0], tot.byKind[1], tot.byKind[2], tot.retried, tot.mountMiss, tot.gcRuns, tot.links, tot.records, tot.objects, tot.collected)
			if tot.gcRuns < rounds || tot.links+tot.records == 0 {
				t.Errorf("the GC did not race the pushes: %d runs, %d links and %d records deleted", tot.gcRuns, tot.links, tot.records)
			}
		})
	}
}

type raceStats struct {
	pushed, retried, mountMiss, gcRuns, links, records, objects, collected int
	byKind                                                                 [3]int
}

func (s *raceStats) add(o raceStats) {
	s.pushed += o.pushed
	s.retried += o.retried
	s.mountMiss += o.mountMiss
	s.gcRuns += o.gcRuns
	s.links += o.links
	s.records += o.records
	s.objects += o.objects
	s.collected += o.collected
	for i := range s.byKind {
		s.byKind[i] += o.byKind[i]
	}
}

func raceRound(t *testing.T, b backend, rng *rand.Rand, round int) raceStats {
	ctx := context.Background()
	var st raceStats
	rg, err := registry.New(registry.Deps{Meta: b.meta, Blobs: b.blobs, Config: raceCfg,
		Logger: slog.New(slog.NewTextHandler(t.Output(), &slog.HandlerOptions{Level: slog.LevelWarn}))})
	if err != nil {
		t.Fatal(err)
	}
	srv := httptest.NewServer(rg)
	defer srv.Close()
	host := strings.TrimPrefix(srv.URL, "http://")
	ref := func(s string) name.Reference {
		r, err := name.ParseReference(host+"/"+s, name.Insecure)
		if err != nil {
			t.Fatal(err)
		}
		return r
	}
	opts := []remote.Option{remote.WithRetryBackoff(remote.Backoff{Steps: 1})}
	prefix := fmt.Sprintf("r%d-%x", round, rng.Uint32())

	// Old layers: pushed in images whose manifests are then deleted, so
	// they are unreferenced, linked, recorded, and older than the grace.
	var pool []v1.Layer
	for i := range 20 {
		n := 2000 + rng.IntN(200<<10)
		if i < 2 {
			n = 6<<20 + rng.IntN(1<<20) // multipart blobs at an upload's key
		}
		data := make([]byte, n)
		for j := range data {
			data[j] = byte(rng.Uint32())
		}
		pool = append(pool, static.NewLayer(data, types.OCILayer))
	}
	keys := map[v1.Hash]string{} // pool layer → its record's object key
	for i := 0; i < len(pool); i += 4 {
		img, err := mutate.AppendLayers(empty.Image, pool[i:i+4]...)
		if err != nil {
			t.Fatal(err)
		}
		r := ref(fmt.Sprintf("local/%s/old-%d:v1", prefix, i/4))
		if err := remote.Write(r, img, opts...); err != nil {
			t.Fatal(err)
		}
		d, _ := img.Digest()
		del := r.Context().Digest(d.String())
		if err := remote.Delete(del, opts...); err != nil {
			t.Fatalf("delete %s: %v", del, err)
		}
	}
	for _, l := range pool {
		d, _ := l.Digest()
		rec, err := b.meta.GetBlob(ctx, digestOf(d))
		if err != nil {
			t.Fatal(err)
		}
		keys[d] = rec.ObjectKey()
	}
	time.Sleep(raceGrace + time.Second)

	// The garbage collection, back to back until the pushes end.
	p, err := purge.New(purge.Deps{Meta: b.meta, Blobs: b.blobs, Config: raceCfg, ScanPage: 50,
		Now: func() time.Time { return time.Now().Add(24*time.Hour - raceGrace) }})
	if err != nil {
		t.Fatal(err)
	}
	stop := make(chan struct{})
	gcDone := make(chan struct{})
	go func() {
		defer close(gcDone)
		for {
			select {
			case <-stop:
				return
			default:
			}
			r, err := p.Run(ctx, purge.TaskBlobGC, false)
			if err != nil {
				t.Errorf("blob-gc during pushes: %v", err)
				return
			}
			if len(r.Errors) > 0 {
				t.Errorf("blob-gc during pushes reported errors: %q", r.Errors)
			}
			st.gcRuns++
			for _, it := range r.Deleted {
				switch it.Kind {
				case "link":
					st.links++
				case "blob":
					st.records++
				case "object":
					st.objects++
				}
				if os.Getenv("AIRLOCK_GC_RACE_DEBUG") != "" {
					t.Logf("gc deleted %s %s %s %v created %v", it.Kind, it.Image, it.ID, it.Keys, it.Created)
				}
			}
		}
	}()

	// Pushers: each image reuses three old layers and adds one of its own.
	type pushed struct {
		ref  name.Reference
		kind int
	}
	var mu sync.Mutex
	var done []pushed
	reused := map[v1.Hash]bool{}
	var retried, mountMiss atomic.Int64
	var wg sync.WaitGroup
	for w := range 4 {
		seeds := [2]uint64{rng.Uint64(), rng.Uint64()}
		wg.Go(func() {
			rng := rand.New(rand.NewPCG(seeds[0], seeds[1]))
			for i := range 6 {
				kind := (w + i) % 3
				var layers []v1.Layer
				mu.Lock()
				for _, j := range rng.Perm(len(pool))[:3] {
					layers = append(layers, pool[j])
					d, _ := pool[j].Digest()
					reused[d] = true
				}
				mu.Unlock()
				layers = append(layers, static.NewLayer([]byte(fmt.Sprintf("new %s %d %d %d", prefix, w, i, rng.Uint64())), types.OCILayer))
				img, err := mutate.AppendLayers(empty.Image, layers...)
				if err != nil {
					t.Error(err)
					return
				}
				repoName := map[int]string{0: "local", 1: "other", 2: "docker"}[kind]
				r := ref(fmt.Sprintf("%s/%s/new-%d-%d:v1", repoName, prefix, w, i))
				for attempt := 0; ; attempt++ {
					if kind == 1 {
						// Mount the reused layers from where they were pushed.
						for _, l := range layers[:3] {
							d, _ := l.Digest()
							if !mount(t, srv.URL, fmt.Sprintf("other/%s/new-%d-%d", prefix, w, i), d.String(), fmt.Sprintf("local/%s/old-%d", prefix, indexOf(pool, l)/4)) {
								mountMiss.Add(1)
							}
						}
					}
					err := remote.Write(r, img, opts...)
					if err == nil {
						break
					}
					if !strings.Contains(err.Error(), "MANIFEST_BLOB_UNKNOWN") || attempt >= 10 {
						t.Errorf("push %s (attempt %d): %v", r, attempt, err)
						return
					}
					retried.Add(1) // lost the race to the GC: push again
				}
				mu.Lock()
				done = append(done, pushed{r, kind})
				mu.Unlock()
			}
		})
	}
	wg.Wait()
	close(stop)
	<-gcDone
	st.retried, st.mountMiss = int(retried.Load()), int(mountMiss.Load())

	// Every pushed image pulls completely, each blob verified.
	for _, pu := range done {
		for _, r := range []name.Reference{pu.ref, groupRef(t, pu.ref, host)} {
			if r == nil {
				continue
			}
			if err := pullAll(r, opts); err != nil {
				t.Errorf("pull %s (pushed to %s): %v", r, pu.ref, err)
			}
		}
		st.pushed++
		st.byKind[pu.kind]++
	}

	// Once past the grace period, a pass collects the old layers no push reused.
	time.Sleep(raceGrace + time.Second)
	for i := 0; ; i++ {
		r, err := p.Run(ctx, purge.TaskBlobGC, false)
		if err != nil || len(r.Errors) > 0 {
			t.Fatalf("final blob-gc: %v %q", err, r.Errors)
		}
		if !r.More {
			break
		}
		if i > 20 {
			t.Fatal("final blob-gc does not end")
		}
	}
	for _, l := range pool {
		d, _ := l.Digest()
		if reused[d] {
			continue
		}
		if _, err := b.meta.GetBlob(ctx, digestOf(d)); !errors.Is(err, storage.ErrNotFound) {
			t.Errorf("old layer %s, never reused, still has its record (%v)", d, err)
		}
		if ok, err := b.blobs.BlobExists(ctx, keys[d]); err != nil || ok {
			t.Errorf("old layer %s, never reused, still has its object %s (%v)", d, keys[d], err)
		}
		st.collected++
	}
	// And the images pushed still pull after it.
	for _, pu := range done {
		if err := pullAll(pu.ref, opts); err != nil {
			t.Errorf("pull %s after the final pass: %v", pu.ref, err)
		}
	}
	return st
}

func digestOf(h v1.Hash) digest.Digest { return digest.Digest(h.String()) }

func indexOf(pool []v1.Layer, l v1.Layer) int {
	for i, p := range pool {
		if p == l {
			return i
		}
	}
	return -1
}

// groupRef is the group's name of an image pushed to a member (nil for
// images pushed through the group).
func groupRef(t *testing.T, r name.Reference, host string) name.Reference {
	repoPath := r.Context().RepositoryStr()
	member, rest, _ := strings.Cut(repoPath, "/")
	if member == "docker" {
		return nil
	}
	g, err := name.ParseReference(host+"/docker/"+rest+":"+r.Identifier(), name.Insecure)
	if err != nil {
		t.Fatal(err)
	}
	return g
}

// mount asks for a cross-repository mount and tells whether it happened
// (201); a 202 opened an upload session, which is cancelled.
func mount(t *testing.T, base, to, d, from string) bool {
	resp, err := http.Post(base+"/v2/"+to+"/blobs/uploads/?mount="+d+"&from="+from, "", nil)
	if err != nil {
		t.Error(err)
		return false
	}
	defer resp.Body.Close()
	_, _ = io.Copy(io.Discard, resp.Body)
	switch resp.StatusCode {
	case http.StatusCreated:
		return true
	case http.StatusAccepted:
		if loc := resp.Header.Get("Location"); loc != "" {
			if !strings.HasPrefix(loc, "http") {
				loc = base + loc
			}
			req, _ := http.NewRequest(http.MethodDelete, loc, nil)
			if r, err := http.DefaultClient.Do(req); err == nil {
				r.Body.Close()
			}
		}
		return false
	default:
		t.Errorf("mount %s from %s into %s: %s", d, from, to, resp.Status)
		return false
	}
}

// pullAll reads the image's manifest, config and every layer, verifying
// each against its digest (go-containerregistry's remote layers verify).
func pullAll(r name.Reference, opts []remote.Option) error {
	img, err := remote.Image(r, opts...)
	if err != nil {
		return err
	}
	if _, err := img.RawConfigFile(); err != nil {
		return fmt.Errorf("config: %w", err)
	}
	layers, err := img.Layers()
	if err != nil {
		return err
	}
	for _, l := range layers {
		rc, err := l.Compressed()
		if err != nil {
			return err
		}
		_, err = io.Copy(io.Discard, rc)
		if cerr := rc.Close(); err == nil {
			err = cerr
		}
		if err != nil {
			d, _ := l.Digest()
			return fmt.Errorf("layer %s: %w", d, err)
		}
	}
	return nil
}
