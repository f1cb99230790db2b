package s3store

import (
	"context"
	"errors"
	"fmt"
	"io"
	"slices"
	"sync"

	"github.com/aws/aws-sdk-go-v2/aws"
	"github.com/aws/aws-sdk-go-v2/service/s3"

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

// stageKey names the staged object holding the bytes from offset off. The name
// depends only on committed state, so a retry at the same offset overwrites it;
// the zero padding keeps listings in offset order.
func stageKey(id string, off int64) string {
	return fmt.Sprintf("%sstage-%020d", storage.UploadPrefix(id), off)
}

// Append writes r's bytes after u.Offset into the upload (see the package
// comment) and returns how many it appended. On error u is left as it was:
// the caller commits u only on success, and a retry at the same offset
// overwrites whatever the failed attempt wrote (same keys, same part numbers).
func (s *Store) Append(ctx context.Context, u *storage.Upload, r io.Reader) (int64, error) {
	return s.append(ctx, u, r, false)
}

// AppendLast appends the upload's last bytes: with a multipart upload (or
// enough bytes to start one) nothing is staged and the last part may be
// short; without, short bytes are staged as by Append.
func (s *Store) AppendLast(ctx context.Context, u *storage.Upload, r io.Reader) (int64, error) {
	return s.append(ctx, u, r, true)
}

// append reads r into part buffers. A full buffer is held back until the
// next one shows whether more than a short tail follows: a tail under
// storage.MinPartSize joins the held buffer as one part, so a streamed body
// stages nothing. Held parts are uploaded while the next buffer fills (one
// upload in flight: at most three buffers per call). The staged bytes of the
// session are read back into the front of the first buffer only when that
// buffer becomes a part.
func (s *Store) append(ctx context.Context, u *storage.Upload, r io.Reader, last bool) (int64, error) {
	if u.ID == "" {
		return 0, errors.New("append: upload has no id")
	}
	w := *u
	w.Parts = slices.Clone(u.Parts)
	w.Staged = slices.Clone(u.Staged)
	ctx, cancel := context.WithCancel(ctx)
	defer cancel()
	pw := &partWriter{s: s, ctx: ctx, w: &w}
	fail := func(err error) (int64, error) {
		cancel()
		pw.wait()
		if pw.created != "" {
			cctx, ccancel := cleanupContext(ctx)
			defer ccancel()
			_ = s.abortMultipart(cctx, w.ID, pw.created) // else the bucket's lifecycle rule does it
		}
		return 0, fmt.Errorf("append to upload %s at %d: %w", u.ID, u.Offset, err)
	}

	staged := stagedSize(w.Staged)
	var held *[]byte // a full buffer not sent yet
	var heldLen int
	var appended int64
	first := true
	for {
		bp := s.getBuf()
		buf := *bp
		lead := 0
		if first {
			lead = int(staged) // room for the staged bytes, read back only if a part is made
		}
		m, err := io.ReadFull(r, buf[lead:])
		ended := errors.Is(err, io.EOF) || errors.Is(err, io.ErrUnexpectedEOF)
		if err != nil && !ended {
			s.putBuf(bp)
			if held != nil {
				s.putBuf(held)
			}
			return fail(fmt.Errorf("read body: %w", err))
		}
		err = nil
		appended += int64(m)
		n := lead + m
		if first && n > lead && staged > 0 && (!ended || n >= storage.MinPartSize || last && w.MultipartID != "") {
			// This buffer becomes (part of) a part: fetch the staged bytes.
			if err := s.readStaged(ctx, w.Staged, buf[:lead]); err != nil {
				s.putBuf(bp)
				return fail(err)
			}
			w.Staged = nil
		}
		if !ended { // full: hold it, send the one held before
			if held != nil {
				if err := pw.send(held, heldLen, nil, 0); err != nil {
					s.putBuf(bp)
					return fail(err)
				}
			}
			held, heldLen, first = bp, n, false
			continue
		}
		switch {
		case held != nil && n == 0:
			s.putBuf(bp)
			err = pw.send(held, heldLen, nil, 0)
		case held != nil && n < storage.MinPartSize:
			err = pw.send(held, heldLen, bp, n) // the short tail joins the held part
		case held != nil:
			if err = pw.send(held, heldLen, nil, 0); err == nil {
				err = pw.send(bp, n, nil, 0)
			} else {
				s.putBuf(bp)
			}
		case n >= storage.MinPartSize || last && w.MultipartID != "" && n > 0:
			if staged > 0 && n == lead { // nothing new: the staged bytes alone make the last part
				if err = s.readStaged(ctx, w.Staged, buf[:lead]); err == nil {
					w.Staged = nil
				}
			}
			if err == nil {
				err = pw.send(bp, n, nil, 0)
			} else {
				s.putBuf(bp)
			}
		default: // a short tail and no part: stage it
			if m > 0 {
				err = s.stage(ctx, &w, buf[:n], int64(m), u.Offset)
			}
			s.putBuf(bp)
		}
		if err != nil {
			return fail(err)
		}
		break
	}
	if err := pw.wait(); err != nil {
		return fail(err)
	}
	w.Offset = u.Offset + appended
	*u = w
	return appended, nil
}

// partWriter uploads the parts of one append, one at a time in the
// background, filling in their ETags in order.
type partWriter struct {
	s       *Store
	ctx     context.Context
	w       *storage.Upload
	created string // multipart upload created by this call, aborted if it fails
	pending []chan partResult
}

type partResult struct {
	idx  int
	etag string
	err  error
}

// send waits for the previous upload, then uploads a[:an] (followed by
// b[:bn] when b is set) as the next part in the background; both buffers
// return to the pool when it is done.
func (p *partWriter) send(a *[]byte, an int, b *[]byte, bn int) error {
	release := func() {
		p.s.putBuf(a)
		if b != nil {
			p.s.putBuf(b)
		}
	}
	for len(p.pending) >= p.s.inflight {
		if err := p.waitOne(); err != nil {
			release()
			return err
		}
	}
	if p.w.MultipartID == "" {
		id, err := p.s.createMultipart(p.ctx, p.w.ID)
		if err != nil {
			release()
			return err
		}
		p.w.MultipartID, p.created = id, id
	}
	segs := [][]byte{(*a)[:an]}
	if b != nil && bn > 0 {
		segs = append(segs, (*b)[:bn])
	}
	num := int32(len(p.w.Parts) + 1)
	p.w.Parts = append(p.w.Parts, storage.Part{Number: num, Size: int64(an + bn)})
	ch := make(chan partResult, 1)
	p.pending = append(p.pending, ch)
	go func(idx int, mid, id string) {
		defer release()
		etag, err := p.s.uploadPart(p.ctx, id, mid, num, segs)
		ch <- partResult{idx: idx, etag: etag, err: err}
	}(len(p.w.Parts)-1, p.w.MultipartID, p.w.ID)
	return nil
}

// wait waits for every upload in flight and records their ETags.
func (p *partWriter) wait() error {
	var errs []error
	for len(p.pending) > 0 {
		errs = append(errs, p.waitOne())
	}
	return errors.Join(errs...)
}

// waitOne waits for the oldest upload in flight and records its ETag.
func (p *partWriter) waitOne() error {
	res := <-p.pending[0]
	p.pending = p.pending[1:]
	if res.err != nil {
		return res.err
	}
	p.w.Parts[res.idx].ETag = res.etag
	return nil
}

// stage writes the last n bytes of buf (which has room for the staged bytes
// before them) as a staged object for the bytes from offset off. Tiny chunks
// after many staged objects are coalesced with the last staged object instead
// (read back and written again as one object under a new key), which keeps
// the session item small whatever the client's chunk size, at the price of
// rewriting at most coalesceLimit bytes per tiny chunk.
func (s *Store) stage(ctx context.Context, w *storage.Upload, buf []byte, n, off int64) error {
	end := int64(len(buf))
	k := len(w.Staged)
	if k >= coalesceAfter && w.Staged[k-1].Size+n <= coalesceLimit {
		last := w.Staged[k-1]
		start := end - n - last.Size
		if err := s.readObject(ctx, last.Key, buf[start:end-n]); err != nil {
			return err
		}
		key := fmt.Sprintf("%s-%020d", stageKey(w.ID, off-last.Size), off+n)
		if err := s.put(ctx, key, buf[start:end]); err != nil {
			return err
		}
		w.Staged[k-1] = storage.Staged{Key: key, Size: last.Size + n}
		return nil
	}
	key := stageKey(w.ID, off)
	if err := s.put(ctx, key, buf[end-n:end]); err != nil {
		return err
	}
	w.Staged = append(w.Staged, storage.Staged{Key: key, Size: n})
	return nil
}

func (s *Store) getBuf() *[]byte {
	if bp, ok := s.bufs.Get().(*[]byte); ok {
		return bp
	}
	b := make([]byte, s.partSize)
	return &b
}

func (s *Store) putBuf(bp *[]byte) { s.bufs.Put(bp) }

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
	key := storage.UploadKey(id)
	out, err := s.client.CreateMultipartUpload(ctx, &s3.CreateMultipartUploadInput{Bucket: &s.bucket, Key: &key})
	if err != nil {
		return "", fmt.Errorf("create multipart upload: %w", err)
	}
	return aws.ToString(out.UploadId), nil
}

