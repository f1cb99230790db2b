package config

import (
	"errors"
	"fmt"
	"regexp"
	"time"
)

// DefaultIncompleteUploadsAfter is the default age of an upload session the
// purge removes (incomplete-uploads task).
const DefaultIncompleteUploadsAfter = 24 * time.Hour

// minIncompleteUploadsAfter bounds incompleteUploadsAfter from below: a
// younger session may belong to a slow push between two chunks.
const minIncompleteUploadsAfter = time.Hour

// DefaultBlobGrace is the default grace period of the blob garbage
// collection: an unreferenced blob record, link or S3 object younger than
// this is kept (it may belong to a push in progress).
const DefaultBlobGrace = 24 * time.Hour

// minBlobGrace bounds blobGrace from below: a push uploads its layers
// before its manifest, which may take a while on a slow link.
const minBlobGrace = time.Hour

// Minimums of the repository purge settings (a non-zero value below is an
// error).
const (
	// minUntaggedAfter: a manifest pushed by digest, then tagged or put in
	// an index a little later, is not deleted in between.
	minUntaggedAfter = time.Hour
	// minOlderThan: a retention rule never deletes a tag pushed within the hour.
	minOlderThan = time.Hour
	// minEvictAfter: a proxy's last-pull time is recorded at most once a day
	// (package repo), so anything shorter would evict images pulled today.
	minEvictAfter = 24 * time.Hour
)

// Purge configures the scheduled purge (the top-level purge: section;
// package purge). Every field has a safe default.
type Purge struct {
	// IncompleteUploadsAfter is how long an upload session may go
	// unwritten before the incomplete-uploads task removes it (default 24h,
	// at least 1h).
	IncompleteUploadsAfter *Duration `json:"incompleteUploadsAfter,omitempty"`
	// BlobGrace is how old an unreferenced blob record, link or S3 object
	// must be before the blob garbage collection deletes it (default 24h,
	// at least 1h).
	BlobGrace *Duration `json:"blobGrace,omitempty"`
}

// BlobGraceOrDefault returns blobGrace (default DefaultBlobGrace); p may be nil.
func (p *Purge) BlobGraceOrDefault() time.Duration {
	if p == nil {
		return DefaultBlobGrace
	}
	return durationOr(p.BlobGrace, DefaultBlobGrace)
}

// BlobGraceAge returns purge.blobGrace (default DefaultBlobGrace); c.Purge
// may be nil.
func (c *Config) BlobGraceAge() time.Duration { return c.Purge.BlobGraceOrDefault() }

// IncompleteUploadsAge returns incompleteUploadsAfter (default
// DefaultIncompleteUploadsAfter); c.Purge may be nil.
func (c *Config) IncompleteUploadsAge() time.Duration {
	if c.Purge == nil {
		return DefaultIncompleteUploadsAfter
	}
	return durationOr(c.Purge.IncompleteUploadsAfter, DefaultIncompleteUploadsAfter)
}

func (c *Config) validatePurge() error {
	if c.Purge == nil {
		return nil
	}
	if d := c.Purge.IncompleteUploadsAfter; d != nil && d.Duration < minIncompleteUploadsAfter {
		return fmt.Errorf("purge.incompleteUploadsAfter %s: want at least %s (a younger session may be a slow push between chunks)", d.Duration, minIncompleteUploadsAfter)
	}
	if d := c.Purge.BlobGrace; d != nil && d.Duration < minBlobGrace {
		return fmt.Errorf("purge.blobGrace %s: want at least %s (a younger unreferenced blob may belong to a push in progress)", d.Duration, minBlobGrace)
	}
	return nil
}

// RepoPurge is a repository's purge: section. Every setting is off when
// absent (or 0): nothing of a repository is deleted unless asked.
type RepoPurge struct {
	// UntaggedAfter (hosted only) is how long a manifest that no tag, no
	// kept index and no kept subject reaches is kept after it was pushed or
	// last referenced (the untagged-manifests task; absent or 0: never
	// deleted, the default, since deployments may pin digests; at least 1h).
	UntaggedAfter *Duration `json:"untaggedAfter,omitempty"`
	// Retention (hosted only) are the tag retention rules (the retention
	// task; none: every tag is kept). A tag is deleted when at least one
	// rule matches it and every rule matching it would delete it.
	Retention []RetentionRule `json:"retention,omitempty"`
	// EvictAfter (proxy only) is how long a cached manifest may go
	// unpulled before the proxy-evict task deletes it with its tags
	// (absent or 0: never; at least 24h).
	EvictAfter *Duration `json:"evictAfter,omitempty"`
}

