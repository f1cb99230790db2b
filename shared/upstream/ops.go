package upstream

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"mime"
	"net/http"
	"net/url"
	"strconv"
	"strings"

	digest "github.com/opencontainers/go-digest"
)

// Descriptor is what a manifest HEAD (or GET) tells about a manifest.
type Descriptor struct {
	Digest    digest.Digest
	MediaType string
	Size      int64
	// NotModified is true when the remote answered 304 to If-None-Match:
	// the manifest is the cached one (Digest is then that one).
	NotModified bool
	// RateLimit and RateRemaining are Docker Hub's ratelimit-* headers.
	RateLimit, RateRemaining string
}

// Manifest is a manifest read from the remote: the exact bytes received.
type Manifest struct {
	Descriptor
	Body []byte
}

func mediaType(h http.Header) string {
	mt, _, err := mime.ParseMediaType(h.Get("Content-Type"))
	if err != nil {
		return ""
	}
	return mt
}

func acceptHeader(ifNoneMatch digest.Digest) http.Header {
	h := http.Header{"Accept": {strings.Join(ManifestAccept, ", ")}}
	if ifNoneMatch != "" {
		h.Set("If-None-Match", `"`+ifNoneMatch.String()+`"`)
	}
	return h
}

// HeadManifest asks the remote which manifest ref (a tag or a digest)
// names, without its body (Docker Hub does not count HEADs against the pull
// quota). With cached set, it is sent as If-None-Match and a 304 means
// "unchanged". A remote that answers a HEAD with 401, 404 or 405 (ECR Public
// answers 401; a chained proxy may fill only on GET) or without a
// Docker-Content-Digest is asked again with a GET before the answer counts;
// the Manifest returned then has its Body (nil after a plain HEAD).
func (c *Client) HeadManifest(ctx context.Context, image, ref string, cached digest.Digest) (Manifest, error) {
	resp, err := c.do(ctx, image, http.MethodHead, c.url(image, "manifests/"+ref), acceptHeader(cached), http.StatusNotModified)
	if err != nil {
		var ue *Error
		if errors.As(err, &ue) && (ue.Status == http.StatusUnauthorized || ue.Status == http.StatusNotFound || ue.Status == http.StatusMethodNotAllowed) {
			return c.GetManifest(ctx, image, ref, cached)
		}
		return Manifest{}, err
	}
	resp.Body.Close()
	d := describe(resp)
	if resp.StatusCode == http.StatusNotModified {
		d.NotModified, d.Digest = true, cached
		return Manifest{Descriptor: d}, nil
	}
	if d.Digest == "" {
		return c.GetManifest(ctx, image, ref, cached)
	}
	return Manifest{Descriptor: d}, nil
}

func describe(resp *http.Response) Descriptor {
	d := Descriptor{MediaType: mediaType(resp.Header), Size: resp.ContentLength}
	d.RateLimit, d.RateRemaining = RateLimit(resp.Header)
	if dg, err := digest.Parse(resp.Header.Get("Docker-Content-Digest")); err == nil {
		d.Digest = dg
	}
	return d
}

