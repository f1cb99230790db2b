package purge_test

import (
	"bytes"
	"compress/gzip"
	"context"
	"crypto/rand"
	"encoding/json"
	"fmt"
	"io"
	"maps"
	"os"
	"slices"
	"sort"
	"strings"
	"testing"
	"time"

	digest "github.com/opencontainers/go-digest"

	"github.com/airlock-registry/airlock/localdev/harness"
	"github.com/airlock-registry/airlock/shared/config"
	"github.com/airlock-registry/airlock/shared/purge"
	"github.com/airlock-registry/airlock/shared/storage"
	"github.com/airlock-registry/airlock/shared/storage/dynamo"
	"github.com/airlock-registry/airlock/shared/storage/memstore"
	"github.com/airlock-registry/airlock/shared/storage/s3store"
	"github.com/airlock-registry/airlock/shared/storage/storagetest"
)

func TestMain(m *testing.M) {
	code := m.Run()
	harness.StopAll()
	os.Exit(code)
}

// meta is what the purge needs of a Metadata store.
type meta interface {
	storage.Metadata
	storage.ProxyMetadata
	storage.UploadLister
}

type backend struct {
	name  string
	meta  meta
	blobs storage.Blobs
}

// backends returns a fresh memstore and a fresh table + bucket on the
// local emulators (dynalite + versitygw by default).
func backends(t *testing.T) []backend {
	ms := memstore.New()
	t.Cleanup(func() { ms.Close() })
	ddb, table := harness.TestDynamo(t)
	endpoint, bucket := harness.TestS3(t)
	s3c, err := s3store.NewClient(context.Background(), s3store.Options{
		Endpoint: endpoint, Region: harness.Region, AccessKey: harness.AccessKey, SecretKey: harness.SecretKey,
	})
	if err != nil {
		t.Fatal(err)
	}
	return []backend{
		{"memstore", ms, ms},
		{harness.DynamoBackend() + "+" + harness.S3Backend(), dynamo.New(ddb, table), s3store.New(s3c, bucket)},
	}
}

var cfg = func() *config.Config {
	c, err := config.Parse([]byte("repositories: [{name: local, kind: hosted}]\n"))
	if err != nil {
		panic(err)
	}
	return c
}()

var img = storage.Image{Repo: "local", Name: "team/app"}

func randBytes(n int) []byte {
	b := make([]byte, n)
	_, _ = rand.Read(b)
	return b
}

// open creates a session (store clock: real time) and appends chunks to
// it, each committed as a PATCH would.
func open(t *testing.T, b backend, id string, ttl time.Duration, chunks ...[]byte) storage.Upload {
	t.Helper()
	ctx := t.Context()
	u := storage.Upload{ID: id, Image: img, HashAlgorithm: "sha256", Created: time.Now().UTC(), ExpiresAt: time.Now().Add(ttl)}
	if err := b.meta.CreateUpload(ctx, u); err != nil {
		t.Fatal(err)
	}
	for _, c := range chunks {
		u = patch(t, b, u, c)
	}
	return u
}

func patch(t *testing.T, b backend, u storage.Upload, chunk []byte) storage.Upload {
	t.Helper()
	ctx := t.Context()
	held, err := b.meta.AcquireUpload(ctx, u.ID, u.Offset, "writer", time.Now().Add(time.Minute))
	if err != nil {
		t.Fatalf("acquire %s: %v", u.ID, err)
	}
	if _, err := b.blobs.Append(ctx, &held, bytes.NewReader(chunk)); err != nil {
		t.Fatalf("append %s: %v", u.ID, err)
	}
	if err := b.meta.CommitUpload(ctx, held); err != nil {
		t.Fatalf("commit %s: %v", u.ID, err)
	}
	held.Lease, held.LeaseUntil = "", time.Time{}
	return held
}

func leftovers(t *testing.T, b backend, id string) []string {
	t.Helper()
	l, err := b.blobs.(storagetest.UploadInspector).UploadLeftovers(t.Context(), id)
	if err != nil {
		t.Fatal(err)
	}
	return l
}

