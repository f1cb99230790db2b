package s3store

import (
	"context"
	"errors"
	"fmt"
	"net/url"
	"sync"

	"github.com/aws/aws-sdk-go-v2/aws"
	"github.com/aws/aws-sdk-go-v2/service/s3"
	"github.com/aws/aws-sdk-go-v2/service/s3/types"
)

// copyObject copies src to dst in the bucket: one CopyObject, or ranges
// copied in parallel with UploadPartCopy for large objects.
func (s *Store) copyObject(ctx context.Context, src, dst string, size int64) error {
	source := copySource(s.bucket, src)
	if size <= s.copyLimit {
		if _, err := s.client.CopyObject(ctx, &s3.CopyObjectInput{Bucket: &s.bucket, Key: &dst, CopySource: &source}); err != nil {
			return fmt.Errorf("copy %s to %s: %w", src, dst, mapErr(err))
		}
		return nil
	}
	out, err := s.client.CreateMultipartUpload(ctx, &s3.CreateMultipartUploadInput{Bucket: &s.bucket, Key: &dst})
	if err != nil {
		return fmt.Errorf("copy %s to %s: create multipart upload: %w", src, dst, err)
	}
	mid := out.UploadId
	n := int((size + s.copyPart - 1) / s.copyPart)
	parts := make([]types.CompletedPart, n)
	errs := make([]error, n)
	cctx, cancel := context.WithCancel(ctx)
	sem := make(chan struct{}, copyWorkers)
	var wg sync.WaitGroup
	for i := range n {
		off := int64(i) * s.copyPart
		rng := fmt.Sprintf("bytes=%d-%d", off, min(off+s.copyPart, size)-1)
		num := aws.Int32(int32(i + 1))
		wg.Add(1)
		sem <- struct{}{}
		go func() {
			defer func() { <-sem; wg.Done() }()
			pc, err := s.client.UploadPartCopy(cctx, &s3.UploadPartCopyInput{
				Bucket: &s.bucket, Key: &dst, UploadId: mid, PartNumber: num, CopySource: &source, CopySourceRange: &rng,
			})
			if err != nil {
				errs[i] = fmt.Errorf("part %d: %w", *num, mapErr(err))
				cancel()
				return
			}
			parts[i] = types.CompletedPart{PartNumber: num, ETag: pc.CopyPartResult.ETag}
		}()
	}
	wg.Wait()
	cancel()
	err = errors.Join(errs...)
	if err == nil {
		_, err = s.client.CompleteMultipartUpload(ctx, &s3.CompleteMultipartUploadInput{
			Bucket: &s.bucket, Key: &dst, UploadId: mid, MultipartUpload: &types.CompletedMultipartUpload{Parts: parts},
		})
	}
	if err != nil {
		actx, acancel := cleanupContext(ctx)
		defer acancel()
		_, _ = s.client.AbortMultipartUpload(actx, &s3.AbortMultipartUploadInput{Bucket: &s.bucket, Key: &dst, UploadId: mid})
		return fmt.Errorf("copy %s to %s: %w", src, dst, err)
	}
	return nil
}

// copySource is the x-amz-copy-source value for key in bucket (URL-encoded, "/" kept).
func copySource(bucket, key string) string {
	return (&url.URL{Path: bucket + "/" + key}).EscapedPath()
}
