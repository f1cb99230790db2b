package purge_test

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"

	digest "github.com/opencontainers/go-digest"
	ocispec "github.com/opencontainers/image-spec/specs-go/v1"

	"github.com/airlock-registry/airlock/shared/purge"
	"github.com/airlock-registry/airlock/shared/repo"
	"github.com/airlock-registry/airlock/shared/storage"
)

// gcMeta is what the GC tests need of a Metadata store.
type gcMeta interface {
	meta
	storage.Collector
}

// gcFixture is a registry with something of every kind the GC decides on,
// written in two generations: "old" before mid, "young" after it. A purger
// whose clock reads mid + the default grace (24 h) has its cut at mid.
type gcFixture struct {
	b    backend
	m    gcMeta
	ol   storage.ObjectLister
	mid  time.Time
	want []string // "kind image id" of what a pass deletes, sorted
	keep []string // object keys that must remain
	// hidden is a record the scan must not see (hideScan), owned only
	// through its repo.UploadedGroup marker.
	hidden digest.Digest
}

func (f *gcFixture) purger(t *testing.T, maxPerRun, scanPage int) *purge.Purger {
	t.Helper()
	var m storage.Metadata = f.m
	if f.hidden != "" {
		m = hideScan{gcMeta: f.m, hide: f.hidden}
	}
	mid := f.mid
	start := time.Now()
	p, err := purge.New(purge.Deps{Meta: m, Blobs: f.b.blobs, Config: cfg, MaxPerRun: maxPerRun, ScanPage: scanPage,
		Now: func() time.Time { return mid.Add(24 * time.Hour).Add(time.Since(start)) }})
	if err != nil {
		t.Fatal(err)
	}
	return p
}

// hideScan is a real store whose Scan leaves out one blob record: a record
// written after the scan passed its place (the race the UploadedGroup
// marker closes).
type hideScan struct {
	gcMeta
	hide digest.Digest
}

func (h hideScan) Scan(ctx context.Context, cursor string, n int) ([]storage.Entry, string, error) {
	es, next, err := h.gcMeta.Scan(ctx, cursor, n)
	return slices.DeleteFunc(es, func(e storage.Entry) bool { return e.Kind == storage.EntryBlob && e.Blob.Digest == h.hide }), next, err
}

