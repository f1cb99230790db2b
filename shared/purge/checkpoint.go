package purge

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"slices"
	"strings"
	"time"

	"github.com/airlock-registry/airlock/shared/config"
	"github.com/airlock-registry/airlock/shared/storage"
)

// Checkpoints: a task that cannot finish in one run records where it
// stopped in a marker (group checkpointGroup, key the task's name, with
// drySuffix for a dry pass, which never continues a real one nor the other
// way round) and the next run continues after it. A checkpoint expires
// checkpointTTL after it was last written (a task not run for that long
// starts over).
const (
	checkpointGroup = "purge"
	drySuffix       = "-dry"
	checkpointTTL   = 7 * 24 * time.Hour
	// checkpointEvery: a real run rewrites its checkpoint after this many
	// images, so a run killed by its deadline loses at most that much work.
	checkpointEvery = 100
)

func markers(p *Purger) (storage.ProxyMetadata, error) {
	pm, ok := p.d.Meta.(storage.ProxyMetadata)
	if !ok {
		return nil, fmt.Errorf("%T cannot hold markers (storage.ProxyMetadata)", p.d.Meta)
	}
	return pm, nil
}

// loadCheckpoint returns the task's checkpoint ("" when there is none: start
// from the beginning; a store failure is logged and counts as none, which
// only repeats work).
func loadCheckpoint(ctx context.Context, p *Purger, task string) string {
	pm, err := markers(p)
	if err != nil {
		p.d.Logger.WarnContext(ctx, "purge checkpoint", "task", task, "err", err)
		return ""
	}
	m, err := pm.GetMarker(ctx, checkpointGroup, task)
	if err != nil {
		if !errors.Is(err, storage.ErrNotFound) {
			p.d.Logger.WarnContext(ctx, "purge checkpoint: starting from the beginning", "task", task, "err", err)
		}
		return ""
	}
	return m.Value
}

// saveCheckpoint records value as the task's checkpoint (written even when
// ctx is done: the run's deadline is when it matters most).
func saveCheckpoint(ctx context.Context, p *Purger, task, value string) error {
	pm, err := markers(p)
	if err != nil {
		return err
	}
	ctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), 10*time.Second)
	defer cancel()
	m := storage.Marker{Group: checkpointGroup, Key: task, Value: value, Until: p.d.Now().Add(checkpointTTL)}
	if err := pm.PutMarker(ctx, m); err != nil {
		return fmt.Errorf("save the %s checkpoint %q: %w", task, value, err)
	}
	return nil
}

// clearCheckpoint deletes the task's checkpoint: the next run starts from
// the beginning.
func clearCheckpoint(ctx context.Context, p *Purger, task string) error {
	pm, err := markers(p)
	if err != nil {
		return err
	}
	ctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), 10*time.Second)
	defer cancel()
	if err := pm.DeleteMarker(ctx, checkpointGroup, task); err != nil {
		return fmt.Errorf("clear the %s checkpoint: %w", task, err)
	}
	return nil
}

// collector returns the store's storage.Collector capability.
func collector(p *Purger) (storage.Collector, error) {
	c, ok := p.d.Meta.(storage.Collector)
	if !ok {
		return nil, fmt.Errorf("%T cannot list and conditionally delete an image's items (storage.Collector)", p.d.Meta)
	}
	return c, nil
}

// walkCheckpoint is the value of a catalog task's checkpoint marker: the
// pass and the last image it visited ("repo/name"). A value that is not
// JSON is a last image written before passes were named. A pass of
// incomplete-uploads keeps the same, Last the cursor of the last session
// it considered (storage.ListedUpload.Cursor).
type walkCheckpoint struct {
	Pass string `json:"pass"`
	Last string `json:"last"`
}

func checkpointKey(r *Report) string {
	if r.DryRun {
		return r.Task + drySuffix
	}
	return r.Task
}

// walkImages lists (storage.Collector.ListImage) and visits the catalog's
// images of the configured repositories the task applies to (applies), in
// catalog order, from the checkpoint on (a dry pass's own), at
// most MaxPerRun per run (Report.More: stopped with images left; the
// checkpoint is then the last image visited). Once it reaches the end the
// checkpoint is cleared: the next run starts over. A visit's error is
// recorded in the report and the walk goes on (the next cycle retries that
// image).
//
// The catalog is sorted by full name ("repo/name"), and the names of one
// repository are contiguous (they share the prefix "repo/"), so each
// repository is one listing from "repo/" that stops at the first name
// without the prefix: images of repositories the task does not apply to are
// never read.
func walkImages(ctx context.Context, p *Purger, r *Report, applies func(*config.Repository) bool,
	visit func(storage.Collector, storage.Image, *config.Repository, storage.ImageItems) error) error {
	col, err := collector(p)
	if err != nil {
		return err
	}
	var repos []string
	conf := map[string]*config.Repository{}
	for i := range p.d.Config.Repositories {
		if rc := &p.d.Config.Repositories[i]; applies(rc) {
			repos, conf[rc.Name] = append(repos, rc.Name), rc
		}
	}
	if len(repos) == 0 {
		return nil
	}
	slices.SortFunc(repos, func(a, b string) int { return strings.Compare(a+"/", b+"/") })
	cpKey := checkpointKey(r)
	var cp walkCheckpoint
	if v := loadCheckpoint(ctx, p, cpKey); v != "" && json.Unmarshal([]byte(v), &cp) != nil {
		cp = walkCheckpoint{Last: v}
	}
	if cp.Pass == "" {
		cp.Pass = newPass(p, r.DryRun)
	}
	r.Pass = cp.Pass
	start := cp.Last
	startRepo, _, _ := strings.Cut(start, "/")
	done, last := 0, ""
	save := func() error {
		b, _ := json.Marshal(walkCheckpoint{Pass: cp.Pass, Last: last}) // two strings always encode
		return saveCheckpoint(ctx, p, cpKey, string(b))
	}
	stop := func(err error) error {
		r.More = true
		if last != "" {
			if serr := save(); serr != nil {
				r.fail("%v", serr)
			}
		}
		return err
	}
	for _, repo := range repos {
		prefix, after := repo+"/", repo+"/"
		switch {
		case start == "":
		case prefix < startRepo+"/":
			continue // done in an earlier run of this cycle
		case repo == startRepo:
			after = start
		}
		for {
			n := min(1000, p.d.MaxPerRun-done+1)
			pg, err := p.d.Meta.ListImages(ctx, after, n)
			if err != nil {
				return stop(fmt.Errorf("list images after %q: %w", after, err))
			}
			ended := !pg.More
			for _, name := range pg.Items {
				if !strings.HasPrefix(name, prefix) {
					ended = true
					break
				}
				if done == p.d.MaxPerRun {
					return stop(nil)
				}
				if err := ctx.Err(); err != nil {
					return stop(err)
				}
				img := storage.Image{Repo: repo, Name: name[len(prefix):]}
				items, err := col.ListImage(ctx, img)
				if err == nil {
					err = visit(col, img, conf[repo], items)
				}
				if err != nil {
					r.fail("%s: %v", name, err)
				}
				done, last = done+1, name
				if done%checkpointEvery == 0 {
					if err := save(); err != nil {
						r.fail("%v", err)
					}
				}
			}
			if ended || len(pg.Items) == 0 {
				break
			}
			after = pg.Items[len(pg.Items)-1]
		}
	}
	if start != "" || done >= checkpointEvery { // a checkpoint exists
		if err := clearCheckpoint(ctx, p, cpKey); err != nil {
			r.fail("%v", err)
		}
	}
	return nil
}
