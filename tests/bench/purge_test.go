//go:build bench

package bench

import (
	"context"
	"encoding/json"
	"fmt"
	"math/rand/v2"
	"net/http/httptest"
	"runtime"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	digest "github.com/opencontainers/go-digest"
	ocispec "github.com/opencontainers/image-spec/specs-go/v1"

	"github.com/airlock-registry/airlock/localdev/harness"
	"github.com/airlock-registry/airlock/shared/awscount"
	"github.com/airlock-registry/airlock/shared/config"
	"github.com/airlock-registry/airlock/shared/purge"
	"github.com/airlock-registry/airlock/shared/storage"
	"github.com/airlock-registry/airlock/shared/storage/dynamo"
	"github.com/airlock-registry/airlock/shared/storage/s3store"
)

// Part 9's registry: purgeImages images × purgeManifests manifests, each
// manifest referencing purgeLayers blobs drawn from a pool of purgePool,
// so that the images hold about 50,000 links; purgeDropped of the
// manifests are then deleted (their blobs become unreferenced in their
// image), and purgeOrphans objects have no record.
const (
	purgeImages    = 2000
	purgeManifests = 5
	purgeLayers    = 5
	purgePool      = 10000
	purgeDropped   = 0.2
	purgeOrphans   = 1000
)