func newGCFixture(t *testing.T, b backend) *gcFixture {
	t.Helper()
	ctx := context.Background()
	m, ok := b.meta.(gcMeta)
	if !ok {
		t.Fatalf("%T does not implement storage.Collector", b.meta)
	}
	f := &gcFixture{b: b, m: m, ol: b.blobs.(storage.ObjectLister)}
	want := func(kind, image, id string) { f.want = append(f.want, kind+" "+image+" "+id) }
	imgA := storage.Image{Repo: "local", Name: "team/a"}
	imgB := storage.Image{Repo: "local", Name: "team/b"}
	imgC := storage.Image{Repo: "local", Name: "team/c"}
	hub := storage.Image{Repo: "hub", Name: "library/x"}

	// blob stores a small blob; record and link it when asked.
	blob := func(name string, record bool, imgs ...storage.Image) (digest.Digest, string) {
		body := []byte("blob " + name + " " + t.Name())
		d := digest.FromBytes(body)
		key, err := b.blobs.PutSmall(ctx, d, body)
		if err != nil {
			t.Fatal(err)
		}
		if record {
			if _, err := m.PutBlob(ctx, storage.Blob{Digest: d, Size: int64(len(body)), Key: key, Created: time.Now()}); err != nil {
				t.Fatal(err)
			}
		}
		for _, img := range imgs {
			if err := m.LinkBlob(ctx, img, storage.Blob{Digest: d, Size: int64(len(body)), Key: key, Created: time.Now()}); err != nil {
				t.Fatal(err)
			}
		}
		return d, key
	}
	manifestOf := func(img storage.Image, blobs ...digest.Digest) {
		body, _ := json.Marshal(map[string]any{"schemaVersion": 2, "layers": blobs, "t": t.Name() + img.String()})
		mf := storage.Manifest{Digest: digest.FromBytes(body), MediaType: ocispec.MediaTypeImageManifest, Size: int64(len(body)), Body: body, Blobs: blobs, Created: time.Now()}
		if err := m.PutManifest(ctx, img, mf); err != nil {
			t.Fatal(err)
		}
	}
	multipart := func(id string, session bool) string { return multipartObject(t, b, imgA, id, session) }

	// --- old generation
	cfgA, _ := blob("cfgA", true, imgA)
	l1, _ := blob("l1", true, imgA, imgB)
	manifestOf(imgA, cfgA, l1)
	want("link", imgB.String(), l1.String()) // B links l1 but no manifest of B references it
	l3, _ := blob("l3", true, imgA)
	want("link", imgA.String(), l3.String())
	want("blob", "", l3.String())
	l4, _ := blob("l4", true, imgC) // an abandoned push: links, no manifest
	want("link", imgC.String(), l4.String())
	want("blob", "", l4.String())
	_, ko := blob("orphan", false) // an object whose record was never written
	want("object", "", ko)
	mbody := []byte(`{"orphan manifest body":"` + t.Name() + `"}`)
	kb, err := b.blobs.PutManifestBody(ctx, digest.FromBytes(mbody), mbody)
	if err != nil {
		t.Fatal(err)
	}
	want("object", "", kb)
	// A staged chunk of a session that is gone.
	su := storage.Upload{ID: "gc-staged-" + randHex(), Image: imgA, HashAlgorithm: "sha256"}
	if _, err := b.blobs.Append(ctx, &su, strings.NewReader("a short chunk")); err != nil {
		t.Fatal(err)
	}
	if len(su.Staged) != 1 {
		t.Fatalf("a short chunk staged %d objects", len(su.Staged))
	}
	want("object", "", su.Staged[0].Key)
	// Completed multipart objects: an orphan, one a live session owns, one
	// a pending direct verification owns, one recorded (seen only through
	// its uploaded marker).
	want("object", "", multipart("gc-orphan-"+randHex(), false))
	f.keep = append(f.keep, multipart("gc-session-"+randHex(), true))
	pid := "gc-pending-" + randHex()
	f.keep = append(f.keep, multipart(pid, false))
	pm := m.(storage.ProxyMetadata)
	st, _ := json.Marshal(map[string]any{"status": "pending", "Job": map[string]any{"upload": pid}})
	if err := pm.PutMarker(ctx, storage.Marker{Group: "direct-verify", Key: "local/team/a@sha256:x", Value: string(st), Until: time.Now().Add(48 * time.Hour)}); err != nil {
		t.Fatal(err)
	}
	rid := "gc-recorded-" + randHex()
	rkey := multipart(rid, false)
	f.keep = append(f.keep, rkey)
	f.hidden = digest.FromString("recorded " + t.Name())
	if err := pm.PutMarker(ctx, storage.Marker{Group: repo.UploadedGroup, Key: rid, Value: f.hidden.String(), Until: time.Now().Add(48 * time.Hour)}); err != nil {
		t.Fatal(err)
	}
	// A proxy's cache: a referenced blob with its holds marker (kept), and
	// a holds marker of a blob the proxy does not link (deleted).
	hx, _ := blob("hx", true, hub)
	manifestOf(hub, hx)
	for _, d := range []digest.Digest{hx, l4} {
		if err := pm.PutMarker(ctx, storage.Marker{Group: "holds:hub", Key: d.String(), Value: "1", Until: time.Now().Add(48 * time.Hour)}); err != nil {
			t.Fatal(err)
		}
	}
	want("marker", "holds:hub", l4.String())

	// --- the cut: S3 keeps modification times to the second on some
	// emulators, so mid is a whole second with a second on each side.
	time.Sleep(time.Until(time.Now().Truncate(time.Second).Add(2 * time.Second)))
	f.mid = time.Now().Truncate(time.Second)
	time.Sleep(time.Until(f.mid.Add(1100 * time.Millisecond)))

	// --- young generation: kept whatever references them.
	blob("y1", true, imgA)               // an unreferenced link within the grace period
	_, ky := blob("young-orphan", false) // an object too young to judge
	f.keep = append(f.keep, ky)
	// The hidden record, written "during the pass".
	if _, err := m.PutBlob(ctx, storage.Blob{Digest: f.hidden, Size: 6 << 20, Key: rkey, Created: time.Now()}); err != nil {
		t.Fatal(err)
	}
	slices.Sort(f.want)
	return f
}

