package registry_test

import (
	"net/http"
	"testing"
	"time"

	digest "github.com/opencontainers/go-digest"

	"github.com/airlock-registry/airlock/shared/registry"
	"github.com/airlock-registry/airlock/shared/upstream/upstreamtest"
)

// TestProxyCalls pins the AWS calls of proxy requests on the emulators: a
// warm pull costs what a hosted pull costs (manifest by tag: two reads;
// blob: one read), and a revalidation past metadataMaxAge adds only the
// remote's state read and the check's write.
func TestProxyCalls(t *testing.T) {
	up := upstreamtest.New(t)
	img := up.PushImage(t, "app", "v1", 1, 2000)
	now := time.Now()
	clock := &clock{now: now}
	e, c := newCountedEnv(t, func(d *registry.Deps) {
		d.Config = mustConfig(t, sprintf(proxyConfig, up.URL, "  metadataMaxAge: 1h\n"))
		d.Now = clock.Now
	})
	manifest := func() resp {
		return e.do(http.MethodGet, "/v2/hub/app/manifests/v1", nil, "Accept", string(img.MediaType))
	}
	if r := manifest(); r.Status != http.StatusOK {
		t.Fatalf("cold manifest: %s", r)
	}
	layer := digest.Digest(img.Layers[0])
	got := calls(c, func() { e.pullBlob("hub/app", layer) })
	t.Logf("cold blob fill of %d bytes: %v", 2000, got)
	// Reads: link, record, negative entry, record again under the lease,
	// remote state; writes: lease, record, link, "the proxy holds it"; the
	// lease's release.
	if got["S3.PutObject"] != 1 || sum(got, "S3.") != 1 || got["DynamoDB.GetItem"] != 5 || got["DynamoDB.PutItem"] != 4 || got["DynamoDB.DeleteItem"] != 1 {
		t.Errorf("cold fill of a small blob: calls %v, want one PutObject, 5 GetItem, 4 PutItem, 1 DeleteItem", got)
	}

	got = calls(c, func() {
		if r := manifest(); r.Status != http.StatusOK {
			t.Fatalf("warm manifest: %s", r)
		}
	})
	if got["DynamoDB.GetItem"] != 2 || sum(got, "DynamoDB.") != 2 || sum(got, "S3.") != 0 {
		t.Errorf("warm manifest by tag: calls %v, want two GetItem (as hosted)", got)
	}
	got = calls(c, func() { e.pullBlob("hub/app", layer) })
	if got["DynamoDB.GetItem"] != 1 || sum(got, "DynamoDB.") != 1 || sum(got, "S3.") != 0 {
		t.Errorf("warm blob GET: calls %v, want one GetItem (as hosted)", got)
	}
	clock.Advance(2 * time.Hour)
	got = calls(c, func() {
		if r := manifest(); r.Status != http.StatusOK {
			t.Fatalf("revalidated manifest: %s", r)
		}
	})
	if got["DynamoDB.GetItem"] != 3 || got["DynamoDB.PutItem"] != 1 || sum(got, "DynamoDB.") != 4 {
		t.Errorf("revalidation: calls %v, want GetItem (tag, remote state, manifest) and PutItem (check)", got)
	}
}
