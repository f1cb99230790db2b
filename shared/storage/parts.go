package storage

import (
	"context"
	"errors"
	"time"
)

// ErrInvalidParts: the store refused a part list (S3's InvalidPart,
// InvalidPartOrder, EntityTooSmall: an ETag that was not returned for that
// part, parts out of order, a part under MinPartSize but the last).
var ErrInvalidParts = errors.New("invalid parts")

// MaxParts is S3's largest part number of a multipart upload.
const MaxParts = 10000

// MaxPartSize is S3's largest part (5 GiB).
const MaxPartSize = 5 << 30

// MaxObjectSize is S3's largest object (5 TiB).
const MaxObjectSize = 5 << 40

// PartPresigner is an optional capability of a Blobs store for direct
// uploads (README, Direct-to-S3 uploads): the client sends the parts of a
// multipart upload straight to the store with presigned URLs and reports
// their ETags; the registry completes the upload and verifies the digest
// (BlobReader) before recording the blob. Bytes never pass through the
// registry.
type PartPresigner interface {
	// StartParts opens the multipart upload of u at UploadKey(u.ID) and sets
	// u.MultipartID (one CreateMultipartUpload). u must have no bytes.
	StartParts(ctx context.Context, u *Upload) error
	// PresignUploadPart returns a URL that takes an HTTP PUT of part number
	// (1 to MaxParts) of u's multipart upload, exactly size bytes long, for
	// ttl; the response's ETag header is the part's ETag. It makes no request.
	PresignUploadPart(ctx context.Context, u *Upload, number int32, size int64, ttl time.Duration) (string, error)
	// CompleteParts completes u's multipart upload with parts (Number and
	// ETag; ascending numbers) at UploadKey(u.ID) and returns the object's key
	// and size. A part list the store refuses is an error wrapping
	// ErrInvalidParts (the multipart upload stays open for another try); a
	// multipart upload that does not exist wraps ErrNotFound. It may be
	// retried after it succeeded (the object is there: its key and size).
	CompleteParts(ctx context.Context, u *Upload, parts []Part) (key string, size int64, err error)
}
