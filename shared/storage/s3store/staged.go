package s3store

import (
	"context"
	"errors"
	"fmt"
	"io"
	"slices"

	"github.com/aws/aws-sdk-go-v2/aws"
	"github.com/aws/aws-sdk-go-v2/service/s3"

	"github.com/airlock-registry/airlock/shared/storage"
)

var (
	_ storage.StagedReader = (*Store)(nil)
	_ storage.BlobReader   = (*Store)(nil)
)

// ReadBlob streams the object at key (storage.BlobReader), or returns an
// error wrapping storage.ErrNotFound.
func (s *Store) ReadBlob(ctx context.Context, key string) (io.ReadCloser, error) {
	out, err := s.client.GetObject(ctx, &s3.GetObjectInput{Bucket: &s.bucket, Key: &key})
	if err != nil {
		return nil, fmt.Errorf("read blob object %s: %w", key, mapErr(err))
	}
	return out.Body, nil
}

// ReadStaged streams the staged bytes of an upload that has no multipart part
// yet, in order (storage.StagedReader). Objects are opened one at a time.
func (s *Store) ReadStaged(ctx context.Context, u *storage.Upload) (io.ReadCloser, error) {
	if u.MultipartID != "" || len(u.Parts) > 0 {
		return nil, fmt.Errorf("read staged bytes of upload %s: it has multipart parts", u.ID)
	}
	return &stagedStream{ctx: ctx, s: s, rest: slices.Clone(u.Staged)}, nil
}

// stagedStream reads staged objects one after the other, checking each one's size.
type stagedStream struct {
	ctx  context.Context
	s    *Store
	rest []storage.Staged
	cur  io.ReadCloser
	left int64 // bytes still expected from cur
}

// Read reads from the current object, opening the next one when it ends.
func (r *stagedStream) Read(p []byte) (int, error) {
	for {
		if r.cur == nil {
			if len(r.rest) == 0 {
				return 0, io.EOF
			}
			x := r.rest[0]
			r.rest = r.rest[1:]
			out, err := r.s.client.GetObject(r.ctx, &s3.GetObjectInput{Bucket: &r.s.bucket, Key: &x.Key})
			if err != nil {
				return 0, fmt.Errorf("read staged %s: %w", x.Key, mapErr(err))
			}
			if n := aws.ToInt64(out.ContentLength); n != x.Size {
				out.Body.Close()
				return 0, fmt.Errorf("staged %s holds %d bytes, session says %d", x.Key, n, x.Size)
			}
			r.cur, r.left = out.Body, x.Size
		}
		n, err := r.cur.Read(p[:min(int64(len(p)), r.left)])
		r.left -= int64(n)
		if r.left == 0 {
			r.cur.Close()
			r.cur = nil
			if n > 0 || len(p) == 0 {
				return n, nil
			}
			continue
		}
		if errors.Is(err, io.EOF) {
			return n, fmt.Errorf("staged object ended %d bytes early: %w", r.left, io.ErrUnexpectedEOF)
		}
		if n > 0 || err != nil {
			return n, err
		}
	}
}

// Close closes the object being read.
func (r *stagedStream) Close() error {
	if r.cur != nil {
		err := r.cur.Close()
		r.cur = nil
		return err
	}
	return nil
}
