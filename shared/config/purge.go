package config

import (
	"fmt"
	"time"
)

// DefaultIncompleteUploadsAfter is the default age of an upload session the
// purge removes (incomplete-uploads task).
const DefaultIncompleteUploadsAfter = 24 * time.Hour

// minIncompleteUploadsAfter bounds incompleteUploadsAfter from below: a
// younger session may belong to a slow push between two chunks.
const minIncompleteUploadsAfter = time.Hour

// Purge configures the scheduled purge (the top-level purge: section;
// package purge). Every field has a safe default.
type Purge struct {
	// IncompleteUploadsAfter is how long an upload session may go
	// unwritten before the incomplete-uploads task removes it (default 24h,
	// at least 1h).
	IncompleteUploadsAfter *Duration `json:"incompleteUploadsAfter,omitempty"`
}

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
	return nil
}
