//go:build e2e

package e2e

import (
	"bytes"
	"crypto/rand"
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"net/url"
	"strconv"
	"strings"
	"testing"
)

// ociErrors is the OCI error envelope.
type ociErrors struct {
	Errors []struct {
		Code    string `json:"code"`
		Message string `json:"message"`
	} `json:"errors"`
}

// opaqueReader hides a reader's length so net/http streams it chunked, as
// docker does with a layer PATCH.
type opaqueReader struct{ r io.Reader }

func (o opaqueReader) Read(p []byte) (int, error) { return o.r.Read(p) }

func randomBytes(t testing.TB, n int) []byte {
	t.Helper()
	b := make([]byte, n)
	if _, err := rand.Read(b); err != nil {
		t.Fatal(err)
	}
	return b
}

func sha256Digest(b []byte) string {
	s := sha256.Sum256(b)
	return "sha256:" + hex.EncodeToString(s[:])
}

// do sends one request and returns the response with its body read.
func do(t testing.TB, method, u string, body io.Reader, hdr map[string]string) (*http.Response, []byte) {
	t.Helper()
	req, err := http.NewRequest(method, u, body)
	if err != nil {
		t.Fatal(err)
	}
	for k, v := range hdr {
		req.Header.Set(k, v)
	}
	c := &http.Client{CheckRedirect: func(*http.Request, []*http.Request) error { return http.ErrUseLastResponse }}
	resp, err := c.Do(req)
	if err != nil {
		t.Fatalf("%s %s: %v", method, u, err)
	}
	b, _ := io.ReadAll(io.LimitReader(resp.Body, 1<<20))
	resp.Body.Close()
	return resp, b
}

// startUpload opens an upload session for image and returns its absolute URL.
func startUpload(t testing.TB, reg *registry, image string) string {
	t.Helper()
	resp, b := do(t, http.MethodPost, reg.URL+"/v2/"+image+"/blobs/uploads/", nil, nil)
	if resp.StatusCode != http.StatusAccepted {
		t.Fatalf("POST upload: %s %s", resp.Status, b)
	}
	return absLocation(t, reg, resp)
}

func absLocation(t testing.TB, reg *registry, resp *http.Response) string {
	t.Helper()
	loc := resp.Header.Get("Location")
	if loc == "" {
		t.Fatalf("%s %s: no Location", resp.Request.Method, resp.Request.URL)
	}
	base, _ := url.Parse(reg.URL)
	u, err := base.Parse(loc)
	if err != nil {
		t.Fatalf("Location %q: %v", loc, err)
	}
	return u.String()
}

// withQuery adds key=value to u.
func withQuery(u, key, value string) string {
	sep := "?"
	if strings.Contains(u, "?") {
		sep = "&"
	}
	return u + sep + key + "=" + url.QueryEscape(value)
}

// assertTooLarge checks a 413 carrying the OCI error SIZE_INVALID whose
// message names the limit.
func assertTooLarge(t testing.TB, what string, resp *http.Response, body []byte, limit int) {
	t.Helper()
	if resp.StatusCode != http.StatusRequestEntityTooLarge {
		t.Fatalf("%s: %s, want 413; body %s", what, resp.Status, body)
	}
	if ct := resp.Header.Get("Content-Type"); !strings.HasPrefix(ct, "application/json") {
		t.Errorf("%s: Content-Type %q, want application/json", what, ct)
	}
	var e ociErrors
	if err := json.Unmarshal(body, &e); err != nil || len(e.Errors) == 0 {
		t.Fatalf("%s: body is not an OCI error envelope (%v): %s", what, err, body)
	}
	if e.Errors[0].Code != "SIZE_INVALID" {
		t.Errorf("%s: code %q, want SIZE_INVALID", what, e.Errors[0].Code)
	}
	if !strings.Contains(e.Errors[0].Message, strconv.Itoa(limit)) {
		t.Errorf("%s: message %q does not name the %d-byte limit", what, e.Errors[0].Message, limit)
	}
}

// overLimitRaw checks, with plain HTTP, what docker cannot show: a streamed
// PATCH and a monolithic PUT over the body limit get 413 SIZE_INVALID naming
// the limit, leave no blob behind, and the session can still be completed in
// chunks under the limit.
func overLimitRaw(t testing.TB, reg *registry, limit int) {
	t.Helper()
	const image = "local/raw/limit"
	big := randomBytes(t, 2*limit)
	bigDigest := sha256Digest(big)

	// 1. Streamed PATCH without Content-Length (docker's way).
	loc := startUpload(t, reg, image)
	resp, body := do(t, http.MethodPatch, loc, opaqueReader{bytes.NewReader(big)}, map[string]string{"Content-Type": "application/octet-stream"})
	assertTooLarge(t, "streamed PATCH", resp, body, limit)
	if code, _ := headStatus(t, reg.URL+"/v2/"+image+"/blobs/"+bigDigest); code != http.StatusNotFound {
		t.Fatalf("HEAD blob after the rejected PATCH: %d, want 404", code)
	}

	// 2. The same session stays usable: two chunks under the limit, then PUT.
	resp, body = do(t, http.MethodGet, loc, nil, nil)
	if resp.StatusCode != http.StatusNoContent {
		t.Fatalf("GET upload status after 413: %s %s, want 204 (session usable)", resp.Status, body)
	}
	half := limit / 2
	small := big[:limit]
	for i := 0; i < 2; i++ {
		chunk := small[i*half : (i+1)*half]
		resp, body = do(t, http.MethodPatch, loc, bytes.NewReader(chunk), map[string]string{
			"Content-Type":  "application/octet-stream",
			"Content-Range": fmt.Sprintf("%d-%d", i*half, (i+1)*half-1),
		})
		if resp.StatusCode != http.StatusAccepted {
			t.Fatalf("PATCH chunk %d after 413: %s %s", i, resp.Status, body)
		}
		loc = absLocation(t, reg, resp)
	}
	smallDigest := sha256Digest(small)
	resp, body = do(t, http.MethodPut, withQuery(loc, "digest", smallDigest), nil, nil)
	if resp.StatusCode != http.StatusCreated {
		t.Fatalf("PUT to complete the session after 413: %s %s", resp.Status, body)
	}
	code, h := headStatus(t, reg.URL+"/v2/"+image+"/blobs/"+smallDigest)
	if code != http.StatusOK || h.Get("Content-Length") != strconv.Itoa(limit) {
		t.Fatalf("HEAD completed blob: %d, Content-Length %q, want 200 %d", code, h.Get("Content-Length"), limit)
	}

	// 3. Monolithic PUT over the limit (with Content-Length).
	loc = startUpload(t, reg, image)
	resp, body = do(t, http.MethodPut, withQuery(loc, "digest", bigDigest), bytes.NewReader(big), map[string]string{"Content-Type": "application/octet-stream"})
	assertTooLarge(t, "monolithic PUT", resp, body, limit)
	if code, _ := headStatus(t, reg.URL+"/v2/"+image+"/blobs/"+bigDigest); code != http.StatusNotFound {
		t.Fatalf("HEAD blob after the rejected PUT: %d, want 404", code)
	}
}

// TestBodyLimitRaw runs the plain-HTTP body-limit checks on their own, so they
// run (and report) even where no Docker daemon can.
func TestBodyLimitRaw(t *testing.T) {
	t.Parallel()
	const limit = 1 << 20
	reg := startRegistry(t, registryOpts{MaxBody: limit})
	overLimitRaw(t, reg, limit)
}
