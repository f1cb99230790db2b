package main

import (
	"bytes"
	"context"
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"hash"
	"io"
	"net/http"
	"strconv"
	"sync"
	"time"

	v1 "github.com/google/go-containerregistry/pkg/v1"
)

// Direct-to-S3 uploads (README, Direct-to-S3 uploads): the registry plans
// the blob's parts and answers presigned S3 UploadPart URLs (POST
// <location>?size=&airlock-part-size=); the CLI PUTs the parts straight to
// S3, --parts at a time, each from a buffer of the part size (buffers are
// reused from part to part and blob to blob: memory stays about
// min(--jobs, blobs) × --parts × part size), then completes with the ETags (PUT
// <location>?digest=&airlock-complete=1): 201, or 202 while the registry
// verifies a large blob asynchronously (the CLI then polls HEAD).

type partsAnswer struct {
	Parts []struct {
		Number int32  `json:"number"`
		URL    string `json:"url"`
		Size   int64  `json:"size"`
	} `json:"parts"`
	PartSize int64 `json:"partSize"`
	Count    int32 `json:"count"`
	Next     int64 `json:"next"`
}

type etagPart struct {
	Number int32  `json:"number"`
	ETag   string `json:"etag"`
}

// askParts asks the registry for every part URL of the session at loc (a
// thousand per answer) with partSize (0: the registry's choice); it returns
// the URLs, the part size and the (possibly moved) location.
func (p *pusher) askParts(ctx context.Context, d v1.Hash, size, partSize int64, loc string) ([]string, int64, string, error) {
	what := "blob " + d.String()
	var urls []string
	first := int64(1)
	for {
		kv := []string{"size", strconv.FormatInt(size, 10)}
		if partSize > 0 {
			kv = append(kv, "airlock-part-size", strconv.FormatInt(partSize, 10))
		}
		if first > 1 {
			kv = append(kv, "first", strconv.FormatInt(first, 10))
		}
		u := withQuery(loc, kv...)
		res, body, err := p.do(ctx, http.MethodPost, u, nil)
		if err != nil {
			return nil, 0, loc, fmt.Errorf("%s: %w", what, err)
		}
		if res.StatusCode != http.StatusOK {
			return nil, 0, loc, statusError(what+": ask part URLs", http.MethodPost, u, res, body)
		}
		var a partsAnswer
		if err := json.Unmarshal(body, &a); err != nil {
			return nil, 0, loc, fmt.Errorf("%s: part URLs: %v: %.200s", what, err, body)
		}
		if l := res.Header.Get("Location"); l != "" {
			if loc, err = p.resolve(l); err != nil {
				return nil, 0, loc, err
			}
		}
		// The plan must cover the blob exactly (count parts of partSize,
		// the last the rest): a registry answering another one would have
		// the CLI send parts past the blob's end, or none.
		partSize = a.PartSize
		if partSize <= 0 || int64(a.Count) != (size+partSize-1)/partSize {
			return nil, 0, loc, fmt.Errorf("%s: the registry's plan (%d parts of %d bytes) does not cover the blob's %d bytes: the registry (or a proxy before it) is faulty: report it to its operator", what, a.Count, partSize, size)
		}
		for _, x := range a.Parts {
			if int64(x.Number) != int64(len(urls))+1 {
				return nil, 0, loc, fmt.Errorf("%s: part URLs out of order (part %d after %d)", what, x.Number, len(urls))
			}
			urls = append(urls, x.URL)
		}
		if a.Next == 0 {
			if int32(len(urls)) != a.Count {
				return nil, 0, loc, fmt.Errorf("%s: the registry listed %d part URLs of %d (part size %d)", what, len(urls), a.Count, partSize)
			}
			return urls, partSize, loc, nil
		}
		if len(a.Parts) == 0 || a.Next != int64(len(urls))+1 || len(urls) >= int(a.Count) {
			return nil, 0, loc, fmt.Errorf("%s: the registry's part URLs do not progress (next %d after %d of %d parts)", what, a.Next, len(urls), a.Count)
		}
		first = a.Next
	}
}

// resume continues the direct upload st recorded. done is false when the
// registry no longer has that session (expired, completed, cancelled) or
// refuses its plan: the state is dropped and the caller starts over.
func (p *pusher) resume(ctx context.Context, l v1.Layer, d v1.Hash, size int64, st *stateFile) (bool, error) {
	err := p.direct(ctx, l, d, size, st.st.Location, st, true)
	var re *registryError
	if errors.As(err, &re) && errors.Is(err, errSessionGone) {
		p.prog.logf("%s: the interrupted upload cannot be resumed (%v): starting over", short(d), re)
		st.remove()
		return false, nil
	}
	if err != nil {
		return false, err
	}
	p.stats.uploaded.Add(1)
	p.prog.state(d, size, "done")
	return true, nil
}

