package config

import (
	"strings"
	"testing"
	"time"
)

func TestParsePurge(t *testing.T) {
	const repos = "repositories:\n  - {name: a, kind: hosted}\n"
	c, err := Parse([]byte(repos))
	if err != nil {
		t.Fatal(err)
	}
	if got := c.IncompleteUploadsAge(); got != DefaultIncompleteUploadsAfter {
		t.Errorf("no purge section: incompleteUploadsAfter %v, want %v", got, DefaultIncompleteUploadsAfter)
	}
	for doc, want := range map[string]time.Duration{
		"purge: {}\n":                             DefaultIncompleteUploadsAfter,
		"purge:\n  incompleteUploadsAfter: 6h\n":  6 * time.Hour,
		"purge:\n  incompleteUploadsAfter: 72h\n": 72 * time.Hour,
	} {
		c, err := Parse([]byte(repos + doc))
		if err != nil {
			t.Fatalf("%q: %v", doc, err)
		}
		if got := c.IncompleteUploadsAge(); got != want {
			t.Errorf("%q: incompleteUploadsAfter %v, want %v", doc, got, want)
		}
	}
	for doc, want := range map[string]string{
		"purge:\n  incompleteUploadsAfter: 30m\n": "at least 1h0m0s",
		"purge:\n  incompleteUploadsAfter: 24\n":  "quoted Go duration",
		"purge:\n  incompleteUploadsAfter: -2h\n": "negative",
		"purge:\n  incompleteUploads: 24h\n":      "unknown field",
		"purge: 24h\n":                            "purge",
	} {
		_, err := Parse([]byte(repos + doc))
		if err == nil || !strings.Contains(err.Error(), want) {
			t.Errorf("%q: error %v, want one mentioning %q", doc, err, want)
		}
	}
}
