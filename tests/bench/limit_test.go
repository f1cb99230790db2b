//go:build bench

package bench

import (
	"context"
	"crypto/sha256"
	"fmt"
	"io"
	"net/http"
	"sync"

	"github.com/aws/aws-sdk-go-v2/aws"
	v4 "github.com/aws/aws-sdk-go-v2/aws/signer/v4"
	"github.com/aws/aws-sdk-go-v2/feature/s3/manager"
	"github.com/aws/aws-sdk-go-v2/service/s3"
	digest "github.com/opencontainers/go-digest"
)

// limitPut uploads each blob to bucket with the SDK's multipart uploader
// (default part size and concurrency, unsigned payload), hashing with SHA-256 while streaming,
// all blobs at once (as a registry client pushes layers in parallel).
func limitPut(ctx context.Context, s3c *s3.Client, bucket string, blobs []blob) error {
	// Sign bodies UNSIGNED-PAYLOAD as Airlock's s3store does (and as the SDK
	// does over TLS on AWS), so both sides hash the same number of times.
	up := manager.NewUploader(s3c, func(u *manager.Uploader) {
		u.ClientOptions = append(u.ClientOptions, func(o *s3.Options) {
			o.APIOptions = append(o.APIOptions, v4.SwapComputePayloadSHA256ForUnsignedPayloadMiddleware)
		})
	})
	return forEach(blobs, func(b blob) error {
		h := sha256.New()
		_, err := up.Upload(ctx, &s3.PutObjectInput{
			Bucket: aws.String(bucket),
			Key:    aws.String("limit/" + b.digest.Encoded()),
			Body:   io.TeeReader(b.open(), h),
		})
		if err != nil {
			return fmt.Errorf("upload %s: %w", b.digest, err)
		}
		if got := fmt.Sprintf("%x", h.Sum(nil)); got != b.digest.Encoded() {
			return fmt.Errorf("upload %s: hashed %s", b.digest, got)
		}
		return nil
	})
}

// limitGet downloads each blob with GetObject, hashing, all blobs at once.
func limitGet(ctx context.Context, s3c *s3.Client, bucket string, blobs []blob) error {
	return forEach(blobs, func(b blob) error {
		out, err := s3c.GetObject(ctx, &s3.GetObjectInput{
			Bucket: aws.String(bucket),
			Key:    aws.String("limit/" + b.digest.Encoded()),
		})
		if err != nil {
			return fmt.Errorf("get %s: %w", b.digest, err)
		}
		defer out.Body.Close()
		h := sha256.New()
		n, err := io.Copy(h, out.Body)
		if err != nil {
			return fmt.Errorf("get %s: %w", b.digest, err)
		}
		got := digest.NewDigestFromEncoded(digest.SHA256, fmt.Sprintf("%x", h.Sum(nil)))
		if n != b.size || got != b.digest {
			return fmt.Errorf("get %s: %d bytes, digest %s", b.digest, n, got)
		}
		return nil
	})
}

// forEach runs f on every blob concurrently and returns the first error.
func forEach(blobs []blob, f func(blob) error) error {
	errs := make([]error, len(blobs))
	var wg sync.WaitGroup
	for i, b := range blobs {
		wg.Go(func() { errs[i] = f(b) })
	}
	wg.Wait()
	for _, err := range errs {
		if err != nil {
			return err
		}
	}
	return nil
}

// limitCopy copies each limit object to another key with CopyObject, all at
// once: what a registry that copies a completed upload to its blob key pays.
func limitCopy(ctx context.Context, s3c *s3.Client, bucket string, blobs []blob) error {
	return forEach(blobs, func(b blob) error {
		_, err := s3c.CopyObject(ctx, &s3.CopyObjectInput{
			Bucket:     aws.String(bucket),
			Key:        aws.String("limit-copy/" + b.digest.Encoded()),
			CopySource: aws.String(bucket + "/limit/" + b.digest.Encoded()),
		})
		if err != nil {
			return fmt.Errorf("copy %s: %w", b.digest, err)
		}
		return nil
	})
}

// limitPresignedGet downloads each limit object through a presigned GET URL
// with net/http, hashing, all at once: the S3 side of a registry pull.
func limitPresignedGet(ctx context.Context, ps *s3.PresignClient, bucket string, blobs []blob) error {
	return forEach(blobs, func(b blob) error {
		req, err := ps.PresignGetObject(ctx, &s3.GetObjectInput{
			Bucket: aws.String(bucket),
			Key:    aws.String("limit/" + b.digest.Encoded()),
		})
		if err != nil {
			return fmt.Errorf("presign %s: %w", b.digest, err)
		}
		resp, err := http.Get(req.URL)
		if err != nil {
			return fmt.Errorf("presigned get %s: %w", b.digest, err)
		}
		defer resp.Body.Close()
		if resp.StatusCode != http.StatusOK {
			return fmt.Errorf("presigned get %s: status %d", b.digest, resp.StatusCode)
		}
		h := sha256.New()
		n, err := io.Copy(h, resp.Body)
		if err != nil {
			return fmt.Errorf("presigned get %s: %w", b.digest, err)
		}
		if got := fmt.Sprintf("%x", h.Sum(nil)); n != b.size || got != b.digest.Encoded() {
			return fmt.Errorf("presigned get %s: %d bytes, digest %s", b.digest, n, got)
		}
		return nil
	})
}