// multipartObject makes the object of a completed multipart upload (6 MiB)
// of img at the upload's key, with or without a session.
func multipartObject(t *testing.T, b backend, img storage.Image, id string, session bool) string {
	t.Helper()
	ctx := context.Background()
	u := storage.Upload{ID: id, Image: img, HashAlgorithm: "sha256", Created: time.Now(), ExpiresAt: time.Now().Add(48 * time.Hour)}
	if session {
		if err := b.meta.CreateUpload(ctx, u); err != nil {
			t.Fatal(err)
		}
	}
	data := randBytes(6 << 20)
	if _, err := b.blobs.Append(ctx, &u, strings.NewReader(string(data))); err != nil {
		t.Fatal(err)
	}
	key, err := b.blobs.Complete(ctx, &u, digest.FromBytes(data))
	if err != nil {
		t.Fatal(err)
	}
	return key
}

func randHex() string { return fmt.Sprintf("%x", randBytes(6)) }

// deleted returns what the runs of rs deleted as "kind image id", sorted,
// read from their full lists (fullList).
func (f *gcFixture) deleted(t *testing.T, rs ...purge.Report) []string {
	t.Helper()
	out := []string{}
	for _, it := range fullList(t, f.b.blobs, rs...) {
		out = append(out, it.Kind+" "+it.Image+" "+it.ID)
	}
	slices.Sort(out)
	return out
}

// remaining lists what the store holds: every scanned item and object but
// the purge's checkpoint markers and reports (purge/reports/), normalised
// so two fixtures built alike compare equal.
func (f *gcFixture) remaining(t *testing.T) []string {
	t.Helper()
	ctx := context.Background()
	var out []string
	cursor := ""
	for {
		es, next, err := f.m.Scan(ctx, cursor, 0)
		if err != nil {
			t.Fatal(err)
		}
		for _, e := range es {
			switch e.Kind {
			case storage.EntryLink:
				out = append(out, "link "+e.Image.String()+" "+e.Blob.Digest.String())
			case storage.EntryBlob:
				out = append(out, "blob "+e.Blob.Digest.String())
			case storage.EntryManifest:
				out = append(out, "manifest "+e.Image.String()+" "+e.Manifest.Digest.String())
			case storage.EntryMarker:
				if e.Marker.Group != "purge" {
					out = append(out, "marker "+e.Marker.Group+" "+e.Marker.Key)
				}
			}
		}
		if cursor = next; cursor == "" {
			break
		}
	}
	for _, prefix := range []string{"blobs/", "manifests/", "uploads/", storage.PurgePrefix} {
		objs, _, err := f.ol.ListObjects(ctx, prefix, "", 0)
		if err != nil {
			t.Fatal(err)
		}
		for _, o := range objs {
			if strings.HasPrefix(o.Key, storage.PurgePrefix+"reports/") {
				continue
			}
			out = append(out, "object "+o.Key)
		}
	}
	slices.Sort(out)
	return out
}

func (f *gcFixture) hasObject(t *testing.T, key string) bool {
	t.Helper()
	ok, err := f.b.blobs.BlobExists(context.Background(), key)
	if err != nil {
		t.Fatal(err)
	}
	return ok
}