// RetentionRule is one tag retention rule of a hosted repository. It needs
// keepNewest, olderThan or both.
type RetentionRule struct {
	// Tags is an RE2 regular expression that must match the whole tag.
	Tags string `json:"tags"`
	// KeepNewest keeps the rule's K newest matching tags (by last write;
	// of tags written in the same millisecond the greater name counts as
	// newer); 0: no count.
	KeepNewest int `json:"keepNewest,omitempty"`
	// OlderThan deletes only matching tags last written longer ago than
	// this (at least 1h); absent: any age.
	OlderThan *Duration `json:"olderThan,omitempty"`
	// IncludeLatest lets the rule match the tag "latest" (never matched
	// otherwise).
	IncludeLatest bool `json:"includeLatest,omitempty"`

	re *regexp.Regexp
}

// Matches reports whether the rule applies to tag: its regex matches the
// whole tag, and the tag is not "latest" unless includeLatest.
func (r *RetentionRule) Matches(tag string) bool {
	if tag == "latest" && !r.IncludeLatest {
		return false
	}
	re := r.re
	if re == nil { // built by hand, not parsed (never written here: rules are shared)
		var err error
		if re, err = compileFull(r.Tags); err != nil {
			return false // not a valid rule: it matches nothing
		}
	}
	return re.MatchString(tag)
}

// Age returns olderThan (0 when unset).
func (r *RetentionRule) Age() time.Duration { return durationOr(r.OlderThan, 0) }

func compileFull(expr string) (*regexp.Regexp, error) {
	return regexp.Compile(`^(?:` + expr + `)$`)
}

// UntaggedAge returns the repository's purge.untaggedAfter (0: never).
func (r *Repository) UntaggedAge() time.Duration {
	if r.Purge == nil {
		return 0
	}
	return durationOr(r.Purge.UntaggedAfter, 0)
}

// EvictAge returns the proxy's purge.evictAfter (0: never).
func (r *Repository) EvictAge() time.Duration {
	if r.Purge == nil {
		return 0
	}
	return durationOr(r.Purge.EvictAfter, 0)
}

// RetentionRules returns the repository's retention rules (none: keep every tag).
func (r *Repository) RetentionRules() []RetentionRule {
	if r.Purge == nil {
		return nil
	}
	return r.Purge.Retention
}

// validatePurge checks the repository's purge: section against its kind
// (r.Kind is valid).
func (r *Repository) validatePurge() error {
	p := r.Purge
	if p == nil {
		return nil
	}
	switch r.Kind {
	case KindGroup:
		return errors.New("purge is not a group setting: a group stores nothing; configure its members")
	case KindHosted:
		if p.EvictAfter != nil {
			return errors.New("purge.evictAfter is a proxy setting (cache eviction); a hosted repository takes purge.untaggedAfter and purge.retention")
		}
	case KindProxy:
		if p.UntaggedAfter != nil || len(p.Retention) > 0 {
			return errors.New("purge.untaggedAfter and purge.retention are hosted settings; a proxy takes purge.evictAfter (cache eviction)")
		}
	}
	if d := p.UntaggedAfter; d != nil && d.Duration != 0 && d.Duration < minUntaggedAfter {
		return fmt.Errorf("purge.untaggedAfter %s: want at least %s, or 0 for never (a manifest pushed by digest may be tagged or put in an index a little later)", d.Duration, minUntaggedAfter)
	}
	if d := p.EvictAfter; d != nil && d.Duration != 0 && d.Duration < minEvictAfter {
		return fmt.Errorf("purge.evictAfter %s: want at least %s, or 0 for never (pulls are recorded at most once a day)", d.Duration, minEvictAfter)
	}
	for i := range p.Retention {
		rule := &p.Retention[i]
		if err := rule.validate(); err != nil {
			return fmt.Errorf("purge.retention[%d] (tags %q): %w", i, rule.Tags, err)
		}
	}
	return nil
}

func (r *RetentionRule) validate() error {
	if r.Tags == "" {
		return errors.New("tags is required: a regular expression matching whole tags (\".*\" for every tag)")
	}
	re, err := compileFull(r.Tags)
	if err != nil {
		return fmt.Errorf("tags is not a valid RE2 regular expression: %w", err)
	}
	r.re = re
	if r.KeepNewest < 0 {
		return fmt.Errorf("keepNewest %d is negative", r.KeepNewest)
	}
	if r.OlderThan != nil && r.OlderThan.Duration < minOlderThan {
		return fmt.Errorf("olderThan %s: want at least %s", r.OlderThan.Duration, minOlderThan)
	}
	if r.KeepNewest == 0 && r.OlderThan == nil {
		return errors.New("a rule needs keepNewest, olderThan or both (alone it would delete every matching tag)")
	}
	return nil
}
