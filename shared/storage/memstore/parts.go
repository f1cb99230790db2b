package memstore

import (
	"context"
	"errors"
	"fmt"
	"io"
	"net/http"
	"net/url"
	"strconv"
	"strings"
	"time"

	"github.com/airlock-registry/airlock/shared/storage"
)

var _ storage.PartPresigner = (*Store)(nil)

// Query parameters of a presigned UploadPart URL, named as S3's.
const (
	paramUploadID   = "uploadId"
	paramPartNumber = "partNumber"
	paramLength     = "x-mem-content-length" // S3 signs the Content-Length header instead
)

// StartParts opens u's multipart upload (CreateMultipartUpload) for a direct upload.
func (s *Store) StartParts(_ context.Context, u *storage.Upload) error {
	if u.Offset != 0 || u.MultipartID != "" || len(u.Staged) > 0 {
		return fmt.Errorf("start parts of upload %s: it has bytes or a multipart upload already", u.ID)
	}
	u.MultipartID = s.createMultipart(u.ID)
	return nil
}

// PresignUploadPart returns a URL of the loopback server that takes a PUT of
// part number of u's multipart upload with exactly size bytes (as S3 with a
// signed Content-Length: 403 otherwise) and answers its ETag.
func (s *Store) PresignUploadPart(_ context.Context, u *storage.Upload, number int32, size int64, ttl time.Duration) (string, error) {
	if u.MultipartID == "" {
		return "", fmt.Errorf("presign part %d of upload %s: no multipart upload", number, u.ID)
	}
	if number < 1 || number > storage.MaxParts || size < 0 || size > storage.MaxPartSize {
		return "", fmt.Errorf("presign part %d of upload %s: part number or size %d out of S3's limits", number, u.ID, size)
	}
	if ttl <= 0 {
		return "", fmt.Errorf("presign part %d of upload %s: ttl %v is not positive", number, u.ID, ttl)
	}
	base, err := s.server()
	if err != nil {
		return "", fmt.Errorf("presign part %d of upload %s: %w", number, u.ID, err)
	}
	key := storage.UploadKey(u.ID)
	date := s.now().UTC().Format(amzDate)
	expires := strconv.FormatInt(int64((ttl+time.Second-1)/time.Second), 10)
	num, length := strconv.Itoa(int(number)), strconv.FormatInt(size, 10)
	q := url.Values{}
	q.Set(paramDate, date)
	q.Set(paramExpires, expires)
	q.Set(paramUploadID, u.MultipartID)
	q.Set(paramPartNumber, num)
	q.Set(paramLength, length)
	q.Set(paramSignature, s.signFields(http.MethodPut, key, date, expires, u.MultipartID, num, length))
	return base + (&url.URL{Path: "/" + key}).EscapedPath() + "?" + q.Encode(), nil
}

// servePart answers a PUT of a presigned part as S3 does: 403 for a bad or
// expired signature or another length than signed, 404 NoSuchUpload for a
// completed or aborted multipart upload, else 200 with the part's ETag.
// These PUTs are the client's, not the registry's: they are not counted.
func (s *Store) servePart(w http.ResponseWriter, r *http.Request) {
	key := strings.TrimPrefix(r.URL.Path, "/")
	q := r.URL.Query()
	date, expires := q.Get(paramDate), q.Get(paramExpires)
	mid, num, length := q.Get(paramUploadID), q.Get(paramPartNumber), q.Get(paramLength)
	if !s.signatureOK(q.Get(paramSignature), http.MethodPut, key, date, expires, mid, num, length) {
		s3Error(w, http.StatusForbidden, "SignatureDoesNotMatch", "the request signature does not match")
		return
	}
	if !s.presignLive(date, expires) {
		s3Error(w, http.StatusForbidden, "AccessDenied", "Request has expired")
		return
	}
	if strconv.FormatInt(r.ContentLength, 10) != length {
		s3Error(w, http.StatusForbidden, "SignatureDoesNotMatch", "Content-Length is not the signed one")
		return
	}
	b, err := io.ReadAll(r.Body)
	if err != nil || strconv.Itoa(len(b)) != length {
		s3Error(w, http.StatusBadRequest, "IncompleteBody", "the body is shorter than Content-Length")
		return
	}
	n, _ := strconv.Atoi(num)
	etag, err := s.putPart(key, mid, int32(n), b)
	if err != nil {
		s3Error(w, http.StatusNotFound, "NoSuchUpload", "The specified multipart upload does not exist.")
		return
	}
	w.Header().Set("ETag", etag)
	w.WriteHeader(http.StatusOK)
}

// putPart stores part num of multipart upload mid at key (a client's
// presigned UploadPart: not counted).
func (s *Store) putPart(key, mid string, num int32, b []byte) (string, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	m := s.multiparts[mid]
	if m == nil || m.key != key {
		return "", storage.ErrNotFound
	}
	s.seq++
	etag := fmt.Sprintf(`"mem-%d"`, s.seq)
	m.parts[num] = part{data: b, etag: etag}
	return etag, nil
}

// CompleteParts completes u's multipart upload with the client's parts
// (CompleteMultipartUpload, as S3 checks them) and returns the object's key
// and size (HeadObject).
func (s *Store) CompleteParts(_ context.Context, u *storage.Upload, parts []storage.Part) (string, int64, error) {
	key := storage.UploadKey(u.ID)
	if u.MultipartID == "" {
		return "", 0, fmt.Errorf("complete parts of upload %s: no multipart upload: %w", u.ID, storage.ErrNotFound)
	}
	err := s.completeMultipart(u.ID, u.MultipartID, parts)
	if errors.Is(err, storage.ErrNotFound) {
		if size, herr := s.head(key); herr == nil {
			return key, size, nil // a retry after success
		}
	}
	if err != nil {
		if !errors.Is(err, storage.ErrNotFound) {
			err = fmt.Errorf("%w: %w", storage.ErrInvalidParts, err)
		}
		return "", 0, fmt.Errorf("complete parts of upload %s: %w", u.ID, err)
	}
	size, err := s.head(key)
	if err != nil {
		return "", 0, fmt.Errorf("complete parts of upload %s: %w", u.ID, err)
	}
	return key, size, nil
}
