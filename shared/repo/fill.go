package repo

import (
	"bytes"
	"context"
	"crypto/rand"
	_ "crypto/sha256" // register the digest algorithms
	_ "crypto/sha512"
	"encoding"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"hash"
	"io"
	"time"

	digest "github.com/opencontainers/go-digest"

	"github.com/airlock-registry/airlock/shared/storage"
	"github.com/airlock-registry/airlock/shared/upstream"
)

// FillJob is a blob fill handed to the proxyfetch function: the upload
// session (UploadID) holds what was fetched so far and the hash state, so the
// fill resumes where it stopped instead of fetching the bytes again.
type FillJob struct {
	Repo     string        `json:"repo"`
	Image    string        `json:"image"`
	Digest   digest.Digest `json:"digest"`
	UploadID string        `json:"upload"`
	// Owner is the fill lease's value, renewed by the function that resumes.
	Owner string `json:"owner"`
	// Size is the blob's length as the remote announced it (0: unknown).
	Size int64 `json:"size,omitempty"`
}

func newID() string {
	var b [16]byte
	_, _ = rand.Read(b[:])
	return hex.EncodeToString(b[:])
}

// maxFillSize bounds a blob fetched without a Content-Length.
const maxFillSize = 64 << 30

// fillKey is the key of a blob's fill lease and pending marker: per proxy,
// so a request only ever waits for (and links) bytes its own remote sent.
func (p *Proxy) fillKey(d digest.Digest) string { return p.cfg.Name + "/" + d.String() }

// errLeaseGone: the fill this request waited for ended without a blob.
var errLeaseGone = errors.New("the fill lease was released without a blob")

// Blob serves a blob GET: a cached blob at once (one read); a blob whose
// bytes are stored already (another image, another repository) is linked
// once the remote confirms it has it (a HEAD: no bytes move); otherwise
// exactly one request across all instances fills the cache from the remote
// (the fill lease) while the others wait for its record, all within the
// fill budget. A fill past the budget is handed to proxyfetch and the client
// gets the onTimeout answer.
func (p *Proxy) Blob(ctx context.Context, image string, d digest.Digest) (storage.Blob, error) {
	img := p.cache.Image(image)
	b, err := p.meta.StatBlob(ctx, img, d)
	if err == nil || !notFound(err) {
		return b, err
	}
	if gb, err := p.meta.GetBlob(ctx, d); err == nil {
		if err := p.call(ctx, func(ctx context.Context) error { _, err := p.up.HeadBlob(ctx, image, d); return err }); err != nil {
			return b, p.upErr(ctx, err, image, d.String(), "blob")
		}
		linked, err := p.linkRecord(ctx, img, gb)
		if err != nil {
			return b, err
		}
		if linked {
			p.remember(ctx, d)
			return gb, nil
		}
		// purged between the read and the link: fill it
	} else if !notFound(err) {
		return b, fmt.Errorf("get blob %s: %w", d, err)
	}
	if p.negative(ctx, image, d.String()) {
		return b, p.negativeErr(image, d.String())
	}
	deadline := p.now().Add(p.cfg.FillBudget())
	if dl, ok := ctx.Deadline(); ok && (p.deps.Proxy.FillUntilDeadline || dl.Add(-2*time.Second).Before(deadline)) {
		deadline = dl.Add(-2 * time.Second) // leave time to answer
	}
	owner := newID()
	for {
		err := p.meta.AcquireMarker(ctx, storage.Marker{Group: groupFill, Key: p.fillKey(d), Value: owner, Until: p.now().Add(p.deps.Proxy.LeaseTTL)})
		if err == nil {
			// The fill before this lease may have just finished.
			if gb, err := p.meta.GetBlob(ctx, d); err == nil {
				if linked, err := p.linkRecord(ctx, img, gb); err != nil || linked {
					_ = p.meta.ReleaseMarker(context.WithoutCancel(ctx), groupFill, p.fillKey(d), owner)
					return gb, err
				}
			}
			u := storage.Upload{ID: newID(), Image: img, HashAlgorithm: string(d.Algorithm()), Created: p.now(), ExpiresAt: p.now().Add(pendingTTL)}
			return p.stream(ctx, &u, image, d, owner, deadline, 0, true)
		}
		if !errors.Is(err, storage.ErrConflict) {
			return b, fmt.Errorf("take the fill lease of %s: %w", d, err)
		}
		b, err = p.waitFill(ctx, img, d, deadline)
		if !errors.Is(err, errLeaseGone) {
			return b, err
		}
	}
}