// TestBlobGC: one pass deletes exactly the unreferenced links, the records
// no link names, their objects, the orphaned objects and the stale holds
// markers older than the grace period, and nothing else; a dry run before
// it reports the same set and deletes nothing; a second pass finds nothing.
func TestBlobGC(t *testing.T) {
	for _, b := range backends(t) {
		t.Run(b.name, func(t *testing.T) {
			f := newGCFixture(t, b)
			before := f.remaining(t)
			dry, err := f.purger(t, 0, 0).Run(context.Background(), purge.TaskBlobGC, true)
			if err != nil {
				t.Fatal(err)
			}
			if got := f.deleted(t, dry); !slices.Equal(got, f.want) {
				t.Errorf("dry run reports\n  %s\nwant\n  %s", strings.Join(got, "\n  "), strings.Join(f.want, "\n  "))
			}
			if after := f.remaining(t); !slices.Equal(after, before) {
				t.Fatalf("the dry run changed the store:\n%s", diffLines(before, after))
			}
			real, err := f.purger(t, 0, 0).Run(context.Background(), purge.TaskBlobGC, false)
			if err != nil {
				t.Fatal(err)
			}
			if got := f.deleted(t, real); !slices.Equal(got, f.deleted(t, dry)) {
				t.Errorf("real run deleted\n  %s\ndry run reported\n  %s", strings.Join(got, "\n  "), strings.Join(f.deleted(t, dry), "\n  "))
			}
			if len(real.Errors) > 0 || real.More {
				t.Errorf("real run: errors %q, more %v", real.Errors, real.More)
			}
			// Exactly the deleted items are gone.
			after := f.remaining(t)
			var gone []string
			for _, l := range before {
				if !slices.Contains(after, l) {
					gone = append(gone, l)
				}
			}
			var wantGone []string
			for _, w := range f.want {
				kind, rest, _ := strings.Cut(w, " ")
				img, id, _ := strings.Cut(rest, " ")
				switch kind {
				case "link":
					wantGone = append(wantGone, "link "+img+" "+id)
				case "blob":
					wantGone = append(wantGone, "blob "+id)
				case "object":
					wantGone = append(wantGone, "object "+id)
				case "marker":
					wantGone = append(wantGone, "marker "+img+" "+id)
				}
			}
			// A deleted record's object goes with it.
			for _, r := range real.Deleted {
				if r.Kind == "blob" {
					wantGone = append(wantGone, "object "+r.Keys[0])
				}
			}
			slices.Sort(wantGone)
			if !slices.Equal(gone, wantGone) {
				t.Errorf("gone from the store:\n%s", diffLines(wantGone, gone))
			}
			for _, k := range f.keep {
				if !f.hasObject(t, k) {
					t.Errorf("object %s was deleted; it must stay", k)
				}
			}
			again, err := f.purger(t, 0, 0).Run(context.Background(), purge.TaskBlobGC, false)
			if err != nil || len(again.Deleted) != 0 {
				t.Errorf("second pass: deleted %v, %v; want nothing", f.deleted(t, again), err)
			}
		})
	}
}

// TestBlobGCResumable: a pass cut into runs of one unit (one scan page of
// two items, one candidate, one listing page) continues from its
// checkpoint and ends where one uninterrupted run ends; two runs at once
// end in the same state too (one holds the pass, the other skips).
func TestBlobGCResumable(t *testing.T) {
	for i, b := range backends(t) {
		t.Run(b.name, func(t *testing.T) {
			one := newGCFixture(t, b)
			if _, err := one.purger(t, 0, 0).Run(context.Background(), purge.TaskBlobGC, false); err != nil {
				t.Fatal(err)
			}
			b2 := backends(t)[i]
			steps := newGCFixture(t, b2)
			all := steps.runsOfOneUnit(t, false)
			if len(all) < 5 {
				t.Errorf("a pass in runs of one unit took %d runs; want many", len(all))
			}
			if got := steps.deleted(t, all...); !slices.Equal(got, steps.want) {
				t.Errorf("runs deleted\n  %s\nwant\n  %s", strings.Join(got, "\n  "), strings.Join(steps.want, "\n  "))
			}
			if a, b := normalise(one.remaining(t)), normalise(steps.remaining(t)); !slices.Equal(a, b) {
				t.Errorf("end states differ (one run vs resumed runs):\n%s", diffLines(a, b))
			}

			// Two at once.
			b3 := backends(t)[i]
			twice := newGCFixture(t, b3)
			var wg sync.WaitGroup
			rs := make([]purge.Report, 2)
			for k := range 2 {
				wg.Go(func() {
					r, err := twice.purger(t, 0, 0).Run(context.Background(), purge.TaskBlobGC, false)
					if err != nil {
						t.Error(err)
					}
					rs[k] = r
				})
			}
			wg.Wait()
			for run := 0; rs[0].More || rs[1].More; run++ {
				r, err := twice.purger(t, 0, 0).Run(context.Background(), purge.TaskBlobGC, false)
				if err != nil || run > 3 {
					t.Fatalf("finishing run: %v (run %d)", err, run)
				}
				rs[0], rs[1] = r, r
			}
			if a, b := normalise(one.remaining(t)), normalise(twice.remaining(t)); !slices.Equal(a, b) {
				t.Errorf("end states differ (one run vs two at once):\n%s", diffLines(a, b))
			}
		})
	}
}

