package purge

import (
	"bytes"
	"compress/gzip"
	"encoding/json"
	"io"
	"reflect"
	"strings"
	"testing"
	"time"

	digest "github.com/opencontainers/go-digest"
)

// fullState is a pass state with every field set, every map and list
// holding more than one entry.
func fullState(t *testing.T) *gcState {
	t.Helper()
	d := func(s string) digest.Digest { return digest.FromString(s) }
	t0 := time.Date(2026, 12, 1, 10, 0, 0, 123456789, time.UTC)
	st := &gcState{
		Pass: "pass-1", T0: t0, Cut: t0.Add(-24 * time.Hour), Phase: phaseObjects,
		Cursor: `{"pk":"BLOB#x","sk":"é\n"}`, Index: 7, Prefix: 2, After: "blobs/sha256/ab/cd",
		Images: map[string]*gcImage{
			"library/alpine": {
				Refs:  map[digest.Digest]bool{d("a"): true, d("b"): true},
				Links: map[digest.Digest]gcLink{d("a"): {Key: "blobs/a", Size: 10, Age: t0.Add(-time.Hour)}, d("c"): {Size: 3, Age: t0}},
			},
			"team/app": {
				Refs:  map[digest.Digest]bool{d("c"): true},
				Links: map[digest.Digest]gcLink{d("b"): {Key: "blobs/b", Size: 1 << 40, Age: t0.Add(time.Minute)}},
			},
			"empty": {Refs: map[digest.Digest]bool{}, Links: map[digest.Digest]gcLink{}},
		},
		Records:   map[digest.Digest]gcRec{d("a"): {Key: "blobs/a", Size: 10, Age: t0}, d("z"): {Key: "blobs/z", Age: t0.Add(-48 * time.Hour)}},
		Uploads:   map[string]bool{"u1": true, "u2": true},
		Holds:     map[string][]string{"holds:hub": {d("b").String(), d("a").String(), d("b").String()}, "holds:quay": {d("z").String()}},
		Bodies:    map[string]bool{"manifests/x": true, "manifests/y": true},
		LinkCands: []linkCand{{Image: "team/app", Digest: d("b")}, {Image: "library/alpine", Digest: d("c")}, {Image: "team/app", Digest: d("a")}},
		RecCands:  []digest.Digest{d("z"), d("a"), d("q")},
		MarkCands: []markCand{{Group: "uploaded", Key: "k2"}, {Group: "holds:hub", Key: "k1"}},
		Kept:      map[digest.Digest]bool{d("b"): true, d("c"): true},
		Gone:      map[string]bool{"blobs/z": true, "blobs/y": true},
		Listed:    map[string]bool{"blobs/a": true, "uploads/u1": true},
	}
	v := reflect.ValueOf(st).Elem()
	for i := range v.NumField() {
		if v.Field(i).IsZero() {
			t.Fatalf("fullState leaves gcState.%s unset", v.Type().Field(i).Name)
		}
	}
	return st
}

// oldFormat is the state as it was saved before the JSON Lines format: one
// JSON document, gzip-compressed.
func oldFormat(t *testing.T, st *gcState) []byte {
	t.Helper()
	var buf bytes.Buffer
	zw := gzip.NewWriter(&buf)
	if err := json.NewEncoder(zw).Encode(st); err != nil {
		t.Fatal(err)
	}
	if err := zw.Close(); err != nil {
		t.Fatal(err)
	}
	return buf.Bytes()
}

func gunzip(t *testing.T, b []byte) string {
	t.Helper()
	zr, err := gzip.NewReader(bytes.NewReader(b))
	if err != nil {
		t.Fatal(err)
	}
	text, err := io.ReadAll(zr)
	if err != nil {
		t.Fatal(err)
	}
	return string(text)
}

func gzipText(t *testing.T, text string) []byte {
	t.Helper()
	var buf bytes.Buffer
	zw := gzip.NewWriter(&buf)
	if _, err := io.WriteString(zw, text); err != nil {
		t.Fatal(err)
	}
	if err := zw.Close(); err != nil {
		t.Fatal(err)
	}
	return buf.Bytes()
}