// fullList returns every item the runs of rs deleted (dry runs: would
// delete), in order, read from the objects their reports name
// (Report.List: JSON lines of Items, gzip), and fails the test when a
// report's counts, bytes or sample disagree with its object.
func fullList(t *testing.T, blobs storage.Blobs, rs ...purge.Report) []purge.Item {
	t.Helper()
	var out []purge.Item
	for _, r := range rs {
		var items []purge.Item
		if r.List != "" {
			if !strings.HasPrefix(r.List, "purge/reports/"+r.Pass+"/"+r.Task+"-") || !strings.HasSuffix(r.List, ".jsonl.gz") {
				t.Errorf("%s: list %q, want purge/reports/%s/%s-<run>.jsonl.gz", r.Task, r.List, r.Pass, r.Task)
			}
			b, err := blobs.(storage.ObjectLister).ReadObject(t.Context(), r.List)
			if err != nil {
				t.Fatalf("%s: read the list %s: %v", r.Task, r.List, err)
			}
			zr, err := gzip.NewReader(bytes.NewReader(b))
			if err != nil {
				t.Fatalf("%s: list %s: %v", r.Task, r.List, err)
			}
			for dec := json.NewDecoder(zr); ; {
				var it purge.Item
				if err := dec.Decode(&it); err == io.EOF {
					break
				} else if err != nil {
					t.Fatalf("%s: list %s: item %d: %v", r.Task, r.List, len(items), err)
				}
				items = append(items, it)
			}
		}
		var bytes int64
		kinds := map[string]int{}
		for _, it := range items {
			bytes += it.Bytes
			kinds[it.Kind]++
		}
		n := min(len(items), purge.ReportSample)
		if r.Count != len(items) || r.Bytes != bytes || !maps.Equal(r.Kinds, kinds) || len(r.Deleted) != n ||
			r.Listed != fmt.Sprintf("%d of %d", n, len(items)) || (r.Count == 0) != (r.List == "") {
			t.Errorf("%s: report count %d, bytes %d, kinds %v, %d listed (%q), list %q; its object lists %d items, %d bytes, kinds %v",
				r.Task, r.Count, r.Bytes, r.Kinds, len(r.Deleted), r.Listed, r.List, len(items), bytes, kinds)
		}
		for i := range min(n, len(r.Deleted)) {
			if a, b := jsonOf(t, r.Deleted[i]), jsonOf(t, items[i]); a != b {
				t.Errorf("%s: sample item %d %+v, the list's %+v", r.Task, i, r.Deleted[i], items[i])
			}
		}
		out = append(out, items...)
	}
	return out
}

func jsonOf(t *testing.T, v any) string {
	t.Helper()
	b, err := json.Marshal(v)
	if err != nil {
		t.Fatal(err)
	}
	return string(b)
}

func ids(r purge.Report) []string {
	out := []string{}
	for _, it := range r.Deleted {
		out = append(out, it.ID)
	}
	sort.Strings(out)
	return out
}

// purger runs 48 h in the future: every session written now is idle past
// the default 24 h threshold.
func purger(t *testing.T, m storage.Metadata, b storage.Blobs) *purge.Purger {
	t.Helper()
	p, err := purge.New(purge.Deps{Meta: m, Blobs: b, Config: cfg, Now: func() time.Time { return time.Now().Add(48 * time.Hour) }})
	if err != nil {
		t.Fatal(err)
	}
	return p
}

