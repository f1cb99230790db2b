package purge

import (
	"bytes"
	"compress/gzip"
	"context"
	"crypto/rand"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"slices"
	"time"

	"github.com/airlock-registry/airlock/shared/config"
	"github.com/airlock-registry/airlock/shared/storage"
)

// ErrUnknownTask: no task has that name.
var ErrUnknownTask = errors.New("unknown purge task")

// DefaultMaxPerRun bounds the items a task considers per run.
const DefaultMaxPerRun = 1000

// Item is one thing a task deleted (or, in a dry run, would delete).
type Item struct {
	// Kind says what was deleted when a task deletes several kinds (blob-gc:
	// "link", "blob", "object", "marker").
	Kind string `json:"kind,omitempty"`
	// ID is the item's id (an upload session id, a digest, an object key).
	ID    string `json:"id"`
	Image string `json:"image,omitempty"`
	// Keys are the S3 objects and multipart uploads it held ("multipart
	// <key> <upload id>" for a multipart upload).
	Keys    []string  `json:"keys,omitempty"`
	Bytes   int64     `json:"bytes"`
	Created time.Time `json:"created"`
	Updated time.Time `json:"updated"`
}

// ReportSample is how many of a run's deleted items its Report lists; the
// full list is the object the Report names (List).
const ReportSample = 100

// reportsPrefix is where every run's full list of deleted items goes:
// <reportsPrefix><pass>/<task>-<run>.jsonl.gz (package doc: Reports).
const reportsPrefix = storage.PurgePrefix + "reports/"

// Report is what one run of one task did.
type Report struct {
	Task   string `json:"task"`
	DryRun bool   `json:"dryRun"`
	// Pass names the pass the run belongs to: the runs that continue each
	// other from one checkpoint (a dry pass's name starts with "dry-"); a
	// task without checkpoint makes a pass of each run.
	Pass  string    `json:"pass"`
	Start time.Time `json:"start"`
	// Took is the run's duration (a Go duration string).
	Took string `json:"took"`
	// Considered counts the items the task looked at.
	Considered int `json:"considered"`
	// Count is how many items were deleted (dry run: would be deleted).
	Count int `json:"count"`
	// Kinds counts them by Item.Kind.
	Kinds map[string]int `json:"kinds"`
	// Bytes is their total size.
	Bytes int64 `json:"bytes"`
	// Deleted lists the first ReportSample of them, in the order they went.
	Deleted []Item `json:"deleted"`
	// Listed says how many of them Deleted lists: "<len(Deleted)> of <Count>".
	Listed string `json:"listed"`
	// List is the key of the object that lists all of them (JSON lines of
	// Items, gzip), in the blob bucket under purge/reports/; "" when none
	// was deleted.
	List string `json:"list,omitempty"`
	// Skipped counts the considered items kept, by reason.
	Skipped map[string]int `json:"skipped"`
	Errors  []string       `json:"errors,omitempty"`
	// More: the run stopped at its per-run bound; the next one continues.
	More bool `json:"more"`

	// full is every deleted item so far, until the run's end stores it.
	full *itemList
}

// itemList is a gzip stream of JSON lines, one Item each.
type itemList struct {
	buf bytes.Buffer
	zw  *gzip.Writer
}

func (r *Report) skip(reason string) { r.Skipped[reason]++ }

// add records a deleted (dry run: a would-be-deleted) item.
func (r *Report) add(it Item) {
	r.Count++
	r.Bytes += it.Bytes
	r.Kinds[it.Kind]++
	if len(r.Deleted) < ReportSample {
		r.Deleted = append(r.Deleted, it)
	}
	if r.full == nil {
		r.full = &itemList{}
		r.full.zw = gzip.NewWriter(&r.full.buf)
	}
	b, _ := json.Marshal(it)                // an Item always encodes
	_, _ = r.full.zw.Write(append(b, '\n')) // into a bytes.Buffer: no error
}

// store writes the full list of deleted items to the bucket and names it in
// the report (nothing when none was deleted).
func (r *Report) store(ctx context.Context, blobs storage.Blobs, run string) {
	r.Listed = fmt.Sprintf("%d of %d", len(r.Deleted), r.Count)
	if r.full == nil {
		return
	}
	full := r.full
	r.full = nil
	if err := full.zw.Close(); err != nil {
		r.fail("the full list of deleted items: %v", err)
		return
	}
	ol, ok := blobs.(storage.ObjectLister)
	if !ok {
		r.fail("the full list of deleted items is not stored: %T cannot write objects (storage.ObjectLister)", blobs)
		return
	}
	key := reportsPrefix + r.Pass + "/" + r.Task + "-" + run + ".jsonl.gz"
	ctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), 30*time.Second)
	defer cancel()
	if err := ol.WriteObject(ctx, key, full.buf.Bytes()); err != nil {
		r.fail("store the full list of deleted items at %s: %v", key, err)
		return
	}
	r.List = key
}

func (r *Report) fail(format string, args ...any) {
	r.Errors = append(r.Errors, fmt.Sprintf(format, args...))
}

