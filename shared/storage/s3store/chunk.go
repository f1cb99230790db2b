package s3store

import (
	"context"
	"errors"
	"fmt"
	"slices"

	"github.com/airlock-registry/airlock/shared/storage"
)

var _ storage.ChunkStager = (*Store)(nil)

// chunkKey names the staged object of a chunk written before its session was
// read: unique to the writer's token, so that a writer losing a race at the
// same offset never overwrites the winner's bytes.
func chunkKey(id string, off int64, token string) string {
	return fmt.Sprintf("%s-%s", stageKey(id, off), token)
}

// StageChunk writes b, the bytes of upload id from offset off, as a staged
// object keyed by token (storage.ChunkStager): one PutObject.
func (s *Store) StageChunk(ctx context.Context, id string, off int64, token string, b []byte) (storage.Staged, error) {
	if id == "" || token == "" {
		return storage.Staged{}, errors.New("stage chunk: upload id and token are required")
	}
	key := chunkKey(id, off, token)
	if err := s.put(ctx, key, b); err != nil {
		return storage.Staged{}, fmt.Errorf("stage chunk of upload %s at %d: %w", id, off, err)
	}
	return storage.Staged{Key: key, Size: int64(len(b))}, nil
}

// AddChunk appends the staged chunk st (holding b) to u (storage.ChunkStager).
// Below storage.MinPartSize of staged bytes it only lists st in u; at or above
// it reads the other staged objects back (in parallel), sends them with b as
// the next part (u must hold the lease) and clears the list. On error u is
// unchanged.
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
	w := *u
	w.Parts = slices.Clone(u.Parts)
	bp := s.getBuf()
	defer s.putBuf(bp)
	head := (*bp)[:staged]
	if err := s.readStaged(ctx, u.Staged, head); err != nil {
		return fmt.Errorf("add chunk to upload %s at %d: %w", u.ID, u.Offset, err)
	}
	created := ""
	if w.MultipartID == "" {
		id, err := s.createMultipart(ctx, w.ID)
		if err != nil {
			return fmt.Errorf("add chunk to upload %s at %d: %w", u.ID, u.Offset, err)
		}
		w.MultipartID, created = id, id
	}
	num := int32(len(w.Parts) + 1)
	etag, err := s.uploadPart(ctx, w.ID, w.MultipartID, num, [][]byte{head, b})
	if err != nil {
		if created != "" {
			cctx, cancel := cleanupContext(ctx)
			defer cancel()
			_ = s.abortMultipart(cctx, w.ID, created)
		}
		return fmt.Errorf("add chunk to upload %s at %d: %w", u.ID, u.Offset, err)
	}
	w.Parts = append(w.Parts, storage.Part{Number: num, ETag: etag, Size: staged + st.Size})
	w.Staged = nil
	w.Offset += st.Size
	*u = w
	return nil
}
