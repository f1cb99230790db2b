package storagetest

import (
	"bytes"
	"context"
	"reflect"
	"testing"

	"github.com/airlock-registry/airlock/shared/storage"
)

// testChunkStager pushes chunks the way the registry's hot path does
// (StageChunk before the session is read, then AddChunk), mixed with Append
// and AppendLast, and checks the blob, the requests each step makes, that a
// part is never made without the lease, and that a writer losing a race at
// the same offset cannot touch the winner's bytes.
func testChunkStager(t *testing.T, s storage.Blobs) {
	cs, ok := s.(storage.ChunkStager)
	if !ok {
		t.Skipf("%T does not implement storage.ChunkStager", s)
	}
	rc, counting := s.(RequestCounter)
	ctx := context.Background()
	u := newBlobUpload(t)
	var all bytes.Buffer
	const kib = 1 << 10
	sizes := append(repeat(256*kib, 30), 1*kib, 3<<20, 700*kib) // parts made by AddChunk, then by Append
	for i, n := range sizes {
		b := randomBytes(t, n)
		if i == len(sizes)-2 { // one chunk through Append in between
			all.Write(b)
			appendChunk(t, ctx, s, u, b)
			continue
		}
		st, err := cs.StageChunk(ctx, u.ID, u.Offset, "winner", b)
		if err != nil {
			t.Fatalf("StageChunk: %v", err)
		}
		// A racer at the same offset stages other bytes under its own key.
		lost, err := cs.StageChunk(ctx, u.ID, u.Offset, "loser", randomBytes(t, n))
		if err != nil {
			t.Fatalf("StageChunk (racer): %v", err)
		}
		if lost.Key == st.Key {
			t.Fatalf("two writers at offset %d staged at the same key %s", u.Offset, st.Key)
		}
		makesPart := stagedSize(u.Staged)+int64(n) >= storage.MinPartSize
		if makesPart {
			before := cloneUpload(u)
			if err := cs.AddChunk(ctx, u, st, b); err == nil {
				t.Fatalf("AddChunk completing a part without the lease: no error")
			}
			if !reflect.DeepEqual(u, before) {
				t.Fatalf("failed AddChunk changed the session")
			}
			u.Lease = "lease"
		}
		if counting {
			rc.ResetRequests()
		}
		if err := cs.AddChunk(ctx, u, st, b); err != nil {
			t.Fatalf("AddChunk of %d bytes at %d: %v", n, u.Offset, err)
		}
		u.Lease = ""
		all.Write(b)
		checkUploadShape(t, u)
		if counting {
			calls := rc.Requests()
			switch {
			case !makesPart && total(calls) != 0:
				t.Errorf("AddChunk of a chunk that stays staged made requests %v", calls)
			case makesPart && (calls["S3.UploadPart"] != 1 || calls["S3.PutObject"] > 0):
				t.Errorf("AddChunk completing a part made requests %v, want one UploadPart and no PutObject", calls)
			}
		}
	}
	if len(u.Parts) < 2 {
		t.Fatalf("%d parts after %d bytes: the test wants parts made by AddChunk", len(u.Parts), u.Offset)
	}
	last := randomBytes(t, 100*kib)
	all.Write(last)
	if _, err := s.AppendLast(ctx, u, bytes.NewReader(last)); err != nil {
		t.Fatalf("AppendLast: %v", err)
	}
	completeAndCheck(t, ctx, s, u, all.Bytes())
}

func stagedSize(st []storage.Staged) int64 {
	var n int64
	for _, x := range st {
		n += x.Size
	}
	return n
}