// uploadPart sends the concatenated segments as part num of multipart upload
// mid and returns its ETag. The body is seekable (the SDK rewinds it on
// retries); its payload is not signed (unsignedPayload).
func (s *Store) uploadPart(ctx context.Context, id, mid string, num int32, segs [][]byte) (string, error) {
	key := storage.UploadKey(id)
	body := newSegments(segs)
	out, err := s.client.UploadPart(ctx, &s3.UploadPartInput{
		Bucket: &s.bucket, Key: &key, UploadId: &mid, PartNumber: aws.Int32(num),
		Body: body, ContentLength: aws.Int64(body.Size()),
	}, unsignedPayload)
	if err != nil {
		if isNoSuchUpload(err) {
			return "", fmt.Errorf("upload part %d: multipart upload gone: %w: %w", num, storage.ErrNotFound, err)
		}
		return "", fmt.Errorf("upload part %d: %w", num, err)
	}
	return aws.ToString(out.ETag), nil
}

// newSegments returns a seekable reader over the concatenation of segs.
func newSegments(segs [][]byte) *segments {
	var n int64
	for _, s := range segs {
		n += int64(len(s))
	}
	return &segments{segs: segs, size: n}
}

// segments reads byte slices laid end to end. It is seekable (the SDK
// rewinds it on retries) and writes itself
// to a writer without copying (io.WriterTo), as bytes.Reader does.
type segments struct {
	segs [][]byte
	size int64
	off  int64
}

