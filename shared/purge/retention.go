package purge

import (
	"cmp"
	"context"
	"errors"
	"slices"
	"strings"
	"time"

	digest "github.com/opencontainers/go-digest"

	"github.com/airlock-registry/airlock/shared/config"
	"github.com/airlock-registry/airlock/shared/storage"
)

// TaskRetention deletes the tags of hosted repositories that their
// purge.retention rules do not keep (package doc).
const TaskRetention = "retention"

// Skip reasons of retention.
const (
	skipNewest = "kept-newest" // among a matching rule's keepNewest newest
	skipNoRule = "no-rule"     // no rule matches it
	skipLatest = "latest"      // latest, and no rule has includeLatest
)

// tagVerdict is retention's decision on one tag.
type tagVerdict struct {
	tag storage.TagItem
	// at is the tag's age: its last write, or (unknown for tags written
	// before stores recorded it) the Created of its manifest.
	at      time.Time
	created time.Time // its manifest's
	delete  bool
	reason  string // why it is kept
}

// planRetention decides every tag of items under rules (each valid): a
// rule would delete a matching tag that is not among its keepNewest newest
// (by last write; of tags written in the same millisecond the greater name
// in byte order counts as newer) and, when olderThan is set, was last
// written longer ago than that; a tag goes when at least one rule matches
// it and every matching rule would delete it.
func planRetention(items storage.ImageItems, rules []config.RetentionRule, now time.Time) []tagVerdict {
	created := map[digest.Digest]time.Time{}
	for _, m := range items.Manifests {
		created[m.Digest] = m.Created
	}
	out := make([]tagVerdict, len(items.Tags))
	for i, t := range items.Tags {
		out[i] = tagVerdict{tag: t, at: t.Updated, created: created[t.Digest]}
		if t.Updated.IsZero() {
			out[i].at = created[t.Digest]
		}
	}
	matched := make([]bool, len(out))
	keepWhy := make([]string, len(out))
	for ri := range rules {
		rule := &rules[ri]
		var idx []int
		for i, v := range out {
			if rule.Matches(v.tag.Tag) {
				idx = append(idx, i)
			}
		}
		slices.SortFunc(idx, func(a, b int) int {
			return cmp.Or(out[b].at.Compare(out[a].at), strings.Compare(out[b].tag.Tag, out[a].tag.Tag))
		})
		for rank, i := range idx {
			matched[i] = true
			why := ""
			switch {
			case rank < rule.KeepNewest:
				why = skipNewest
			case rule.Age() > 0 && (out[i].at.IsZero() || !older(out[i].at, now.Add(-rule.Age()))):
				why = skipYoung // an unknown age is young: never deleted by age
			}
			if why != "" && keepWhy[i] == "" {
				keepWhy[i] = why
			}
		}
	}
	for i := range out {
		switch {
		case !matched[i] && out[i].tag.Tag == "latest":
			out[i].reason = skipLatest
		case !matched[i]:
			out[i].reason = skipNoRule
		case keepWhy[i] != "":
			out[i].reason = keepWhy[i]
		default:
			out[i].delete = true
		}
	}
	return out
}

func retention(ctx context.Context, p *Purger, r *Report) error {
	now := p.d.Now()
	applies := func(rc *config.Repository) bool { return rc.Kind == config.KindHosted && len(rc.RetentionRules()) > 0 }
	return walkImages(ctx, p, r, applies, func(col storage.Collector, img storage.Image, rc *config.Repository, items storage.ImageItems) error {
		for _, v := range planRetention(items, rc.RetentionRules(), now) {
			r.Considered++
			if !v.delete {
				r.skip(v.reason)
				continue
			}
			var err error
			if !r.DryRun {
				err = col.DeleteTagIf(ctx, img, v.tag)
			}
			switch {
			case err == nil:
				r.add(Item{Kind: "tag", ID: v.tag.Tag, Image: img.String(), Created: v.created, Updated: v.at})
			case errors.Is(err, storage.ErrConflict):
				r.skip(skipBusy) // pushed again since the listing
			case errors.Is(err, storage.ErrNotFound):
				r.skip(skipGone)
			default:
				r.fail("delete tag %s of %s: %v", v.tag.Tag, img, err)
			}
		}
		return nil
	})
}