// linkRecord links an existing record into img; linked is false when the
// purge deleted the record after it was read (LinkBlob touches the record
// and fails when it is gone): the caller fills the blob instead.
func (p *Proxy) linkRecord(ctx context.Context, img storage.Image, b storage.Blob) (bool, error) {
	err := p.meta.LinkBlob(ctx, img, b)
	if notFound(err) {
		return false, nil
	}
	if err != nil {
		return false, fmt.Errorf("link blob %s: %w", b.Digest, err)
	}
	return true, nil
}

// waitFill polls for the blob record another request is filling.
func (p *Proxy) waitFill(ctx context.Context, img storage.Image, d digest.Digest, deadline time.Time) (storage.Blob, error) {
	for i := 0; ; i++ {
		b, err := p.meta.GetBlob(ctx, d)
		if err == nil {
			linked, lerr := p.linkRecord(ctx, img, b)
			if lerr != nil || linked {
				return b, lerr
			}
			err = storage.ErrNotFound // purged meanwhile: wait for (or take over) a new fill
		}
		if !notFound(err) {
			return b, fmt.Errorf("get blob %s: %w", d, err)
		}
		if i%4 == 3 { // the filler may have failed: then take over
			if _, err := p.meta.GetMarker(ctx, groupFill, p.fillKey(d)); notFound(err) {
				return b, errLeaseGone
			}
		}
		if !p.now().Add(p.deps.Proxy.Poll).Before(deadline) {
			return b, p.timeoutAnswer(ctx, img.Name, d)
		}
		select {
		case <-ctx.Done():
			return b, ctx.Err()
		case <-time.After(p.deps.Proxy.Poll):
		}
	}
}

// timeoutAnswer is the onTimeout answer for a blob still being filled.
func (p *Proxy) timeoutAnswer(ctx context.Context, image string, d digest.Digest) error {
	if p.cfg.FillOnTimeout() == "redirect" {
		var u string
		err := p.call(ctx, func(ctx context.Context) (err error) { u, err = p.up.BlobURL(ctx, image, d); return err })
		if err == nil {
			return &RedirectError{URL: u}
		}
		p.deps.Logger.WarnContext(ctx, "no upstream URL to redirect to", "repo", p.cfg.Name, "digest", d, "err", err)
	}
	return &UnavailableError{
		Msg:        fmt.Sprintf("blob %s is being fetched from upstream %s into the cache; retry in %s", d, p.up.Remote(), retryAfter),
		RetryAfter: retryAfter,
	}
}

// stopReader passes the remote's body through until its context ends, then
// reports a clean EOF (timedOut set), so the bytes read so far are kept.
type stopReader struct {
	r        io.Reader
	ctx      context.Context
	timedOut bool
	err      error // a remote read failure (not the deadline)
}

func (s *stopReader) Read(b []byte) (int, error) {
	n, err := s.r.Read(b)
	if err != nil && err != io.EOF {
		if s.ctx.Err() != nil {
			s.timedOut = true
			return n, io.EOF
		}
		s.err = err
	}
	return n, err
}

// hashOf restores (or starts) the hash of an upload.
func hashOf(u *storage.Upload) (hash.Hash, error) {
	h := digest.Algorithm(u.HashAlgorithm).Hash()
	if len(u.HashState) > 0 {
		if err := h.(encoding.BinaryUnmarshaler).UnmarshalBinary(u.HashState); err != nil {
			return nil, fmt.Errorf("restore hash state of %s: %w", u.ID, err)
		}
	}
	return h, nil
}