// benchPurge measures the blob garbage collection (issue 9): the time of a
// full pass over a registry of 10,000 manifests and about 50,000 links on
// dynalite + versitygw, its DynamoDB and S3 calls per 1,000 items examined
// and per 1,000 collected, the same pass in bounded runs (the Lambda's
// checkpointed steps), the memory each holds (bytes per item examined:
// what bounds the registry one pass of the purge function can hold), and
// the race-safety writes of a manifest PUT.
func benchPurge(t *testing.T, rep *report, dynamoURL, s3URL string) {
	ctx, cancel := context.WithTimeout(context.Background(), 20*time.Minute)
	defer cancel()
	sec := rep.section("9. Purge: blob garbage collection (dynalite + versitygw, counted with shared/awscount)",
		"measure", "value", "DDB calls", "S3 calls", "detail", "target", "")

	// Two identical registries: one for the pass in one run, one for the
	// bounded runs.
	type reg struct {
		meta    *dynamo.Store
		blobs   *s3store.Store
		counter *awscount.Counter
	}
	build := func(name string) reg {
		var c awscount.Counter
		db, s3c, err := awsClients(ctx, dynamoURL, s3URL, &c)
		if err != nil {
			t.Fatal(err)
		}
		if err := harness.CreateTable(ctx, db, name); err != nil {
			t.Fatal(err)
		}
		if err := harness.CreateBucket(ctx, s3c, name); err != nil {
			t.Fatal(err)
		}
		r := reg{meta: dynamo.New(db, name), blobs: s3store.New(s3c, name), counter: &c}
		start := time.Now()
		links, dropped := fillPurgeRegistry(t, ctx, r.meta, r.blobs)
		sec.note("%s: %d images, %d manifests (%d then deleted), %d blob records and objects, %d links, %d orphan objects; written in %s",
			name, purgeImages, purgeImages*purgeManifests, dropped, purgePool, links, purgeOrphans, time.Since(start).Round(time.Second))
		return r
	}
	full := build("bench-purge-a")
	steps := build("bench-purge-b")
	cfg, err := config.Parse([]byte(registryYAML))
	if err != nil {
		t.Fatal(err)
	}
	// The purger's clock is a day and an hour ahead: everything written
	// above is past the default 24h grace.
	ahead := func() time.Time { return time.Now().Add(25 * time.Hour) }
	newPurger := func(r reg, maxPerRun int) *purge.Purger {
		p, err := purge.New(purge.Deps{Meta: r.meta, Blobs: r.blobs, Config: cfg, Now: ahead, MaxPerRun: maxPerRun})
		if err != nil {
			t.Fatal(err)
		}
		return p
	}
	row := func(what, value string, c calls, target string, ok bool) {
		sec.row(what, value, fmt.Sprint(c.ddbR+c.ddbW+c.ddbOther), fmt.Sprint(c.s3), c.detail("DynamoDB")+"; "+c.detail("S3"), target, verdict(ok))
		if !ok {
			t.Errorf("%s: %s, target %s", what, value, target)
		}
	}
	per1000 := func(n, of int) string {
		if of == 0 {
			return "-"
		}
		return fmt.Sprintf("%.1f", float64(n)*1000/float64(of))
	}

	// Dry run, then the real pass in one run.
	full.counter.Reset()
	start := time.Now()
	var dry purge.Report
	dryHeap := measureHeap(false, func() { dry, err = newPurger(full, 1<<30).Run(ctx, purge.TaskBlobGC, true) })
	if err != nil {
		t.Fatal(err)
	}
	dryTook := time.Since(start)
	dc := classify(full.counter.Snapshot())
	row("dry run (a pass of its own, one run)", fmt.Sprintf("%s, %d examined, %d would go", dryTook.Round(time.Millisecond), dry.Considered, dry.Count), dc, "deletes nothing (writes its lease and its report)", dc.ops["DynamoDB.DeleteItem"] <= 1 && dc.ops["DynamoDB.BatchWriteItem"] == 0 && dc.ops["S3.DeleteObjects"] == 0 && dc.ops["S3.PutObject"] <= 1)
	// The pass state's size: the same dry pass again (a pass of its own),
	// the heap collected before every sample, so its peak is what the
	// pass holds.
	var live purge.Report
	liveHeap := measureHeap(true, func() { live, err = newPurger(full, 1<<30).Run(ctx, purge.TaskBlobGC, true) })
	if err != nil || live.Considered == 0 {
		t.Fatalf("dry pass for the heap: %+v %v", live, err)
	}
	full.counter.Reset()
	start = time.Now()
	var r purge.Report
	fullHeap := measureHeap(false, func() { r, err = newPurger(full, 1<<30).Run(ctx, purge.TaskBlobGC, false) })
	if err != nil || len(r.Errors) > 0 {
		t.Fatalf("blob-gc: %v %q", err, r.Errors)
	}
	took := time.Since(start)
	c := classify(full.counter.Snapshot())
	kinds := r.Kinds
	row("full pass, one run", fmt.Sprintf("%s; %d examined; deleted %d links, %d records (%s freed), %d orphan objects", took.Round(time.Millisecond),
		r.Considered, kinds["link"], kinds["blob"], mib(r.Bytes), kinds["object"]), c, "same count as the dry run", r.Count == dry.Count)
	sec.row("  calls per 1,000 examined", fmt.Sprintf("DDB %s, S3 %s", per1000(c.ddbR+c.ddbW, r.Considered), per1000(c.s3, r.Considered)), "", "", "", "", "")
	sec.row("  calls per 1,000 collected", fmt.Sprintf("DDB %s, S3 %s", per1000(c.ddbR+c.ddbW, r.Count), per1000(c.s3, r.Count)), "", "", "", "", "")
	sec.note("examined = scanned items + listed objects; collected = links, records (each with its object) and orphan objects deleted")
	sec.note("DynamoDB: Scan pages (1 MB each) + one conditional DeleteItem per link and record; S3: ListObjectsV2 pages of 1,000 + one DeleteObjects per 1,000 keys")

	// The same pass in bounded runs (the Lambda's default MaxPerRun).
	steps.counter.Reset()
	start = time.Now()
	runs, deleted := 0, 0
	stepsHeap := measureHeap(false, func() {
		for ; ; runs++ {
			r, err := newPurger(steps, purge.DefaultMaxPerRun).Run(ctx, purge.TaskBlobGC, false)
			if err != nil || len(r.Errors) > 0 {
				t.Fatalf("bounded run %d: %v %q", runs, err, r.Errors)
			}
			deleted += r.Count
			if !r.More {
				runs++
				break
			}
			if runs > 1000 {
				t.Fatal("the bounded runs do not end")
			}
		}
	})
	sc := classify(steps.counter.Snapshot())
	row(fmt.Sprintf("same pass in runs of MaxPerRun=%d", purge.DefaultMaxPerRun), fmt.Sprintf("%d runs, %s in all, %d deleted", runs, time.Since(start).Round(time.Millisecond), deleted),
		sc, "same count as one run", deleted == r.Count)
	sec.note("between runs the pass state is saved gzip-compressed under purge/ (one PutObject + GetObject per run) with a checkpoint marker")

	// Memory: blob-gc holds the pass state (what the scan saw) in memory,
	// so the purge function's MemorySize bounds the registry a pass can
	// hold. Per item examined (scanned items + listed objects).
	perItem := func(b uint64, n int) float64 { return float64(b) / float64(max(n, 1)) }
	perGB := func(bPerItem float64) string {
		return fmt.Sprintf("%.1f M items per GB", 1e9/max(bPerItem, 1)/1e6)
	}
	lb := perItem(liveHeap.peakLive, live.Considered)
	sec.row("memory: pass state (dry pass, heap collected every 100 ms)", fmt.Sprintf("%s live at peak for %d examined: %.0f bytes per item, %s", mibu(liveHeap.peakLive), live.Considered, lb, perGB(lb)),
		"", "", fmt.Sprintf("allocated %.0f bytes per item", perItem(liveHeap.alloc, live.Considered)), "", "")
	for _, h := range []struct {
		what string
		use  heapUse
	}{{"dry run, one run", dryHeap}, {"full pass, one run", fullHeap}, {fmt.Sprintf("%d bounded runs (state loaded and saved)", runs), stepsHeap}} {
		b := perItem(h.use.peakInuse, r.Considered)
		sec.row("memory: heap in use, "+h.what, fmt.Sprintf("%s at peak: %.0f bytes per item examined, %s", mibu(h.use.peakInuse), b, perGB(b)),
			"", "", fmt.Sprintf("allocated %.0f bytes per item", perItem(h.use.alloc, r.Considered)), "", "")
	}
	sec.note("memory: runtime.ReadMemStats every 10 ms during the runs (GOGC=100, no GOMEMLIMIT), peaks above the heap in use after a GC before them; the pass state row collects before each sample (HeapAlloc after runtime.GC)")

	// Race safety's cost on the manifest PUT: one conditional UpdateItem per
	// referenced blob where a GetItem checked it before.
	var counter awscount.Counter
	rg, _, err := newAirlock(ctx, dynamoURL, "bench-purge-put", s3URL, "airlock-purge-put", &counter)
	if err != nil {
		t.Fatal(err)
	}
	srv := httptest.NewServer(rg)
	defer srv.Close()
	cl := newClient(srv.URL)
	im := newImage(4242, 5, 64<<10)
	for _, l := range im.layers {
		if err := cl.pushBlob(ctx, "local/bench/purge", l, 0); err != nil {
			t.Fatal(err)
		}
	}
	if err := cl.pushSmall(ctx, "local/bench/purge", im.config); err != nil {
		t.Fatal(err)
	}
	counter.Reset()
	if err := cl.putManifest(ctx, "local/bench/purge", "v1", im.manifest); err != nil {
		t.Fatal(err)
	}
	mc := classify(counter.Snapshot())
	refs := len(im.layers) + 1
	row(fmt.Sprintf("manifest PUT, %d references (race-safety touches)", refs), fmt.Sprintf("%d UpdateItem for %d references", mc.ops["DynamoDB.UpdateItem"], refs), mc,
		fmt.Sprintf("reference calls ≤ %d (one per reference, as the reads before)", refs), mc.ops["DynamoDB.UpdateItem"] <= refs && mc.ops["DynamoDB.GetItem"] <= 2)
}

