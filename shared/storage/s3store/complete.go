package s3store

import (
	"context"
	"errors"
	"fmt"
	"net/url"
	"slices"
	"time"

	"github.com/aws/aws-sdk-go-v2/aws"
	"github.com/aws/aws-sdk-go-v2/service/s3"
	"github.com/aws/aws-sdk-go-v2/service/s3/types"
	digest "github.com/opencontainers/go-digest"

	"github.com/airlock-registry/airlock/shared/storage"
)

// cleanupTimeout bounds best-effort cleanup run after the caller's context ended.
const cleanupTimeout = 30 * time.Second

// Complete turns the upload's bytes into the blob object for d and returns its
// key. A multipart upload is completed at storage.UploadKey(u.ID), where its
// parts were written (no copy; staged bytes, if any, are sent as the last
// part). Without one, the staged bytes are put at the same key: one
// staged object is copied server-side (one call), several are read back in
// parallel and put as one object. Then the staged objects listed in u are
// deleted with one DeleteObjects call; those already read into parts are left
// to the bucket's lifecycle rule on uploads/. No HEAD or listing is made,
// except on a retry whose earlier attempt may have succeeded (its reply lost,
// or its caller failed afterwards): then the blob object is there with the
// upload's size and Complete succeeds again.
func (s *Store) Complete(ctx context.Context, u *storage.Upload, d digest.Digest) (string, error) {
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
		err = s.completeMultipart(ctx, u, key)
	case len(u.Staged) == 0 && total == 0:
		key = storage.UploadKey(u.ID)
		err = s.put(ctx, key, nil)
	case len(u.Staged) == 1:
		key = storage.UploadKey(u.ID)
		err = s.copyObject(ctx, u.Staged[0].Key, key)
	case total > s.partSize:
		err = fmt.Errorf("%d staged bytes without a multipart upload", total)
	default: // a few staged chunks, less than one part in all
		key = storage.UploadKey(u.ID)
		bp := s.getBuf()
		defer s.putBuf(bp)
		buf := (*bp)[:total]
		if err = s.readStaged(ctx, u.Staged, buf); err == nil {
			err = s.put(ctx, key, buf)
		}
	}
	if errors.Is(err, storage.ErrNotFound) && key != "" {
		// A retry after success: the multipart upload or the staged objects
		// are gone because the blob was made. Accept it when it is there.
		if size, herr := s.head(ctx, key); herr == nil && size == total {
			err = nil
		}
	}
	if err != nil {
		return "", fmt.Errorf("complete upload %s as %s: %w", u.ID, d, err)
	}
	// Best effort: the blob is in place; leftovers only cost storage until
	// the lifecycle rule removes them.
	if len(u.Staged) > 0 {
		cctx, cancel := cleanupContext(ctx)
		defer cancel()
		keys := make([]string, len(u.Staged))
		for i, st := range u.Staged {
			keys[i] = st.Key
		}
		_ = s.deleteKeys(cctx, keys)
	}
	return key, nil
}

// cleanupContext outlives ctx's cancellation (cleanup after a failure) but not cleanupTimeout.
func cleanupContext(ctx context.Context) (context.Context, context.CancelFunc) {
	return context.WithTimeout(context.WithoutCancel(ctx), cleanupTimeout)
}

// completeMultipart sends the staged bytes as the last part and completes
// u's multipart upload at key.
func (s *Store) completeMultipart(ctx context.Context, u *storage.Upload, key string) error {
	parts := slices.Clone(u.Parts)
	if staged := stagedSize(u.Staged); staged > 0 {
		bp := s.getBuf()
		defer s.putBuf(bp)
		buf := (*bp)[:staged]
		if err := s.readStaged(ctx, u.Staged, buf); err != nil {
			return err
		}
		num := int32(len(parts) + 1)
		etag, err := s.uploadPart(ctx, u.ID, u.MultipartID, num, [][]byte{buf})
		if err != nil {
			return err
		}
		parts = append(parts, storage.Part{Number: num, ETag: etag, Size: staged})
	}
	cparts := make([]types.CompletedPart, len(parts))
	for i, p := range parts {
		cparts[i] = types.CompletedPart{PartNumber: aws.Int32(p.Number), ETag: aws.String(p.ETag)}
	}
	_, err := s.client.CompleteMultipartUpload(ctx, &s3.CompleteMultipartUploadInput{
		Bucket: &s.bucket, Key: &key, UploadId: &u.MultipartID,
		MultipartUpload: &types.CompletedMultipartUpload{Parts: cparts},
	})
	if err != nil {
		return fmt.Errorf("complete multipart upload: %w", mapErr(err))
	}
	return nil
}