// stream fetches the blob's bytes after u.Offset from the remote into u
// (bounded memory: the Blobs store's parts), verifying size and digest. It
// holds the fill lease owner; the lease is released when the fill ends,
// kept when the fill is handed off (deadline reached first).
func (p *Proxy) stream(ctx context.Context, u *storage.Upload, image string, d digest.Digest, owner string, deadline time.Time, size int64, handoff bool) (b storage.Blob, err error) {
	handedOff := false
	defer func() {
		if !handedOff {
			if rerr := p.meta.ReleaseMarker(context.WithoutCancel(ctx), groupFill, p.fillKey(d), owner); rerr != nil {
				p.deps.Logger.WarnContext(ctx, "release the fill lease", "digest", d, "err", rerr)
			}
		}
	}()
	img := u.Image
	h, err := hashOf(u)
	if err != nil {
		return b, err
	}
	fctx, cancel := context.WithDeadline(ctx, deadline)
	defer cancel()
	var ub upstream.Blob
	st, err := p.blockState(ctx)
	if err == nil {
		// The remote must start answering within UpstreamTimeout (a hung
		// remote is down, not slow); the body then has the fill's budget.
		rctx, cancelReq := context.WithCancel(fctx)
		defer cancelReq()
		timer := time.AfterFunc(p.deps.Proxy.UpstreamTimeout, cancelReq)
		ub, err = p.open(rctx, image, d, u.Offset, size)
		if !timer.Stop() && err != nil && fctx.Err() == nil {
			err = &upstream.Error{Kind: upstream.Unavailable, Remote: p.up.Remote(), Err: errors.New("timed out")}
		}
		p.observe(ctx, st, err)
	}
	if err != nil {
		if fctx.Err() != nil && ctx.Err() == nil && handoff {
			handedOff = true
			return b, p.handoff(ctx, u, image, d, owner, h, size)
		}
		return b, p.upErr(ctx, err, image, d.String(), "blob")
	}
	defer ub.Body.Close()
	body := io.Reader(ub.Body)
	if skip := u.Offset - ub.Offset; skip > 0 { // the remote ignored the Range
		if _, err := io.CopyN(io.Discard, body, skip); err != nil {
			return b, p.upErr(ctx, &upstream.Error{Kind: upstream.Unavailable, Remote: p.up.Remote(), Err: err}, image, d.String(), "blob")
		}
		if ub.Size >= 0 {
			ub.Size -= skip
		}
	}
	want := int64(-1)
	if ub.Size >= 0 {
		want = u.Offset + ub.Size
	}
	if want < 0 { // no Content-Length: bound what a hostile remote can make us store
		body = io.LimitReader(body, maxFillSize+1-u.Offset)
	}
	sr := &stopReader{r: body, ctx: fctx}
	abort := func() {
		if aerr := p.cache.blobs.Abort(context.WithoutCancel(ctx), u); aerr != nil {
			p.deps.Logger.WarnContext(ctx, "abort a failed fill", "digest", d, "err", aerr)
		}
		_ = p.meta.DeleteUpload(context.WithoutCancel(ctx), u.ID) // a parked fill's session (idempotent)
	}
	if u.Offset == 0 && want >= 0 && want <= storage.MinPartSize {
		return p.fillSmall(ctx, img, d, sr, want, handoff, func() error { handedOff = true; return p.handoff(ctx, u, image, d, owner, h, want) })
	}
	if _, err := p.cache.blobs.Append(ctx, u, io.TeeReader(sr, h)); err != nil {
		abort()
		if sr.err != nil {
			return b, p.upErr(ctx, &upstream.Error{Kind: upstream.Unavailable, Remote: p.up.Remote(), Err: sr.err}, image, d.String(), "blob")
		}
		return b, fmt.Errorf("fill blob %s: %w", d, err)
	}
	if sr.timedOut {
		if handoff {
			handedOff = true
			return b, p.handoff(ctx, u, image, d, owner, h, want)
		}
		if err := p.park(ctx, u, image, d, owner, h, want); err != nil {
			return b, err
		}
		return b, p.timeoutAnswer(ctx, image, d)
	}
	if want < 0 && u.Offset > maxFillSize {
		abort()
		return b, &BadUpstreamError{Msg: fmt.Sprintf("upstream %s sent more than %d bytes for blob %s without announcing a length; nothing was cached", p.up.Remote(), int64(maxFillSize), d)}
	}
	if want >= 0 && u.Offset != want {
		abort()
		return b, &BadUpstreamError{Msg: fmt.Sprintf("upstream %s sent %d bytes of blob %s, announced %d; nothing was cached", p.up.Remote(), u.Offset, d, want)}
	}
	if got := digest.NewDigest(d.Algorithm(), h); got != d {
		abort()
		return b, &BadUpstreamError{Msg: fmt.Sprintf("upstream %s sent bytes with digest %s for blob %s; nothing was cached", p.up.Remote(), got, d)}
	}
	key, err := p.cache.blobs.Complete(ctx, u, d)
	if err != nil {
		return b, fmt.Errorf("complete blob %s: %w", d, err)
	}
	b, err = p.cache.RecordAndLink(ctx, img, storage.Blob{Digest: d, Size: u.Offset, Key: key, Created: p.now()})
	if err != nil {
		return b, err
	}
	p.remember(ctx, d)
	p.finished(ctx, u.ID, d, !handoff)
	return b, nil
}

