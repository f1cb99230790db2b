package memstore

import (
	"context"
	"errors"
	"fmt"
	"io"
	"slices"

	"github.com/airlock-registry/airlock/shared/storage"
)

// Coalescing of tiny chunks, as in package s3store: once coalesceAfter
// objects are staged, a chunk that fits with the last staged object in
// coalesceLimit bytes joins it (read back and written again under a new key).
const (
	coalesceAfter = 16
	coalesceLimit = 64 << 10
)

// stageKey names the staged object holding the bytes from offset off (as s3store).
func stageKey(id string, off int64) string {
	return fmt.Sprintf("%sstage-%020d", storage.UploadPrefix(id), off)
}

// chunkKey names a chunk staged by StageChunk: unique to the writer's token.
func chunkKey(id string, off int64, token string) string {
	return fmt.Sprintf("%s-%s", stageKey(id, off), token)
}

// stagedSize sums the staged objects' sizes.
func stagedSize(st []storage.Staged) int64 {
	var n int64
	for _, x := range st {
		n += x.Size
	}
	return n
}

// Append writes r's bytes after u.Offset into the upload with the parts and
// staged objects package s3store would write: parts of PartSize (the first
// one led by the staged bytes, read back once), a tail under
// storage.MinPartSize joined to the part before it, and short bytes without
// a part staged (coalesced once many are). The body is read whole before
// anything is written, so on error nothing is written and u is unchanged.
func (s *Store) Append(ctx context.Context, u *storage.Upload, r io.Reader) (int64, error) {
	return s.append(ctx, u, r, false)
}

// AppendLast is Append for the upload's last bytes: with a multipart upload
// (or enough bytes to make one) the staged and new bytes go into parts, the
// last of which may be short; without, short bytes are staged.
func (s *Store) AppendLast(ctx context.Context, u *storage.Upload, r io.Reader) (int64, error) {
	return s.append(ctx, u, r, true)
}

func (s *Store) append(ctx context.Context, u *storage.Upload, r io.Reader, last bool) (int64, error) {
	if u.ID == "" {
		return 0, errors.New("append: upload has no id")
	}
	b, err := io.ReadAll(r)
	if err == nil {
		err = ctx.Err()
	} else {
		err = fmt.Errorf("read body: %w", err)
	}
	if err != nil {
		return 0, fmt.Errorf("append to upload %s at %d: %w", u.ID, u.Offset, err)
	}
	w := *u
	w.Parts = slices.Clone(u.Parts)
	w.Staged = slices.Clone(u.Staged)
	if err := s.write(&w, b, last); err != nil {
		return 0, fmt.Errorf("append to upload %s at %d: %w", u.ID, u.Offset, err)
	}
	w.Offset = u.Offset + int64(len(b))
	*u = w
	return int64(len(b)), nil
}

// write lays b out after w's staged bytes as s3store's streaming loop does.
func (s *Store) write(w *storage.Upload, b []byte, last bool) error {
	staged, m := stagedSize(w.Staged), int64(len(b))
	total := staged + m
	var sizes []int64 // parts to send, the first one led by the staged bytes
	switch {
	case total >= s.partSize:
		for range total / s.partSize {
			sizes = append(sizes, s.partSize)
		}
		if rem := total % s.partSize; rem >= storage.MinPartSize {
			sizes = append(sizes, rem)
		} else {
			sizes[len(sizes)-1] += rem // a short tail joins the last full part
		}
	case m > 0 && total >= storage.MinPartSize, last && w.MultipartID != "" && total > 0:
		sizes = []int64{total}
	}
	if len(sizes) == 0 {
		if m == 0 {
			return nil
		}
		return s.stage(w, b, w.Offset)
	}
	head := make([]byte, staged)
	if err := s.readStaged(w.Staged, head); err != nil {
		return err
	}
	w.Staged = nil
	created := ""
	var off int64
	for _, n := range sizes {
		if w.MultipartID == "" {
			w.MultipartID = s.createMultipart(w.ID)
			created = w.MultipartID
		}
		num := int32(len(w.Parts) + 1)
		etag, err := s.uploadPart(w.ID, w.MultipartID, num, span(head, b, off, n)...)
		if err != nil {
			if created != "" {
				s.abortMultipart(created)
			}
			return err
		}
		w.Parts = append(w.Parts, storage.Part{Number: num, ETag: etag, Size: n})
		off += n
	}
	return nil
}