// GetManifest fetches a manifest. By digest, the body's digest is verified;
// by tag, Digest is computed from the body (a Docker-Content-Digest header
// that disagrees is an Invalid answer). With cached set, a 304 returns
// NotModified and no body.
func (c *Client) GetManifest(ctx context.Context, image, ref string, cached digest.Digest) (Manifest, error) {
	resp, err := c.do(ctx, image, http.MethodGet, c.url(image, "manifests/"+ref), acceptHeader(cached), http.StatusNotModified)
	if err != nil {
		return Manifest{}, err
	}
	defer resp.Body.Close()
	m := Manifest{Descriptor: describe(resp)}
	if resp.StatusCode == http.StatusNotModified {
		m.NotModified, m.Digest = true, cached
		return m, nil
	}
	if resp.ContentLength > MaxManifestSize {
		return m, &Error{Kind: Invalid, Remote: c.Remote(), Err: fmt.Errorf("manifest %s is %d bytes, over the %d-byte limit", ref, resp.ContentLength, MaxManifestSize)}
	}
	body, err := io.ReadAll(io.LimitReader(resp.Body, MaxManifestSize+1))
	if err != nil {
		return m, c.fail(err)
	}
	if len(body) > MaxManifestSize {
		return m, &Error{Kind: Invalid, Remote: c.Remote(), Err: fmt.Errorf("manifest %s is over the %d-byte limit", ref, MaxManifestSize)}
	}
	alg := digest.Canonical
	if want, err := digest.Parse(ref); err == nil {
		alg = want.Algorithm()
		if got := alg.FromBytes(body); got != want {
			return m, &Error{Kind: Invalid, Remote: c.Remote(), Err: fmt.Errorf("manifest asked by digest %s has digest %s", want, got)}
		}
	}
	got := alg.FromBytes(body)
	if m.Digest != "" && m.Digest.Algorithm() == alg && m.Digest != got {
		return m, &Error{Kind: Invalid, Remote: c.Remote(), Err: fmt.Errorf("manifest %s: Docker-Content-Digest %s but the body has digest %s", ref, m.Digest, got)}
	}
	m.Digest, m.Size, m.Body = got, int64(len(body)), body
	return m, nil
}

// Blob is an open blob body from the remote.
type Blob struct {
	Body io.ReadCloser
	// Size is the body's length (-1 when the remote did not say).
	Size int64
	// Offset is where Body starts (a ranged GET answered 206).
	Offset int64
}

// GetBlob opens the blob's bytes from byte offset on (0: all), following
// redirects (Docker Hub's CDN); size, when known (> 0), is the blob's whole
// length, sent as the Range's end (some registries refuse open-ended
// ranges). A remote that ignores the Range answers 200 with everything, and
// one that refuses it (400, 416) is asked again for everything: Offset is
// then 0 and the caller skips what it has.
func (c *Client) GetBlob(ctx context.Context, image string, d digest.Digest, offset, size int64) (Blob, error) {
	h := http.Header{}
	if offset > 0 {
		end := ""
		if size > offset {
			end = strconv.FormatInt(size-1, 10)
		}
		h.Set("Range", "bytes="+strconv.FormatInt(offset, 10)+"-"+end)
	}
	resp, err := c.do(ctx, image, http.MethodGet, c.url(image, "blobs/"+d.String()), h)
	var ue *Error
	if offset > 0 && errors.As(err, &ue) && (ue.Status == http.StatusBadRequest || ue.Status == http.StatusRequestedRangeNotSatisfiable) {
		resp, err = c.do(ctx, image, http.MethodGet, c.url(image, "blobs/"+d.String()), nil)
	}
	if err != nil {
		return Blob{}, err
	}
	b := Blob{Body: resp.Body, Size: resp.ContentLength}
	if resp.StatusCode == http.StatusPartialContent {
		start, ok := rangeStart(resp.Header.Get("Content-Range"))
		if !ok || start != offset {
			resp.Body.Close()
			return Blob{}, &Error{Kind: Invalid, Remote: c.Remote(), Err: fmt.Errorf("blob %s: asked bytes from %d, got Content-Range %q", d, offset, resp.Header.Get("Content-Range"))}
		}
		b.Offset = start
	}
	return b, nil
}

func rangeStart(cr string) (int64, bool) {
	cr = strings.TrimPrefix(cr, "bytes ")
	a, _, ok := strings.Cut(cr, "-")
	if !ok {
		return 0, false
	}
	n, err := strconv.ParseInt(a, 10, 64)
	return n, err == nil && n >= 0
}