// fillPurgeRegistry writes the registry of part 8 and returns the number
// of links and of deleted manifests.
func fillPurgeRegistry(t *testing.T, ctx context.Context, m *dynamo.Store, b *s3store.Store) (int, int) {
	rng := rand.New(rand.NewPCG(8, 8))
	pool := make([]storage.Blob, purgePool)
	work := func(n int, f func(i int) error) {
		var wg sync.WaitGroup
		var next atomic.Int64
		var failed atomic.Pointer[error]
		for range 48 {
			wg.Go(func() {
				for {
					i := int(next.Add(1) - 1)
					if i >= n || failed.Load() != nil {
						return
					}
					if err := f(i); err != nil {
						failed.CompareAndSwap(nil, &err)
						return
					}
				}
			})
		}
		wg.Wait()
		if p := failed.Load(); p != nil {
			t.Fatal(*p)
		}
	}
	work(purgePool, func(i int) error {
		body := []byte(fmt.Sprintf("purge bench blob %d", i))
		d := digest.FromBytes(body)
		key, err := b.PutSmall(ctx, d, body)
		if err != nil {
			return err
		}
		pool[i], err = m.PutBlob(ctx, storage.Blob{Digest: d, Size: int64(len(body)), Key: key, Created: time.Now()})
		return err
	})
	type man struct {
		img  storage.Image
		m    storage.Manifest
		drop bool
	}
	mans := make([]man, 0, purgeImages*purgeManifests)
	linkSet := make([]map[int]bool, purgeImages)
	for i := range purgeImages {
		img := storage.Image{Repo: "local", Name: fmt.Sprintf("bench/purge-%04d", i)}
		linkSet[i] = map[int]bool{}
		for j := range purgeManifests {
			var blobs []digest.Digest
			var layers []ocispec.Descriptor
			for range purgeLayers {
				k := rng.IntN(purgePool)
				linkSet[i][k] = true
				blobs = append(blobs, pool[k].Digest)
				layers = append(layers, ocispec.Descriptor{MediaType: ocispec.MediaTypeImageLayer, Digest: pool[k].Digest, Size: pool[k].Size})
			}
			body, _ := json.Marshal(ocispec.Manifest{MediaType: ocispec.MediaTypeImageManifest, Layers: layers, Annotations: map[string]string{"n": fmt.Sprint(i, j)}})
			mans = append(mans, man{img: img, drop: rng.Float64() < purgeDropped, m: storage.Manifest{
				Digest: digest.FromBytes(body), MediaType: ocispec.MediaTypeImageManifest, Size: int64(len(body)), Body: body, Blobs: blobs, Created: time.Now(),
			}})
		}
	}
	type link struct {
		img storage.Image
		k   int
	}
	var links []link
	for i, set := range linkSet {
		for k := range set {
			links = append(links, link{storage.Image{Repo: "local", Name: fmt.Sprintf("bench/purge-%04d", i)}, k})
		}
	}
	work(len(links), func(i int) error { return m.LinkBlob(ctx, links[i].img, pool[links[i].k]) })
	work(len(mans), func(i int) error { return m.PutManifest(ctx, mans[i].img, mans[i].m) })
	dropped := 0
	for _, x := range mans {
		if x.drop {
			dropped++
		}
	}
	work(len(mans), func(i int) error {
		if !mans[i].drop {
			return nil
		}
		return m.DeleteManifest(ctx, mans[i].img, mans[i].m.Digest)
	})
	work(purgeOrphans, func(i int) error {
		body := []byte(fmt.Sprintf("purge bench orphan %d", i))
		_, err := b.PutSmall(ctx, digest.FromBytes(body), body)
		return err
	})
	return len(links), dropped
}

