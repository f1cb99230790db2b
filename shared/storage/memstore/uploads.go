package memstore

import (
	"cmp"
	"context"
	"fmt"
	"slices"
	"strings"
	"time"

	"github.com/airlock-registry/airlock/shared/storage"
)

// uploadRec is an upload session as package dynamo stores it: ExpiresAt to
// the second, LeaseUntil to the millisecond (0 while no lease is held),
// Created in UTC, empty lists nil.
type uploadRec struct {
	u          storage.Upload
	leaseUntil int64 // epoch ms
	expiresAt  int64 // epoch s
	// updated is when the store last wrote the session (epoch ms); indexed
	// the time package dynamo's upload index lists it under (Created, or
	// the time of CreateUpload when Created is zero), epoch ms.
	updated, indexed int64
}

func uploadPK(id string) string { return "UPLOAD#" + id }

// newUploadRec copies u into its stored form.
func newUploadRec(u storage.Upload) uploadRec {
	r := uploadRec{u: cloneUpload(u), expiresAt: u.ExpiresAt.Unix()}
	r.u.Created = u.Created.UTC()
	r.u.ExpiresAt = time.Unix(r.expiresAt, 0).UTC()
	r.u.LeaseUntil = time.Time{}
	if u.Lease != "" {
		r.leaseUntil = u.LeaseUntil.UnixMilli()
		r.u.LeaseUntil = time.UnixMilli(r.leaseUntil).UTC()
	}
	return r
}

// cloneUpload copies u's slices.
func cloneUpload(u storage.Upload) storage.Upload {
	u.Parts = cloneSlice(u.Parts)
	u.Staged = cloneSlice(u.Staged)
	u.HashState = cloneBytes(u.HashState)
	return u
}

// writable is the condition of a write at offset: the stored session has
// that offset, no live lease and has not expired (s.mu held).
func (r uploadRec) writable(offset int64, now time.Time) bool {
	return r.u.Offset == offset && r.leaseUntil < now.UnixMilli() && r.expiresAt > now.Unix()
}

// CreateUpload stores a new session without a lease; ID and ExpiresAt are
// required (ExpiresAt kept to the second). An existing session with the same
// ID, even expired, is storage.ErrConflict.
func (s *Store) CreateUpload(_ context.Context, u storage.Upload) error {
	if u.ID == "" || u.ExpiresAt.IsZero() {
		return fmt.Errorf("create upload %q: ID and ExpiresAt are required", u.ID)
	}
	if !fits(uploadPK(u.ID), "UPLOAD") {
		return fmt.Errorf("create upload %.64s…: %w", u.ID, errKeyTooLong)
	}
	u.Lease, u.LeaseUntil = "", time.Time{}
	s.mu.Lock()
	defer s.mu.Unlock()
	if _, ok := s.uploads[u.ID]; ok {
		return fmt.Errorf("create upload %s: %w", u.ID, storage.ErrConflict)
	}
	r := newUploadRec(u)
	r.updated = s.now().UnixMilli()
	r.indexed = r.updated
	if !u.Created.IsZero() {
		r.indexed = u.Created.UnixMilli()
	}
	s.uploads[u.ID] = r
	return nil
}

// replace stores u over the session r, keeping what only the store knows
// (s.mu held).
func (s *Store) replace(r uploadRec, u storage.Upload) {
	n := newUploadRec(u)
	n.updated, n.indexed = s.now().UnixMilli(), r.indexed
	s.uploads[u.ID] = n
}

// live returns the session id unless it is missing or expired (s.mu held).
func (s *Store) live(id string) (uploadRec, bool) {
	r, ok := s.uploads[id]
	return r, ok && r.expiresAt > s.now().Unix()
}

// GetUpload returns the session, or storage.ErrNotFound when it does not
// exist or has expired.
func (s *Store) GetUpload(_ context.Context, id string) (storage.Upload, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	r, ok := s.live(id)
	if !ok {
		return storage.Upload{}, fmt.Errorf("get upload %.80s: %w", id, storage.ErrNotFound)
	}
	return cloneUpload(r.u), nil
}

