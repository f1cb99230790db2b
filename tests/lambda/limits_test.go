package lambda_test

import (
	"bytes"
	"fmt"
	"net/http"
	"strconv"
	"strings"
	"testing"

	digest "github.com/opencontainers/go-digest"
	ocispec "github.com/opencontainers/image-spec/specs-go/v1"
)

// envelopeAllowance is what functions/api leaves in the invoke payload for
// everything but the base64 body (16 KiB): the default body limit may be at
// most that much (in raw bytes, 3/4 of it) below the largest that passes.
const envelopeAllowance = 16 << 10

// fits sends a PATCH of n raw bytes to an upload id no session has (the
// event's envelope is that of a real chunk) and reports whether the function
// answered at all: a larger invoke payload is cut by the emulator (as by
// Lambda) and never becomes an HTTP request.
func fits(t *testing.T, n int64) (bool, response) {
	t.Helper()
	r := do(t, request{method: "PATCH", target: "/v2/" + image + "/blobs/uploads/0123456789abcdef0123456789abcdef",
		body: make([]byte, n), header: []string{
			"Content-Type", "application/octet-stream",
			"Content-Range", fmt.Sprintf("%d-%d", 0, n-1)}})
	return r.StatusCode != 0, r
}

// TestFrontDoorLimit measures the largest raw PATCH body whose event the
// emulator accepts (binary search), checks that the function's body limit
// (announced as OCI-Chunk-Max-Length) passes and sits within the envelope
// allowance below it, and that a body over the limit that still reaches the
// function gets a 413 SIZE_INVALID naming the limit and the way out, after
// which the same session takes the bytes in chunks.
func TestFrontDoorLimit(t *testing.T) {
	loc, limit := startUpload(t)

	ok, r := fits(t, limit)
	if !ok {
		t.Fatalf("a PATCH of the function's own limit (%d bytes) does not reach it: %s", limit, r)
	}
	if r.StatusCode != http.StatusNotFound {
		t.Fatalf("PATCH of %d bytes to an unknown session: %s, want 404", limit, r)
	}
	hi := limit + 64<<10
	if ok, r := fits(t, hi); ok {
		t.Fatalf("a PATCH of %d bytes reached the function (%d): the 6 MB invoke limit is not enforced", hi, r.StatusCode)
	} else {
		t.Logf("over the invoke limit the emulator answers HTTP %d: %.200s", r.invokeStatus, r.raw)
	}
	lo := limit // fits; hi does not
	for hi-lo > 1 {
		mid := (lo + hi) / 2
		if ok, _ := fits(t, mid); ok {
			lo = mid
		} else {
			hi = mid
		}
	}
	t.Logf("largest raw PATCH body that reaches the function: %d bytes (event %d bytes); function limit %d bytes (%d below)",
		lo, len(event(t, request{method: "PATCH", target: "/v2/" + image + "/blobs/uploads/0123456789abcdef0123456789abcdef",
			body: make([]byte, lo), header: []string{"Content-Type", "application/octet-stream", "Content-Range", "0-1"}})),
		limit, lo-limit)
	if lo-limit > envelopeAllowance*3/4 {
		t.Fatalf("the function's limit %d is %d bytes below the measured %d: more than the envelope allowance", limit, lo-limit, lo)
	}

	// Over the limit but inside the invoke payload: the registry's 413.
	over := randBytes(int(limit) + 1)
	r = do(t, request{method: "PATCH", target: loc, body: over, header: []string{
		"Content-Type", "application/octet-stream", "Content-Range", fmt.Sprintf("0-%d", len(over)-1)}})
	wantStatus(t, "PATCH over the limit", r, http.StatusRequestEntityTooLarge)
	if !strings.HasPrefix(r.header("Content-Type"), "application/json") || !strings.Contains(r.Body, `"SIZE_INVALID"`) ||
		!strings.Contains(r.Body, strconv.FormatInt(limit, 10)) || !strings.Contains(r.Body, "chunk") {
		t.Fatalf("413 does not name the limit and chunked uploads: %s", r)
	}

	// The session is intact: the same bytes in two chunks, the first one of
	// exactly the limit, complete the blob.
	loc = patch(t, loc, 0, over[:limit])
	loc = patch(t, loc, limit, over[limit:])
	d := digest.FromBytes(over)
	finish(t, loc, d)
	head := do(t, request{method: "HEAD", target: "/v2/" + image + "/blobs/" + d.String()})
	wantStatus(t, "HEAD blob", head, http.StatusOK)
	wantHeader(t, "HEAD blob", head, "Content-Length", strconv.Itoa(len(over)))
}

