package main

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net/http"
	"net/url"
	"strconv"
	"strings"
	"sync"
	"time"

	"github.com/google/go-containerregistry/pkg/authn"
	"github.com/google/go-containerregistry/pkg/name"
	v1 "github.com/google/go-containerregistry/pkg/v1"
	"github.com/google/go-containerregistry/pkg/v1/partial"
	"github.com/google/go-containerregistry/pkg/v1/remote/transport"
	"github.com/google/go-containerregistry/pkg/v1/types"
)

// directMin is the smallest blob sent by direct upload: smaller ones go in
// one PUT to the registry (well under any front door's body limit).
const directMin = 1 * mib

// s3Client sends the parts to the presigned URLs: a plain client, never the
// registry's credentials (tests replace it to count the requests).
var s3Client = &http.Client{Timeout: 30 * time.Minute}

// verifyWait bounds the wait for a direct upload's asynchronous verification.
var verifyWait = 20 * time.Minute

// pusher uploads to one destination repository.
type pusher struct {
	ref    name.Reference
	repo   name.Repository
	base   string // scheme://host
	client *http.Client
	o      options
	prog   io.Writer
	progMu sync.Mutex

	pushedDigest v1.Hash
}

func newPusher(ctx context.Context, dst string, o options, prog io.Writer) (*pusher, error) {
	var opts []name.Option
	if o.insecure {
		opts = append(opts, name.Insecure)
	}
	ref, err := name.ParseReference(dst, opts...)
	if err != nil {
		return nil, usageError{fmt.Sprintf("destination %q: %v", dst, err)}
	}
	repo := ref.Context()
	auth, err := authn.DefaultKeychain.Resolve(repo)
	if err != nil {
		return nil, fmt.Errorf("credentials for %s: %w", repo.RegistryStr(), err)
	}
	tr, err := transport.NewWithContext(ctx, repo.Registry, auth, http.DefaultTransport, []string{repo.Scope(transport.PushScope)})
	if err != nil {
		return nil, fmt.Errorf("destination %s: %w", repo.RegistryStr(), err)
	}
	return &pusher{
		ref: ref, repo: repo, o: o, prog: prog,
		base: repo.Scheme() + "://" + repo.RegistryStr(),
		client: &http.Client{Transport: tr, CheckRedirect: func(*http.Request, []*http.Request) error {
			return http.ErrUseLastResponse // a 307 to S3 on HEAD means "present"
		}},
	}, nil
}

func (p *pusher) logf(format string, a ...any) {
	p.progMu.Lock()
	defer p.progMu.Unlock()
	fmt.Fprintf(p.prog, format+"\n", a...)
}

func short(h v1.Hash) string {
	if len(h.Hex) > 12 {
		return h.Algorithm + ":" + h.Hex[:12]
	}
	return h.String()
}

// push uploads s's blobs, then its manifests, the top one under the
// destination's tag (or digest).
func (p *pusher) push(ctx context.Context, s source) error {
	var (
		blobs []v1.Layer
		seen  = map[v1.Hash]bool{}
		mans  []manifest // children first
	)
	addImage := func(img v1.Image) error {
		cl, err := partial.ConfigLayer(img)
		if err != nil {
			return fmt.Errorf("config: %w", err)
		}
		ls, err := img.Layers()
		if err != nil {
			return fmt.Errorf("layers: %w", err)
		}
		for _, l := range append(ls, cl) {
			d, err := l.Digest()
			if err != nil {
				return err
			}
			if !seen[d] {
				seen[d] = true
				blobs = append(blobs, l)
			}
		}
		return nil
	}
	var addIndex func(idx v1.ImageIndex) error
	addIndex = func(idx v1.ImageIndex) error {
		im, err := idx.IndexManifest()
		if err != nil {
			return err
		}
		for _, d := range im.Manifests {
			switch {
			case d.MediaType.IsIndex():
				c, err := idx.ImageIndex(d.Digest)
				if err == nil {
					err = addIndex(c)
				}
				if err != nil {
					return fmt.Errorf("index %s: %w", d.Digest, err)
				}
			case d.MediaType.IsImage():
				c, err := idx.Image(d.Digest)
				if err == nil {
					err = addImage(c)
				}
				if err != nil {
					return fmt.Errorf("image %s: %w", d.Digest, err)
				}
				m, err := manifestOf(c)
				if err != nil {
					return err
				}
				mans = append(mans, m)
			default:
				return fmt.Errorf("index entry %s has media type %q: not supported", d.Digest, d.MediaType)
			}
		}
		m, err := manifestOf(idx)
		if err != nil {
			return err
		}
		mans = append(mans, m)
		return nil
	}
	var err error
	if s.idx != nil {
		err = addIndex(s.idx)
	} else {
		err = addImage(s.img)
		if err == nil {
			var m manifest
			m, err = manifestOf(s.img)
			mans = append(mans, m)
		}
	}
	if err != nil {
		return fmt.Errorf("read source: %w", err)
	}

	// Blobs, jobs at a time.
	sem := make(chan struct{}, p.o.jobs)
	errs := make([]error, len(blobs))
	var wg sync.WaitGroup
	ctx, cancel := context.WithCancel(ctx)
	defer cancel()
	for i, l := range blobs {
		sem <- struct{}{}
		wg.Go(func() {
			defer func() { <-sem }()
			if err := p.blob(ctx, l); err != nil {
				errs[i] = err
				cancel()
			}
		})
	}
	wg.Wait()
	if err := joinErrs(errs); err != nil {
		return err
	}

	// Manifests: children by digest, the top one by the destination's identifier.
	for i, m := range mans {
		id := m.digest.String()
		if i == len(mans)-1 {
			id = p.ref.Identifier()
		}
		if err := p.putManifest(ctx, m, id); err != nil {
			return err
		}
		p.pushedDigest = m.digest
	}
	return nil
}

