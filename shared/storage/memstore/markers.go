package memstore

import (
	"context"
	"fmt"

	"github.com/airlock-registry/airlock/shared/storage"
)

func markerPK(group string) string { return "MARK#" + group }

// checkMarker checks m can be written and returns it as stored (Until to
// the millisecond, in UTC).
func checkMarker(m storage.Marker) (storage.Marker, error) {
	if m.Key == "" || m.Until.IsZero() {
		return m, fmt.Errorf("marker %.80s/%.80s: Key and Until are required", m.Group, m.Key)
	}
	if !fits(markerPK(m.Group), m.Key) {
		return m, fmt.Errorf("marker %.64s…/%.64s…: %w", m.Group, m.Key, errKeyTooLong)
	}
	m.Until = fromMillis(m.Until.UnixMilli())
	return m, nil
}

// liveMarker returns the marker at group/key unless it is absent or expired
// (s.mu held).
func (s *Store) liveMarker(group, key string) (storage.Marker, bool) {
	m, ok := s.markers[group][key]
	return m, ok && m.Until.UnixMilli() > s.now().UnixMilli()
}

// setMarker stores m (checked) (s.mu held).
func (s *Store) setMarker(m storage.Marker) {
	g := s.markers[m.Group]
	if g == nil {
		g = map[string]storage.Marker{}
		s.markers[m.Group] = g
	}
	g[m.Key] = m
}

// PutMarker writes m (overwrites).
func (s *Store) PutMarker(_ context.Context, m storage.Marker) error {
	m, err := checkMarker(m)
	if err != nil {
		return fmt.Errorf("put marker: %w", err)
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	s.setMarker(m)
	return nil
}

// GetMarker returns a live marker, or storage.ErrNotFound when it is absent
// or expired by the store's clock.
func (s *Store) GetMarker(_ context.Context, group, key string) (storage.Marker, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	m, ok := s.liveMarker(group, key)
	if !ok {
		return storage.Marker{}, fmt.Errorf("get marker %.80s/%.80s: %w", group, key, storage.ErrNotFound)
	}
	return m, nil
}

// DeleteMarker removes a marker (idempotent).
func (s *Store) DeleteMarker(_ context.Context, group, key string) error {
	s.mu.Lock()
	defer s.mu.Unlock()
	delete(s.markers[group], key)
	return nil
}

// ListMarkers returns up to n live markers of group (n <= 0: all) in key
// (byte) order.
func (s *Store) ListMarkers(_ context.Context, group string, n int) ([]storage.Marker, error) {
	out := []storage.Marker{}
	s.mu.Lock()
	defer s.mu.Unlock()
	for _, k := range sortedKeys(s.markers[group]) {
		if n > 0 && len(out) >= n {
			break
		}
		if m, ok := s.liveMarker(group, k); ok {
			out = append(out, m)
		}
	}
	return out, nil
}

// AcquireMarker writes m when no live marker holds its key or the live one
// has m's Value; storage.ErrConflict otherwise.
func (s *Store) AcquireMarker(_ context.Context, m storage.Marker) error {
	m, err := checkMarker(m)
	if err != nil {
		return fmt.Errorf("acquire marker: %w", err)
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	if old, ok := s.liveMarker(m.Group, m.Key); ok && old.Value != m.Value {
		return fmt.Errorf("acquire marker %s/%s for %q: held by %q: %w", m.Group, m.Key, m.Value, old.Value, storage.ErrConflict)
	}
	s.setMarker(m)
	return nil
}

// ReleaseMarker deletes the marker when its Value is value or it is
// expired; a missing one is not an error; a live one of another value is
// storage.ErrConflict.
func (s *Store) ReleaseMarker(_ context.Context, group, key, value string) error {
	s.mu.Lock()
	defer s.mu.Unlock()
	if old, ok := s.liveMarker(group, key); ok && old.Value != value {
		return fmt.Errorf("release marker %s/%s for %q: held by %q: %w", group, key, value, old.Value, storage.ErrConflict)
	}
	delete(s.markers[group], key)
	return nil
}
