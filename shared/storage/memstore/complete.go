package memstore

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"io"
	"slices"
	"strings"

	digest "github.com/opencontainers/go-digest"

	"github.com/airlock-registry/airlock/shared/storage"
)

// Complete turns the upload's bytes into the blob object for d and returns
// its key, with the requests package s3store makes: a multipart upload is
// completed at storage.UploadKey(u.ID) (staged bytes, if any, sent as its
// last part); without one, one staged object is copied to the same key,
// several are read back and put there as one object.
// The staged objects listed in u are then deleted (one DeleteObjects). A
// retry after success finds the object in place with the upload's size
// (one HeadObject) and succeeds again.
func (s *Store) Complete(ctx context.Context, u *storage.Upload, d digest.Digest) (string, error) {
	if err := ctx.Err(); err != nil {
		return "", fmt.Errorf("complete upload %s: %w", u.ID, err)
	}
	total := stagedSize(u.Staged)
	for _, p := range u.Parts {
		total += p.Size
	}
	if total != u.Offset {
		return "", fmt.Errorf("complete upload %s: parts and staged objects hold %d bytes, offset is %d", u.ID, total, u.Offset)
	}
	var key string
	var err error
	switch {
	case u.MultipartID != "":
		key = storage.UploadKey(u.ID)
		err = s.finishMultipart(u)
	case len(u.Staged) == 0 && total == 0:
		key = storage.UploadKey(u.ID)
		s.put(key)
	case len(u.Staged) == 1:
		key = storage.UploadKey(u.ID)
		err = s.copyObject(u.Staged[0].Key, key)
	case total > s.partSize:
		err = fmt.Errorf("%d staged bytes without a multipart upload", total)
	default:
		key = storage.UploadKey(u.ID)
		buf := make([]byte, total)
		if err = s.readStaged(u.Staged, buf); err == nil {
			s.put(key, buf)
		}
	}
	if errors.Is(err, storage.ErrNotFound) && key != "" {
		if size, herr := s.head(key); herr == nil && size == total {
			err = nil // a retry after success
		}
	}
	if err != nil {
		return "", fmt.Errorf("complete upload %s as %s: %w", u.ID, d, err)
	}
	if len(u.Staged) > 0 {
		keys := make([]string, len(u.Staged))
		for i, st := range u.Staged {
			keys[i] = st.Key
		}
		s.deleteKeys(keys)
	}
	return key, nil
}

// finishMultipart sends the staged bytes as the last part and completes
// u's multipart upload.
func (s *Store) finishMultipart(u *storage.Upload) error {
	parts := slices.Clone(u.Parts)
	if staged := stagedSize(u.Staged); staged > 0 {
		buf := make([]byte, staged)
		if err := s.readStaged(u.Staged, buf); err != nil {
			return err
		}
		num := int32(len(parts) + 1)
		etag, err := s.uploadPart(u.ID, u.MultipartID, num, buf)
		if err != nil {
			return err
		}
		parts = append(parts, storage.Part{Number: num, ETag: etag, Size: staged})
	}
	return s.completeMultipart(u.ID, u.MultipartID, parts)
}

// Abort removes the upload's multipart uploads (the session's and any a
// lost attempt left) and every object under its prefix; a completed blob
// stays. It is idempotent.
func (s *Store) Abort(_ context.Context, u *storage.Upload) error {
	if u.MultipartID != "" {
		s.abortMultipart(u.MultipartID)
	}
	for _, mid := range s.listMultipart(u.ID) {
		s.abortMultipart(mid)
	}
	if keys := s.listPrefix(storage.UploadPrefix(u.ID)); len(keys) > 0 {
		s.deleteKeys(keys)
	}
	return nil
}

// UploadLeftovers lists what upload id still holds, as s3store does:
// "object <key>" for objects under its prefix, "multipart <key> <id>" for
// open multipart uploads (storagetest.UploadInspector). It is not counted.
func (s *Store) UploadLeftovers(_ context.Context, id string) ([]string, error) {
	prefix, key := storage.UploadPrefix(id), storage.UploadKey(id)
	s.mu.Lock()
	defer s.mu.Unlock()
	var out []string
	for _, k := range sortedKeys(s.objects) {
		if strings.HasPrefix(k, prefix) {
			out = append(out, "object "+k)
		}
	}
	for _, mid := range sortedKeys(s.multiparts) {
		if s.multiparts[mid].key == key {
			out = append(out, "multipart "+key+" "+mid)
		}
	}
	return out, nil
}

// PutSmall stores a whole blob of at most storage.MinPartSize bytes at
// a new key (storage.NewBlobKey; one PutObject).
func (s *Store) PutSmall(_ context.Context, d digest.Digest, body []byte) (string, error) {
	if len(body) > storage.MinPartSize {
		return "", fmt.Errorf("put blob %s: %d bytes is over the small-blob limit of %d", d, len(body), storage.MinPartSize)
	}
	key := storage.NewBlobKey(d)
	s.put(key, body)
	return key, nil
}

// BlobExists tells whether the object at key exists (one HeadObject).
func (s *Store) BlobExists(_ context.Context, key string) (bool, error) {
	_, err := s.head(key)
	return err == nil, nil
}

// DeleteBlob removes the object at key (a missing one is not an error).
func (s *Store) DeleteBlob(_ context.Context, key string) error {
	s.deleteObject(key)
	return nil
}

// PutManifestBody stores a manifest body at a new key (storage.NewManifestKey).
func (s *Store) PutManifestBody(_ context.Context, d digest.Digest, body []byte) (string, error) {
	key := storage.NewManifestKey(d)
	s.put(key, body)
	return key, nil
}

// GetManifestBody returns a copy of a manifest body, or an error wrapping
// storage.ErrNotFound.
func (s *Store) GetManifestBody(_ context.Context, key string) ([]byte, error) {
	b, err := s.get(key)
	if err != nil {
		return nil, fmt.Errorf("get manifest body: %w", err)
	}
	if len(b) > maxManifestBody {
		return nil, fmt.Errorf("manifest body %s larger than %d bytes", key, maxManifestBody)
	}
	return bytes.Clone(b), nil
}

// ReadBlob reads the object at key (storage.BlobReader), or returns an error
// wrapping storage.ErrNotFound.
func (s *Store) ReadBlob(_ context.Context, key string) (io.ReadCloser, error) {
	b, err := s.get(key)
	if err != nil {
		return nil, fmt.Errorf("read blob object: %w", err)
	}
	return io.NopCloser(bytes.NewReader(b)), nil
}

// ReadStaged reads the staged bytes of an upload without multipart parts,
// in order (storage.StagedReader); every staged object is checked at once.
func (s *Store) ReadStaged(_ context.Context, u *storage.Upload) (io.ReadCloser, error) {
	if u.MultipartID != "" || len(u.Parts) > 0 {
		return nil, fmt.Errorf("read staged bytes of upload %s: it has multipart parts", u.ID)
	}
	rs := make([]io.Reader, len(u.Staged))
	for i, x := range u.Staged {
		b, err := s.get(x.Key)
		if err != nil {
			return nil, fmt.Errorf("read staged bytes of upload %s: %w", u.ID, err)
		}
		if int64(len(b)) != x.Size {
			return nil, fmt.Errorf("staged %s holds %d bytes, session says %d", x.Key, len(b), x.Size)
		}
		rs[i] = bytes.NewReader(b)
	}
	return io.NopCloser(io.MultiReader(rs...)), nil
}
