package memstore

import (
	"context"
	"fmt"
	"slices"
	"strings"
	"time"

	digest "github.com/opencontainers/go-digest"
	ocispec "github.com/opencontainers/image-spec/specs-go/v1"

	"github.com/airlock-registry/airlock/shared/storage"
)

// normBlob is b as stored: Created in UTC, Touched at touched (the
// store's clock to the millisecond).
func normBlob(b storage.Blob, touched time.Time) storage.Blob {
	b.Created = b.Created.UTC()
	b.Touched = touched
	return b
}

// touchTime is the store's clock as touch times are kept: to the
// millisecond, in UTC (s.now may be called with or without s.mu).
func (s *Store) touchTime() time.Time { return fromMillis(s.now().UnixMilli()) }

// PutBlob stores the global record of b, touched now, unless one exists;
// then it touches the existing record (nothing else of it changes). It
// returns the record stored.
func (s *Store) PutBlob(_ context.Context, b storage.Blob) (storage.Blob, error) {
	if !fits("BLOB#"+b.Digest.String(), "BLOB") {
		return storage.Blob{}, fmt.Errorf("put blob %.64s…: %w", b.Digest, errKeyTooLong)
	}
	now := s.touchTime()
	s.mu.Lock()
	defer s.mu.Unlock()
	if old, ok := s.blobs[b.Digest]; ok {
		old.Touched = now
		s.blobs[b.Digest] = old
		return old, nil
	}
	b = normBlob(b, now)
	s.blobs[b.Digest] = b
	return b, nil
}

// GetBlob returns the global record of d, or storage.ErrNotFound.
func (s *Store) GetBlob(_ context.Context, d digest.Digest) (storage.Blob, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	b, ok := s.blobs[d]
	if !ok {
		return storage.Blob{}, fmt.Errorf("get blob %.80s: %w", d, storage.ErrNotFound)
	}
	return b, nil
}

// LinkBlob touches the global record of b.Digest (storage.ErrNotFound when
// there is none: nothing is linked) and makes b visible in img, touched
// now (overwriting an existing link).
func (s *Store) LinkBlob(_ context.Context, img storage.Image, b storage.Blob) error {
	if !fits(imagePK(img), "B#"+b.Digest.String()) {
		return fmt.Errorf("link blob into %.64s…: %w", img, errKeyTooLong)
	}
	now := s.touchTime()
	s.mu.Lock()
	defer s.mu.Unlock()
	if !storage.FreshTouch(b, now) { // as package dynamo: the touch is the record check
		rec, ok := s.blobs[b.Digest]
		if !ok {
			return fmt.Errorf("link blob %.80s into %.80s: no blob record: %w", b.Digest, img, storage.ErrNotFound)
		}
		rec.Touched = now
		s.blobs[b.Digest] = rec
	}
	s.image(img, true).links[b.Digest] = normBlob(b, now)
	return nil
}

// StatBlob returns the link of d in img, or storage.ErrNotFound.
func (s *Store) StatBlob(_ context.Context, img storage.Image, d digest.Digest) (storage.Blob, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	if _, b, ok := entry(s, img, linksOf, d); ok {
		return b, nil
	}
	return storage.Blob{}, fmt.Errorf("stat blob %.80s in %.80s: %w", d, img, storage.ErrNotFound)
}

// UnlinkBlob removes the link of d from img, or returns storage.ErrNotFound.
func (s *Store) UnlinkBlob(_ context.Context, img storage.Image, d digest.Digest) error {
	s.mu.Lock()
	defer s.mu.Unlock()
	if im, _, ok := entry(s, img, linksOf, d); ok {
		delete(im.links, d)
		return nil
	}
	return fmt.Errorf("unlink blob %.80s from %.80s: %w", d, img, storage.ErrNotFound)
}

// cloneManifest copies m deeply, Created in UTC (empty lists and maps nil).
func cloneManifest(m storage.Manifest) storage.Manifest {
	m.Body = cloneBytes(m.Body)
	m.Blobs = cloneSlice(m.Blobs)
	m.Children = cloneSlice(m.Children)
	m.Annotations = cloneMap(m.Annotations)
	m.Created = m.Created.UTC()
	return m
}

