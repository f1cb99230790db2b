package s3store

import (
	"context"
	"errors"
	"fmt"
	"io"
	"slices"
	"sync"
	"time"

	"github.com/aws/aws-sdk-go-v2/aws"
	"github.com/aws/aws-sdk-go-v2/service/s3"
	"github.com/aws/aws-sdk-go-v2/service/s3/types"
	digest "github.com/opencontainers/go-digest"

	"github.com/airlock-registry/airlock/shared/storage"
)

// stageReaders bounds the staged objects read back in parallel for one part.
const stageReaders = 8

// Coalescing of tiny chunks: once coalesceAfter objects are staged, a chunk
// that fits with the last staged object in coalesceLimit bytes joins it.
// This bounds the staged entries of a session (DynamoDB items are ≤ 400 KB)
// to about coalesceAfter + 2·MinPartSize/coalesceLimit = 176.
const (
	coalesceAfter = 16
	coalesceLimit = 64 << 10
)

// cleanupTimeout bounds best-effort cleanup run after the caller's context ended.
const cleanupTimeout = 30 * time.Second

// stageKey names the staged object holding the bytes from offset off. The name
// depends only on committed state, so a retry at the same offset overwrites it;
// the zero padding keeps listings in offset order.
func stageKey(id string, off int64) string {
	return fmt.Sprintf("%sstage-%020d", storage.UploadPrefix(id), off)
}

// dataKey is the object the upload's multipart upload writes (the blob's
// digest is not known when the multipart upload is created).
func dataKey(id string) string { return storage.UploadPrefix(id) + "data" }

// Append writes r's bytes after u.Offset into the upload (see the package
// comment) and returns how many it appended. On error u is left as it was:
// the caller commits u only on success, and a retry at the same offset
// overwrites whatever the failed attempt wrote (same keys, same part numbers).
func (s *Store) Append(ctx context.Context, u *storage.Upload, r io.Reader) (int64, error) {
	if u.ID == "" {
		return 0, errors.New("append: upload has no id")
	}
	w := *u
	w.Parts = slices.Clone(u.Parts)
	w.Staged = slices.Clone(u.Staged)
	bp := s.getBuf()
	defer s.bufs.Put(bp)
	buf := *bp

	created := "" // multipart upload created by this call, aborted if the call fails
	fail := func(err error) (int64, error) {
		if created != "" {
			cctx, cancel := cleanupContext(ctx)
			defer cancel()
			_ = s.abortMultipart(cctx, w.ID, created) // else the bucket's lifecycle rule does it
		}
		return 0, fmt.Errorf("append to upload %s at %d: %w", u.ID, u.Offset, err)
	}
	var appended int64
	for {
		staged := stagedSize(w.Staged)
		// New bytes go after room left for the staged bytes, which are read
		// back only if a part is made.
		m, err := io.ReadFull(r, buf[staged:s.partSize])
		ended := errors.Is(err, io.EOF) || errors.Is(err, io.ErrUnexpectedEOF)
		if err != nil && !ended {
			return fail(fmt.Errorf("read body: %w", err))
		}
		n := int64(m)
		if ended && staged+n < storage.MinPartSize {
			if n > 0 {
				if err := s.stage(ctx, &w, buf[:staged+n], n); err != nil {
					return fail(err)
				}
				appended += n
			}
			break
		}
		if err := s.readStaged(ctx, w.Staged, buf[:staged]); err != nil {
			return fail(err)
		}
		if w.MultipartID == "" {
			id, err := s.createMultipart(ctx, w.ID)
			if err != nil {
				return fail(err)
			}
			w.MultipartID, created = id, id
		}
		p, err := s.uploadPart(ctx, &w, buf[:staged+n])
		if err != nil {
			return fail(err)
		}
		// The staged objects now in the part stay until Complete or Abort
		// remove the upload's prefix: the caller may still fail to commit
		// this call, and then the session refers to them again.
		w.Parts = append(w.Parts, p)
		w.Staged = nil
		w.Offset += n
		appended += n
		if ended {
			break
		}
	}
	*u = w
	return appended, nil
}

