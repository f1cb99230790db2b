//go:build bench

package bench

import (
	"bytes"
	"context"
	"crypto/sha256"
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"net/url"
	"strconv"
	"time"

	digest "github.com/opencontainers/go-digest"
	ocispec "github.com/opencontainers/image-spec/specs-go/v1"
)

// client is a minimal OCI distribution client: the push and pull requests of
// the spec, written out so that chunk sizes and request counts are exactly
// what the benchmark says (POST, PATCH with Content-Range, PUT ?digest=).
type client struct {
	base string // http://127.0.0.1:PORT
	// hc follows no redirects: 202/201/307 Locations are read by hand.
	hc *http.Client
	// follow follows redirects (blob GETs to presigned S3 URLs).
	follow *http.Client
}

func newClient(base string) *client {
	tr := &http.Transport{MaxIdleConnsPerHost: 16, IdleConnTimeout: time.Minute}
	return &client{
		base: base,
		hc: &http.Client{Transport: tr, CheckRedirect: func(*http.Request, []*http.Request) error {
			return http.ErrUseLastResponse
		}},
		follow: &http.Client{Transport: tr},
	}
}

// do sends a request and checks its status; the body is drained and closed.
func (c *client) do(req *http.Request, want int) (*http.Response, error) {
	resp, err := c.hc.Do(req)
	if err != nil {
		return nil, fmt.Errorf("%s %s: %w", req.Method, req.URL.Path, err)
	}
	defer resp.Body.Close()
	if resp.StatusCode != want {
		b, _ := io.ReadAll(io.LimitReader(resp.Body, 2048))
		return nil, fmt.Errorf("%s %s: status %d, want %d: %s", req.Method, req.URL.Path, resp.StatusCode, want, bytes.TrimSpace(b))
	}
	_, _ = io.Copy(io.Discard, resp.Body)
	return resp, nil
}

// location resolves a response's Location against the request URL.
func location(resp *http.Response) (*url.URL, error) {
	loc, err := resp.Location()
	if err != nil {
		return nil, fmt.Errorf("%s %s: %w", resp.Request.Method, resp.Request.URL.Path, err)
	}
	return loc, nil
}

// startUpload POSTs a new upload session and returns its location.
func (c *client) startUpload(ctx context.Context, name string) (*url.URL, error) {
	req, _ := http.NewRequestWithContext(ctx, http.MethodPost, c.base+"/v2/"+name+"/blobs/uploads/", nil)
	resp, err := c.do(req, http.StatusAccepted)
	if err != nil {
		return nil, err
	}
	return location(resp)
}

// pushBlob uploads b into name. chunk > 0 sends PATCHes of chunk bytes with
// Content-Range and Content-Length (a chunked upload); chunk == 0 sends the
// whole blob as one PATCH without Content-Length (a streamed upload, as
// docker does). The upload is completed with PUT ?digest=.
func (c *client) pushBlob(ctx context.Context, name string, b blob, chunk int64) error {
	loc, err := c.startUpload(ctx, name)
	if err != nil {
		return err
	}
	r := b.open()
	if chunk == 0 {
		req, _ := http.NewRequestWithContext(ctx, http.MethodPatch, loc.String(), io.NopCloser(r))
		req.Header.Set("Content-Type", "application/octet-stream")
		resp, err := c.do(req, http.StatusAccepted)
		if err != nil {
			return err
		}
		if loc, err = location(resp); err != nil {
			return err
		}
	} else {
		buf := make([]byte, chunk)
		for off := int64(0); off < b.size; {
			n, err := io.ReadFull(r, buf)
			if err != nil && err != io.ErrUnexpectedEOF {
				return fmt.Errorf("read blob: %w", err)
			}
			req, _ := http.NewRequestWithContext(ctx, http.MethodPatch, loc.String(), bytes.NewReader(buf[:n]))
			req.Header.Set("Content-Type", "application/octet-stream")
			req.Header.Set("Content-Range", fmt.Sprintf("%d-%d", off, off+int64(n)-1))
			req.ContentLength = int64(n)
			resp, err := c.do(req, http.StatusAccepted)
			if err != nil {
				return err
			}
			if loc, err = location(resp); err != nil {
				return err
			}
			off += int64(n)
		}
	}
	q := loc.Query()
	q.Set("digest", b.digest.String())
	loc.RawQuery = q.Encode()
	req, _ := http.NewRequestWithContext(ctx, http.MethodPut, loc.String(), nil)
	req.ContentLength = 0
	_, err = c.do(req, http.StatusCreated)
	return err
}

// pushSmall uploads bytes as one monolithic POST ?digest= (the config blob).
// A registry that answers 202 instead (distribution opens a session and
// ignores the body) gets the bytes again in PUT ?digest= on the session.
func (c *client) pushSmall(ctx context.Context, name string, body []byte) error {
	d := digest.FromBytes(body).String()
	u := c.base + "/v2/" + name + "/blobs/uploads/?digest=" + url.QueryEscape(d)
	req, _ := http.NewRequestWithContext(ctx, http.MethodPost, u, bytes.NewReader(body))
	req.Header.Set("Content-Type", "application/octet-stream")
	resp, err := c.hc.Do(req)
	if err != nil {
		return fmt.Errorf("POST blob: %w", err)
	}
	_, _ = io.Copy(io.Discard, resp.Body)
	resp.Body.Close()
	switch resp.StatusCode {
	case http.StatusCreated:
		return nil
	case http.StatusAccepted:
	default:
		return fmt.Errorf("POST %s: status %d", req.URL.Path, resp.StatusCode)
	}
	loc, err := location(resp)
	if err != nil {
		return err
	}
	q := loc.Query()
	q.Set("digest", d)
	loc.RawQuery = q.Encode()
	req, _ = http.NewRequestWithContext(ctx, http.MethodPut, loc.String(), bytes.NewReader(body))
	req.Header.Set("Content-Type", "application/octet-stream")
	_, err = c.do(req, http.StatusCreated)
	return err
}

