package registry_test

import (
	"bytes"
	"io"
	"net/http"
	"net/url"
	"strings"
	"testing"
	"time"

	digest "github.com/opencontainers/go-digest"

	"github.com/airlock-registry/airlock/shared/registry"
)

// putPartURL PUTs b to a part URL and returns the status, the ETag and the body.
// The body waits for the store's "100 Continue" (Expect; not signed in a
// presigned URL): a store refusing the request answers first and may reset
// the connection, and without the wait a body already in flight could meet
// that reset before the answer is read (seen once with versitygw).
var expectClient = &http.Client{Transport: func() *http.Transport {
	t := http.DefaultTransport.(*http.Transport).Clone()
	t.ExpectContinueTimeout = 10 * time.Second
	return t
}()}

func putPartURL(t *testing.T, u string, b []byte) (int, string, string) {
	t.Helper()
	req, _ := http.NewRequest(http.MethodPut, u, bytes.NewReader(b))
	req.Header.Set("Expect", "100-continue")
	res, err := expectClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	body, _ := io.ReadAll(res.Body)
	res.Body.Close()
	return res.StatusCode, res.Header.Get("ETag"), string(body)
}

// TestDirectPartURLs: a part URL is good for its session, part and length
// only, and only until it expires; asking again for the same session's URLs
// (what `airlock push` does to resume) keeps the parts already sent.
func TestDirectPartURLs(t *testing.T) {
	onBoth(t, func(t *testing.T, e *env) {
		e = e.sub(t)
		// long: the same stores with the default part TTL, for URLs that
		// must not expire before they are used (a loaded machine takes more
		// than a second for 10 MiB); e signs the URLs that must expire.
		long := e.sub(t)
		e.deps.Direct.PartTTL = time.Second // the shortest S3 signs (X-Amz-Expires=1)
		e.serve()
		// Refused PUTs carry short bodies: versitygw answers before reading
		// the body and resets the connection, which a long body runs into.
		small := randBytes(1000)
		locC, locD := e.startUpload("direct/urls", ""), e.startUpload("direct/urls", "")
		c, dd := long.askParts(locC, "size=1000"), long.askParts(locD, "size=1000")
		// A part URL of session C, turned to session D's multipart upload
		// (uploadId, and key too): the signature does not cover it.
		uc, _ := url.Parse(c.Parts[0].URL)
		ud, _ := url.Parse(dd.Parts[0].URL)
		other := *uc
		qc := uc.Query()
		qc.Set("uploadId", ud.Query().Get("uploadId"))
		other.RawQuery = qc.Encode()
		if st, _, body := putPartURL(t, other.String(), small); st != http.StatusForbidden {
			t.Errorf("part URL of C with D's uploadId: %d %s, want 403", st, body)
		}
		other.Path = ud.Path
		if st, _, body := putPartURL(t, other.String(), small); st != http.StatusForbidden {
			t.Errorf("part URL of C with D's key and uploadId: %d %s, want 403", st, body)
		}
		// Another length than the URL's part.
		if st, _, body := putPartURL(t, c.Parts[0].URL, small[:999]); st != http.StatusForbidden && st != http.StatusBadRequest {
			t.Errorf("part of 1000 bytes sent 999: %d %s, want 403 or 400", st, body)
		}
		wantErr(t, "D completed with nothing sent", completeDirect(e, locD, digest.FromBytes(small), []etagPart{{Number: 1, ETag: `"0123"`}}), http.StatusBadRequest, registry.CodeBlobUploadInvalid)
		e.assertBlobAbsent("direct/urls", digest.FromBytes(small))

		// 10 MiB + 1000 bytes: parts of 5 MiB, 5 MiB, 1000 bytes.
		data := append(randBytes(10*mib), small...)
		d := digest.FromBytes(data)
		q := "size=10486760&airlock-part-size=5242880"
		locA, locB := e.startUpload("direct/urls", ""), e.startUpload("direct/urls", "")
		a, b := long.askParts(locA, q), long.askParts(locB, q)
		part := func(n int) []byte { return data[(n-1)*5*mib : min(len(data), n*5*mib)] }
		// A's parts completed into B: S3 refuses, B keeps nothing.
		partsA := sendParts(t, a, data, 0)
		r := completeDirect(e, locB, d, partsA)
		wantErr(t, "B completed with A's parts", r, http.StatusBadRequest, registry.CodeBlobUploadInvalid)
		e.assertBlobAbsent("direct/urls", d)

		// B: part 1 now; the other URLs expire; fresh URLs for the same
		// session take parts 2 and 3, and part 1 still counts.
		st, etag1, body := putPartURL(t, b.Parts[0].URL, part(1))
		if st != http.StatusOK || etag1 == "" {
			t.Fatalf("B part 1: %d %s", st, body)
		}
		short := e.askParts(locB, q)
		time.Sleep(2500 * time.Millisecond) // past the URLs' 1 s expiry (no time is asserted)
		if st, _, body := putPartURL(t, short.Parts[2].URL, part(3)); st != http.StatusForbidden || !strings.Contains(body, "xpired") && !strings.Contains(body, "AccessDenied") {
			t.Errorf("expired part URL: %d %s, want 403 (expired)", st, body)
		}
		b2 := long.askParts(locB, q)
		if b2.Count != 3 || b2.Parts[2].URL == b.Parts[2].URL || b2.Parts[2].URL == short.Parts[2].URL {
			t.Fatalf("fresh part URLs of B: %+v", b2)
		}
		parts := []etagPart{{Number: 1, ETag: etag1}}
		for _, p := range b2.Parts[1:] {
			st, etag, body := putPartURL(t, p.URL, part(int(p.Number)))
			if st != http.StatusOK {
				t.Fatalf("B part %d by a fresh URL: %d %s", p.Number, st, body)
			}
			parts = append(parts, etagPart{Number: p.Number, ETag: etag})
		}
		wantStatus(t, "complete B (part 1 sent before the URLs were asked again)", completeDirect(e, locB, d, parts), http.StatusCreated)
		if got := e.pullBlob("direct/urls", d); !bytes.Equal(got, data) {
			t.Fatalf("pulled %d bytes, not the %d pushed", len(got), len(data))
		}
		wantStatus(t, "cancel A", e.do("DELETE", locA, nil), http.StatusNoContent)
	})
}