// TestIncompleteUploads: old sessions with staged chunks and with
// multipart parts are removed with everything they hold in S3; a dry run
// deletes nothing and reports the same set; parked proxy fills and leased
// sessions stay; a second run finds nothing.
func TestIncompleteUploads(t *testing.T) {
	for _, b := range backends(t) {
		t.Run(b.name, func(t *testing.T) {
			ctx := t.Context()
			const mib = 1 << 20
			day3 := 72 * time.Hour
			open(t, b, "staged", day3, randBytes(100<<10), randBytes(300<<10))
			open(t, b, "multipart", day3, randBytes(6*mib), randBytes(200<<10))
			open(t, b, "empty", day3)
			open(t, b, "expired", time.Hour, randBytes(10<<10)) // expired for the purge's clock
			parked := open(t, b, "parked", day3, randBytes(50<<10))
			job, _ := json.Marshal(map[string]any{"repo": "hub", "image": "library/x", "digest": digest.FromString("x"), "upload": parked.ID, "owner": "o"})
			if err := b.meta.PutMarker(ctx, storage.Marker{Group: "fills", Key: "hub/" + digest.FromString("x").String(), Value: string(job), Until: time.Now().Add(day3)}); err != nil {
				t.Fatal(err)
			}
			leased := open(t, b, "leased", day3, randBytes(10<<10))
			if _, err := b.meta.AcquireUpload(ctx, leased.ID, leased.Offset, "someone", time.Now().Add(day3)); err != nil {
				t.Fatal(err)
			}
			if l := leftovers(t, b, "multipart"); !slices.ContainsFunc(l, func(s string) bool { return len(s) > 9 && s[:9] == "multipart" }) {
				t.Fatalf("setup: the multipart session holds no multipart upload: %v", l)
			}
			p := purger(t, b.meta, b.blobs)
			want := []string{"empty", "expired", "multipart", "staged"}

			dry, err := p.Run(ctx, purge.TaskIncompleteUploads, true)
			if err != nil {
				t.Fatal(err)
			}
			if !slices.Equal(ids(dry), want) || dry.Considered != 6 || dry.Skipped["parked-fill"] != 1 || dry.Skipped["leased"] != 1 || len(dry.Errors) != 0 {
				t.Fatalf("dry run: %+v, want deleted %v, 6 considered, one parked fill and one leased skipped", dry, want)
			}
			for _, id := range want {
				if _, err := b.meta.GetUpload(ctx, id); err != nil && id != "expired" {
					t.Errorf("dry run deleted session %s: %v", id, err)
				}
			}
			if l := leftovers(t, b, "multipart"); len(l) == 0 {
				t.Error("dry run aborted the multipart upload")
			}
			if l := leftovers(t, b, "staged"); len(l) != 2 {
				t.Errorf("dry run: staged objects %v, want 2", l)
			}
			var dryBytes int64
			for _, it := range dry.Deleted {
				if it.ID == "multipart" && (len(it.Keys) == 0 || it.Bytes < 6*mib) {
					t.Errorf("dry run item %+v: want the multipart key and its bytes", it)
				}
				dryBytes += it.Bytes
			}
			if dry.Bytes != dryBytes || dry.Bytes < 6*mib+600<<10 {
				t.Errorf("dry run bytes %d (items %d)", dry.Bytes, dryBytes)
			}

			real, err := p.Run(ctx, purge.TaskIncompleteUploads, false)
			if err != nil {
				t.Fatal(err)
			}
			if !slices.Equal(ids(real), ids(dry)) || real.Bytes != dry.Bytes || len(real.Errors) != 0 {
				t.Fatalf("real run deleted %v (%d bytes, errors %v), the dry run reported %v (%d bytes)", ids(real), real.Bytes, real.Errors, ids(dry), dry.Bytes)
			}
			for _, id := range want {
				if l := leftovers(t, b, id); len(l) != 0 {
					t.Errorf("%s: left in S3: %v", id, l)
				}
				if _, err := b.meta.GetUpload(ctx, id); err == nil {
					t.Errorf("%s: session still there", id)
				}
			}
			for _, id := range []string{"parked", "leased"} {
				if _, err := b.meta.GetUpload(ctx, id); err != nil {
					t.Errorf("%s: session gone: %v", id, err)
				}
				if len(leftovers(t, b, id)) == 0 {
					t.Errorf("%s: its staged bytes are gone", id)
				}
			}
			again, err := p.Run(ctx, purge.TaskIncompleteUploads, false)
			if err != nil || len(again.Deleted) != 0 || again.Considered != 2 {
				t.Errorf("second run: %+v, %v; want nothing deleted, the 2 kept considered", again, err)
			}
		})
	}
}

// raceMeta runs hook after listing sessions: a writer between the
// purge's listing and its claim.
type raceMeta struct {
	meta
	hook func()
}

func (m raceMeta) ListUploads(ctx context.Context, olderThan time.Time, after string, n int) ([]storage.ListedUpload, error) {
	out, err := m.meta.ListUploads(ctx, olderThan, after, n)
	m.hook()
	return out, err
}

