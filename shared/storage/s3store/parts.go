package s3store

import (
	"context"
	"errors"
	"fmt"
	"time"

	"github.com/aws/aws-sdk-go-v2/aws"
	"github.com/aws/aws-sdk-go-v2/service/s3"
	"github.com/aws/aws-sdk-go-v2/service/s3/types"
	"github.com/aws/smithy-go"

	"github.com/airlock-registry/airlock/shared/storage"
)

var _ storage.PartPresigner = (*Store)(nil)

// StartParts opens u's multipart upload at storage.UploadKey(u.ID) for a
// direct upload (one CreateMultipartUpload).
func (s *Store) StartParts(ctx context.Context, u *storage.Upload) error {
	if u.Offset != 0 || u.MultipartID != "" || len(u.Staged) > 0 {
		return fmt.Errorf("start parts of upload %s: it has bytes or a multipart upload already", u.ID)
	}
	mid, err := s.createMultipart(ctx, u.ID)
	if err != nil {
		return fmt.Errorf("start parts of upload %s: %w", u.ID, err)
	}
	u.MultipartID = mid
	return nil
}

// PresignUploadPart presigns an UploadPart of part number with exactly size
// bytes (Content-Length is signed: S3 refuses another length). The payload
// is unsigned (the registry verifies the blob's digest). It makes no request.
func (s *Store) PresignUploadPart(ctx context.Context, u *storage.Upload, number int32, size int64, ttl time.Duration) (string, error) {
	if u.MultipartID == "" {
		return "", fmt.Errorf("presign part %d of upload %s: no multipart upload", number, u.ID)
	}
	if number < 1 || number > storage.MaxParts || size < 0 || size > storage.MaxPartSize {
		return "", fmt.Errorf("presign part %d of upload %s: part number or size %d out of S3's limits", number, u.ID, size)
	}
	key := storage.UploadKey(u.ID)
	req, err := s.presign.PresignUploadPart(ctx, &s3.UploadPartInput{
		Bucket: &s.bucket, Key: &key, UploadId: aws.String(u.MultipartID),
		PartNumber: aws.Int32(number), ContentLength: aws.Int64(size),
	}, s3.WithPresignExpires(ttl))
	if err != nil {
		return "", fmt.Errorf("presign part %d of upload %s: %w", number, u.ID, err)
	}
	return req.URL, nil
}

// CompleteParts completes u's multipart upload with the client's parts
// (CompleteMultipartUpload) and returns the object's key and size (HeadObject).
func (s *Store) CompleteParts(ctx context.Context, u *storage.Upload, parts []storage.Part) (string, int64, error) {
	key := storage.UploadKey(u.ID)
	if u.MultipartID == "" {
		return "", 0, fmt.Errorf("complete parts of upload %s: no multipart upload: %w", u.ID, storage.ErrNotFound)
	}
	cparts := make([]types.CompletedPart, len(parts))
	for i, p := range parts {
		cparts[i] = types.CompletedPart{PartNumber: aws.Int32(p.Number), ETag: aws.String(p.ETag)}
	}
	_, err := s.client.CompleteMultipartUpload(ctx, &s3.CompleteMultipartUploadInput{
		Bucket: &s.bucket, Key: &key, UploadId: &u.MultipartID,
		MultipartUpload: &types.CompletedMultipartUpload{Parts: cparts},
	})
	if err != nil && isNoSuchUpload(err) {
		// A retry after success: the object is there.
		if size, herr := s.head(ctx, key); herr == nil {
			return key, size, nil
		}
	}
	if err != nil {
		return "", 0, fmt.Errorf("complete parts of upload %s: %w", u.ID, mapPartsErr(err))
	}
	size, err := s.head(ctx, key)
	if err != nil {
		return "", 0, fmt.Errorf("complete parts of upload %s: %w", u.ID, err)
	}
	return key, size, nil
}

// mapPartsErr wraps storage.ErrInvalidParts around S3's refusals of a part
// list, storage.ErrNotFound around a missing multipart upload.
func mapPartsErr(err error) error {
	var ae smithy.APIError
	if errors.As(err, &ae) {
		switch ae.ErrorCode() {
		case "InvalidPart", "InvalidPartOrder", "EntityTooSmall", "MalformedXML", "InvalidRequest":
			return fmt.Errorf("%w: %w", storage.ErrInvalidParts, err)
		}
	}
	return mapErr(err)
}