// Size returns the total length.
func (r *segments) Size() int64 { return r.size }

// Read implements io.Reader.
func (r *segments) Read(p []byte) (int, error) {
	if r.off >= r.size {
		return 0, io.EOF
	}
	n := 0
	for n < len(p) && r.off < r.size {
		seg, at := r.at(r.off)
		c := copy(p[n:], seg[at:])
		n += c
		r.off += int64(c)
	}
	return n, nil
}

// WriteTo implements io.WriterTo.
func (r *segments) WriteTo(w io.Writer) (int64, error) {
	var total int64
	for r.off < r.size {
		seg, at := r.at(r.off)
		n, err := w.Write(seg[at:])
		total += int64(n)
		r.off += int64(n)
		if err != nil {
			return total, err
		}
	}
	return total, nil
}

// Seek implements io.Seeker.
func (r *segments) Seek(offset int64, whence int) (int64, error) {
	switch whence {
	case io.SeekStart:
	case io.SeekCurrent:
		offset += r.off
	case io.SeekEnd:
		offset += r.size
	default:
		return 0, errors.New("segments: invalid whence")
	}
	if offset < 0 {
		return 0, errors.New("segments: negative position")
	}
	r.off = offset
	return offset, nil
}

// at returns the segment holding offset off and off's index in it.
func (r *segments) at(off int64) ([]byte, int64) {
	for _, s := range r.segs {
		if off < int64(len(s)) {
			return s, off
		}
		off -= int64(len(s))
	}
	return nil, 0
}