// copyObject copies src to dst in the bucket with one CopyObject (src is a
// staged object, under storage.MinPartSize).
func (s *Store) copyObject(ctx context.Context, src, dst string) error {
	source := (&url.URL{Path: s.bucket + "/" + src}).EscapedPath()
	if _, err := s.client.CopyObject(ctx, &s3.CopyObjectInput{Bucket: &s.bucket, Key: &dst, CopySource: &source}); err != nil {
		return fmt.Errorf("copy %s to %s: %w", src, dst, mapErr(err))
	}
	return nil
}

// Abort removes everything the upload wrote that is not a completed blob: its
// multipart uploads (the session's and any a failed attempt left) and every
// object under its prefix, listed. It is idempotent, and leaves a blob that
// Complete made in place. It is the cancel and purge path, not the push path.
func (s *Store) Abort(ctx context.Context, u *storage.Upload) error {
	var errs []error
	if u.MultipartID != "" {
		if err := s.abortMultipart(ctx, u.ID, u.MultipartID); err != nil {
			errs = append(errs, err)
		}
	}
	ids, err := s.listMultipart(ctx, u.ID)
	errs = append(errs, err)
	for _, id := range ids {
		errs = append(errs, s.abortMultipart(ctx, u.ID, id))
	}
	keys, err := s.listPrefix(ctx, u.ID)
	errs = append(errs, err)
	if err == nil {
		errs = append(errs, s.deleteKeys(ctx, keys))
	}
	if err := errors.Join(errs...); err != nil {
		return fmt.Errorf("abort upload %s: %w", u.ID, err)
	}
	return nil
}

// UploadLeftovers lists what the upload id still holds in the bucket: its
// staged objects ("object <key>") and open multipart uploads ("multipart
// <key> <upload id>"). It is empty after Abort. After Complete only staged
// objects read into parts before it may remain (the lifecycle rule's job).
func (s *Store) UploadLeftovers(ctx context.Context, id string) ([]string, error) {
	keys, err := s.listPrefix(ctx, id)
	if err != nil {
		return nil, err
	}
	var out []string
	for _, k := range keys {
		out = append(out, "object "+k)
	}
	ids, err := s.listMultipart(ctx, id)
	if err != nil {
		return nil, err
	}
	for _, mid := range ids {
		out = append(out, "multipart "+storage.UploadKey(id)+" "+mid)
	}
	return out, nil
}

func (s *Store) abortMultipart(ctx context.Context, id, mid string) error {
	key := storage.UploadKey(id)
	_, err := s.client.AbortMultipartUpload(ctx, &s3.AbortMultipartUploadInput{Bucket: &s.bucket, Key: &key, UploadId: &mid})
	if err != nil && !isNoSuchUpload(err) {
		return fmt.Errorf("abort multipart upload %s: %w", mid, err)
	}
	return nil
}

// listMultipart returns the ids of the multipart uploads open on the upload's key.
func (s *Store) listMultipart(ctx context.Context, id string) ([]string, error) {
	key := storage.UploadKey(id)
	var ids []string
	in := &s3.ListMultipartUploadsInput{Bucket: &s.bucket, Prefix: &key}
	for {
		out, err := s.client.ListMultipartUploads(ctx, in)
		if err != nil {
			return nil, fmt.Errorf("list multipart uploads: %w", err)
		}
		for _, m := range out.Uploads {
			if aws.ToString(m.Key) == key {
				ids = append(ids, aws.ToString(m.UploadId))
			}
		}
		if !aws.ToBool(out.IsTruncated) {
			return ids, nil
		}
		in.KeyMarker, in.UploadIdMarker = out.NextKeyMarker, out.NextUploadIdMarker
	}
}

// listPrefix lists the objects under the upload's staging prefix.
func (s *Store) listPrefix(ctx context.Context, id string) ([]string, error) {
	prefix := storage.UploadPrefix(id)
	var keys []string
	p := s3.NewListObjectsV2Paginator(s.client, &s3.ListObjectsV2Input{Bucket: &s.bucket, Prefix: &prefix})
	for p.HasMorePages() {
		out, err := p.NextPage(ctx)
		if err != nil {
			return nil, fmt.Errorf("list %s: %w", prefix, err)
		}
		for _, o := range out.Contents {
			keys = append(keys, aws.ToString(o.Key))
		}
	}
	return keys, nil
}

// deleteKeys deletes the objects at keys, up to 1,000 per DeleteObjects call
// (missing objects are not an error).
func (s *Store) deleteKeys(ctx context.Context, keys []string) error {
	_, err := s.DeleteObjects(ctx, keys)
	return err
}
