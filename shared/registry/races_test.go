package registry_test

import (
	"bytes"
	"fmt"
	"net"
	"net/http"
	"sync"
	"testing"
	"time"

	digest "github.com/opencontainers/go-digest"

	"github.com/airlock-registry/airlock/shared/registry"
	"github.com/airlock-registry/airlock/shared/storage"
)

// TestConcurrentComplete races two PUTs completing one session: one creates
// the blob, the other finds the session taken or gone.
func TestConcurrentComplete(t *testing.T) {
	e := newEnv(t)
	data := randBytes(storage.MinPartSize + 4096)
	d := digest.FromBytes(data)
	loc := e.startUpload("app", "")
	wantStatus(t, "PATCH", e.do("PATCH", loc, bytes.NewReader(data[:storage.MinPartSize])), http.StatusAccepted)
	res := make([]resp, 2)
	var wg sync.WaitGroup
	for i := range 2 {
		wg.Go(func() {
			res[i] = e.do("PUT", withQuery(loc, "digest="+d.String()), data[storage.MinPartSize:],
				"Content-Range", fmt.Sprintf("%d-%d", storage.MinPartSize, len(data)-1))
		})
	}
	wg.Wait()
	created := 0
	for i, r := range res {
		switch r.Status {
		case http.StatusCreated:
			created++
		case http.StatusRequestedRangeNotSatisfiable:
			wantErr(t, "losing PUT", r, r.Status, registry.CodeBlobUploadInvalid)
		case http.StatusNotFound:
			wantErr(t, "losing PUT", r, r.Status, registry.CodeBlobUploadUnknown)
		default:
			t.Errorf("PUT %d: %s, want 201, 416 or 404", i, r)
		}
	}
	if created != 1 {
		t.Fatalf("%d PUTs completed the session, want exactly 1", created)
	}
	if !bytes.Equal(e.pullBlob("app", d), data) {
		t.Fatal("blob differs")
	}
}

// TestConcurrentSameBlob completes two sessions holding the same bytes at once.
func TestConcurrentSameBlob(t *testing.T) {
	e := newEnv(t)
	data := randBytes(storage.MinPartSize + 777)
	d := digest.FromBytes(data)
	locs := []string{e.startUpload("one", ""), e.startUpload("two", "")}
	for _, loc := range locs {
		wantStatus(t, "PATCH", e.do("PATCH", loc, bytes.NewReader(data)), http.StatusAccepted)
	}
	res := make([]resp, 2)
	var wg sync.WaitGroup
	for i := range 2 {
		wg.Go(func() { res[i] = e.do("PUT", withQuery(locs[i], "digest="+d.String()), nil) })
	}
	wg.Wait()
	for i, name := range []string{"one", "two"} {
		wantStatus(t, "PUT "+name, res[i], http.StatusCreated)
		if !bytes.Equal(e.pullBlob(name, d), data) {
			t.Fatalf("%s: blob differs", name)
		}
	}
}

// TestClientDisconnect drops the connection in the middle of a streamed
// PATCH: nothing half-written may be committed, and the session must accept
// the chunk again at once (the lease of the dead request is released).
func TestClientDisconnect(t *testing.T) {
	e := newEnv(t)
	data := randBytes(300_000)
	loc := e.startUpload("app", "")
	e.patchChunks(loc, data[:1000], []int{1000})

	conn, err := net.Dial("tcp", e.srv.Listener.Addr().String())
	if err != nil {
		t.Fatal(err)
	}
	fmt.Fprintf(conn, "PATCH %s HTTP/1.1\r\nHost: registry\r\nTransfer-Encoding: chunked\r\nContent-Type: application/octet-stream\r\n\r\n", loc)
	part := data[1000:200_000]
	fmt.Fprintf(conn, "%x\r\n", len(part)+50_000) // announce more than is sent
	_, _ = conn.Write(part)
	time.Sleep(200 * time.Millisecond)
	_ = conn.Close()

	// The committed range never moves past what a complete request sent.
	var r resp
	deadline := time.Now().Add(5 * time.Second)
	for {
		st := e.do("GET", loc, nil)
		wantStatus(t, "status after disconnect", st, http.StatusNoContent)
		wantHeader(t, "status after disconnect", st, "Range", "0-999")
		r = e.do("PATCH", loc, data[1000:], "Content-Range", fmt.Sprintf("1000-%d", len(data)-1))
		if r.Status != http.StatusRequestedRangeNotSatisfiable || time.Now().After(deadline) {
			break
		}
		time.Sleep(100 * time.Millisecond)
	}
	wantStatus(t, "PATCH after a client dropped mid-chunk (the dead request must not keep the session's lease)", r, http.StatusAccepted)
	d := digest.FromBytes(data)
	wantStatus(t, "complete", e.do("PUT", withQuery(loc, "digest="+d.String()), nil), http.StatusCreated)
	if !bytes.Equal(e.pullBlob("app", d), data) {
		t.Fatal("blob differs after a dropped chunk")
	}
}