// stage writes the last n bytes of buf (which has room for the staged bytes
// before them) as a staged object. Tiny chunks after many staged objects are
// coalesced with the last staged object instead (read back and written again
// as one object under a new key), which keeps the session item small
// whatever the client's chunk size, at the price of rewriting at most
// coalesceLimit bytes per tiny chunk.
func (s *Store) stage(ctx context.Context, w *storage.Upload, buf []byte, n int64) error {
	end := int64(len(buf))
	k := len(w.Staged)
	if k >= coalesceAfter && w.Staged[k-1].Size+n <= coalesceLimit {
		last := w.Staged[k-1]
		start := end - n - last.Size
		if err := s.readObject(ctx, last.Key, buf[start:end-n]); err != nil {
			return err
		}
		key := fmt.Sprintf("%s-%020d", stageKey(w.ID, w.Offset-last.Size), w.Offset+n)
		if err := s.put(ctx, key, buf[start:end]); err != nil {
			return err
		}
		w.Staged[k-1] = storage.Staged{Key: key, Size: last.Size + n}
	} else {
		key := stageKey(w.ID, w.Offset)
		if err := s.put(ctx, key, buf[end-n:end]); err != nil {
			return err
		}
		w.Staged = append(w.Staged, storage.Staged{Key: key, Size: n})
	}
	w.Offset += n
	return nil
}

// Complete turns the upload's bytes into the blob object for d and removes the
// upload's objects. When the blob exists already with the upload's size it
// only removes them (Abort): so Complete may be retried, also after it succeeded.
func (s *Store) Complete(ctx context.Context, u *storage.Upload, d digest.Digest) error {
	total := stagedSize(u.Staged)
	for _, p := range u.Parts {
		total += p.Size
	}
	if total != u.Offset {
		return fmt.Errorf("complete upload %s: parts and staged objects hold %d bytes, offset is %d", u.ID, total, u.Offset)
	}
	key := storage.BlobKey(d)
	// The blob may exist already: another upload of the same bytes, or this
	// Complete retried after it succeeded (the caller failed afterwards). The
	// caller verified d, so the upload's bytes are not needed: drop them.
	if size, err := s.head(ctx, key); err == nil && size == total {
		if err := s.Abort(ctx, u); err != nil {
			return fmt.Errorf("complete upload %s as %s (exists): %w", u.ID, d, err)
		}
		return nil
	} else if err != nil && !errors.Is(err, storage.ErrNotFound) {
		return fmt.Errorf("complete upload %s as %s: %w", u.ID, d, err)
	}
	var err error
	switch {
	case u.MultipartID != "":
		err = s.completeMultipart(ctx, u, key, total)
	case len(u.Staged) == 1:
		err = s.copyObject(ctx, u.Staged[0].Key, key, total)
	case total > s.partSize:
		err = fmt.Errorf("%d staged bytes without a multipart upload", total)
	default: // a few staged chunks, less than one part in all
		bp := s.getBuf()
		defer s.bufs.Put(bp)
		buf := (*bp)[:total]
		if err = s.readStaged(ctx, u.Staged, buf); err == nil {
			err = s.put(ctx, key, buf)
		}
	}
	if err != nil {
		return fmt.Errorf("complete upload %s as %s: %w", u.ID, d, err)
	}
	// Best effort: the blob is in place; leftovers only cost storage and the
	// purge function's Abort removes them.
	cctx, cancel := cleanupContext(ctx)
	defer cancel()
	_ = s.deletePrefix(cctx, u.ID)
	return nil
}

// cleanupContext outlives ctx's cancellation (cleanup after a failure) but not cleanupTimeout.
func cleanupContext(ctx context.Context) (context.Context, context.CancelFunc) {
	return context.WithTimeout(context.WithoutCancel(ctx), cleanupTimeout)
}

