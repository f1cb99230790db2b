package s3store

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"io"
	"net/http"
	"sync"
	"time"

	"github.com/aws/aws-sdk-go-v2/aws"
	awshttp "github.com/aws/aws-sdk-go-v2/aws/transport/http"
	"github.com/aws/aws-sdk-go-v2/service/s3"
	"github.com/aws/aws-sdk-go-v2/service/s3/types"
	"github.com/aws/smithy-go"
	digest "github.com/opencontainers/go-digest"

	"github.com/airlock-registry/airlock/shared/storage"
)

// DefaultPartSize is the size of the multipart parts Append writes.
const DefaultPartSize = 8 << 20

// maxManifestBody caps GetManifestBody reads (the spec's manifests are ≤ 4 MiB).
const maxManifestBody = 32 << 20

var _ storage.Blobs = (*Store)(nil)

// Store is storage.Blobs on one S3 bucket. It keeps no state between calls
// except a pool of part buffers; it is safe for concurrent use.
type Store struct {
	client   *s3.Client
	presign  *s3.PresignClient
	bucket   string
	partSize int64
	inflight int       // part uploads in flight per Append
	bufs     sync.Pool // *[]byte of partSize
}

// defaultInflight is the number of parts an Append uploads at once while it
// reads the next (memory: inflight + 2 parts per streamed request).
const defaultInflight = 1

// WithInflight sets how many parts an Append uploads at once (at least 1).
func WithInflight(n int) Option {
	return func(s *Store) { s.inflight = max(n, 1) }
}

// Option configures New.
type Option func(*Store)

// WithPartSize sets the size of the multipart parts Append writes (memory used
// per Append is at most three parts). Values below storage.MinPartSize are raised to it.
func WithPartSize(n int64) Option {
	return func(s *Store) { s.partSize = max(n, storage.MinPartSize) }
}

// WithPresignEndpoint makes presigned URLs point at endpoint (the same
// server under another host name) instead of the client's endpoint. localdev
// uses it: its registry and S3 emulator share 127.0.0.1, and a client
// following a 307 to the same host name (another port) keeps its registry
// token, which MinIO refuses next to the signature; on AWS the bucket's own
// host differs anyway.
func WithPresignEndpoint(endpoint string) Option {
	return func(s *Store) {
		s.presign = s3.NewPresignClient(s.client, func(o *s3.PresignOptions) {
			o.ClientOptions = append(o.ClientOptions, func(o *s3.Options) { o.BaseEndpoint = &endpoint })
		})
	}
}

// New returns a Store keeping its objects in bucket.
func New(client *s3.Client, bucket string, opts ...Option) *Store {
	s := &Store{
		client:   client,
		presign:  s3.NewPresignClient(client),
		bucket:   bucket,
		partSize: DefaultPartSize,
		inflight: defaultInflight,
	}
	for _, o := range opts {
		o(s)
	}
	return s
}

// PartSize returns the size of the multipart parts Append writes.
func (s *Store) PartSize() int64 { return s.partSize }

// PresignGet returns a URL that serves the object at key (a blob's
// ObjectKey) for ttl. It makes no request.
func (s *Store) PresignGet(ctx context.Context, key string, ttl time.Duration) (string, error) {
	return s.presignKey(ctx, key, ttl)
}

// PresignManifest returns a URL serving a stored manifest body for ttl, with
// mediaType as the response's Content-Type (S3's response-content-type).
func (s *Store) PresignManifest(ctx context.Context, key, mediaType string, ttl time.Duration) (string, error) {
	in := &s3.GetObjectInput{Bucket: &s.bucket, Key: &key}
	if mediaType != "" {
		in.ResponseContentType = &mediaType
	}
	return s.presignInput(ctx, in, ttl)
}

func (s *Store) presignKey(ctx context.Context, key string, ttl time.Duration) (string, error) {
	return s.presignInput(ctx, &s3.GetObjectInput{Bucket: &s.bucket, Key: &key}, ttl)
}

func (s *Store) presignInput(ctx context.Context, in *s3.GetObjectInput, ttl time.Duration) (string, error) {
	key := *in.Key
	req, err := s.presign.PresignGetObject(ctx, in, s3.WithPresignExpires(ttl))
	if err != nil {
		return "", fmt.Errorf("presign %s: %w", key, err)
	}
	return req.URL, nil
}

// BlobExists tells whether the object at key exists (HeadObject).
func (s *Store) BlobExists(ctx context.Context, key string) (bool, error) {
	_, err := s.head(ctx, key)
	if errors.Is(err, storage.ErrNotFound) {
		return false, nil
	}
	if err != nil {
		return false, fmt.Errorf("blob object %s: %w", key, err)
	}
	return true, nil
}

