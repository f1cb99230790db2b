package memstore

import (
	"context"
	"fmt"
	"slices"
	"strings"
	"time"

	"github.com/airlock-registry/airlock/shared/storage"
)

// The simulated S3 bucket. Each method is one S3 request (counted as such)
// and takes s.mu itself; the Blobs methods compose them the way package
// s3store composes real requests, so that request counts, keys, leftovers
// and failure modes match.

// multipart is an open multipart upload.
type multipart struct {
	key   string
	parts map[int32]part
	// created is when it was opened: S3 gives a completed multipart
	// upload's object the initiation time as LastModified.
	created time.Time
}

// part is one uploaded part.
type part struct {
	data []byte
	etag string
}

// put stores a copy of the concatenated segments at key (PutObject).
func (s *Store) put(key string, segs ...[]byte) {
	b := concat(segs)
	s.mu.Lock()
	defer s.mu.Unlock()
	s.count("PutObject", int64(len(b)))
	s.objects[key] = b
	s.modified[key] = s.now().Truncate(time.Millisecond)
}

// get returns the object at key (GetObject), shared: callers must not modify it.
func (s *Store) get(key string) ([]byte, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.count("GetObject", 0)
	b, ok := s.objects[key]
	if !ok {
		return nil, fmt.Errorf("get %s: NoSuchKey: %w", key, storage.ErrNotFound)
	}
	return b, nil
}

// readInto reads object key, which must hold exactly len(dst) bytes, into dst.
func (s *Store) readInto(key string, dst []byte) error {
	b, err := s.get(key)
	if err != nil {
		return fmt.Errorf("read staged: %w", err)
	}
	if len(b) != len(dst) {
		return fmt.Errorf("staged %s holds %d bytes, session says %d", key, len(b), len(dst))
	}
	copy(dst, b)
	return nil
}

// readStaged reads the staged objects, in order, into dst (exactly their total size).
func (s *Store) readStaged(st []storage.Staged, dst []byte) error {
	var off int64
	for _, x := range st {
		if err := s.readInto(x.Key, dst[off:off+x.Size]); err != nil {
			return err
		}
		off += x.Size
	}
	return nil
}

// head returns the size of the object at key (HeadObject).
func (s *Store) head(key string) (int64, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.count("HeadObject", 0)
	b, ok := s.objects[key]
	if !ok {
		return 0, fmt.Errorf("head %s: NotFound: %w", key, storage.ErrNotFound)
	}
	return int64(len(b)), nil
}

// copyObject copies src to dst (CopyObject).
func (s *Store) copyObject(src, dst string) error {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.count("CopyObject", 0)
	b, ok := s.objects[src]
	if !ok {
		return fmt.Errorf("copy %s to %s: NoSuchKey: %w", src, dst, storage.ErrNotFound)
	}
	s.objects[dst] = b
	s.modified[dst] = s.now().Truncate(time.Millisecond)
	return nil
}

// deleteObject removes the object at key (DeleteObject; missing is fine).
func (s *Store) deleteObject(key string) {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.count("DeleteObject", 0)
	delete(s.objects, key)
	delete(s.modified, key)
}

// deleteKeys removes the objects at keys, 1,000 per DeleteObjects request.
func (s *Store) deleteKeys(keys []string) {
	s.mu.Lock()
	defer s.mu.Unlock()
	for batch := range slices.Chunk(keys, 1000) {
		s.count("DeleteObjects", 0)
		for _, k := range batch {
			delete(s.objects, k)
			delete(s.modified, k)
		}
	}
}

// listPrefix lists the keys under prefix in order (ListObjectsV2, one page).
func (s *Store) listPrefix(prefix string) []string {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.count("ListObjectsV2", 0)
	var keys []string
	for k := range s.objects {
		if strings.HasPrefix(k, prefix) {
			keys = append(keys, k)
		}
	}
	slices.Sort(keys)
	return keys
}

// createMultipart opens a multipart upload at UploadKey(id) and returns its id.
func (s *Store) createMultipart(id string) string {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.count("CreateMultipartUpload", 0)
	s.seq++
	mid := fmt.Sprintf("mem-mpu-%d", s.seq)
	s.multiparts[mid] = &multipart{key: storage.UploadKey(id), parts: map[int32]part{}, created: s.now().Truncate(time.Millisecond)}
	return mid
}

// uploadPart stores the concatenated segments as part num of multipart
// upload mid (UploadPart; overwrites a part of the same number) and returns
// its ETag, unique to this request.
func (s *Store) uploadPart(id, mid string, num int32, segs ...[]byte) (string, error) {
	b := concat(segs)
	s.mu.Lock()
	defer s.mu.Unlock()
	s.count("UploadPart", int64(len(b)))
	m := s.multiparts[mid]
	if m == nil || m.key != storage.UploadKey(id) {
		return "", fmt.Errorf("upload part %d: NoSuchUpload %s: %w", num, mid, storage.ErrNotFound)
	}
	if num < 1 || num > 10000 {
		return "", fmt.Errorf("upload part %d: part numbers are 1 to 10000", num)
	}
	s.seq++
	etag := fmt.Sprintf(`"mem-%d"`, s.seq)
	m.parts[num] = part{data: b, etag: etag}
	return etag, nil
}