// AcquireUpload takes the lease when the committed offset is offset, no
// other lease is live and the session has not expired; storage.ErrNotFound
// when there is no live session, storage.ErrConflict otherwise.
func (s *Store) AcquireUpload(_ context.Context, id string, offset int64, lease string, until time.Time) (storage.Upload, error) {
	if lease == "" {
		return storage.Upload{}, fmt.Errorf("acquire upload %.80s: empty lease", id)
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	r, ok := s.uploads[id]
	if !ok || !r.writable(offset, s.now()) {
		if _, live := s.live(id); !live {
			return storage.Upload{}, fmt.Errorf("acquire upload %.80s: %w", id, storage.ErrNotFound)
		}
		return storage.Upload{}, fmt.Errorf("acquire upload %s at offset %d: %w", id, offset, storage.ErrConflict)
	}
	r.u.Lease = lease
	r.leaseUntil = until.UnixMilli()
	r.u.LeaseUntil = time.UnixMilli(r.leaseUntil).UTC()
	r.updated = s.now().UnixMilli()
	s.uploads[id] = r
	return cloneUpload(r.u), nil
}

// CommitUpload replaces the session with u, lease released, when the stored
// lease is still u.Lease (storage.ErrConflict otherwise, also when the
// session is gone).
func (s *Store) CommitUpload(_ context.Context, u storage.Upload) error {
	s.mu.Lock()
	defer s.mu.Unlock()
	r, ok := s.uploads[u.ID]
	if u.Lease == "" || !ok || r.u.Lease != u.Lease {
		return fmt.Errorf("commit upload %.80s (lease %.80s): %w", u.ID, u.Lease, storage.ErrConflict)
	}
	u.Lease, u.LeaseUntil = "", time.Time{}
	s.replace(r, u)
	return nil
}

// CommitUploadAt replaces the session with u (no lease) when the stored one
// still has offset, no live lease and has not expired (storage.ErrConflict
// otherwise, also when the session is gone).
func (s *Store) CommitUploadAt(_ context.Context, u storage.Upload, offset int64) error {
	s.mu.Lock()
	defer s.mu.Unlock()
	r, ok := s.uploads[u.ID]
	if !ok || !r.writable(offset, s.now()) {
		return fmt.Errorf("commit upload %.80s at %d: %w", u.ID, offset, storage.ErrConflict)
	}
	u.Lease, u.LeaseUntil = "", time.Time{}
	s.replace(r, u)
	return nil
}

// DeleteUpload removes the session (idempotent).
func (s *Store) DeleteUpload(_ context.Context, id string) error {
	s.mu.Lock()
	defer s.mu.Unlock()
	delete(s.uploads, id)
	return nil
}

var _ storage.UploadLister = (*Store)(nil)

// ListUploads returns up to n (n <= 0: all) sessions indexed (Created, to
// the millisecond) before olderThan and after the cursor after, oldest
// first, expired ones included.
func (s *Store) ListUploads(_ context.Context, olderThan time.Time, after string, n int) ([]storage.ListedUpload, error) {
	if after != "" {
		if _, _, err := storage.ParseUploadCursor(after); err != nil {
			return nil, fmt.Errorf("list uploads: %w", err)
		}
	}
	cut := olderThan.UnixMilli()
	cursor := func(r uploadRec) string { return storage.UploadCursor(time.UnixMilli(r.indexed), r.u.ID) }
	s.mu.Lock()
	var recs []uploadRec
	for _, r := range s.uploads {
		if r.indexed < cut && cursor(r) > after {
			recs = append(recs, r)
		}
	}
	s.mu.Unlock()
	slices.SortFunc(recs, func(a, b uploadRec) int {
		return cmp.Or(cmp.Compare(a.indexed, b.indexed), strings.Compare(a.u.ID, b.u.ID))
	})
	if n > 0 && len(recs) > n {
		recs = recs[:n]
	}
	out := make([]storage.ListedUpload, len(recs))
	for i, r := range recs {
		out[i] = storage.ListedUpload{Upload: cloneUpload(r.u), Updated: time.UnixMilli(r.updated).UTC(), Cursor: cursor(r)}
	}
	return out, nil
}
