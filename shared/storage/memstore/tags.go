package memstore

import (
	"context"
	"fmt"

	digest "github.com/opencontainers/go-digest"

	"github.com/airlock-registry/airlock/shared/storage"
)

// tag returns the tag item of img, if any (s.mu held).
func (s *Store) tag(img storage.Image, tag string) (tagRec, bool) {
	im := s.image(img, false)
	if im == nil {
		return tagRec{}, false
	}
	t, ok := im.tags[tag]
	return t, ok
}

// ResolveTag returns the digest tag points at in img, or storage.ErrNotFound.
func (s *Store) ResolveTag(_ context.Context, img storage.Image, tag string) (digest.Digest, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	t, ok := s.tag(img, tag)
	if !ok {
		return "", fmt.Errorf("resolve tag %.80s:%.80s: %w", img, tag, storage.ErrNotFound)
	}
	return t.digest, nil
}

// PutTag points tag at d under rule (storage.ErrConflict when
// storage.TagCreateOnly refuses). The tag reads back as never checked.
func (s *Store) PutTag(_ context.Context, img storage.Image, tag string, d digest.Digest, rule storage.TagRule) error {
	if rule != storage.TagOverwrite && rule != storage.TagCreateOnly {
		return fmt.Errorf("put tag %.80s:%.80s: unknown rule %d", img, tag, rule)
	}
	if !fits(imagePK(img), "T#"+tag) {
		return fmt.Errorf("put tag %.64s…:%.64s…: %w", img, tag, errKeyTooLong)
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	if old, ok := s.tag(img, tag); ok && rule == storage.TagCreateOnly && old.digest != d {
		return fmt.Errorf("put tag %s:%s: %w", img, tag, storage.ErrConflict)
	}
	s.image(img, true).tags[tag] = tagRec{digest: d, at: s.now().UnixMilli()}
	return nil
}

// DeleteTag removes tag from img, or returns storage.ErrNotFound.
func (s *Store) DeleteTag(_ context.Context, img storage.Image, tag string) error {
	s.mu.Lock()
	defer s.mu.Unlock()
	if _, ok := s.tag(img, tag); !ok {
		return fmt.Errorf("delete tag %.80s:%.80s: %w", img, tag, storage.ErrNotFound)
	}
	delete(s.image(img, false).tags, tag)
	return nil
}

// ListTags returns up to n tags of img (n <= 0: all) strictly after last, in
// lexical (byte) order.
func (s *Store) ListTags(_ context.Context, img storage.Image, last string, n int) (storage.Page, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	var tags []string
	if im := s.image(img, false); im != nil {
		tags = sortedKeys(im.tags)
	}
	return page(tags, last, n), nil
}

// GetTagCheck returns the digest tag points at in img and when it was last
// checked (zero: never), or storage.ErrNotFound.
func (s *Store) GetTagCheck(_ context.Context, img storage.Image, tag string) (storage.TagCheck, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	t, ok := s.tag(img, tag)
	if !ok {
		return storage.TagCheck{}, fmt.Errorf("get tag check %.80s:%.80s: %w", img, tag, storage.ErrNotFound)
	}
	return storage.TagCheck{Digest: t.digest, Checked: fromMillis(t.checked)}, nil
}

// PutTagCheck points tag at c.Digest and records c.Checked to the
// millisecond (overwrites).
func (s *Store) PutTagCheck(_ context.Context, img storage.Image, tag string, c storage.TagCheck) error {
	if !fits(imagePK(img), "T#"+tag) {
		return fmt.Errorf("put tag check %.64s…:%.64s…: %w", img, tag, errKeyTooLong)
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	s.image(img, true).tags[tag] = tagRec{digest: c.Digest, at: s.now().UnixMilli(), checked: millis(c.Checked)}
	return nil
}