func (s *Store) completeMultipart(ctx context.Context, u *storage.Upload, key string, total int64) error {
	dk := dataKey(u.ID)
	if err := s.finishMultipart(ctx, u); err != nil {
		if !isNoSuchUpload(err) {
			return err
		}
		// A retried Complete: an earlier attempt completed the multipart
		// upload (its reply lost). Only that writes the data key: go on when
		// the object is there with the upload's size.
		if size, herr := s.head(ctx, dk); herr != nil || size != total {
			return err
		}
	}
	return s.copyObject(ctx, dk, key, total)
}

// finishMultipart uploads the staged bytes as the last part and completes
// u's multipart upload into the data key.
func (s *Store) finishMultipart(ctx context.Context, u *storage.Upload) error {
	w := *u
	w.Parts = slices.Clone(u.Parts)
	if staged := stagedSize(u.Staged); staged > 0 {
		bp := s.getBuf()
		defer s.bufs.Put(bp)
		buf := (*bp)[:staged]
		if err := s.readStaged(ctx, u.Staged, buf); err != nil {
			return err
		}
		p, err := s.uploadPart(ctx, &w, buf)
		if err != nil {
			return err
		}
		w.Parts = append(w.Parts, p)
	}
	cparts := make([]types.CompletedPart, len(w.Parts))
	for i, p := range w.Parts {
		cparts[i] = types.CompletedPart{PartNumber: aws.Int32(p.Number), ETag: aws.String(p.ETag)}
	}
	dk := dataKey(u.ID)
	_, err := s.client.CompleteMultipartUpload(ctx, &s3.CompleteMultipartUploadInput{
		Bucket: &s.bucket, Key: &dk, UploadId: &u.MultipartID,
		MultipartUpload: &types.CompletedMultipartUpload{Parts: cparts},
	})
	if err != nil {
		return fmt.Errorf("complete multipart upload: %w", mapErr(err))
	}
	return nil
}

// Abort removes everything the upload wrote: its multipart uploads (the
// session's and any a failed attempt left) and its objects. It is idempotent.
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
	errs = append(errs, s.deletePrefix(ctx, u.ID))
	if err := errors.Join(errs...); err != nil {
		return fmt.Errorf("abort upload %s: %w", u.ID, err)
	}
	return nil
}

// UploadLeftovers lists what the upload id still holds in the bucket: its
// objects ("object <key>") and multipart uploads ("multipart <key> <upload id>").
// It is empty after Abort and after a successful Complete.
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
		out = append(out, "multipart "+dataKey(id)+" "+mid)
	}
	return out, nil
}

func (s *Store) getBuf() *[]byte {
	if bp, ok := s.bufs.Get().(*[]byte); ok {
		return bp
	}
	b := make([]byte, s.partSize)
	return &b
}

func stagedSize(st []storage.Staged) int64 {
	var n int64
	for _, x := range st {
		n += x.Size
	}
	return n
}

// readStaged reads the staged objects, in order, into dst (exactly their total
// size), a few at a time in parallel.
func (s *Store) readStaged(ctx context.Context, st []storage.Staged, dst []byte) error {
	ctx, cancel := context.WithCancel(ctx)
	defer cancel()
	errs := make([]error, len(st))
	sem := make(chan struct{}, stageReaders)
	var wg sync.WaitGroup
	var off int64
	for i, x := range st {
		part := dst[off : off+x.Size]
		off += x.Size
		wg.Add(1)
		sem <- struct{}{}
		go func() {
			defer func() { <-sem; wg.Done() }()
			if errs[i] = s.readObject(ctx, x.Key, part); errs[i] != nil {
				cancel()
			}
		}()
	}
	wg.Wait()
	return errors.Join(errs...)
}

// readObject reads object key, which must be exactly len(dst) bytes, into dst.
func (s *Store) readObject(ctx context.Context, key string, dst []byte) error {
	out, err := s.client.GetObject(ctx, &s3.GetObjectInput{Bucket: &s.bucket, Key: &key})
	if err != nil {
		return fmt.Errorf("read staged %s: %w", key, mapErr(err))
	}
	defer out.Body.Close()
	if n := aws.ToInt64(out.ContentLength); n != int64(len(dst)) {
		return fmt.Errorf("staged %s holds %d bytes, session says %d", key, n, len(dst))
	}
	if _, err := io.ReadFull(out.Body, dst); err != nil {
		return fmt.Errorf("read staged %s: %w", key, err)
	}
	return nil
}

