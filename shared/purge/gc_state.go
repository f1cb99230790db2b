package purge

import (
	"bufio"
	"bytes"
	"compress/gzip"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"time"

	digest "github.com/opencontainers/go-digest"
)

// The saved pass state is gzip JSON Lines, written and read one line at a
// time so that the text is never held whole next to the maps it fills
// (encoding/json buffers a whole value: one document of the state would be
// as large as the state again, and more). The first line is the header
// (stateHeader: the format version and the scalar fields), then one line
// per map entry, image or candidate (stateLine, in any order but a
// candidate list's), then the end line with the number of lines before
// it, so that a state cut short at a line's end is refused too.
//
// A state saved before this format (one JSON document, beginning with
// {"pass":) still loads, through encoding/json whole as it was written.

// stateVersion is the format version in the header line.
const stateVersion = 2

// stateMaxLine bounds a line of the saved state (the longest are a link
// with its image name and key, or the header with the scan cursor).
const stateMaxLine = 1 << 20

// stateHeader is the first line: what a pass is besides its maps.
type stateHeader struct {
	V      int       `json:"v"`
	Pass   string    `json:"pass"`
	T0     time.Time `json:"t0"`
	Cut    time.Time `json:"cut"`
	Phase  string    `json:"phase"`
	Cursor string    `json:"cursor,omitempty"`
	Index  int       `json:"index"`
	Prefix int       `json:"prefix"`
	After  string    `json:"after,omitempty"`
}

// Kinds of state lines (stateLine.T) and the fields each uses.
const (
	lineImage    = "i"  // K image
	lineRef      = "ir" // K image, D
	lineLink     = "il" // K image, D, L
	lineRecord   = "r"  // D, R
	lineUpload   = "u"  // K
	lineHold     = "h"  // K group, V key (in order)
	lineBody     = "b"  // K
	lineLinkCand = "cl" // K image, D (in order)
	lineRecCand  = "cr" // D (in order)
	lineMarkCand = "cm" // K group, V key (in order)
	lineKept     = "k"  // D
	lineGone     = "g"  // K
	lineListed   = "o"  // K
	lineEnd      = "end"
)

// stateLine is one line after the header.
type stateLine struct {
	T string        `json:"t"`
	K string        `json:"k,omitempty"`
	V string        `json:"v,omitempty"`
	D digest.Digest `json:"d,omitempty"`
	L *gcLink       `json:"l,omitempty"`
	R *gcRec        `json:"r,omitempty"`
	N int           `json:"n,omitempty"` // end: the lines before it, header included
}

// encodeState returns the state gzip-compressed; only the compressed bytes
// are held whole.
func encodeState(st *gcState) ([]byte, error) {
	var buf bytes.Buffer
	zw := gzip.NewWriter(&buf)
	enc := json.NewEncoder(zw)
	n := 0
	var err error
	put := func(v any) {
		if err == nil {
			err = enc.Encode(v)
			n++
		}
	}
	put(stateHeader{V: stateVersion, Pass: st.Pass, T0: st.T0, Cut: st.Cut, Phase: st.Phase,
		Cursor: st.Cursor, Index: st.Index, Prefix: st.Prefix, After: st.After})
	for name, im := range st.Images {
		put(stateLine{T: lineImage, K: name})
		for d := range im.Refs {
			put(stateLine{T: lineRef, K: name, D: d})
		}
		for d, l := range im.Links {
			put(stateLine{T: lineLink, K: name, D: d, L: &l})
		}
	}
	for d, rec := range st.Records {
		put(stateLine{T: lineRecord, D: d, R: &rec})
	}
	for group, keys := range st.Holds {
		for _, k := range keys {
			put(stateLine{T: lineHold, K: group, V: k})
		}
	}
	for _, set := range []struct {
		t string
		m map[string]bool
	}{{lineUpload, st.Uploads}, {lineBody, st.Bodies}, {lineGone, st.Gone}, {lineListed, st.Listed}} {
		for k, ok := range set.m {
			if ok {
				put(stateLine{T: set.t, K: k})
			}
		}
	}
	for d, ok := range st.Kept {
		if ok {
			put(stateLine{T: lineKept, D: d})
		}
	}
	for _, c := range st.LinkCands {
		put(stateLine{T: lineLinkCand, K: c.Image, D: c.Digest})
	}
	for _, d := range st.RecCands {
		put(stateLine{T: lineRecCand, D: d})
	}
	for _, c := range st.MarkCands {
		put(stateLine{T: lineMarkCand, K: c.Group, V: c.Key})
	}
	put(stateLine{T: lineEnd, N: n})
	if err == nil {
		err = zw.Close()
	}
	if err != nil {
		return nil, fmt.Errorf("encode the pass state: %w", err)
	}
	return buf.Bytes(), nil
}