// runsOfOneUnit runs blob-gc (dry or not) in runs of one unit (one scan
// page of two items, one candidate, one listing page) until a run reports
// no more, and returns their reports.
func (f *gcFixture) runsOfOneUnit(t *testing.T, dry bool) []purge.Report {
	t.Helper()
	var out []purge.Report
	for run := 0; ; run++ {
		if run > 500 {
			t.Fatalf("the pass (dry run %v) does not end in 500 runs", dry)
		}
		r, err := f.purger(t, 1, 2).Run(context.Background(), purge.TaskBlobGC, dry)
		if err != nil || len(r.Errors) > 0 {
			t.Fatalf("run %d (dry run %v): %v %q", run, dry, err, r.Errors)
		}
		out = append(out, r)
		if !r.More {
			return out
		}
	}
}

// TestBlobGCDryRunBounded: a dry pass is cut into runs by the same bound
// as a real one and continues from a checkpoint of its own: started while
// a real pass stands at its checkpoint, it runs to its end without
// touching the store or the real pass, which then continues and deletes
// exactly what the dry pass's runs listed (read from their report objects).
func TestBlobGCDryRunBounded(t *testing.T) {
	for _, b := range backends(t) {
		t.Run(b.name, func(t *testing.T) {
			f := newGCFixture(t, b)
			first, err := f.purger(t, 1, 2).Run(context.Background(), purge.TaskBlobGC, false)
			if err != nil || !first.More || strings.HasPrefix(first.Pass, "dry-") {
				t.Fatalf("first real run: more %v, pass %q, %v; want a pass cut after one unit", first.More, first.Pass, err)
			}
			before := f.remaining(t) // with the real pass's saved state
			dry := f.runsOfOneUnit(t, true)
			for run, r := range dry {
				if !strings.HasPrefix(r.Pass, "dry-") || r.Pass != dry[0].Pass {
					t.Fatalf("dry run %d: pass %q; want one dry pass (first %q)", run, r.Pass, dry[0].Pass)
				}
			}
			if len(dry) < 5 {
				t.Errorf("a dry pass in runs of one unit took %d runs; want many", len(dry))
			}
			if got := f.deleted(t, dry...); !slices.Equal(got, f.want) {
				t.Errorf("the dry pass reports\n  %s\nwant\n  %s", strings.Join(got, "\n  "), strings.Join(f.want, "\n  "))
			}
			if after := f.remaining(t); !slices.Equal(after, before) {
				t.Fatalf("the dry pass changed the store or the real pass's state:\n%s", diffLines(before, after))
			}
			real := append([]purge.Report{first}, f.runsOfOneUnit(t, false)...)
			for run, r := range real {
				if r.Pass != first.Pass {
					t.Fatalf("real run %d: pass %q; want the pass it continues, %q", run, r.Pass, first.Pass)
				}
			}
			if got := f.deleted(t, real...); !slices.Equal(got, f.deleted(t, dry...)) {
				t.Errorf("the real pass deleted\n  %s\nthe dry pass reported\n  %s", strings.Join(got, "\n  "), strings.Join(f.deleted(t, dry...), "\n  "))
			}
		})
	}
}