// putManifest PUTs an OCI image manifest under tag.
func (c *client) putManifest(ctx context.Context, name, tag string, body []byte) error {
	req, _ := http.NewRequestWithContext(ctx, http.MethodPut, c.base+"/v2/"+name+"/manifests/"+tag, bytes.NewReader(body))
	req.Header.Set("Content-Type", ocispec.MediaTypeImageManifest)
	_, err := c.do(req, http.StatusCreated)
	return err
}

// pushImage pushes im's layers one after the other (chunk as for pushBlob),
// its config and its manifest under tag.
func (c *client) pushImage(ctx context.Context, name, tag string, im testImage, chunk int64) error {
	for _, l := range im.layers {
		if err := c.pushBlob(ctx, name, l, chunk); err != nil {
			return err
		}
	}
	if err := c.pushSmall(ctx, name, im.config); err != nil {
		return err
	}
	return c.putManifest(ctx, name, tag, im.manifest)
}

// getManifest fetches a manifest by tag or digest (method GET or HEAD).
func (c *client) getManifest(ctx context.Context, method, name, ref string) ([]byte, error) {
	req, _ := http.NewRequestWithContext(ctx, method, c.base+"/v2/"+name+"/manifests/"+ref, nil)
	req.Header.Set("Accept", ocispec.MediaTypeImageManifest)
	resp, err := c.hc.Do(req)
	if err != nil {
		return nil, fmt.Errorf("%s manifest %s: %w", method, ref, err)
	}
	defer resp.Body.Close()
	b, err := io.ReadAll(io.LimitReader(resp.Body, 4<<20))
	if err != nil {
		return nil, fmt.Errorf("%s manifest %s: %w", method, ref, err)
	}
	if resp.StatusCode != http.StatusOK {
		return nil, fmt.Errorf("%s manifest %s: status %d: %s", method, ref, resp.StatusCode, b)
	}
	return b, nil
}

// blobRequest sends GET or HEAD for a blob without following a redirect and
// returns the status (and for a redirect, the Location).
func (c *client) blobRequest(ctx context.Context, method, name string, d digest.Digest) (int, string, error) {
	req, _ := http.NewRequestWithContext(ctx, method, c.base+"/v2/"+name+"/blobs/"+d.String(), nil)
	resp, err := c.hc.Do(req)
	if err != nil {
		return 0, "", fmt.Errorf("%s blob: %w", method, err)
	}
	defer resp.Body.Close()
	_, _ = io.Copy(io.Discard, resp.Body)
	return resp.StatusCode, resp.Header.Get("Location"), nil
}

// getBlob downloads a blob (following a redirect), verifying size and digest.
func (c *client) getBlob(ctx context.Context, name string, d digest.Digest, size int64) error {
	req, _ := http.NewRequestWithContext(ctx, http.MethodGet, c.base+"/v2/"+name+"/blobs/"+d.String(), nil)
	resp, err := c.follow.Do(req)
	if err != nil {
		return fmt.Errorf("get blob %s: %w", d, err)
	}
	defer resp.Body.Close()
	if resp.StatusCode != http.StatusOK {
		return fmt.Errorf("get blob %s: status %d", d, resp.StatusCode)
	}
	h := sha256.New()
	n, err := io.Copy(h, resp.Body)
	if err != nil {
		return fmt.Errorf("get blob %s: %w", d, err)
	}
	got := digest.NewDigestFromEncoded(digest.SHA256, fmt.Sprintf("%x", h.Sum(nil)))
	if n != size || got != d {
		return fmt.Errorf("get blob %s: got %d bytes with digest %s, want %d", d, n, got, size)
	}
	return nil
}

// pullImage fetches the manifest by tag, then the config and every layer,
// one after the other, verifying each. It returns the bytes downloaded.
func (c *client) pullImage(ctx context.Context, name, tag string) (int64, error) {
	body, err := c.getManifest(ctx, http.MethodGet, name, tag)
	if err != nil {
		return 0, err
	}
	var m ocispec.Manifest
	if err := json.Unmarshal(body, &m); err != nil {
		return 0, fmt.Errorf("parse manifest: %w", err)
	}
	var total int64
	for _, d := range append([]ocispec.Descriptor{m.Config}, m.Layers...) {
		if err := c.getBlob(ctx, name, d.Digest, d.Size); err != nil {
			return total, err
		}
		total += d.Size
	}
	return total, nil
}

// mib formats bytes as MiB.
func mib(n int64) string { return strconv.FormatFloat(float64(n)/(1<<20), 'f', 0, 64) + " MiB" }