// decodeState reads a saved state (this format or the one-document format
// before it) into st.
func decodeState(b []byte, st *gcState) error {
	zr, err := gzip.NewReader(bytes.NewReader(b))
	if err != nil {
		return fmt.Errorf("decode the pass state: %w", err)
	}
	br := bufio.NewReaderSize(zr, stateMaxLine)
	start, _ := br.Peek(len(`{"pass":`))
	switch {
	case bytes.HasPrefix(start, []byte(`{"v":`)):
		err = decodeLines(br, st)
	case bytes.Equal(start, []byte(`{"pass":`)):
		err = json.NewDecoder(io.LimitReader(br, 4<<30)).Decode(st)
	default:
		err = fmt.Errorf("not a saved pass state (it begins %q)", start)
	}
	if err != nil {
		return fmt.Errorf("decode the pass state: %w", err)
	}
	st.fill()
	return nil
}

// decodeLines reads the state line by line into st's maps.
func decodeLines(br *bufio.Reader, st *gcState) error {
	*st = gcState{}
	st.fill()
	n := 0
	next := func() ([]byte, error) {
		line, err := br.ReadSlice('\n')
		switch {
		case errors.Is(err, bufio.ErrBufferFull):
			return nil, fmt.Errorf("line %d is longer than %d bytes", n+1, stateMaxLine)
		case errors.Is(err, io.EOF) && len(line) == 0:
			return nil, fmt.Errorf("cut short after %d lines (no end line)", n)
		case errors.Is(err, io.EOF):
			return nil, fmt.Errorf("cut short in line %d", n+1)
		case err != nil:
			return nil, err
		}
		n++
		return line, nil
	}
	line, err := next()
	if err != nil {
		return err
	}
	var h stateHeader
	if err := json.Unmarshal(line, &h); err != nil {
		return fmt.Errorf("line 1: %w", err)
	}
	if h.V != stateVersion {
		return fmt.Errorf("format version %d, this build reads %d", h.V, stateVersion)
	}
	st.Pass, st.T0, st.Cut, st.Phase = h.Pass, h.T0, h.Cut, h.Phase
	st.Cursor, st.Index, st.Prefix, st.After = h.Cursor, h.Index, h.Prefix, h.After
	image := func(name string) *gcImage {
		im := st.Images[name]
		if im == nil {
			im = &gcImage{Refs: map[digest.Digest]bool{}, Links: map[digest.Digest]gcLink{}}
			st.Images[name] = im
		}
		return im
	}
	for {
		line, err := next()
		if err != nil {
			return err
		}
		var l stateLine
		if err := json.Unmarshal(line, &l); err != nil {
			return fmt.Errorf("line %d: %w", n, err)
		}
		switch l.T {
		case lineImage:
			image(l.K)
		case lineRef:
			image(l.K).Refs[l.D] = true
		case lineLink:
			if l.L == nil {
				return fmt.Errorf("line %d: a link without its fields", n)
			}
			image(l.K).Links[l.D] = *l.L
		case lineRecord:
			if l.R == nil {
				return fmt.Errorf("line %d: a record without its fields", n)
			}
			st.Records[l.D] = *l.R
		case lineUpload:
			st.Uploads[l.K] = true
		case lineHold:
			st.Holds[l.K] = append(st.Holds[l.K], l.V)
		case lineBody:
			st.Bodies[l.K] = true
		case lineGone:
			st.Gone[l.K] = true
		case lineListed:
			st.Listed[l.K] = true
		case lineKept:
			st.Kept[l.D] = true
		case lineLinkCand:
			st.LinkCands = append(st.LinkCands, linkCand{Image: l.K, Digest: l.D})
		case lineRecCand:
			st.RecCands = append(st.RecCands, l.D)
		case lineMarkCand:
			st.MarkCands = append(st.MarkCands, markCand{Group: l.K, Key: l.V})
		case lineEnd:
			if l.N != n-1 {
				return fmt.Errorf("the end line counts %d lines, %d came before it", l.N, n-1)
			}
			if _, err := br.ReadByte(); !errors.Is(err, io.EOF) {
				return fmt.Errorf("more after the end line (line %d)", n)
			}
			return nil
		default:
			return fmt.Errorf("line %d: unknown kind %q", n, l.T)
		}
	}
}

// fill gives st's maps that a saved state left out an empty value.
func (st *gcState) fill() {
	for _, m := range []*map[string]bool{&st.Uploads, &st.Bodies, &st.Gone, &st.Listed} {
		if *m == nil {
			*m = map[string]bool{}
		}
	}
	if st.Kept == nil {
		st.Kept = map[digest.Digest]bool{}
	}
	if st.Images == nil {
		st.Images = map[string]*gcImage{}
	}
	if st.Records == nil {
		st.Records = map[digest.Digest]gcRec{}
	}
	if st.Holds == nil {
		st.Holds = map[string][]string{}
	}
	for _, im := range st.Images {
		if im.Refs == nil {
			im.Refs = map[digest.Digest]bool{}
		}
		if im.Links == nil {
			im.Links = map[digest.Digest]gcLink{}
		}
	}
}