// GetURL opens an absolute URL with no credentials (a foreign layer).
func (c *Client) GetURL(ctx context.Context, u string) (Blob, error) {
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, u, nil)
	if err != nil {
		return Blob{}, &Error{Kind: Invalid, Remote: u, Err: err}
	}
	resp, err := (&http.Client{Transport: c.base}).Do(req)
	if err != nil {
		return Blob{}, &Error{Kind: Unavailable, Remote: u, Err: cleanNetErr(err)}
	}
	if resp.StatusCode != http.StatusOK {
		resp.Body.Close()
		e := c.statusErr(resp.StatusCode, resp.Header.Get("Retry-After"), fmt.Errorf("GET %s: %s", req.URL.Redacted(), resp.Status))
		e.Remote = u
		return Blob{}, e
	}
	return Blob{Body: resp.Body, Size: resp.ContentLength}, nil
}

// HeadBlob tells whether the remote has the blob and its size.
func (c *Client) HeadBlob(ctx context.Context, image string, d digest.Digest) (int64, error) {
	resp, err := c.do(ctx, image, http.MethodHead, c.url(image, "blobs/"+d.String()), nil)
	if err != nil {
		return 0, err
	}
	resp.Body.Close()
	return resp.ContentLength, nil
}

// BlobURL returns where a client can fetch the blob itself: the remote's
// redirect target (a CDN URL that needs no credentials) when it answers a
// GET with one, else the remote's own blob URL.
func (c *Client) BlobURL(ctx context.Context, image string, d digest.Digest) (string, error) {
	hc, err := c.client(ctx, image)
	if err != nil {
		return "", err
	}
	nc := *hc
	nc.CheckRedirect = func(*http.Request, []*http.Request) error { return http.ErrUseLastResponse }
	u := c.url(image, "blobs/"+d.String())
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, u, nil)
	if err != nil {
		return "", err
	}
	resp, err := nc.Do(req)
	if err != nil {
		return "", c.fail(err)
	}
	resp.Body.Close()
	if loc := resp.Header.Get("Location"); resp.StatusCode/100 == 3 && loc != "" {
		if l, err := req.URL.Parse(loc); err == nil {
			return l.String(), nil
		}
	}
	if resp.StatusCode/100 != 2 {
		return "", c.statusErr(resp.StatusCode, resp.Header.Get("Retry-After"), fmt.Errorf("GET %s: %s", req.URL.Redacted(), resp.Status))
	}
	return u, nil
}

// maxTagPages bounds the pages of a remote tag list followed.
const maxTagPages = 20

// Tags lists the remote's tags of image (following Link pages, at most maxTagPages).
func (c *Client) Tags(ctx context.Context, image string) ([]string, error) {
	u := c.url(image, "tags/list?n=1000")
	var all []string
	for range maxTagPages {
		resp, err := c.do(ctx, image, http.MethodGet, u, nil)
		if err != nil {
			return nil, err
		}
		var doc struct {
			Tags []string `json:"tags"`
		}
		err = json.NewDecoder(io.LimitReader(resp.Body, 8<<20)).Decode(&doc)
		link := resp.Header.Get("Link")
		resp.Body.Close()
		if err != nil {
			return nil, &Error{Kind: Invalid, Remote: c.Remote(), Err: fmt.Errorf("tags of %s: %w", image, err)}
		}
		all = append(all, doc.Tags...)
		next := nextLink(link)
		if next == "" {
			return all, nil
		}
		nu, err := url.Parse(u)
		if err != nil {
			return all, nil
		}
		ref, err := nu.Parse(next)
		if err != nil || ref.Host != nu.Host {
			return all, nil
		}
		u = ref.String()
	}
	return all, nil
}

// nextLink extracts the URL of a Link: <url>; rel="next" header.
func nextLink(h string) string {
	for _, part := range strings.Split(h, ",") {
		u, params, ok := strings.Cut(strings.TrimSpace(part), ";")
		if ok && strings.Contains(params, `rel="next"`) {
			return strings.Trim(strings.TrimSpace(u), "<>")
		}
	}
	return ""
}