type manifest struct {
	raw    []byte
	mt     types.MediaType
	digest v1.Hash
}

func manifestOf(x interface {
	RawManifest() ([]byte, error)
	MediaType() (types.MediaType, error)
}) (manifest, error) {
	raw, err := x.RawManifest()
	if err != nil {
		return manifest{}, err
	}
	mt, err := x.MediaType()
	if err != nil {
		return manifest{}, err
	}
	d, _, err := v1.SHA256(bytes.NewReader(raw))
	return manifest{raw: raw, mt: mt, digest: d}, err
}

func (p *pusher) url(path string) string { return p.base + "/v2/" + p.repo.RepositoryStr() + path }

// do sends a request to the registry and reads the answer (up to 1 MiB).
func (p *pusher) do(ctx context.Context, method, u string, body []byte, hdr ...string) (*http.Response, []byte, error) {
	var r io.Reader
	if body != nil {
		r = bytes.NewReader(body)
	}
	req, err := http.NewRequestWithContext(ctx, method, u, r)
	if err != nil {
		return nil, nil, err
	}
	for i := 0; i+1 < len(hdr); i += 2 {
		req.Header.Set(hdr[i], hdr[i+1])
	}
	res, err := p.client.Do(req)
	if err != nil {
		return nil, nil, fmt.Errorf("%s %s: %w", method, redact(u), err)
	}
	defer res.Body.Close()
	b, err := io.ReadAll(io.LimitReader(res.Body, mib))
	return res, b, err
}

// statusError describes an unexpected answer, with the registry's message.
func statusError(what, method, u string, res *http.Response, body []byte) error {
	msg := string(bytes.TrimSpace(body))
	var e struct {
		Errors []struct{ Code, Message string } `json:"errors"`
	}
	if json.Unmarshal(body, &e) == nil && len(e.Errors) > 0 {
		msg = e.Errors[0].Code + ": " + e.Errors[0].Message
	}
	if len(msg) > 500 {
		msg = msg[:500] + "…"
	}
	if res.StatusCode == http.StatusUnauthorized || res.StatusCode == http.StatusForbidden && msg == "" {
		host := ""
		if x, err := url.Parse(u); err == nil {
			host = x.Host
		}
		msg = strings.TrimPrefix(msg+"; check the credentials for push (docker login "+host+")", "; ")
	}
	return fmt.Errorf("%s: %s %s answered %s: %s", what, method, redact(u), res.Status, msg)
}

// redact drops the query (presigned signatures) from u.
func redact(u string) string {
	if x, err := url.Parse(u); err == nil && x.RawQuery != "" {
		x.RawQuery = "…"
		return x.String()
	}
	return u
}

// exists tells whether the destination has blob d.
func (p *pusher) exists(ctx context.Context, d v1.Hash) (bool, error) {
	u := p.url("/blobs/" + d.String())
	res, body, err := p.do(ctx, http.MethodHead, u, nil)
	if err != nil {
		return false, err
	}
	switch res.StatusCode {
	case http.StatusOK, http.StatusTemporaryRedirect, http.StatusFound, http.StatusSeeOther:
		return true, nil
	case http.StatusNotFound:
		return false, nil
	}
	return false, statusError("blob "+d.String(), http.MethodHead, u, res, body)
}