// fillSmall fills a blob of known size up to one part: read, verify, one PutObject.
func (p *Proxy) fillSmall(ctx context.Context, img storage.Image, d digest.Digest, sr *stopReader, size int64, handoff bool, handOff func() error) (storage.Blob, error) {
	var buf bytes.Buffer
	_, err := io.Copy(&buf, io.LimitReader(sr, size+1))
	switch {
	case sr.timedOut && handoff:
		return storage.Blob{}, handOff()
	case sr.timedOut:
		return storage.Blob{}, p.timeoutAnswer(ctx, img.Name, d)
	case sr.err != nil || err != nil:
		if err == nil {
			err = sr.err
		}
		return storage.Blob{}, p.upErr(ctx, &upstream.Error{Kind: upstream.Unavailable, Remote: p.up.Remote(), Err: err}, img.Name, d.String(), "blob")
	case int64(buf.Len()) != size:
		return storage.Blob{}, &BadUpstreamError{Msg: fmt.Sprintf("upstream %s sent %d bytes of blob %s, announced %d; nothing was cached", p.up.Remote(), buf.Len(), d, size)}
	}
	if got := d.Algorithm().FromBytes(buf.Bytes()); got != d {
		return storage.Blob{}, &BadUpstreamError{Msg: fmt.Sprintf("upstream %s sent bytes with digest %s for blob %s; nothing was cached", p.up.Remote(), got, d)}
	}
	key, err := p.cache.blobs.PutSmall(ctx, d, buf.Bytes())
	if err != nil {
		return storage.Blob{}, fmt.Errorf("store blob %s: %w", d, err)
	}
	b, err := p.cache.RecordAndLink(ctx, img, storage.Blob{Digest: d, Size: size, Key: key, Created: p.now()})
	if err == nil {
		p.remember(ctx, d)
		p.finished(ctx, "", d, !handoff)
	}
	return b, err
}

// finished removes the bookkeeping of a completed parked fill (its session
// and pending marker); a fill that was never parked has none.
func (p *Proxy) finished(ctx context.Context, uploadID string, d digest.Digest, parked bool) {
	if !parked {
		return
	}
	ctx = context.WithoutCancel(ctx)
	if uploadID != "" {
		_ = p.meta.DeleteUpload(ctx, uploadID)
	}
	_ = p.meta.DeleteMarker(ctx, groupPending, p.fillKey(d))
}