// checkSource: hash the blob while reading it and complete only when it
// matches (tests turn it off to reach the registry's verification).
var checkSource = true

// errSessionGone marks a resumed session's refusal (see resume).
var errSessionGone = errors.New("session gone")

type goneError struct{ *registryError }

func (goneError) Is(err error) bool { return err == errSessionGone }
func (e goneError) Unwrap() error   { return e.registryError }

// direct sends the blob's parts to S3 by presigned URL and completes the
// upload; resuming, the parts st has ETags of are read past, not sent.
func (p *pusher) direct(ctx context.Context, l v1.Layer, d v1.Hash, size int64, loc string, st *stateFile, resuming bool) error {
	what := "blob " + d.String()
	partSize := p.o.partSize
	if resuming {
		partSize = st.st.PartSize
	}
	urls, partSize, loc, err := p.askParts(ctx, d, size, partSize, loc)
	var re *registryError
	if resuming && errors.As(err, &re) && re.Status >= 400 && re.Status < 500 {
		return goneError{re}
	}
	if err != nil {
		return err
	}
	if resuming {
		have, haveBytes := 0, int64(0)
		for i := range urls {
			if st.etag(int32(i+1)) != "" {
				have++
				haveBytes += min(partSize, size-int64(i)*partSize)
			}
		}
		p.prog.state(d, size, fmt.Sprintf("resuming (%d of %d parts sent, %s)", have, len(urls), bytesStr(haveBytes)))
	} else if err := st.begin(loc, partSize); err != nil {
		return err
	}

	// Read the blob in order, hashing it; send parts in parallel from
	// --parts buffers.
	src, err := l.Compressed()
	if err != nil {
		return fmt.Errorf("%s: read: %w", what, err)
	}
	defer src.Close()
	var rc io.Reader = src
	var h hash.Hash
	if checkSource && d.Algorithm == "sha256" {
		h = sha256.New()
		rc = io.TeeReader(src, h)
	}
	ctx, cancel := context.WithCancel(ctx)
	defer cancel()
	slots := make(chan struct{}, p.o.parts)
	errs := make([]error, len(urls))
	var wg sync.WaitGroup
	var readErr error
	for i, u := range urls {
		num := int32(i + 1)
		n := min(partSize, size-int64(i)*partSize)
		if st.etag(num) != "" {
			if _, err := io.CopyN(io.Discard, rc, n); err != nil {
				readErr = fmt.Errorf("%s: read part %d: %w", what, num, err)
				break
			}
			p.stats.resumedParts.Add(1)
			p.stats.resumedBytes.Add(n)
			p.prog.sent(d, size, n)
			continue
		}
		var buf []byte
		select {
		case slots <- struct{}{}:
			buf = p.buffers.get(n, partSize)
		case <-ctx.Done():
		}
		if ctx.Err() != nil {
			if buf != nil {
				p.buffers.put(buf)
				<-slots
			}
			break
		}
		if _, err := io.ReadFull(rc, buf); err != nil {
			p.buffers.put(buf)
			<-slots
			readErr = fmt.Errorf("%s: read part %d: %w", what, num, err)
			break
		}
		wg.Go(func() {
			defer func() { p.buffers.put(buf); <-slots }()
			etag, err := p.putPart(ctx, u, buf)
			if err == nil {
				err = st.sent(num, etag)
			}
			if err != nil {
				errs[i] = fmt.Errorf("%s: part %d: %w", what, num, err)
				cancel()
				return
			}
			p.prog.sent(d, size, n)
		})
	}
	wg.Wait()
	if err := joinErrs(append(errs, readErr)); err != nil {
		return err
	}
	if err := ctx.Err(); err != nil {
		return fmt.Errorf("%s: %w", what, err)
	}
	if extra, _ := rc.Read(make([]byte, 1)); extra > 0 {
		return fmt.Errorf("%s: the source holds more than its %d bytes", what, size)
	}
	if h != nil {
		if got := hex.EncodeToString(h.Sum(nil)); got != d.Hex {
			// Not completed: the registry would refuse it. Cancel the session.
			_, _, _ = p.do(ctx, http.MethodDelete, loc, nil)
			st.remove()
			return fmt.Errorf("%s: the source's bytes hash to sha256:%s, not to the digest its manifest names: the image is damaged or changed while read; nothing was stored", what, got)
		}
	}

	// Complete; 202: wait for the verification. Once the registry has
	// answered, the session is done with (or refused): no state to resume.
	etags := make([]etagPart, len(urls))
	for i := range etags {
		etags[i] = etagPart{Number: int32(i + 1), ETag: st.etag(int32(i + 1))}
	}
	body, _ := json.Marshal(map[string]any{"parts": etags})
	u := withQuery(loc, "digest", d.String(), "airlock-complete", "1")
	res, rb, err := p.do(ctx, http.MethodPut, u, body, "Content-Type", "application/json")
	if err != nil {
		return fmt.Errorf("%s: complete: %w", what, err)
	}
	st.remove()
	switch res.StatusCode {
	case http.StatusCreated:
		return nil
	case http.StatusAccepted:
		return p.awaitVerified(ctx, d, size, u, body)
	}
	return statusError(what+": complete", http.MethodPut, u, res, rb)
}