// head returns an object's size, or an error wrapping storage.ErrNotFound.
func (s *Store) head(ctx context.Context, key string) (int64, error) {
	out, err := s.client.HeadObject(ctx, &s3.HeadObjectInput{Bucket: &s.bucket, Key: &key})
	if err != nil {
		return 0, fmt.Errorf("head %s: %w", key, mapErr(err))
	}
	return aws.ToInt64(out.ContentLength), nil
}

// DeleteBlob removes the object at key (deleting a missing one is not an error).
func (s *Store) DeleteBlob(ctx context.Context, key string) error {
	if _, err := s.client.DeleteObject(ctx, &s3.DeleteObjectInput{Bucket: &s.bucket, Key: &key}); err != nil {
		return fmt.Errorf("delete blob object %s: %w", key, mapErr(err))
	}
	return nil
}

// PutSmall stores a whole blob (at most storage.MinPartSize bytes, verified
// by the caller to have digest d) with one PutObject at a new key (storage.NewBlobKey).
func (s *Store) PutSmall(ctx context.Context, d digest.Digest, body []byte) (string, error) {
	if len(body) > storage.MinPartSize {
		return "", fmt.Errorf("put blob %s: %d bytes is over the small-blob limit of %d", d, len(body), storage.MinPartSize)
	}
	key := storage.NewBlobKey(d)
	if err := s.put(ctx, key, body); err != nil {
		return "", fmt.Errorf("put blob %s: %w", d, err)
	}
	return key, nil
}

// PutManifestBody stores a manifest too large for an item and returns its key.
func (s *Store) PutManifestBody(ctx context.Context, d digest.Digest, body []byte) (string, error) {
	key := storage.NewManifestKey(d)
	if err := s.put(ctx, key, body); err != nil {
		return "", fmt.Errorf("manifest %s: %w", d, err)
	}
	return key, nil
}

// GetManifestBody reads a manifest body stored by PutManifestBody, or returns
// an error wrapping storage.ErrNotFound.
func (s *Store) GetManifestBody(ctx context.Context, key string) ([]byte, error) {
	out, err := s.client.GetObject(ctx, &s3.GetObjectInput{Bucket: &s.bucket, Key: &key})
	if err != nil {
		return nil, fmt.Errorf("get manifest body %s: %w", key, mapErr(err))
	}
	defer out.Body.Close()
	b, err := io.ReadAll(io.LimitReader(out.Body, maxManifestBody+1))
	if err != nil {
		return nil, fmt.Errorf("read manifest body %s: %w", key, err)
	}
	if len(b) > maxManifestBody {
		return nil, fmt.Errorf("manifest body %s larger than %d bytes", key, maxManifestBody)
	}
	return b, nil
}

// put writes one object from memory (a seekable body: the SDK signs it over plain http).
func (s *Store) put(ctx context.Context, key string, b []byte) error {
	_, err := s.client.PutObject(ctx, &s3.PutObjectInput{
		Bucket: &s.bucket, Key: &key, Body: bytes.NewReader(b), ContentLength: aws.Int64(int64(len(b))),
	}, unsignedPayload)
	if err != nil {
		return fmt.Errorf("put %s: %w", key, mapErr(err))
	}
	return nil
}

// mapErr wraps storage.ErrNotFound around S3's "no such thing" errors
// (NoSuchKey, NotFound from HEAD, NoSuchUpload, any 404), keeping err's text.
func mapErr(err error) error {
	if err == nil || errors.Is(err, storage.ErrNotFound) {
		return err
	}
	if isNotFound(err) {
		return fmt.Errorf("%w: %w", storage.ErrNotFound, err)
	}
	return err
}

func isNotFound(err error) bool {
	var nsk *types.NoSuchKey
	var nf *types.NotFound
	var nsu *types.NoSuchUpload
	if errors.As(err, &nsk) || errors.As(err, &nf) || errors.As(err, &nsu) {
		return true
	}
	var ae smithy.APIError
	if errors.As(err, &ae) {
		switch ae.ErrorCode() {
		case "NoSuchKey", "NotFound", "NoSuchUpload":
			return true
		case "NoSuchBucket": // a 404 too, but a configuration error, not a missing item
			return false
		}
	}
	var re *awshttp.ResponseError
	return errors.As(err, &re) && re.HTTPStatusCode() == http.StatusNotFound
}

// isNoSuchUpload reports whether err says the multipart upload is gone. After
// UploadPart the error is only visible as an API error code.
func isNoSuchUpload(err error) bool {
	var nsu *types.NoSuchUpload
	var ae smithy.APIError
	return errors.As(err, &nsu) || (errors.As(err, &ae) && ae.ErrorCode() == "NoSuchUpload")
}