// heapUse is what a function did to the process's heap, above where it
// stood (after a GC) before.
type heapUse struct {
	peakInuse uint64 // peak HeapInuse (sampled)
	peakLive  uint64 // with forceGC: peak HeapAlloc right after a GC
	alloc     uint64 // bytes allocated (TotalAlloc)
}

// measureHeap runs f while sampling runtime.ReadMemStats, every 10 ms, or
// with forceGC every 100 ms right after a runtime.GC (so the peak is of
// what f holds, not of garbage waiting for the collector; it slows f).
func measureHeap(forceGC bool, f func()) heapUse {
	var base, m runtime.MemStats
	runtime.GC()
	runtime.ReadMemStats(&base)
	var (
		mu   sync.Mutex
		use  heapUse
		done = make(chan struct{})
		wg   sync.WaitGroup
	)
	sample := func() {
		if forceGC {
			runtime.GC()
		}
		runtime.ReadMemStats(&m)
		mu.Lock()
		defer mu.Unlock()
		if m.HeapInuse > base.HeapInuse {
			use.peakInuse = max(use.peakInuse, m.HeapInuse-base.HeapInuse)
		}
		if forceGC && m.HeapAlloc > base.HeapAlloc {
			use.peakLive = max(use.peakLive, m.HeapAlloc-base.HeapAlloc)
		}
		use.alloc = m.TotalAlloc - base.TotalAlloc
	}
	every := 10 * time.Millisecond
	if forceGC {
		every = 100 * time.Millisecond
	}
	wg.Go(func() {
		tick := time.NewTicker(every)
		defer tick.Stop()
		for {
			select {
			case <-done:
				return
			case <-tick.C:
				sample()
			}
		}
	})
	f()
	close(done)
	wg.Wait()
	runtime.ReadMemStats(&m) // the allocations up to f's end, without a GC
	use.alloc = m.TotalAlloc - base.TotalAlloc
	return use
}

func mibu(n uint64) string { return fmt.Sprintf("%.1f MiB", float64(n)/(1<<20)) }
