package memstore

import (
	"context"
	"strings"

	digest "github.com/opencontainers/go-digest"

	"github.com/airlock-registry/airlock/shared/storage"
)

// ResolveTags returns, for each image in order, the digest tag points at
// ("" when it has no such tag), as ResolveTag would one by one.
func (s *Store) ResolveTags(_ context.Context, imgs []storage.Image, tag string) ([]digest.Digest, error) {
	out := make([]digest.Digest, len(imgs))
	s.mu.Lock()
	defer s.mu.Unlock()
	for i, img := range imgs {
		if t, ok := s.tag(img, tag); ok {
			out[i] = t.digest
		}
	}
	return out, nil
}

// StatBlobs returns, for each image in order, the link of d (ok[i] false
// when there is none), as StatBlob would one by one.
func (s *Store) StatBlobs(_ context.Context, imgs []storage.Image, d digest.Digest) ([]storage.Blob, []bool, error) {
	links, ok := make([]storage.Blob, len(imgs)), make([]bool, len(imgs))
	s.mu.Lock()
	defer s.mu.Unlock()
	for i, img := range imgs {
		_, links[i], ok[i] = entry(s, img, linksOf, d)
	}
	return links, ok, nil
}

// HasManifests tells, for each image in order, whether manifest d is
// stored there.
func (s *Store) HasManifests(_ context.Context, imgs []storage.Image, d digest.Digest) ([]bool, error) {
	out := make([]bool, len(imgs))
	s.mu.Lock()
	defer s.mu.Unlock()
	for i, img := range imgs {
		_, _, out[i] = entry(s, img, manifestsOf, d)
	}
	return out, nil
}

// SearchImages returns up to n (n <= 0: all) catalog names containing
// query, ASCII letters compared case-insensitively, in lexical (byte) order.
func (s *Store) SearchImages(_ context.Context, query string, n int) ([]string, error) {
	q := lowerASCII(query)
	out := []string{}
	s.mu.Lock()
	defer s.mu.Unlock()
	for _, name := range sortedKeys(s.catalog) {
		if n > 0 && len(out) == n {
			break
		}
		if strings.Contains(lowerASCII(name), q) {
			out = append(out, name)
		}
	}
	return out, nil
}

// lowerASCII lower-cases the ASCII letters of s and keeps every other byte.
func lowerASCII(s string) string {
	b := []byte(s)
	for i, c := range b {
		if 'A' <= c && c <= 'Z' {
			b[i] = c + ('a' - 'A')
		}
	}
	return string(b)
}