// TestIncompleteUploadsConcurrentPatch: a PATCH (lease, part, commit) on an
// old session after the purge listed it as idle wins: the purge skips it,
// and the push then completes with every byte.
func TestIncompleteUploadsConcurrentPatch(t *testing.T) {
	for _, b := range backends(t) {
		t.Run(b.name, func(t *testing.T) {
			ctx := t.Context()
			c1, c2, c3 := randBytes(3<<20), randBytes(3<<20), randBytes(1000)
			u := open(t, b, "racing", 72*time.Hour, c1)
			rm := raceMeta{meta: b.meta, hook: func() { u = patch(t, b, u, c2) }}
			p := purger(t, rm, b.blobs)
			r, err := p.Run(ctx, purge.TaskIncompleteUploads, false)
			if err != nil {
				t.Fatal(err)
			}
			if len(r.Deleted) != 0 || r.Skipped["busy"] != 1 {
				t.Fatalf("purge during a PATCH: %+v, want it skipped as busy", r)
			}
			u = patch(t, b, u, c3)
			held, err := b.meta.AcquireUpload(ctx, u.ID, u.Offset, "writer", time.Now().Add(time.Minute))
			if err != nil {
				t.Fatalf("the push cannot continue: %v", err)
			}
			all := slices.Concat(c1, c2, c3)
			d := digest.FromBytes(all)
			key, err := b.blobs.Complete(ctx, &held, d)
			if err != nil {
				t.Fatalf("complete after the purge: %v", err)
			}
			rd, ok := b.blobs.(storage.BlobReader)
			if !ok {
				return
			}
			rc, err := rd.ReadBlob(ctx, key)
			if err != nil {
				t.Fatal(err)
			}
			defer rc.Close()
			got, _ := io.ReadAll(rc)
			if !bytes.Equal(got, all) {
				t.Fatalf("completed blob: %d bytes, want %d (digest %s)", len(got), len(all), d)
			}
		})
	}
}

// TestIncompleteUploadsActive: an old session written within the
// threshold stays (store and purge on one clock).
func TestIncompleteUploadsActive(t *testing.T) {
	now := time.Now()
	clock := func() time.Time { return now }
	ms := memstore.New(memstore.WithClock(clock))
	t.Cleanup(func() { ms.Close() })
	ctx := t.Context()
	u := storage.Upload{ID: "active", Image: img, Created: now, ExpiresAt: now.Add(36 * time.Hour)}
	idle := storage.Upload{ID: "idle", Image: img, Created: now, ExpiresAt: now.Add(60 * time.Hour)}
	for _, x := range []storage.Upload{u, idle} {
		if err := ms.CreateUpload(ctx, x); err != nil {
			t.Fatal(err)
		}
	}
	now = now.Add(30 * time.Hour) // a PATCH 30 h after the POST
	u.Offset, u.ExpiresAt = 0, now.Add(24*time.Hour)
	if err := ms.CommitUploadAt(ctx, u, 0); err != nil {
		t.Fatal(err)
	}
	now = now.Add(10 * time.Hour) // 40 h old, written 10 h ago
	p, err := purge.New(purge.Deps{Meta: ms, Blobs: ms, Config: cfg, Now: clock})
	if err != nil {
		t.Fatal(err)
	}
	r, err := p.Run(ctx, purge.TaskIncompleteUploads, false)
	if err != nil {
		t.Fatal(err)
	}
	if !slices.Equal(ids(r), []string{"idle"}) || r.Skipped["active"] != 1 {
		t.Fatalf("report %+v: want idle deleted, active skipped", r)
	}
	if _, err := ms.GetUpload(ctx, "active"); err != nil {
		t.Fatalf("active session gone: %v", err)
	}
}

func TestUnknownTaskAndEvent(t *testing.T) {
	ms := memstore.New()
	t.Cleanup(func() { ms.Close() })
	p, err := purge.New(purge.Deps{Meta: ms, Blobs: ms, Config: cfg})
	if err != nil {
		t.Fatal(err)
	}
	if _, err := p.Run(t.Context(), "nope", true); err == nil {
		t.Error("unknown task: no error")
	}
	rs, err := p.HandleEvent(t.Context(), json.RawMessage(`{"version":"0","detail-type":"Scheduled Event","source":"aws.events","detail":{}}`))
	if err != nil || len(rs) != len(purge.Tasks()) || rs[0].DryRun {
		t.Errorf("scheduled event: %+v, %v; want every task, for real", rs, err)
	}
	rs, err = p.HandleEvent(t.Context(), json.RawMessage(`{"task":"incomplete-uploads","dryRun":true}`))
	if err != nil || len(rs) != 1 || !rs[0].DryRun {
		t.Errorf("manual event: %+v, %v", rs, err)
	}
}

