package main

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"io"
	"net/http"
	"os"
	"path/filepath"
	"slices"
	"sync"
	"sync/atomic"
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

// responseWait bounds the wait for the registry's answer once a request is
// sent (http.Transport.ResponseHeaderTimeout): a registry that never
// answers ends the push instead of hanging it. The longest legitimate wait
// is a completion verified inline, within one function's run (at most 15
// minutes on Lambda).
var responseWait = 15 * time.Minute

// registryTransport is the transport of the requests to registries (the
// destination's and a copy's source): the default one, bounded by
// responseWait.
func registryTransport() *http.Transport {
	t := http.DefaultTransport.(*http.Transport).Clone()
	t.ResponseHeaderTimeout = responseWait
	return t
}

// verifyWait bounds the wait for a direct upload's asynchronous verification.
var verifyWait = 20 * time.Minute

// pusher uploads to one destination repository.
type pusher struct {
	ref    name.Reference
	repo   name.Repository
	base   string // scheme://host
	client *http.Client
	o      options
	prog   progress
	// mountFrom are repositories of the destination registry to mount
	// missing blobs from (POST ?mount=&from=), in order.
	mountFrom []string

	// buffers are the part buffers of direct uploads, reused.
	buffers bufPool

	pushedDigest v1.Hash
	stats        stats
}

// stats count what a push did (the summary line).
type stats struct {
	uploaded, present, mounted      atomic.Int64
	s3Bytes, s3Parts, registryBytes atomic.Int64
	resumedParts, resumedBytes      atomic.Int64
	retries                         atomic.Int64 // requests sent again (send)
}

func newPusher(ctx context.Context, dst string, o options, mountFrom []string, prog progress) (*pusher, error) {
	var opts []name.Option
	if o.insecure {
		opts = append(opts, name.Insecure)
	}
	ref, err := name.ParseReference(dst, opts...)
	if err != nil {
		return nil, usageError{fmt.Sprintf("destination %q: %v", dst, err)}
	}
	repo := ref.Context()
	scopes := []string{repo.Scope(transport.PushScope)}
	for _, m := range mountFrom {
		from, err := name.NewRepository(repo.RegistryStr()+"/"+m, opts...)
		if err != nil {
			return nil, usageError{fmt.Sprintf("--mount-from %q: %v", m, err)}
		}
		if from.RepositoryStr() != repo.RepositoryStr() {
			scopes = append(scopes, from.Scope(transport.PullScope))
		}
	}
	auth, err := authn.DefaultKeychain.Resolve(repo)
	if err != nil {
		return nil, fmt.Errorf("credentials for %s: %w: fix the Docker config %s (its credsStore or credHelpers name a docker-credential-* helper that must be on PATH), or docker login %s",
			repo.RegistryStr(), err, dockerConfigFile(), repo.RegistryStr())
	}
	tr, err := transport.NewWithContext(ctx, repo.Registry, auth, registryTransport(), scopes)
	if err != nil {
		return nil, fmt.Errorf("destination %s: %w", repo.RegistryStr(), err)
	}
	p := &pusher{
		ref: ref, repo: repo, o: o, prog: prog,
		base: repo.Scheme() + "://" + repo.RegistryStr(),
		client: &http.Client{Transport: tr, CheckRedirect: func(*http.Request, []*http.Request) error {
			return http.ErrUseLastResponse // a 307 to S3 on HEAD means "present"
		}},
	}
	for _, m := range mountFrom {
		if m != repo.RepositoryStr() {
			p.mountFrom = append(p.mountFrom, m)
		}
	}
	return p, nil
}

// dockerConfigFile is where authn.DefaultKeychain reads the Docker config:
// $DOCKER_CONFIG/config.json, else ~/.docker/config.json.
func dockerConfigFile() string {
	if d := os.Getenv("DOCKER_CONFIG"); d != "" {
		return filepath.Join(d, "config.json")
	}
	return filepath.Join("~", ".docker", "config.json")
}

// summary is the last line of a push.
func (p *pusher) summary() string {
	s := &p.stats
	line := fmt.Sprintf("pushed %s@%s: %d blobs uploaded (%s to S3 in %d parts, %s through the registry), %d present, %d mounted",
		p.repo.Name(), p.pushedDigest, s.uploaded.Load(), bytesStr(s.s3Bytes.Load()), s.s3Parts.Load(), bytesStr(s.registryBytes.Load()),
		s.present.Load(), s.mounted.Load())
	if n := s.resumedParts.Load(); n > 0 {
		line += fmt.Sprintf("; resumed: %d parts (%s) not sent again", n, bytesStr(s.resumedBytes.Load()))
	}
	if n := s.retries.Load(); n > 0 {
		line += fmt.Sprintf("; %d requests retried", n)
	}
	return line
}

// bytesStr is n in bytes with the MiB beside: "62914560 bytes (60.0 MiB)".
func bytesStr(n int64) string { return fmt.Sprintf("%d bytes (%.1f MiB)", n, float64(n)/mib) }

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

// present tells whether the destination has blob d, counting and showing
// it as skipped when it does.
func (p *pusher) present(ctx context.Context, d v1.Hash, size int64) (bool, error) {
	ok, err := p.exists(ctx, d)
	if ok && err == nil {
		p.stats.present.Add(1)
		p.prog.state(d, size, "skipped (present)")
	}
	return ok, err
}