// TestBlobGCDryRunReportSample: a run that deletes more than
// purge.ReportSample items lists only the first of them in its report,
// with their count, bytes and kinds, and names the object listing all of
// them; the real run's object lists the same items.
func TestBlobGCDryRunReportSample(t *testing.T) {
	for _, b := range backends(t) {
		t.Run(b.name, func(t *testing.T) {
			ctx := context.Background()
			const n = purge.ReportSample + 50
			var want []string
			for i := range n {
				body := []byte(fmt.Sprintf("orphan %d %s", i, t.Name()))
				key, err := b.blobs.PutSmall(ctx, digest.FromBytes(body), body)
				if err != nil {
					t.Fatal(err)
				}
				want = append(want, key)
			}
			slices.Sort(want)
			start := time.Now()
			p, err := purge.New(purge.Deps{Meta: b.meta, Blobs: b.blobs, Config: cfg, Now: func() time.Time { return start.Add(48*time.Hour + time.Since(start)) }})
			if err != nil {
				t.Fatal(err)
			}
			keys := func(r purge.Report) []string {
				var out []string
				for _, it := range fullList(t, b.blobs, r) {
					out = append(out, it.ID)
				}
				slices.Sort(out)
				return out
			}
			dry, err := p.Run(ctx, purge.TaskBlobGC, true)
			if err != nil || len(dry.Errors) > 0 || dry.More {
				t.Fatalf("dry run: %v %q, more %v", err, dry.Errors, dry.More)
			}
			if dry.Count != n || len(dry.Deleted) != purge.ReportSample || dry.Listed != fmt.Sprintf("%d of %d", purge.ReportSample, n) || dry.Kinds["object"] != n || dry.List == "" {
				t.Fatalf("dry run: count %d, %d listed (%q), kinds %v, list %q; want %d objects, the first %d listed, and a list",
					dry.Count, len(dry.Deleted), dry.Listed, dry.Kinds, dry.List, n, purge.ReportSample)
			}
			if got := keys(dry); !slices.Equal(got, want) {
				t.Fatalf("the dry run's list: %d items, want the %d orphans", len(got), n)
			}
			js, _ := json.Marshal(dry)
			if c := strings.Count(string(js), `"kind":"object"`); c != purge.ReportSample {
				t.Errorf("the JSON report holds %d items; want the sample of %d", c, purge.ReportSample)
			}
			real, err := p.Run(ctx, purge.TaskBlobGC, false)
			if err != nil || len(real.Errors) > 0 {
				t.Fatalf("real run: %v %q", err, real.Errors)
			}
			if got := keys(real); !slices.Equal(got, want) || real.Bytes != dry.Bytes {
				t.Errorf("the real run deleted %d objects (%d bytes); the dry run listed %d (%d bytes)", len(got), real.Bytes, n, dry.Bytes)
			}
			for _, k := range want {
				if ok, err := b.blobs.BlobExists(ctx, k); err != nil || ok {
					t.Errorf("orphan %s still there (%v)", k, err)
				}
			}
		})
	}
}

// normalise drops what differs between two fixtures built alike: the
// random parts of object keys and upload ids, and the test name in digests
// (each fixture hashes its own test name into its contents, so compare counts
// by kind and key shape).
func normalise(lines []string) []string {
	out := make([]string, 0, len(lines))
	for _, l := range lines {
		f := strings.Fields(l)
		switch f[0] {
		case "object":
			k := f[1]
			if i := strings.LastIndexByte(k, '.'); i > 0 && strings.HasPrefix(k, "blobs/sha256/") {
				k = "blobs/sha256/<hex>" + k[i:i+1]
			} else if strings.HasPrefix(k, "blobs/uploads/") {
				k = "blobs/uploads/" + strings.SplitN(strings.TrimPrefix(k, "blobs/uploads/"), "-", 3)[1]
			} else if strings.HasPrefix(k, "manifests/") {
				k = "manifests/<hex>"
			}
			out = append(out, "object "+k)
		case "link", "manifest":
			out = append(out, f[0]+" "+f[1])
		case "marker":
			out = append(out, f[0]+" "+f[1])
		default:
			out = append(out, f[0])
		}
	}
	slices.Sort(out)
	return out
}

func diffLines(want, got []string) string {
	var b strings.Builder
	for _, l := range want {
		if !slices.Contains(got, l) {
			fmt.Fprintf(&b, "  - %s\n", l)
		}
	}
	for _, l := range got {
		if !slices.Contains(want, l) {
			fmt.Fprintf(&b, "  + %s\n", l)
		}
	}
	return b.String()
}