// Deps are what a Purger works on.
type Deps struct {
	Meta   storage.Metadata
	Blobs  storage.Blobs
	Config *config.Config
	Logger *slog.Logger
	// Now is the clock (default time.Now).
	Now func() time.Time
	// MaxPerRun bounds the items each task considers per run (default
	// DefaultMaxPerRun; blob-gc counts 100 scanned items or listed objects
	// as one; incomplete-uploads bounds the sessions it deletes by it and
	// those it examines by 10 × it).
	MaxPerRun int
	// Metrics receives one CloudWatch embedded-metric-format line per
	// report (the purge function: its stdout); nil: none.
	Metrics io.Writer
	// ScanPage is the number of items blob-gc asks per Scan page (0: the
	// store's choice, 1 MB of items on DynamoDB).
	ScanPage int
}

// task is one named purge task.
type task struct {
	name string
	run  func(ctx context.Context, p *Purger, r *Report) error
}

// tasks are every task, in the order RunAll runs them.
var tasks = []task{
	{TaskIncompleteUploads, incompleteUploads},
	{TaskRetention, retention},
	{TaskUntaggedManifests, untaggedManifests},
	{TaskProxyEvict, proxyEvict},
	{TaskBlobGC, blobGC},
}

// Purger runs the purge tasks.
type Purger struct {
	d Deps
}

// New checks d and returns a Purger.
func New(d Deps) (*Purger, error) {
	if d.Meta == nil || d.Blobs == nil || d.Config == nil {
		return nil, errors.New("purge: Meta, Blobs and Config are required")
	}
	if d.Logger == nil {
		d.Logger = slog.New(slog.NewTextHandler(io.Discard, nil))
	}
	if d.Now == nil {
		d.Now = time.Now
	}
	if d.MaxPerRun <= 0 {
		d.MaxPerRun = DefaultMaxPerRun
	}
	return &Purger{d: d}, nil
}

// Tasks returns the task names, in the order RunAll runs them.
func Tasks() []string {
	var out []string
	for _, t := range tasks {
		out = append(out, t.name)
	}
	return out
}

// Run runs one task (ErrUnknownTask when none has that name) and logs its
// report. A task's failure to run at all is the error; failures on single
// items are in the report's Errors.
func (p *Purger) Run(ctx context.Context, name string, dryRun bool) (Report, error) {
	i := slices.IndexFunc(tasks, func(t task) bool { return t.name == name })
	if i < 0 {
		return Report{}, fmt.Errorf("%w %q (tasks: %v)", ErrUnknownTask, name, Tasks())
	}
	r := Report{Task: name, DryRun: dryRun, Start: p.d.Now().UTC(), Deleted: []Item{}, Kinds: map[string]int{}, Skipped: map[string]int{}}
	err := tasks[i].run(ctx, p, &r)
	if r.Pass == "" {
		r.Pass = newPass(p, dryRun)
	}
	r.store(ctx, p.d.Blobs, runID(r.Start))
	r.Took = p.d.Now().Sub(r.Start).String()
	p.d.Logger.InfoContext(ctx, "purge", "task", name, "dryRun", dryRun, "report", r, "err", err)
	if p.d.Metrics != nil {
		if merr := writeEMF(p.d.Metrics, r); merr != nil {
			p.d.Logger.WarnContext(ctx, "purge metrics", "task", name, "err", merr)
		}
	}
	return r, err
}

// RunAll runs every task, also after one failed, and returns their reports
// and the failures joined.
func (p *Purger) RunAll(ctx context.Context, dryRun bool) ([]Report, error) {
	var out []Report
	var errs []error
	for _, t := range tasks {
		r, err := p.Run(ctx, t.name, dryRun)
		out = append(out, r)
		if err != nil {
			errs = append(errs, fmt.Errorf("purge %s: %w", t.name, err))
		}
	}
	return out, errors.Join(errs...)
}

// Event is the purge function's input: the schedule's event (no task:
// every task, for real) or {"task": "<name>", "dryRun": true} invoked by hand.
type Event struct {
	Task   string `json:"task"`
	DryRun bool   `json:"dryRun"`
}

// HandleEvent runs what ev asks (any JSON that is not an Event, such as an
// EventBridge scheduled event, runs every task for real).
func (p *Purger) HandleEvent(ctx context.Context, raw json.RawMessage) ([]Report, error) {
	var ev Event
	if err := json.Unmarshal(raw, &ev); err != nil || ev.Task == "" {
		return p.RunAll(ctx, ev.DryRun && err == nil)
	}
	r, err := p.Run(ctx, ev.Task, ev.DryRun)
	return []Report{r}, err
}

func newLease() string { return "purge-" + randHex(12) }

func randHex(n int) string {
	b := make([]byte, n)
	_, _ = rand.Read(b)
	return hex.EncodeToString(b)
}

// idTime is the time format of pass and run names (sortable, no colons).
const idTime = "20060102T150405Z"

// newPass names a new pass: its start and a random part, "dry-" first for
// a dry pass.
func newPass(p *Purger, dry bool) string {
	id := p.d.Now().UTC().Format(idTime) + "-" + randHex(4)
	if dry {
		return "dry-" + id
	}
	return id
}

// runID names one run of a pass (unique also for two runs at once).
func runID(start time.Time) string { return start.UTC().Format(idTime) + "-" + randHex(4) }