// park saves the fill's state (session and pending job) for a later resume.
func (p *Proxy) park(ctx context.Context, u *storage.Upload, image string, d digest.Digest, owner string, h hash.Hash, size int64) error {
	ctx = context.WithoutCancel(ctx)
	st, err := h.(encoding.BinaryMarshaler).MarshalBinary()
	if err != nil {
		return fmt.Errorf("save hash state: %w", err)
	}
	u.HashState = st
	u.ExpiresAt = p.now().Add(pendingTTL)
	if _, gerr := p.meta.GetUpload(ctx, u.ID); notFound(gerr) {
		err = p.meta.CreateUpload(ctx, *u)
	} else {
		u.Lease = ""
		err = p.meta.CommitUploadAt(ctx, *u, u.Offset)
		if errors.Is(err, storage.ErrConflict) { // offset moved: overwrite with this state
			err = p.meta.CreateUpload(ctx, *u)
		}
	}
	if err != nil {
		return fmt.Errorf("save the fill of %s: %w", d, err)
	}
	job := FillJob{Repo: p.cfg.Name, Image: image, Digest: d, UploadID: u.ID, Owner: owner, Size: max(size, 0)}
	doc, _ := json.Marshal(job)
	if err := p.meta.PutMarker(ctx, storage.Marker{Group: groupPending, Key: p.fillKey(d), Value: string(doc), Until: p.now().Add(pendingTTL)}); err != nil {
		return fmt.Errorf("record the pending fill of %s: %w", d, err)
	}
	p.deps.Logger.InfoContext(ctx, "fill parked", "repo", p.cfg.Name, "image", image, "digest", d, "offset", u.Offset)
	return nil
}

// handoff parks the fill and hands it to proxyfetch; the client gets the
// onTimeout answer.
func (p *Proxy) handoff(ctx context.Context, u *storage.Upload, image string, d digest.Digest, owner string, h hash.Hash, size int64) error {
	if err := p.park(ctx, u, image, d, owner, h, size); err != nil {
		return err
	}
	job := FillJob{Repo: p.cfg.Name, Image: image, Digest: d, UploadID: u.ID, Owner: owner, Size: max(size, 0)}
	if hf := p.deps.Proxy.Handoff; hf != nil {
		if err := hf(context.WithoutCancel(ctx), job); err != nil {
			p.deps.Logger.ErrorContext(ctx, "hand the fill to proxyfetch (the scheduled retry will resume it)", "digest", d, "err", err)
		}
	}
	return p.timeoutAnswer(ctx, image, d)
}

// Resume continues a parked fill (proxyfetch): it renews the fill lease
// (or takes it over once expired), continues from the saved offset with a
// ranged GET, and records the blob. A fill someone else holds is left alone.
func (p *Proxy) Resume(ctx context.Context, job FillJob) error {
	img := p.cache.Image(job.Image)
	if b, err := p.meta.GetBlob(ctx, job.Digest); err == nil {
		linked, err := p.linkRecord(ctx, img, b)
		if err != nil {
			return err
		}
		if linked {
			p.finished(ctx, job.UploadID, job.Digest, true)
			return nil
		}
	}
	err := p.meta.AcquireMarker(ctx, storage.Marker{Group: groupFill, Key: p.fillKey(job.Digest), Value: job.Owner, Until: p.now().Add(p.deps.Proxy.LeaseTTL)})
	if errors.Is(err, storage.ErrConflict) {
		return nil // another instance is filling it
	}
	if err != nil {
		return fmt.Errorf("renew the fill lease of %s: %w", job.Digest, err)
	}
	u, err := p.meta.GetUpload(ctx, job.UploadID)
	if notFound(err) || err == nil && u.Image != img {
		u = storage.Upload{ID: newID(), Image: img, HashAlgorithm: string(job.Digest.Algorithm()), Created: p.now(), ExpiresAt: p.now().Add(pendingTTL)}
	} else if err != nil {
		return fmt.Errorf("get the fill's upload: %w", err)
	}
	deadline := p.now().Add(14 * time.Minute)
	if dl, ok := ctx.Deadline(); ok {
		deadline = dl.Add(-5 * time.Second)
	}
	p.deps.Logger.InfoContext(ctx, "fill resumed", "repo", p.cfg.Name, "image", job.Image, "digest", job.Digest, "offset", u.Offset)
	_, err = p.stream(ctx, &u, job.Image, job.Digest, job.Owner, deadline, job.Size, false)
	var ue *UnavailableError
	if errors.As(err, &ue) && ue.RetryAfter == retryAfter {
		return nil // parked again: the schedule continues it
	}
	return err
}