func TestStateRoundTrip(t *testing.T) {
	want := fullState(t)
	b, err := encodeState(want)
	if err != nil {
		t.Fatal(err)
	}
	text := gunzip(t, b)
	lines := strings.Split(strings.TrimSuffix(text, "\n"), "\n")
	if !strings.HasPrefix(lines[0], `{"v":2,`) || !strings.HasPrefix(lines[len(lines)-1], `{"t":"end"`) {
		t.Fatalf("not a header ... end line state:\n%s", text)
	}
	// The header, one line per image (3), ref (3), link (3), record (2),
	// held key (4), member of Uploads, Bodies, Gone, Listed and Kept (2
	// each), candidate (3+3+2), and the end line.
	if got, want := len(lines), 1+3+3+3+2+4+5*2+3+3+2+1; got != want {
		t.Errorf("%d lines, want %d:\n%s", got, want, text)
	}
	var got gcState
	if err := decodeState(b, &got); err != nil {
		t.Fatal(err)
	}
	if !reflect.DeepEqual(&got, want) {
		t.Errorf("after a round trip:\n got %+v\nwant %+v", got, *want)
	}

	// A new pass's state (empty maps, no candidates) comes back the same.
	empty := &gcState{Pass: "p", Phase: phaseScan}
	empty.fill()
	if b, err = encodeState(empty); err != nil {
		t.Fatal(err)
	}
	got = gcState{}
	if err := decodeState(b, &got); err != nil {
		t.Fatal(err)
	}
	if !reflect.DeepEqual(&got, empty) {
		t.Errorf("empty state after a round trip:\n got %+v\nwant %+v", got, *empty)
	}
}

func TestStateOldFormat(t *testing.T) {
	want := fullState(t)
	var got gcState
	if err := decodeState(oldFormat(t, want), &got); err != nil {
		t.Fatal(err)
	}
	if !reflect.DeepEqual(&got, want) {
		t.Errorf("old format state:\n got %+v\nwant %+v", got, *want)
	}
	// An old state that left its optional maps out gets them empty.
	sparse := &gcState{Pass: "p", Phase: phaseLinks, Images: map[string]*gcImage{"a": {}}}
	got = gcState{}
	if err := decodeState(oldFormat(t, sparse), &got); err != nil {
		t.Fatal(err)
	}
	if got.Uploads == nil || got.Holds == nil || got.Kept == nil || got.Images["a"].Links == nil {
		t.Errorf("old sparse state left maps nil: %+v", got)
	}
}

func TestStateRefused(t *testing.T) {
	b, err := encodeState(fullState(t))
	if err != nil {
		t.Fatal(err)
	}
	text := gunzip(t, b)
	lines := strings.SplitAfter(text, "\n")
	lines = lines[:len(lines)-1] // the empty string after the last newline
	cases := map[string]struct {
		b    []byte
		want string
	}{
		"not gzip":          {[]byte(text), "gzip"},
		"gzip cut short":    {b[:len(b)/2], "unexpected EOF"},
		"no end line":       {gzipText(t, strings.Join(lines[:len(lines)-1], "")), "cut short after"},
		"line cut short":    {gzipText(t, strings.TrimSuffix(text, "\n")), "cut short in line"},
		"line left out":     {gzipText(t, lines[0]+strings.Join(lines[2:], "")), "the end line counts"},
		"after the end":     {gzipText(t, text+lines[1]), "more after the end line"},
		"newer version":     {gzipText(t, strings.Replace(text, `{"v":2,`, `{"v":3,`, 1)), "format version 3"},
		"unknown kind":      {gzipText(t, lines[0]+`{"t":"zz"}`+"\n"+strings.Join(lines[1:], "")), `unknown kind "zz"`},
		"link without data": {gzipText(t, lines[0]+`{"t":"il","k":"a","d":"sha256:00"}`+"\n"), "a link without its fields"},
		"bad line":          {gzipText(t, lines[0]+"{\n"), "line 2"},
		"long line":         {gzipText(t, lines[0]+`{"t":"u","k":"`+strings.Repeat("x", stateMaxLine)+"\"}\n"), "longer than"},
		"other document":    {gzipText(t, `{"hello":1}`), "not a saved pass state"},
		"empty":             {gzipText(t, ""), "not a saved pass state"},
	}
	for name, c := range cases {
		var st gcState
		err := decodeState(c.b, &st)
		if err == nil || !strings.Contains(err.Error(), c.want) || !strings.HasPrefix(err.Error(), "decode the pass state: ") {
			t.Errorf("%s: got %v, want an error with %q", name, err, c.want)
		}
	}
}