// completeMultipart completes upload mid with parts, as S3 checks them:
// ascending numbers, each uploaded with that ETag, all but the last at least
// storage.MinPartSize (CompleteMultipartUpload). Unlisted parts are dropped.
func (s *Store) completeMultipart(id, mid string, parts []storage.Part) error {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.count("CompleteMultipartUpload", 0)
	m := s.multiparts[mid]
	if m == nil || m.key != storage.UploadKey(id) {
		return fmt.Errorf("complete multipart upload: NoSuchUpload %s: %w", mid, storage.ErrNotFound)
	}
	if len(parts) == 0 {
		return fmt.Errorf("complete multipart upload %s: MalformedXML: no parts", mid)
	}
	segs := make([][]byte, len(parts))
	for i, p := range parts {
		got, ok := m.parts[p.Number]
		switch {
		case i > 0 && p.Number <= parts[i-1].Number:
			return fmt.Errorf("complete multipart upload %s: InvalidPartOrder at part %d", mid, p.Number)
		case !ok || got.etag != p.ETag:
			return fmt.Errorf("complete multipart upload %s: InvalidPart %d (ETag %s)", mid, p.Number, p.ETag)
		case i < len(parts)-1 && len(got.data) < storage.MinPartSize:
			return fmt.Errorf("complete multipart upload %s: EntityTooSmall: part %d has %d bytes", mid, p.Number, len(got.data))
		}
		segs[i] = got.data
	}
	s.objects[m.key] = concat(segs)
	s.modified[m.key] = m.created
	delete(s.multiparts, mid)
	return nil
}

// abortMultipart removes upload mid and its parts (AbortMultipartUpload;
// a missing one is fine).
func (s *Store) abortMultipart(mid string) {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.count("AbortMultipartUpload", 0)
	delete(s.multiparts, mid)
}

// listMultipart returns the ids of the multipart uploads open at
// UploadKey(id), in order (ListMultipartUploads).
func (s *Store) listMultipart(id string) []string {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.count("ListMultipartUploads", 0)
	var ids []string
	for mid, m := range s.multiparts {
		if m.key == storage.UploadKey(id) {
			ids = append(ids, mid)
		}
	}
	slices.Sort(ids)
	return ids
}

// concat returns a new slice holding the segments end to end.
func concat(segs [][]byte) []byte {
	n := 0
	for _, b := range segs {
		n += len(b)
	}
	out := make([]byte, 0, n)
	for _, b := range segs {
		out = append(out, b...)
	}
	return out
}

// ListObjects lists objects under prefix after after, in key order, up to n
// (n <= 0: 1000) per call (ListObjectsV2 with StartAfter; storage.ObjectLister).
func (s *Store) ListObjects(ctx context.Context, prefix, after string, n int) ([]storage.Object, bool, error) {
	if err := ctx.Err(); err != nil {
		return nil, false, err
	}
	if n <= 0 || n > 1000 {
		n = 1000
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	s.count("ListObjectsV2", 0)
	var keys []string
	for k := range s.objects {
		if strings.HasPrefix(k, prefix) && k > after {
			keys = append(keys, k)
		}
	}
	slices.Sort(keys)
	more := len(keys) > n
	keys = keys[:min(n, len(keys))]
	out := make([]storage.Object, len(keys))
	for i, k := range keys {
		out[i] = storage.Object{Key: k, Size: int64(len(s.objects[k])), Modified: s.modified[k]}
	}
	return out, more, nil
}

// DeleteObjects removes the objects, 1,000 per DeleteObjects request
// (storage.ObjectLister; missing keys are fine).
func (s *Store) DeleteObjects(ctx context.Context, keys []string) ([]string, error) {
	if err := ctx.Err(); err != nil {
		return keys, err
	}
	s.deleteKeys(keys)
	return nil, nil
}

// WriteObject stores a copy of body at key (PutObject).
func (s *Store) WriteObject(ctx context.Context, key string, body []byte) error {
	if err := ctx.Err(); err != nil {
		return err
	}
	s.put(key, body)
	return nil
}

// ReadObject returns a copy of the object at key (GetObject), or an error
// wrapping storage.ErrNotFound.
func (s *Store) ReadObject(ctx context.Context, key string) ([]byte, error) {
	if err := ctx.Err(); err != nil {
		return nil, err
	}
	b, err := s.get(key)
	if err != nil {
		return nil, err
	}
	return slices.Clone(b), nil
}
