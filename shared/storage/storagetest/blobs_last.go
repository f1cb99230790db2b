package storagetest

import (
	"bytes"
	"context"
	"testing"

	digest "github.com/opencontainers/go-digest"

	"github.com/airlock-registry/airlock/shared/storage"
)

// testAppendLast: the last bytes of an upload (PUT ?digest= with a body) go
// straight into the last part when a multipart upload exists (no staging
// round trip), are staged as by Append when none exists and they are short,
// and make parts when they are long.
func testAppendLast(t *testing.T, s storage.Blobs) {
	const mib = 1 << 20
	for _, tc := range []struct {
		name      string
		chunks    []int // appended with Append
		last      int   // appended with AppendLast
		multipart bool  // want a multipart upload after AppendLast
	}{
		{"ShortAfterPart", []int{6 * mib, mib}, 300 << 10, true},
		{"ShortAfterPartNothingStaged", []int{6 * mib}, 3000, true},
		{"EmptyAfterStaged", []int{6 * mib, 2 * mib}, 0, true},
		{"ShortOnly", []int{mib}, 100 << 10, false},
		{"LongOnly", nil, 13*mib + 5, true},
		{"LongAfterStaged", []int{2 * mib}, 9 * mib, true},
	} {
		t.Run(tc.name, func(t *testing.T) {
			ctx := context.Background()
			u := newBlobUpload(t)
			var all bytes.Buffer
			for _, n := range tc.chunks {
				b := randomBytes(t, n)
				all.Write(b)
				appendChunk(t, ctx, s, u, b)
			}
			stagedBefore := len(u.Staged)
			b := randomBytes(t, tc.last)
			all.Write(b)
			rc, counting := s.(RequestCounter)
			if counting {
				rc.ResetRequests()
			}
			before := u.Offset
			n, err := s.AppendLast(ctx, u, streamOnly{bytes.NewReader(b)})
			if err != nil {
				t.Fatalf("AppendLast of %d bytes: %v", len(b), err)
			}
			if n != int64(len(b)) || u.Offset != before+n {
				t.Fatalf("AppendLast of %d bytes at %d: returned %d, offset now %d", len(b), before, n, u.Offset)
			}
			checkShape(t, u, true)
			if (u.MultipartID != "") != tc.multipart {
				t.Fatalf("after AppendLast: multipart upload %q, want one: %v", u.MultipartID, tc.multipart)
			}
			if tc.multipart && len(u.Staged) > 0 {
				t.Errorf("AppendLast with a multipart upload left staged objects %+v", u.Staged)
			}
			if counting {
				calls := rc.Requests()
				if tc.multipart && calls["S3.PutObject"] > 0 {
					t.Errorf("AppendLast with a multipart upload staged its bytes: %v", calls)
				}
				if calls["S3.GetObject"] > stagedBefore {
					t.Errorf("AppendLast read %d objects back, %d were staged", calls["S3.GetObject"], stagedBefore)
				}
				rc.ResetRequests()
			}
			if counting && tc.multipart {
				// Everything is in parts: Complete is one call.
				c := cloneUpload(u)
				if _, err := s.Complete(ctx, c, digest.FromBytes(all.Bytes())); err != nil {
					t.Fatalf("Complete: %v", err)
				}
				if calls := rc.Requests(); total(calls) != 1 || calls["S3.CompleteMultipartUpload"] != 1 {
					t.Errorf("Complete after AppendLast made requests %v, want one CompleteMultipartUpload", calls)
				}
			}
			completeAndCheck(t, ctx, s, u, all.Bytes()) // (again, when counting: a retry)
		})
	}
}