// putPart PUTs one part (retried by the policy of send, S3's 500 too: the
// buffer is in memory) and returns its ETag.
func (p *pusher) putPart(ctx context.Context, u string, b []byte) (string, error) {
	res, err := p.send(ctx, s3Client, s3Retryable, func() (*http.Request, error) {
		req, err := http.NewRequestWithContext(ctx, http.MethodPut, u, bytes.NewReader(b))
		if err != nil {
			return nil, err
		}
		req.ContentLength = int64(len(b))
		return req, nil
	})
	if err != nil {
		return "", err
	}
	body, _ := io.ReadAll(io.LimitReader(res.Body, 64<<10))
	res.Body.Close()
	if res.StatusCode == http.StatusOK && res.Header.Get("ETag") != "" {
		p.stats.s3Bytes.Add(int64(len(b)))
		p.stats.s3Parts.Add(1)
		return res.Header.Get("ETag"), nil
	}
	// S3 refuses (expired URL, wrong length: retrying does not help), or
	// still fails after the attempts.
	if hint := giveUp(res.StatusCode); hint != "" {
		return "", fmt.Errorf("PUT %s answered %s: %.300s; %s", redact(u), res.Status, body, hint)
	}
	return "", fmt.Errorf("PUT %s answered %s: %.300s", redact(u), res.Status, body)
}

// s3Retryable: S3 asks to retry its 500 InternalError and 503 SlowDown.
func s3Retryable(code int) bool { return code >= 500 || code == http.StatusTooManyRequests }

// awaitVerified waits for the registry's asynchronous verification: it
// polls HEAD of the blob, and when absent sends the completion again (the
// registry answers a completed session 201 once verified, 202 while
// pending, 404 when the verification failed), so a failure ends the wait.
func (p *pusher) awaitVerified(ctx context.Context, d v1.Hash, size int64, completeURL string, completion []byte) error {
	p.prog.state(d, size, "verifying")
	deadline := time.Now().Add(verifyWait)
	wait := 50 * time.Millisecond
	for {
		ok, err := p.exists(ctx, d)
		if err != nil {
			return err
		}
		if ok {
			return nil
		}
		res, rb, err := p.do(ctx, http.MethodPut, completeURL, completion, "Content-Type", "application/json")
		if err != nil {
			return fmt.Errorf("blob %s: verification: %w", d, err)
		}
		switch res.StatusCode {
		case http.StatusCreated:
			return nil
		case http.StatusAccepted:
		case http.StatusNotFound:
			return fmt.Errorf("blob %s: the registry's verification failed: the bytes uploaded do not hash to the digest (a changed or damaged source?); nothing was stored: push again", d)
		default:
			return statusError("blob "+d.String()+": verification", http.MethodPut, completeURL, res, rb)
		}
		if time.Now().After(deadline) {
			return fmt.Errorf("blob %s: still not verified by the registry after %s: push again later (the blob is skipped once verified)", d, verifyWait)
		}
		select {
		case <-time.After(wait):
		case <-ctx.Done():
			return ctx.Err()
		}
		wait = min(2*wait, 5*time.Second)
	}
}

// bufPool keeps part buffers for reuse, the last returned first (so no more
// are made than are in use at once).
type bufPool struct {
	mu   sync.Mutex
	free [][]byte
}

// get returns a buffer of n bytes (capacity ≥ partSize when made).
func (b *bufPool) get(n, partSize int64) []byte {
	b.mu.Lock()
	defer b.mu.Unlock()
	for i := len(b.free) - 1; i >= 0; i-- {
		if buf := b.free[i]; int64(cap(buf)) >= n {
			b.free = append(b.free[:i], b.free[i+1:]...)
			return buf[:n]
		}
	}
	return make([]byte, n, max(n, partSize))
}

func (b *bufPool) put(buf []byte) {
	b.mu.Lock()
	defer b.mu.Unlock()
	b.free = append(b.free, buf)
}