// blob uploads l unless the destination has it.
func (p *pusher) blob(ctx context.Context, l v1.Layer) error {
	d, err := l.Digest()
	if err != nil {
		return err
	}
	size, err := l.Size()
	if err != nil {
		return fmt.Errorf("blob %s: size: %w", d, err)
	}
	if ok, err := p.exists(ctx, d); err != nil {
		return err
	} else if ok {
		p.logf("%s %d/%d skipped (present)", short(d), size, size)
		return nil
	}
	u := p.url("/blobs/uploads/")
	res, body, err := p.do(ctx, http.MethodPost, u, nil)
	if err != nil {
		return fmt.Errorf("blob %s: %w", d, err)
	}
	if res.StatusCode != http.StatusAccepted {
		return statusError("blob "+d.String()+": open upload", http.MethodPost, u, res, body)
	}
	loc, err := p.resolve(res.Header.Get("Location"))
	if err != nil {
		return fmt.Errorf("blob %s: upload location: %w", d, err)
	}
	if res.Header.Get("Airlock-Direct-Upload") == "parts" && size >= directMin {
		err = p.direct(ctx, l, d, size, loc)
	} else {
		err = p.monolithic(ctx, l, d, size, loc)
	}
	if err != nil {
		return err
	}
	p.logf("%s %d/%d done", short(d), size, size)
	return nil
}

func (p *pusher) resolve(loc string) (string, error) {
	if loc == "" {
		return "", errors.New("the registry answered no Location")
	}
	b, _ := url.Parse(p.base + "/")
	x, err := url.Parse(loc)
	if err != nil {
		return "", err
	}
	return b.ResolveReference(x).String(), nil
}

func withQuery(u string, kv ...string) string {
	x, err := url.Parse(u)
	if err != nil {
		return u
	}
	q := x.Query()
	for i := 0; i+1 < len(kv); i += 2 {
		q.Set(kv[i], kv[i+1])
	}
	x.RawQuery = q.Encode()
	return x.String()
}

// monolithic sends the blob in one PUT (the standard upload API).
func (p *pusher) monolithic(ctx context.Context, l v1.Layer, d v1.Hash, size int64, loc string) error {
	rc, err := l.Compressed()
	if err != nil {
		return fmt.Errorf("blob %s: read: %w", d, err)
	}
	defer rc.Close()
	u := withQuery(loc, "digest", d.String())
	req, err := http.NewRequestWithContext(ctx, http.MethodPut, u, rc)
	if err != nil {
		return err
	}
	req.ContentLength = size
	req.Header.Set("Content-Type", "application/octet-stream")
	res, err := p.client.Do(req)
	if err != nil {
		return fmt.Errorf("blob %s: PUT %s: %w", d, redact(u), err)
	}
	defer res.Body.Close()
	body, _ := io.ReadAll(io.LimitReader(res.Body, mib))
	if res.StatusCode != http.StatusCreated {
		return statusError("blob "+d.String(), http.MethodPut, u, res, body)
	}
	return nil
}

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

