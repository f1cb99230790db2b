//go:build bench

package bench

import (
	"context"
	"fmt"
	"net/http"
	"net/http/httptest"
	"net/url"
	"strings"
	"testing"
	"time"

	"github.com/airlock-registry/airlock/shared/awscount"
)

// benchCalls measures the AWS calls of each registry operation with the
// registry in-process (clients carrying the counter) and fails the test when
// a target is exceeded: counts are deterministic.
func benchCalls(t *testing.T, rep *report, dynamoURL, s3URL string) {
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Minute)
	defer cancel()
	var counter awscount.Counter
	rg, blobs, err := newAirlock(ctx, dynamoURL, "bench-calls", s3URL, "airlock-calls", &counter)
	if err != nil {
		t.Fatal(err)
	}
	srv := httptest.NewServer(rg)
	defer srv.Close()
	cl := newClient(srv.URL)
	partSize := blobs.PartSize()

	sec := rep.section("1. AWS calls per operation (Airlock in-process on dynalite + versitygw, counted with shared/awscount)",
		"operation", "DDB reads", "DDB writes", "S3 calls", "DynamoDB detail", "S3 detail", "target", "")
	sec.note("per-blob target: S3 calls ≤ UploadParts + 4; chunked pushes may add one PutObject and one GetObject per staged short chunk")
	sec.note("a chunk of known length is staged while the session is read (GetItem), then saved with one conditional PutItem; a chunk completing a part takes the lease first (UpdateItem)")
	sec.note("abbreviations: Get/Put/Update/Delete = GetItem/PutItem/... in DynamoDB and GetObject/PutObject/... in S3; MPU = MultipartUpload; parts = UploadPart calls")
	sec.note("s3store part size %s; presigned S3 GETs are made by the client, not by Airlock, and are not AWS SDK calls", mib(partSize))
	fail := func(format string, args ...any) { t.Errorf(format, args...) }

	measure := func(f func() error) calls {
		t.Helper()
		counter.Reset()
		if err := f(); err != nil {
			t.Fatal(err)
		}
		return classify(counter.Snapshot())
	}
	addRow := func(op string, c calls, target string, ok bool) {
		sec.row(op, fmt.Sprint(c.ddbR), fmt.Sprint(c.ddbW), fmt.Sprint(c.s3), c.detail("DynamoDB"), c.detail("S3"), target, verdict(ok))
		if !ok {
			fail("%s: DynamoDB reads %d, writes %d, S3 calls %d (%s; %s): target %s exceeded", op, c.ddbR, c.ddbW, c.s3, c.detail("DynamoDB"), c.detail("S3"), target)
		}
	}

	// Pushes: 60 MiB in 3 layers, streamed (one PATCH per layer) and in 4 MiB chunks.
	const name = "local/bench/calls"
	// The target is S3 calls ≤ parts + 4 per blob. For chunked pushes the
	// staged short chunks are allowed on top: each written once (PutObject)
	// and read back once (GetObject), as README, Architecture: Request flows
	// describes.
	target := func(c calls, chunked bool) (string, bool) {
		parts := c.ops["S3.UploadPart"]
		if !chunked {
			return fmt.Sprintf("S3 ≤ parts+4 = %d", parts+4), c.s3 <= parts+4
		}
		staged := c.ops["S3.PutObject"] + c.ops["S3.GetObject"]
		return fmt.Sprintf("S3 ≤ parts+staged+4 = %d", parts+staged+4), c.s3 <= parts+staged+4
	}
	for _, p := range []struct {
		label string
		seed  uint64
		chunk int64
		tag   string
	}{
		{"streamed", 1000, 0, "streamed"},
		{"4 MiB chunks", 2000, 4 << 20, "chunked"},
		{"256 KiB chunks", 3000, 256 << 10, "chunked-small"},
	} {
		im := newImage(p.seed, 3, 20<<20)
		var total calls
		for i, l := range im.layers {
			c := measure(func() error { return cl.pushBlob(ctx, name, l, p.chunk) })
			tgt, ok := target(c, p.chunk > 0)
			addRow(fmt.Sprintf("push %s: layer %d (%s)", p.label, i+1, mib(l.size)), c, tgt, ok)
			total = total.add(c)
		}
		c := measure(func() error { return cl.pushSmall(ctx, name, im.config) })
		tgt, ok := target(c, false)
		addRow(fmt.Sprintf("push %s: config blob (%d B, POST ?digest=)", p.label, len(im.config)), c, tgt, ok)
		total = total.add(c)
		c = measure(func() error { return cl.putManifest(ctx, name, p.tag, im.manifest) })
		addRow(fmt.Sprintf("push %s: manifest PUT", p.label), c, "-", true)
		total = total.add(c)
		addRow(fmt.Sprintf("push %s: whole image (%s, 4 blobs + manifest)", p.label, mib(im.total())), total, "(sum)", true)
	}

	im := newImage(1000, 3, 20<<20) // the streamed image, pushed above
	c := measure(func() error {
		_, err := cl.getManifest(ctx, http.MethodGet, name, "streamed")
		return err
	})
	addRow("manifest GET by tag", c, "DDB reads ≤ 2, S3 0", c.ddbR <= 2 && c.s3 == 0)
	c = measure(func() error {
		_, err := cl.getManifest(ctx, http.MethodHead, name, "streamed")
		return err
	})
	addRow("manifest HEAD by tag", c, "DDB reads ≤ 2, S3 0", c.ddbR <= 2 && c.s3 == 0)
	l := im.layers[0]
	c = measure(func() error {
		st, _, err := cl.blobRequest(ctx, http.MethodHead, name, l.digest)
		if err == nil && st != http.StatusOK {
			err = fmt.Errorf("blob HEAD: status %d", st)
		}
		return err
	})
	addRow("blob HEAD", c, "DDB reads 1, S3 0", c.ddbR <= 1 && c.s3 == 0)
	c = measure(func() error {
		st, loc, err := cl.blobRequest(ctx, http.MethodGet, name, l.digest)
		if err != nil {
			return err
		}
		if st != http.StatusTemporaryRedirect {
			return fmt.Errorf("blob GET: status %d, want 307", st)
		}
		u, err := url.Parse(loc)
		if err != nil || !strings.HasPrefix(loc, s3URL) || u.Query().Get("X-Amz-Signature") == "" {
			return fmt.Errorf("blob GET: Location %q is not a presigned URL of %s", loc, s3URL)
		}
		return nil
	})
	addRow("blob GET (307 to presigned S3 URL)", c, "DDB reads 1, S3 0", c.ddbR <= 1 && c.s3 == 0)
	var pulled int64
	c = measure(func() error {
		var err error
		pulled, err = cl.pullImage(ctx, name, "streamed")
		return err
	})
	addRow(fmt.Sprintf("pull (manifest + 4 blobs, %s via presigned URLs)", mib(pulled)), c, "DDB reads ≤ 2+4, S3 0", c.ddbR <= 6 && c.s3 == 0)
}
