package dynamo

import (
	"bytes"
	"compress/gzip"
	"fmt"
	"io"
	"strings"

	digest "github.com/opencontainers/go-digest"
)

// packAbove is the size from which a manifest body or digest list is stored
// gzip-compressed. A manifest with thousands of layers has a body of ~350 KB
// and a digest list of ~165 KB, together over DynamoDB's 400 KB item limit;
// compressed (digests are hex) they take about half.
const packAbove = 32 << 10

// maxUnpacked bounds what one compressed attribute may expand to.
const maxUnpacked = 16 << 20

// gz compresses b.
func gz(b []byte) []byte {
	var buf bytes.Buffer
	w, _ := gzip.NewWriterLevel(&buf, gzip.BestCompression) // the level is valid
	_, _ = w.Write(b)                                       // writes to a bytes.Buffer do not fail
	_ = w.Close()
	return buf.Bytes()
}

// gunzip expands b, at most maxUnpacked bytes.
func gunzip(b []byte) ([]byte, error) {
	r, err := gzip.NewReader(bytes.NewReader(b))
	if err != nil {
		return nil, err
	}
	out, err := io.ReadAll(io.LimitReader(r, maxUnpacked+1))
	if err != nil {
		return nil, err
	}
	if len(out) > maxUnpacked {
		return nil, fmt.Errorf("compressed attribute expands beyond %d bytes", maxUnpacked)
	}
	return out, nil
}

// packBody returns the body as stored: raw when small, else compressed.
func packBody(body []byte) (raw, packed []byte) {
	if len(body) <= packAbove {
		return body, nil
	}
	return nil, gz(body)
}

// unpackBody reverses packBody.
func unpackBody(raw, packed []byte) ([]byte, error) {
	if packed == nil {
		return raw, nil
	}
	body, err := gunzip(packed)
	if err != nil {
		return nil, fmt.Errorf("unpack body: %w", err)
	}
	return body, nil
}

// packDigests returns a digest list as stored: a list of strings when
// small, else the newline-joined digests compressed.
func packDigests(ds []digest.Digest) (list []string, packed []byte) {
	list = make([]string, len(ds))
	n := 0
	for i, d := range ds {
		list[i] = d.String()
		n += len(list[i]) + 1
	}
	if n <= packAbove {
		return list, nil
	}
	return nil, gz([]byte(strings.Join(list, "\n")))
}

// unpackDigests reverses packDigests.
func unpackDigests(list []string, packed []byte) ([]digest.Digest, error) {
	if packed != nil {
		b, err := gunzip(packed)
		if err != nil {
			return nil, fmt.Errorf("unpack digests: %w", err)
		}
		list = strings.Split(string(b), "\n")
	}
	if len(list) == 0 {
		return nil, nil
	}
	out := make([]digest.Digest, len(list))
	for i, s := range list {
		out[i] = digest.Digest(s)
	}
	return out, nil
}