// TestBlobGCCrashSafety: what a push killed between two of its writes
// leaves behind (an object without record; a record without link; links
// without manifest; a completed multipart object whose session remains; a
// manifest body without manifest) is never collected before the grace
// period and always after it (the multipart object once its session is
// gone, as incomplete-uploads removes it).
func TestBlobGCCrashSafety(t *testing.T) {
	for _, b := range backends(t) {
		t.Run(b.name, func(t *testing.T) {
			ctx := context.Background()
			m := b.meta.(gcMeta)
			img := storage.Image{Repo: "local", Name: "crash/" + randHex()}
			small := func(name string) (digest.Digest, string, int64) {
				body := []byte(name + " " + randHex())
				d := digest.FromBytes(body)
				key, err := b.blobs.PutSmall(ctx, d, body)
				if err != nil {
					t.Fatal(err)
				}
				return d, key, int64(len(body))
			}
			var keys []string
			// 1. killed after the object, before the record
			_, k1, _ := small("no record")
			keys = append(keys, k1)
			// 2. killed after the record, before the link
			d2, k2, n2 := small("no link")
			if _, err := m.PutBlob(ctx, storage.Blob{Digest: d2, Size: n2, Key: k2, Created: time.Now()}); err != nil {
				t.Fatal(err)
			}
			keys = append(keys, k2)
			// 3. killed after the links, before the manifest
			d3, k3, n3 := small("no manifest")
			bl := storage.Blob{Digest: d3, Size: n3, Key: k3, Created: time.Now()}
			if _, err := m.PutBlob(ctx, bl); err != nil {
				t.Fatal(err)
			}
			if err := m.LinkBlob(ctx, img, bl); err != nil {
				t.Fatal(err)
			}
			keys = append(keys, k3)
			// 4. a completed multipart upload, killed before the record: its
			// session remains until incomplete-uploads removes it
			id := "crash-" + randHex()
			k4 := multipartObject(t, b, img, id, true)
			// 5. a manifest body written, the manifest item not
			mb := []byte(`{"crash":"` + randHex() + `"}`)
			k5, err := b.blobs.PutManifestBody(ctx, digest.FromBytes(mb), mb)
			if err != nil {
				t.Fatal(err)
			}
			keys = append(keys, k5)
			exists := func(k string) bool {
				ok, err := b.blobs.BlobExists(ctx, k)
				if err != nil {
					t.Fatal(err)
				}
				return ok
			}
			run := func(offset time.Duration) purge.Report {
				t.Helper()
				start := time.Now()
				p, err := purge.New(purge.Deps{Meta: m, Blobs: b.blobs, Config: cfg, Now: func() time.Time { return start.Add(offset + time.Since(start)) }})
				if err != nil {
					t.Fatal(err)
				}
				r, err := p.Run(ctx, purge.TaskBlobGC, false)
				if err != nil || len(r.Errors) > 0 {
					t.Fatalf("blob-gc: %v %q", err, r.Errors)
				}
				return r
			}
			// Within the grace period (the cut an hour before the writes): nothing.
			time.Sleep(1100 * time.Millisecond) // S3 modification times to the second
			r := run(23 * time.Hour)
			for _, it := range r.Deleted {
				if strings.HasPrefix(it.Image, img.String()) || slices.Contains(keys, it.ID) || it.ID == k4 || slices.ContainsFunc(it.Keys, func(k string) bool { return slices.Contains(keys, k) || k == k4 }) {
					t.Errorf("within the grace period blob-gc deleted %s %s %s", it.Kind, it.Image, it.ID)
				}
			}
			for _, k := range append(slices.Clone(keys), k4) {
				if !exists(k) {
					t.Errorf("object %s gone within the grace period", k)
				}
			}
			// Past it: all of it but the multipart object its session owns.
			run(25 * time.Hour)
			for _, k := range keys {
				if exists(k) {
					t.Errorf("object %s left by a killed push remains past the grace period", k)
				}
			}
			for _, d := range []digest.Digest{d2, d3} {
				if _, err := m.GetBlob(ctx, d); !errors.Is(err, storage.ErrNotFound) {
					t.Errorf("record %s left by a killed push remains past the grace period (%v)", d, err)
				}
			}
			if _, err := m.StatBlob(ctx, img, d3); !errors.Is(err, storage.ErrNotFound) {
				t.Errorf("link %s left by a killed push remains past the grace period (%v)", d3, err)
			}
			if !exists(k4) {
				t.Fatalf("the completed multipart object %s was deleted while its session exists", k4)
			}
			if err := m.DeleteUpload(ctx, id); err != nil {
				t.Fatal(err)
			}
			run(25 * time.Hour)
			if exists(k4) {
				t.Errorf("the multipart object %s remains once its session is gone", k4)
			}
		})
	}
}