// span returns bytes [off, off+n) of a followed by b, as at most two slices.
func span(a, b []byte, off, n int64) [][]byte {
	var out [][]byte
	if la := int64(len(a)); off < la {
		end := min(off+n, la)
		out = append(out, a[off:end])
		n -= end - off
		off = la
	}
	if n > 0 {
		off -= int64(len(a))
		out = append(out, b[off:off+n])
	}
	return out
}

// stage writes b, the bytes of w from offset off, as a staged object, or
// joins it to the last staged object once coalesceAfter are staged.
func (s *Store) stage(w *storage.Upload, b []byte, off int64) error {
	n := int64(len(b))
	k := len(w.Staged)
	if k >= coalesceAfter && w.Staged[k-1].Size+n <= coalesceLimit {
		prev := w.Staged[k-1]
		head := make([]byte, prev.Size)
		if err := s.readInto(prev.Key, head); err != nil {
			return err
		}
		key := fmt.Sprintf("%s-%020d", stageKey(w.ID, off-prev.Size), off+n)
		s.put(key, head, b)
		w.Staged[k-1] = storage.Staged{Key: key, Size: prev.Size + n}
		return nil
	}
	key := stageKey(w.ID, off)
	s.put(key, b)
	w.Staged = append(w.Staged, storage.Staged{Key: key, Size: n})
	return nil
}

// StageChunk writes b, the bytes of upload id from offset off, as a staged
// object keyed by token (one PutObject).
func (s *Store) StageChunk(ctx context.Context, id string, off int64, token string, b []byte) (storage.Staged, error) {
	if id == "" || token == "" {
		return storage.Staged{}, errors.New("stage chunk: upload id and token are required")
	}
	if err := ctx.Err(); err != nil {
		return storage.Staged{}, fmt.Errorf("stage chunk of upload %s at %d: %w", id, off, err)
	}
	key := chunkKey(id, off, token)
	s.put(key, b)
	return storage.Staged{Key: key, Size: int64(len(b))}, nil
}

// AddChunk appends the chunk st (holding b) at u.Offset: below
// storage.MinPartSize of staged bytes it only lists st in u (no request); at
// or above, u must hold the lease, and the staged objects are read back and
// sent with b as the next part. On error u is unchanged.
func (s *Store) AddChunk(ctx context.Context, u *storage.Upload, st storage.Staged, b []byte) error {
	if st.Size != int64(len(b)) {
		return fmt.Errorf("add chunk to upload %s: staged %d bytes, given %d", u.ID, st.Size, len(b))
	}
	staged := stagedSize(u.Staged)
	if staged+st.Size < storage.MinPartSize {
		u.Staged = append(slices.Clone(u.Staged), st)
		u.Offset += st.Size
		return nil
	}
	if u.Lease == "" {
		return fmt.Errorf("add chunk to upload %s at %d: it completes a part, which needs the session's lease", u.ID, u.Offset)
	}
	if staged+st.Size > 2*s.partSize {
		return fmt.Errorf("add chunk to upload %s: %d staged and %d new bytes exceed a part", u.ID, staged, st.Size)
	}
	if err := ctx.Err(); err != nil {
		return fmt.Errorf("add chunk to upload %s at %d: %w", u.ID, u.Offset, err)
	}
	head := make([]byte, staged)
	if err := s.readStaged(u.Staged, head); err != nil {
		return fmt.Errorf("add chunk to upload %s at %d: %w", u.ID, u.Offset, err)
	}
	w := *u
	w.Parts = slices.Clone(u.Parts)
	created := ""
	if w.MultipartID == "" {
		w.MultipartID = s.createMultipart(w.ID)
		created = w.MultipartID
	}
	num := int32(len(w.Parts) + 1)
	etag, err := s.uploadPart(w.ID, w.MultipartID, num, head, b)
	if err != nil {
		if created != "" {
			s.abortMultipart(created)
		}
		return fmt.Errorf("add chunk to upload %s at %d: %w", u.ID, u.Offset, err)
	}
	w.Parts = append(w.Parts, storage.Part{Number: num, ETag: etag, Size: staged + st.Size})
	w.Staged = nil
	w.Offset += st.Size
	*u = w
	return nil
}
