package registry

import (
	"context"
	"errors"
	"fmt"
	"hash"
	"io"
	"net/http"
	"sync"

	"github.com/airlock-registry/airlock/shared/storage"
)

// minFastChunk is the shortest chunk taken by patchChunk. Shorter ones go
// through Blobs.Append, which coalesces tiny chunks so that a session lists a
// bounded number of staged objects (at most MinPartSize/minFastChunk here).
const minFastChunk = 64 << 10

// fastChunk tells whether a ranged PATCH can take patchChunk: its length is
// known (Content-Length agrees with Content-Range) and between minFastChunk
// and storage.MinPartSize, so it is read into memory before the session is.
func fastChunk(r *http.Request, start, end int64) bool {
	n := end - start + 1
	return r.ContentLength == n && n >= minFastChunk && n < storage.MinPartSize
}

// patchChunk appends one chunk of known length — the hot path of a chunked
// push through API Gateway (README, Architecture: Request flows). The body is read into memory; then,
// at the same time, it is written as a staged object under a key of its own
// and the session is read (GetItem). A chunk that stays staged changes the
// session in memory and saves it with one conditional PutItem on the offset
// read (no lease: a concurrent writer at the same offset loses that write and
// gets 416; its staged object, under its own key, is never referenced). A
// chunk that completes a part takes the lease first (conditional UpdateItem),
// since it writes a multipart part. So a staged chunk costs one S3 write, one
// DynamoDB read and one write, with the S3 write and the read overlapped.
func (rg *Registry) patchChunk(w http.ResponseWriter, r *http.Request, t target, cs storage.ChunkStager, start, end int64) error {
	ctx := r.Context()
	n := end - start + 1
	b := make([]byte, n+1) // one byte more shows an over-long body
	m, err := io.ReadFull(requestBody(r), b)
	if err != nil && !errors.Is(err, io.ErrUnexpectedEOF) && !errors.Is(err, io.EOF) {
		return rg.bodyErr(err, "read chunk")
	}
	if int64(m) != n {
		return apiErr(http.StatusRequestedRangeNotSatisfiable, CodeBlobUploadInvalid,
			"Content-Range %d-%d announces %d bytes but the body has %d", start, end, n, m)
	}
	b = b[:n]

	var st storage.Staged
	var stageErr error
	var wg sync.WaitGroup
	wg.Go(func() { st, stageErr = cs.StageChunk(ctx, t.ref, start, newID(), b) })
	u, err := rg.Meta.GetUpload(ctx, t.ref)
	wg.Wait()
	drop := func() { // the staged object is referenced by no session
		if stageErr == nil {
			_ = rg.Blobs.DeleteBlob(context.WithoutCancel(ctx), st.Key)
		}
	}
	switch {
	case errors.Is(err, storage.ErrNotFound) || err == nil && u.Image != t.img:
		drop()
		return uploadUnknown(t.ref)
	case err != nil:
		drop()
		return fmt.Errorf("get upload: %w", err)
	case isDirect(u):
		drop()
		return directMixed(t)
	case u.Offset != start || u.Lease != "" && u.LeaseUntil.After(rg.Now()):
		drop()
		return chunkRefused(t, start, u.Offset, u.Offset == start)
	case stageErr != nil:
		return fmt.Errorf("stage chunk: %w", stageErr)
	}
	h, err := hashFor(&u)
	if err != nil {
		drop()
		return err
	}
	h.Write(b)

	var staged int64
	for _, x := range u.Staged {
		staged += x.Size
	}
	if staged+n >= storage.MinPartSize {
		return rg.chunkPart(w, r, t, cs, u, st, b, h, drop)
	}
	if err := cs.AddChunk(ctx, &u, st, b); err != nil {
		drop()
		return fmt.Errorf("add chunk: %w", err)
	}
	if err := saveHash(&u, h); err != nil {
		drop()
		return err
	}
	u.ExpiresAt = rg.Now().Add(uploadTTL)
	if err := rg.Meta.CommitUploadAt(ctx, u, start); err != nil {
		drop()
		if !errors.Is(err, storage.ErrConflict) {
			return fmt.Errorf("commit upload: %w", err)
		}
		return rg.lostChunkRace(r, t, start)
	}
	chunkAccepted(w, t, u.Offset)
	return nil
}

// chunkPart appends a chunk that completes a part: under the session's lease
// (taken at the offset read), the staged objects are read back and sent with
// the chunk as one part, and the session is committed.
func (rg *Registry) chunkPart(w http.ResponseWriter, r *http.Request, t target, cs storage.ChunkStager, read storage.Upload, st storage.Staged, b []byte, h hash.Hash, drop func()) error {
	ctx := r.Context()
	start := read.Offset
	u, err := rg.Meta.AcquireUpload(ctx, t.ref, start, newID(), rg.Now().Add(leaseTTL))
	if errors.Is(err, storage.ErrConflict) || errors.Is(err, storage.ErrNotFound) {
		drop()
		return rg.lostChunkRace(r, t, start)
	}
	if err != nil {
		drop()
		return fmt.Errorf("acquire upload: %w", err)
	}
	held := u
	release := func() { _ = rg.Meta.CommitUpload(context.WithoutCancel(ctx), held) }
	if isDirect(u) { // became one since it was read
		release()
		drop()
		return directMixed(t)
	}
	// The session cannot have changed since it was read (same offset, no
	// lease then, offsets only grow), so the hash computed from it stands.
	if err := cs.AddChunk(ctx, &u, st, b); err != nil {
		release()
		drop()
		return fmt.Errorf("add chunk: %w", err)
	}
	if err := saveHash(&u, h); err != nil {
		release()
		return err
	}
	u.ExpiresAt = rg.Now().Add(uploadTTL)
	if err := rg.Meta.CommitUpload(ctx, u); err != nil {
		return fmt.Errorf("commit upload: %w", err)
	}
	chunkAccepted(w, t, u.Offset)
	return nil
}

// lostChunkRace answers a chunk whose session changed after it was read:
// 416 with the offset now committed (one more read, only on this path).
func (rg *Registry) lostChunkRace(r *http.Request, t target, start int64) error {
	cur, err := rg.Meta.GetUpload(r.Context(), t.ref)
	if errors.Is(err, storage.ErrNotFound) || err == nil && cur.Image != t.img {
		return uploadUnknown(t.ref)
	}
	if err != nil {
		return fmt.Errorf("get upload: %w", err)
	}
	return chunkRefused(t, start, cur.Offset, true)
}