// pendingJobs lists the parked fills of this proxy.
func (p *Proxy) pendingJobs(ctx context.Context) ([]FillJob, error) {
	ms, err := p.meta.ListMarkers(ctx, groupPending, 0)
	if err != nil {
		return nil, fmt.Errorf("list pending fills: %w", err)
	}
	var jobs []FillJob
	for _, m := range ms {
		var j FillJob
		if json.Unmarshal([]byte(m.Value), &j) == nil && j.Repo == p.cfg.Name {
			jobs = append(jobs, j)
		}
	}
	return jobs, nil
}

// open opens the blob's bytes: from the remote registry, or, for a foreign
// layer the remote does not serve, from an allowed URL of its descriptor.
func (p *Proxy) open(ctx context.Context, image string, d digest.Digest, offset, size int64) (upstream.Blob, error) {
	b, err := p.up.GetBlob(ctx, image, d, offset, size)
	if err == nil || !(upstream.IsKind(err, upstream.NotFound) || upstream.IsKind(err, upstream.Denied)) {
		return b, err
	}
	urls := p.foreignURLs(ctx, p.cache.Image(image), d)
	if len(urls) == 0 {
		return b, err
	}
	for _, u := range urls {
		if p.cfg.ForeignAllowed(u) {
			return p.up.GetURL(ctx, u)
		}
	}
	return b, &NotFoundError{Msg: fmt.Sprintf("a foreign layer at %v that upstream %s does not serve; its URL is not allowed by foreignLayers of proxy %q (enabled, allow: full-match regexes)",
		urls, p.up.Remote(), p.cfg.Name)}
}

// groupHolds + <proxy>, key <digest>: the proxy has cached the blob under
// some image name (the repository-level view a group's HEAD needs: a push
// of team/app whose layers were pulled as library/alpine).
const (
	groupHolds = HoldsGroupPrefix
	holdsTTL   = 365 * 24 * time.Hour
)

// remember records that the proxy holds blob d (best effort).
func (p *Proxy) remember(ctx context.Context, d digest.Digest) {
	m := storage.Marker{Group: groupHolds + p.cfg.Name, Key: d.String(), Until: p.now().Add(holdsTTL)}
	if err := p.meta.PutMarker(context.WithoutCancel(ctx), m); err != nil {
		p.deps.Logger.WarnContext(ctx, "remember a cached blob", "repo", p.cfg.Name, "digest", d, "err", err)
	}
}

// Holds returns the blob's record when the proxy has cached it under any
// image name (no remote call), or a *NotFoundError.
func (p *Proxy) Holds(ctx context.Context, d digest.Digest) (storage.Blob, error) {
	if _, err := p.meta.GetMarker(ctx, groupHolds+p.cfg.Name, d.String()); err != nil {
		if notFound(err) {
			return storage.Blob{}, &NotFoundError{}
		}
		return storage.Blob{}, err
	}
	b, err := p.meta.GetBlob(ctx, d)
	if notFound(err) {
		return b, &NotFoundError{}
	}
	return b, err
}