// direct sends the blob's parts to S3 by presigned URL, parts at a time,
// and completes the upload (README, Direct-to-S3 uploads).
func (p *pusher) direct(ctx context.Context, l v1.Layer, d v1.Hash, size int64, loc string) error {
	what := "blob " + d.String()
	// Every part URL (1,000 per answer).
	var urls []string
	var partSize int64
	first := int64(1)
	for {
		kv := []string{"size", strconv.FormatInt(size, 10)}
		if p.o.partSize > 0 {
			kv = append(kv, "airlock-part-size", strconv.FormatInt(p.o.partSize, 10))
		}
		if first > 1 {
			kv = append(kv, "first", strconv.FormatInt(first, 10))
		}
		u := withQuery(loc, kv...)
		res, body, err := p.do(ctx, http.MethodPost, u, nil)
		if err != nil {
			return fmt.Errorf("%s: %w", what, err)
		}
		if res.StatusCode != http.StatusOK {
			return statusError(what+": ask part URLs", http.MethodPost, u, res, body)
		}
		var a partsAnswer
		if err := json.Unmarshal(body, &a); err != nil {
			return fmt.Errorf("%s: part URLs: %v: %.200s", what, err, body)
		}
		if l := res.Header.Get("Location"); l != "" {
			if loc, err = p.resolve(l); err != nil {
				return err
			}
		}
		partSize = a.PartSize
		for _, x := range a.Parts {
			if int64(x.Number) != int64(len(urls))+1 {
				return fmt.Errorf("%s: part URLs out of order (part %d after %d)", what, x.Number, len(urls))
			}
			urls = append(urls, x.URL)
		}
		if a.Next == 0 {
			if int32(len(urls)) != a.Count {
				return fmt.Errorf("%s: the registry listed %d part URLs of %d", what, len(urls), a.Count)
			}
			break
		}
		first = a.Next
	}

	// Read the blob in order, send parts in parallel.
	rc, err := l.Compressed()
	if err != nil {
		return fmt.Errorf("%s: read: %w", what, err)
	}
	defer rc.Close()
	ctx, cancel := context.WithCancel(ctx)
	defer cancel()
	etags := make([]etagPart, len(urls))
	errs := make([]error, len(urls))
	sem := make(chan struct{}, p.o.parts)
	var wg sync.WaitGroup
	var mu sync.Mutex
	var sent int64
	var readErr error
	for i, u := range urls {
		n := min(partSize, size-int64(i)*partSize)
		buf := make([]byte, n)
		select {
		case sem <- struct{}{}:
		case <-ctx.Done():
		}
		if ctx.Err() != nil {
			break
		}
		if _, err := io.ReadFull(rc, buf); err != nil {
			readErr = fmt.Errorf("%s: read part %d: %w", what, i+1, err)
			<-sem
			break
		}
		wg.Go(func() {
			defer func() { <-sem }()
			etag, err := putPart(ctx, u, buf)
			if err != nil {
				errs[i] = fmt.Errorf("%s: part %d: %w", what, i+1, err)
				cancel()
				return
			}
			etags[i] = etagPart{Number: int32(i + 1), ETag: etag}
			mu.Lock()
			sent += n
			s := sent
			mu.Unlock()
			if s < size {
				p.logf("%s %d/%d", short(d), s, size)
			}
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

	// Complete; 202: wait for the verification.
	body, _ := json.Marshal(map[string]any{"parts": etags})
	u := withQuery(loc, "digest", d.String(), "airlock-complete", "1")
	res, rb, err := p.do(ctx, http.MethodPut, u, body, "Content-Type", "application/json")
	if err != nil {
		return fmt.Errorf("%s: complete: %w", what, err)
	}
	switch res.StatusCode {
	case http.StatusCreated:
		return nil
	case http.StatusAccepted:
		return p.awaitVerified(ctx, d)
	}
	return statusError(what+": complete", http.MethodPut, u, res, rb)
}

// putPart PUTs one part (with two retries: the buffer is in memory) and
// returns its ETag.
func putPart(ctx context.Context, u string, b []byte) (string, error) {
	var last error
	for try := range 3 {
		if try > 0 {
			select {
			case <-time.After(time.Duration(try) * time.Second):
			case <-ctx.Done():
				return "", ctx.Err()
			}
		}
		req, err := http.NewRequestWithContext(ctx, http.MethodPut, u, bytes.NewReader(b))
		if err != nil {
			return "", err
		}
		req.ContentLength = int64(len(b))
		res, err := s3Client.Do(req)
		if err != nil {
			last = fmt.Errorf("PUT %s: %w", redact(u), err)
			continue
		}
		body, _ := io.ReadAll(io.LimitReader(res.Body, 64<<10))
		res.Body.Close()
		if res.StatusCode == http.StatusOK && res.Header.Get("ETag") != "" {
			return res.Header.Get("ETag"), nil
		}
		last = fmt.Errorf("PUT %s answered %s: %.300s", redact(u), res.Status, body)
		if res.StatusCode < 500 && res.StatusCode != http.StatusOK {
			break // S3 refuses (expired URL, wrong length): retrying does not help
		}
	}
	return "", last
}

// awaitVerified polls HEAD of the blob until the registry has verified it.
func (p *pusher) awaitVerified(ctx context.Context, d v1.Hash) error {
	p.logf("%s verifying", short(d))
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
		if time.Now().After(deadline) {
			return fmt.Errorf("blob %s: still not verified by the registry after %s (or its verification failed: push again)", d, verifyWait)
		}
		select {
		case <-time.After(wait):
		case <-ctx.Done():
			return ctx.Err()
		}
		wait = min(2*wait, 5*time.Second)
	}
}

// putManifest PUTs m under id (a tag or its digest).
func (p *pusher) putManifest(ctx context.Context, m manifest, id string) error {
	u := p.url("/manifests/" + id)
	res, body, err := p.do(ctx, http.MethodPut, u, m.raw, "Content-Type", string(m.mt))
	if err != nil {
		return fmt.Errorf("manifest %s: %w", m.digest, err)
	}
	if res.StatusCode != http.StatusCreated {
		return statusError("manifest "+m.digest.String(), http.MethodPut, u, res, body)
	}
	return nil
}

// joinErrs joins errs, leaving out the cancellations that the first
// failure caused in the others.
func joinErrs(errs []error) error {
	var real, canceled []error
	for _, err := range errs {
		switch {
		case err == nil:
		case errors.Is(err, context.Canceled):
			canceled = append(canceled, err)
		default:
			real = append(real, err)
		}
	}
	if len(real) > 0 {
		return errors.Join(real...)
	}
	if len(canceled) > 0 {
		return canceled[0]
	}
	return nil
}