// TestIncompleteUploadsDryResumable: with MaxPerRun 2, consecutive dry
// runs of incomplete-uploads walk every session once, one pass continued
// from a checkpoint of its own (incomplete-uploads-dry) that goes when
// the pass ends; what they list together is what the real runs that
// follow delete, and real runs keep no checkpoint. A dry checkpoint that
// names no listing place starts a new pass, reported as an error.
func TestIncompleteUploadsDryResumable(t *testing.T) {
	for _, b := range backends(t) {
		t.Run(b.name, func(t *testing.T) {
			ctx := t.Context()
			var want []string
			for i := range 6 {
				id := fmt.Sprintf("idle-%d", i)
				open(t, b, id, 72*time.Hour, randBytes(1<<10))
				want = append(want, id)
			}
			leased := open(t, b, "leased", 72*time.Hour)
			if _, err := b.meta.AcquireUpload(ctx, leased.ID, 0, "someone", time.Now().Add(72*time.Hour)); err != nil {
				t.Fatal(err)
			}
			p, err := purge.New(purge.Deps{Meta: b.meta, Blobs: b.blobs, Config: cfg, MaxPerRun: 2, Now: func() time.Time { return time.Now().Add(48 * time.Hour) }})
			if err != nil {
				t.Fatal(err)
			}
			const dryKey = purge.TaskIncompleteUploads + "-dry"
			dryPass := func() (listed []string, runs, considered int, pass string) {
				for more := true; more; runs++ {
					if runs > 10 {
						t.Fatalf("dry pass: still more after %d runs", runs)
					}
					r, err := p.Run(ctx, purge.TaskIncompleteUploads, true)
					if err != nil || len(r.Errors) != 0 {
						t.Fatalf("dry run %d: %v %v", runs, err, r.Errors)
					}
					if !strings.HasPrefix(r.Pass, "dry-") || pass != "" && r.Pass != pass {
						t.Fatalf("dry run %d: pass %q, want the pass of the first run (%q), named dry-...", runs, r.Pass, pass)
					}
					pass, more = r.Pass, r.More
					considered += r.Considered
					m, err := b.meta.GetMarker(ctx, "purge", dryKey)
					if more != (err == nil) || more && !strings.Contains(m.Value, `"pass":"`+pass+`"`) {
						t.Fatalf("dry run %d: more %v, checkpoint %+v (%v): want one naming the pass while more, none at the end", runs, more, m, err)
					}
					for _, it := range fullList(t, b.blobs, r) {
						listed = append(listed, it.ID)
					}
				}
				return listed, runs, considered, pass
			}
			listed, runs, considered, pass := dryPass()
			if !slices.Equal(listed, want) || runs != 4 || considered != 7 {
				t.Fatalf("dry pass: listed %v in %d runs, %d considered; want %v once each, 4 runs of 2 (the leased session too), 7 considered", listed, runs, considered, want)
			}
			for _, id := range want {
				if _, err := b.meta.GetUpload(ctx, id); err != nil {
					t.Errorf("the dry pass deleted session %s: %v", id, err)
				}
			}
			if again, _, _, next := dryPass(); !slices.Equal(again, want) || next == pass {
				t.Errorf("a dry pass after the end: listed %v in pass %q (the first: %q), want %v again in a new pass", again, next, pass, want)
			}

			// A checkpoint that names no listing place (another store's or a
			// damaged value) starts a new pass from the first session.
			bad := storage.Marker{Group: "purge", Key: dryKey, Value: `{"pass":"dry-old","last":"not a cursor"}`, Until: time.Now().Add(time.Hour)}
			if err := b.meta.PutMarker(ctx, bad); err != nil {
				t.Fatal(err)
			}
			r, err := p.Run(ctx, purge.TaskIncompleteUploads, true)
			if err != nil || len(r.Errors) != 1 || !strings.Contains(r.Errors[0], "not a cursor") || r.Pass == "dry-old" || !slices.Equal(ids(r), want[:2]) || !r.More {
				t.Errorf("dry run from a damaged checkpoint: %+v, %v; want one error naming it, a new pass, the first 2 sessions listed", r, err)
			}

			var deleted []string
			for runs, more := 0, true; more; runs++ {
				if runs > 10 {
					t.Fatalf("real runs: still more after %d runs", runs)
				}
				r, err := p.Run(ctx, purge.TaskIncompleteUploads, false)
				if err != nil || len(r.Errors) != 0 {
					t.Fatalf("real run %d: %v %v", runs, err, r.Errors)
				}
				if _, err := b.meta.GetMarker(ctx, "purge", purge.TaskIncompleteUploads); err == nil {
					t.Fatalf("real run %d wrote a checkpoint: its deletes are its progress", runs)
				}
				more = r.More
				for _, it := range fullList(t, b.blobs, r) {
					deleted = append(deleted, it.ID)
				}
			}
			if !slices.Equal(deleted, listed) {
				t.Errorf("the real runs deleted %v, the dry pass listed %v", deleted, listed)
			}
			if _, err := b.meta.GetUpload(ctx, leased.ID); err != nil {
				t.Errorf("leased session gone: %v", err)
			}
		})
	}
}