func (s *Store) createMultipart(ctx context.Context, id string) (string, error) {
	dk := dataKey(id)
	out, err := s.client.CreateMultipartUpload(ctx, &s3.CreateMultipartUploadInput{Bucket: &s.bucket, Key: &dk})
	if err != nil {
		return "", fmt.Errorf("create multipart upload: %w", err)
	}
	return aws.ToString(out.UploadId), nil
}

// uploadPart sends b as part len(u.Parts)+1 of u's multipart upload.
func (s *Store) uploadPart(ctx context.Context, u *storage.Upload, b []byte) (storage.Part, error) {
	num := int32(len(u.Parts) + 1)
	dk := dataKey(u.ID)
	out, err := s.client.UploadPart(ctx, &s3.UploadPartInput{
		Bucket: &s.bucket, Key: &dk, UploadId: &u.MultipartID, PartNumber: aws.Int32(num),
		Body: bytesReader(b), ContentLength: aws.Int64(int64(len(b))),
	})
	if err != nil {
		if isNoSuchUpload(err) {
			return storage.Part{}, fmt.Errorf("upload part %d: multipart upload gone: %w: %w", num, storage.ErrNotFound, err)
		}
		return storage.Part{}, fmt.Errorf("upload part %d: %w", num, err)
	}
	return storage.Part{Number: num, ETag: aws.ToString(out.ETag), Size: int64(len(b))}, nil
}

func (s *Store) abortMultipart(ctx context.Context, id, mid string) error {
	dk := dataKey(id)
	_, err := s.client.AbortMultipartUpload(ctx, &s3.AbortMultipartUploadInput{Bucket: &s.bucket, Key: &dk, UploadId: &mid})
	if err != nil && !isNoSuchUpload(err) {
		return fmt.Errorf("abort multipart upload %s: %w", mid, err)
	}
	return nil
}

// listMultipart returns the ids of the multipart uploads open on the upload's data key.
func (s *Store) listMultipart(ctx context.Context, id string) ([]string, error) {
	dk := dataKey(id)
	var ids []string
	in := &s3.ListMultipartUploadsInput{Bucket: &s.bucket, Prefix: &dk}
	for {
		out, err := s.client.ListMultipartUploads(ctx, in)
		if err != nil {
			return nil, fmt.Errorf("list multipart uploads: %w", err)
		}
		for _, m := range out.Uploads {
			if aws.ToString(m.Key) == dk {
				ids = append(ids, aws.ToString(m.UploadId))
			}
		}
		if !aws.ToBool(out.IsTruncated) {
			return ids, nil
		}
		in.KeyMarker, in.UploadIdMarker = out.NextKeyMarker, out.NextUploadIdMarker
	}
}

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

// deletePrefix removes every object under the upload's prefix.
func (s *Store) deletePrefix(ctx context.Context, id string) error {
	keys, err := s.listPrefix(ctx, id)
	if err != nil {
		return err
	}
	for batch := range slices.Chunk(keys, 1000) {
		objs := make([]types.ObjectIdentifier, len(batch))
		for i, k := range batch {
			objs[i] = types.ObjectIdentifier{Key: aws.String(k)}
		}
		out, err := s.client.DeleteObjects(ctx, &s3.DeleteObjectsInput{
			Bucket: &s.bucket, Delete: &types.Delete{Objects: objs, Quiet: aws.Bool(true)},
		})
		if err != nil {
			return fmt.Errorf("delete objects of upload %s: %w", id, err)
		}
		if len(out.Errors) > 0 {
			e := out.Errors[0]
			return fmt.Errorf("delete %s: %s %s (and %d more)", aws.ToString(e.Key), aws.ToString(e.Code), aws.ToString(e.Message), len(out.Errors)-1)
		}
	}
	return nil
}