// blob uploads l unless the destination has it (HEAD) or can mount it
// from another repository; an interrupted direct upload of it is resumed.
func (p *pusher) blob(ctx context.Context, l v1.Layer) error {
	d, err := l.Digest()
	if err != nil {
		return err
	}
	size, err := l.Size()
	if err != nil {
		return fmt.Errorf("blob %s: size: %w", d, err)
	}
	if ok, err := p.present(ctx, d, size); ok || err != nil {
		return err
	}
	release, waited, err := lockBlob(ctx, p.o.stateDir, p.repo.RegistryStr(), p.repo.RepositoryStr(), d.String(), func() {
		p.prog.state(d, size, "waiting (another airlock push of this blob to this repository)")
	})
	if err != nil {
		return err
	}
	defer release()
	if waited { // the other push may have sent it
		if ok, err := p.present(ctx, d, size); ok || err != nil {
			return err
		}
	}
	st := openState(p.o.stateDir, p.repo.RegistryStr(), p.repo.RepositoryStr(), d.String(), size)
	if st.resumable() {
		done, err := p.resume(ctx, l, d, size, st)
		if done || err != nil {
			return err
		}
	}
	loc, done, err := p.open(ctx, d, size)
	if done || err != nil {
		return err
	}
	// Without the advertisement (another registry, or a store without
	// direct uploads) and for small blobs: one PUT through the registry.
	if loc.direct && size >= directMin {
		err = p.direct(ctx, l, d, size, loc.url, st, false)
	} else {
		err = p.monolithic(ctx, l, d, size, loc.url)
	}
	if err != nil {
		return err
	}
	p.stats.uploaded.Add(1)
	p.prog.state(d, size, "done")
	return nil
}

// session is an open upload session.
type session struct {
	url    string // absolute Location
	direct bool   // the registry offers direct-to-S3 parts on it
}

// open mounts d from the first of p.mountFrom that has it (done), else
// opens an upload session (the last mount attempt's, when it answered one).
func (p *pusher) open(ctx context.Context, d v1.Hash, size int64) (session, bool, error) {
	what := "blob " + d.String()
	tries := append(slices.Clone(p.mountFrom), "")
	for i, from := range tries {
		u := p.url("/blobs/uploads/")
		if from != "" {
			u = withQuery(u, "mount", d.String(), "from", from)
		}
		res, body, err := p.do(ctx, http.MethodPost, u, nil)
		if err != nil {
			return session{}, false, fmt.Errorf("%s: %w", what, err)
		}
		switch {
		case res.StatusCode == http.StatusCreated && from != "":
			p.stats.mounted.Add(1)
			p.prog.state(d, size, "mounted from "+from)
			return session{}, true, nil
		case res.StatusCode != http.StatusAccepted:
			return session{}, false, statusError(what+": open upload", http.MethodPost, u, res, body)
		}
		loc, err := p.resolve(res.Header.Get("Location"))
		if err != nil {
			return session{}, false, fmt.Errorf("%s: upload location: %w", what, err)
		}
		if i < len(tries)-2 {
			// Not mounted from this one: cancel the session, try the next.
			_, _, _ = p.do(ctx, http.MethodDelete, loc, nil)
			continue
		}
		return session{url: loc, direct: res.Header.Get("Airlock-Direct-Upload") == "parts"}, false, nil
	}
	panic("unreachable")
}

// monolithic sends the blob in one PUT (the standard upload API). The
// body is read again from the layer's start for each attempt (send); a
// repeat after an answer lost on the way finds the session completed (404):
// then the blob is there, which HEAD tells.
func (p *pusher) monolithic(ctx context.Context, l v1.Layer, d v1.Hash, size int64, loc string) error {
	u := withQuery(loc, "digest", d.String())
	var rc io.ReadCloser
	defer func() {
		if rc != nil {
			rc.Close()
		}
	}()
	var sent atomic.Int64
	var body *progressReader
	tries := 0
	res, err := p.send(ctx, p.client, retryableStatus, func() (*http.Request, error) {
		tries++
		if rc != nil {
			rc.Close()
		}
		var err error
		if rc, err = l.Compressed(); err != nil {
			return nil, fmt.Errorf("blob %s: read: %w", d, err)
		}
		if body != nil { // a retry: the progress starts over too
			p.prog.sent(d, size, -(sent.Load() - body.pending))
		}
		sent.Store(0)
		body = &progressReader{r: &countReader{r: rc, n: &sent}, prog: p.prog, d: d, size: size, step: max(size/10, mib)}
		req, err := http.NewRequestWithContext(ctx, http.MethodPut, u, body)
		if err != nil {
			return nil, err
		}
		req.ContentLength = size
		req.Header.Set("Content-Type", "application/octet-stream")
		return req, nil
	})
	p.stats.registryBytes.Add(sent.Load())
	if err != nil {
		return fmt.Errorf("blob %s: %w", d, err)
	}
	defer res.Body.Close()
	rb, _ := io.ReadAll(io.LimitReader(res.Body, mib))
	if res.StatusCode == http.StatusNotFound && tries > 1 {
		if ok, err := p.exists(ctx, d); ok && err == nil {
			return nil
		}
	}
	if res.StatusCode != http.StatusCreated {
		return statusError("blob "+d.String(), http.MethodPut, u, res, rb)
	}
	return nil
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