// TestLargeManifest pushes 4 MiB manifests (the registry's largest) through
// the function: one whose response fits the 6 MB payload is served inline,
// one whose JSON-escaped body would not is a 307 to a presigned S3 URL.
func TestLargeManifest(t *testing.T) {
	cfg, layer := []byte(`{"os":"linux","architecture":"arm64"}`), randBytes(1000)
	const big = "lambda/big"
	pushMonolithic(t, big, cfg)
	pushMonolithic(t, big, layer)
	const size = 4 << 20
	for _, tc := range []struct {
		tag, fill string
		redirect  bool
	}{
		{"plain", "0123456789<&>abcdef", false},
		// Each escaped backslash (2 bytes in the manifest) is 4 in the
		// response JSON: 8 MiB, over the 6 MB response limit.
		{"escaping", `\\`, true},
	} {
		t.Run(tc.tag, func(t *testing.T) {
			man := manifestOf(cfg, layer, map[string]string{"pad": ""})
			// Raw annotation bytes (no HTML escaping), padded to exactly 4 MiB.
			n := size - len(man)
			pad := bytes.Repeat([]byte(tc.fill), n/len(tc.fill))
			pad = append(bytes.Repeat([]byte("x"), n-len(pad)), pad...)
			man = bytes.Replace(man, []byte(`"pad":""`), append(append([]byte(`"pad":"`), pad...), '"'), 1)
			if len(man) != size {
				t.Fatalf("manifest is %d bytes", len(man))
			}
			md := digest.FromBytes(man)
			put := do(t, request{method: "PUT", target: "/v2/" + big + "/manifests/" + tc.tag, body: man,
				header: []string{"Content-Type", ocispec.MediaTypeImageManifest}})
			wantStatus(t, "PUT 4 MiB manifest", put, http.StatusCreated)
			wantHeader(t, "PUT 4 MiB manifest", put, "Docker-Content-Digest", md.String())

			head := do(t, request{method: "HEAD", target: "/v2/" + big + "/manifests/" + tc.tag,
				header: []string{"Accept", ocispec.MediaTypeImageManifest}})
			wantStatus(t, "HEAD 4 MiB manifest", head, http.StatusOK)
			wantHeader(t, "HEAD 4 MiB manifest", head, "Content-Length", strconv.Itoa(size))

			get := do(t, request{method: "GET", target: "/v2/" + big + "/manifests/" + tc.tag,
				header: []string{"Accept", ocispec.MediaTypeImageManifest}})
			if !tc.redirect {
				wantStatus(t, "GET 4 MiB manifest", get, http.StatusOK)
				if digest.FromBytes(get.body()) != md {
					t.Fatalf("GET: %d bytes with another digest", len(get.body()))
				}
				return
			}
			wantStatus(t, "GET 4 MiB escaping manifest", get, http.StatusTemporaryRedirect)
			wantHeader(t, "GET 4 MiB escaping manifest", get, "Docker-Content-Digest", md.String())
			if got := fetchPresigned(t, get.header("Location")); digest.FromBytes(got) != md {
				t.Fatalf("presigned manifest: %d bytes with another digest", len(got))
			}
		})
	}
}
