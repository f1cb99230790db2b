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

func TestParseBlobGrace(t *testing.T) {
	const repos = "repositories:\n  - {name: a, kind: hosted}\n"
	for doc, want := range map[string]time.Duration{
		"":                            DefaultBlobGrace,
		"purge: {}\n":                 DefaultBlobGrace,
		"purge:\n  blobGrace: 1h\n":   time.Hour,
		"purge:\n  blobGrace: 168h\n": 168 * time.Hour,
	} {
		c, err := Parse([]byte(repos + doc))
		if err != nil {
			t.Fatalf("%q: %v", doc, err)
		}
		if got := c.Purge.BlobGraceOrDefault(); got != want {
			t.Errorf("%q: blobGrace %v, want %v", doc, got, want)
		}
		if got := c.BlobGraceAge(); got != want {
			t.Errorf("%q: BlobGraceAge %v, want %v", doc, got, want)
		}
	}
	for doc, want := range map[string]string{
		"purge:\n  blobGrace: 59m\n": "purge.blobGrace 59m0s: want at least 1h0m0s",
		"purge:\n  blobGrace: -1h\n": "negative",
		"purge:\n  blobGrace: 1d\n":  "unknown unit",
	} {
		_, err := Parse([]byte(repos + doc))
		if err == nil || !strings.Contains(err.Error(), want) {
			t.Errorf("%q: error %v, want one mentioning %q", doc, err, want)
		}
	}
}

func TestParseRepoPurge(t *testing.T) {
	const doc = `repositories:
  - name: apps
    kind: hosted
    purge:
      untaggedAfter: 168h
      retention:
        - {tags: 'pr-.*', keepNewest: 5, olderThan: 72h}
        - {tags: 'v[0-9]+', keepNewest: 10}
        - {tags: '.*', olderThan: 720h, includeLatest: true}
  - name: hub
    kind: proxy
    remote: https://registry-1.docker.io
    purge: {evictAfter: 720h}
  - name: plain
    kind: hosted
  - name: never
    kind: hosted
    purge: {untaggedAfter: 0s}
`
	c, err := Parse([]byte(doc))
	if err != nil {
		t.Fatal(err)
	}
	apps, _ := c.Repository("apps")
	hub, _ := c.Repository("hub")
	plain, _ := c.Repository("plain")
	never, _ := c.Repository("never")
	if apps.UntaggedAge() != 168*time.Hour || apps.EvictAge() != 0 || hub.EvictAge() != 720*time.Hour || hub.UntaggedAge() != 0 {
		t.Errorf("ages: apps untagged %v evict %v, hub evict %v untagged %v", apps.UntaggedAge(), apps.EvictAge(), hub.EvictAge(), hub.UntaggedAge())
	}
	if plain.UntaggedAge() != 0 || plain.EvictAge() != 0 || plain.RetentionRules() != nil || never.UntaggedAge() != 0 {
		t.Errorf("defaults: want every purge setting off, got untagged %v evict %v rules %v (never: %v)", plain.UntaggedAge(), plain.EvictAge(), plain.RetentionRules(), never.UntaggedAge())
	}
	rules := apps.RetentionRules()
	if len(rules) != 3 || rules[0].KeepNewest != 5 || rules[0].Age() != 72*time.Hour || rules[1].Age() != 0 || !rules[2].IncludeLatest {
		t.Fatalf("rules %+v", rules)
	}
	for _, tc := range []struct {
		rule int
		tag  string
		want bool
	}{
		{0, "pr-12", true},
		{0, "xpr-12", false}, // full match, not a substring
		{0, "pr-12x", true},  // .* at the end
		{1, "v12", true},
		{1, "v12-rc", false},
		{1, "latest", false},
		{0, "latest", false},
		{2, "latest", true}, // includeLatest
		{2, "anything", true},
	} {
		if got := rules[tc.rule].Matches(tc.tag); got != tc.want {
			t.Errorf("rule %d (%q) matches %q: %v, want %v", tc.rule, rules[tc.rule].Tags, tc.tag, got, tc.want)
		}
	}
	hand := RetentionRule{Tags: "a+"} // built by hand, not parsed: compiled on first use
	if !hand.Matches("aaa") || hand.Matches("ab") {
		t.Error("an unparsed rule does not match as its regex says")
	}
}

func TestParseRepoPurgeErrors(t *testing.T) {
	const hosted = "repositories:\n  - name: a\n    kind: hosted\n    purge:\n"
	const proxy = "repositories:\n  - name: hub\n    kind: proxy\n    remote: https://x.io\n    purge:\n"
	for doc, want := range map[string]string{
		hosted + "      evictAfter: 720h\n":                                                                                   `repository "a": purge.evictAfter is a proxy setting`,
		proxy + "      untaggedAfter: 24h\n":                                                                                  `repository "hub": purge.untaggedAfter and purge.retention are hosted settings`,
		proxy + "      retention: [{tags: '.*', keepNewest: 1}]\n":                                                            "are hosted settings",
		hosted + "      untaggedAfter: 30m\n":                                                                                 "purge.untaggedAfter 30m0s: want at least 1h0m0s, or 0 for never",
		hosted + "      untaggedAfter: -24h\n":                                                                                "negative",
		hosted + "      untaggedAfter: 24\n":                                                                                  "quoted Go duration",
		proxy + "      evictAfter: 12h\n":                                                                                     "purge.evictAfter 12h0m0s: want at least 24h0m0s",
		hosted + "      untagged: 24h\n":                                                                                      "unknown field",
		hosted + "      retention: [{tags: '.*', keep: 3}]\n":                                                                 "unknown field",
		hosted + "      retention: [{tags: '(v', keepNewest: 3}]\n":                                                           "purge.retention[0] (tags \"(v\"): tags is not a valid RE2 regular expression: error parsing regexp: missing closing )",
		hosted + "      retention: [{keepNewest: 3}, {tags: x}]\n":                                                            "purge.retention[0]",
		hosted + "      retention: [{tags: x, keepNewest: 2}, {tags: z}]\n":                                                   "purge.retention[1] (tags \"z\"): a rule needs keepNewest, olderThan or both",
		hosted + "      retention: [{tags: x, keepNewest: -1}]\n":                                                             "keepNewest -1 is negative",
		hosted + "      retention: [{tags: x, olderThan: 10m}]\n":                                                             "olderThan 10m0s: want at least 1h0m0s",
		hosted + "      retention: [{tags: x, olderThan: -2h}]\n":                                                             "negative",
		hosted + "      retention: [{tags: 'x(?=y)', keepNewest: 1}]\n":                                                       "RE2", // lookahead: Perl, not RE2
		"repositories:\n  - {name: a, kind: hosted}\n  - {name: g, kind: group, members: [a], purge: {untaggedAfter: 24h}}\n": `repository "g": purge is not a group setting`,
	} {
		_, err := Parse([]byte(doc))
		if err == nil || !strings.Contains(err.Error(), want) {
			t.Errorf("%q:\nerror %v\nwant one mentioning %q", doc, err, want)
		}
	}
}
