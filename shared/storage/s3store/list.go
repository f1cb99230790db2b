package s3store

import (
	"context"
	"fmt"
	"io"
	"slices"

	"github.com/aws/aws-sdk-go-v2/aws"
	"github.com/aws/aws-sdk-go-v2/service/s3"
	"github.com/aws/aws-sdk-go-v2/service/s3/types"

	"github.com/airlock-registry/airlock/shared/storage"
)

var _ storage.ObjectLister = (*Store)(nil)

// ListObjects lists up to n (n <= 0: 1000) objects under prefix whose keys
// sort after after, with one ListObjectsV2 request (StartAfter), and
// whether more follow (storage.ObjectLister; the blob garbage collection's
// reconciliation).
func (s *Store) ListObjects(ctx context.Context, prefix, after string, n int) ([]storage.Object, bool, error) {
	if n <= 0 || n > 1000 {
		n = 1000
	}
	in := &s3.ListObjectsV2Input{Bucket: &s.bucket, Prefix: aws.String(prefix), MaxKeys: aws.Int32(int32(n))}
	if after != "" {
		in.StartAfter = aws.String(after)
	}
	out, err := s.client.ListObjectsV2(ctx, in)
	if err != nil {
		return nil, false, fmt.Errorf("list objects under %q after %q: %w", prefix, after, mapErr(err))
	}
	objs := make([]storage.Object, 0, len(out.Contents))
	for _, o := range out.Contents {
		objs = append(objs, storage.Object{Key: aws.ToString(o.Key), Size: aws.ToInt64(o.Size), Modified: aws.ToTime(o.LastModified)})
	}
	return objs, aws.ToBool(out.IsTruncated), nil
}

// DeleteObjects removes the objects with one DeleteObjects request per
// 1,000 keys (quiet mode: missing keys are not errors) and returns the keys
// not deleted with the first error.
func (s *Store) DeleteObjects(ctx context.Context, keys []string) ([]string, error) {
	var failed []string
	var first error
	for batch := range slices.Chunk(keys, 1000) {
		objs := make([]types.ObjectIdentifier, len(batch))
		for i, k := range batch {
			objs[i] = types.ObjectIdentifier{Key: aws.String(k)}
		}
		out, err := s.client.DeleteObjects(ctx, &s3.DeleteObjectsInput{
			Bucket: &s.bucket, Delete: &types.Delete{Objects: objs, Quiet: aws.Bool(true)},
		})
		if err != nil {
			failed = append(failed, batch...)
			if first == nil {
				first = fmt.Errorf("delete %d objects: %w", len(batch), mapErr(err))
			}
			continue
		}
		for _, e := range out.Errors {
			failed = append(failed, aws.ToString(e.Key))
			if first == nil {
				first = fmt.Errorf("delete %s: %s %s", aws.ToString(e.Key), aws.ToString(e.Code), aws.ToString(e.Message))
			}
		}
	}
	return failed, first
}

// WriteObject stores body at key with one PutObject.
func (s *Store) WriteObject(ctx context.Context, key string, body []byte) error {
	return s.put(ctx, key, body)
}

// ReadObject returns the object at key with one GetObject, or an error
// wrapping storage.ErrNotFound.
func (s *Store) ReadObject(ctx context.Context, key string) ([]byte, error) {
	out, err := s.client.GetObject(ctx, &s3.GetObjectInput{Bucket: &s.bucket, Key: &key})
	if err != nil {
		return nil, fmt.Errorf("get %s: %w", key, mapErr(err))
	}
	defer out.Body.Close()
	b, err := io.ReadAll(out.Body)
	if err != nil {
		return nil, fmt.Errorf("read %s: %w", key, err)
	}
	return b, nil
}