// PutManifest stores m in img, touched now (an overwrite of the same digest
// resets Pulled to zero, as package dynamo's PutItem does), its referrer
// entry when it has a subject, and adds img to the catalog. Every key is
// checked before anything is written.
func (s *Store) PutManifest(_ context.Context, img storage.Image, m storage.Manifest) error {
	pk := imagePK(img)
	ok := fits(pk, "M#"+m.Digest.String()) && fits("CATALOG", img.String()) &&
		(m.Subject == "" || fits(pk, "R#"+m.Subject.String()+"#"+m.Digest.String()))
	if !ok {
		return fmt.Errorf("put manifest %.80s in %.64s…: %w", m.Digest, img, errKeyTooLong)
	}
	m = cloneManifest(m)
	m.Touched, m.Pulled = s.touchTime(), time.Time{}
	s.mu.Lock()
	defer s.mu.Unlock()
	im := s.image(img, true)
	im.manifests[m.Digest] = m
	if m.Subject != "" {
		d := m.Descriptor()
		d.Annotations = cloneMap(d.Annotations)
		im.referrers[m.Subject.String()+"#"+m.Digest.String()] = d
	}
	s.catalog[img.String()] = struct{}{}
	return nil
}

// GetManifest returns the manifest d of img, or storage.ErrNotFound.
func (s *Store) GetManifest(_ context.Context, img storage.Image, d digest.Digest) (storage.Manifest, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	if _, m, ok := entry(s, img, manifestsOf, d); ok {
		return cloneManifest(m), nil
	}
	return storage.Manifest{}, fmt.Errorf("get manifest %.80s in %.80s: %w", d, img, storage.ErrNotFound)
}

// DeleteManifest removes the tags of img pointing at d, d's referrer entry
// and the manifest, and img's catalog entry when no manifest is left (under
// the one lock, so no PutManifest can race it), or returns
// storage.ErrNotFound.
func (s *Store) DeleteManifest(_ context.Context, img storage.Image, d digest.Digest) error {
	s.mu.Lock()
	defer s.mu.Unlock()
	im, m, ok := entry(s, img, manifestsOf, d)
	if !ok {
		return fmt.Errorf("delete manifest %.80s in %.80s: %w", d, img, storage.ErrNotFound)
	}
	s.removeManifest(img, im, m, time.Time{})
	return nil
}

// removeManifest removes manifest m of img, the tags pointing at it (only
// those written before tagCut unless it is zero), its referrer entry, and
// img's catalog entry when no manifest is left (s.mu held).
func (s *Store) removeManifest(img storage.Image, im *image, m storage.Manifest, tagCut time.Time) {
	d := m.Digest
	for tag, t := range im.tags {
		if t.digest == d && (tagCut.IsZero() || t.at < tagCut.UnixMilli()) {
			delete(im.tags, tag)
		}
	}
	if m.Subject != "" {
		delete(im.referrers, m.Subject.String()+"#"+d.String())
	}
	delete(im.manifests, d)
	if len(im.manifests) == 0 {
		delete(s.catalog, img.String())
	}
}

// ListReferrers returns the descriptors of the manifests of img whose subject
// is subject, in digest order.
func (s *Store) ListReferrers(_ context.Context, img storage.Image, subject digest.Digest) ([]ocispec.Descriptor, error) {
	out := []ocispec.Descriptor{}
	prefix := subject.String() + "#"
	s.mu.Lock()
	defer s.mu.Unlock()
	im := s.image(img, false)
	if im == nil || !fits(imagePK(img), "R#"+prefix) {
		return out, nil
	}
	for _, k := range sortedKeys(im.referrers) {
		if strings.HasPrefix(k, prefix) {
			d := im.referrers[k]
			d.Annotations = cloneMap(d.Annotations)
			out = append(out, d)
		}
	}
	return out, nil
}

// ListImages returns up to n catalog names (n <= 0: all) strictly after
// last, in lexical (byte) order.
func (s *Store) ListImages(_ context.Context, last string, n int) (storage.Page, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	return page(sortedKeys(s.catalog), last, n), nil
}

// HasImage tells whether the catalog lists img.
func (s *Store) HasImage(_ context.Context, img storage.Image) (bool, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	_, ok := s.catalog[img.String()]
	return ok, nil
}

// sortedKeys returns m's keys in byte order.
func sortedKeys[V any](m map[string]V) []string {
	keys := make([]string, 0, len(m))
	for k := range m {
		keys = append(keys, k)
	}
	slices.Sort(keys)
	return keys
}

// page returns up to n of sorted names (n <= 0: all) strictly after last.
func page(sorted []string, last string, n int) storage.Page {
	i, found := slices.BinarySearch(sorted, last)
	if found {
		i++
	}
	p := storage.Page{Items: slices.Clone(sorted[i:])}
	if n > 0 && len(p.Items) > n {
		p.Items, p.More = p.Items[:n], true
	}
	if p.Items == nil {
		p.Items = []string{}
	}
	return p
}
