package s3store_test

import (
	"bytes"
	"context"
	"crypto/rand"
	"errors"
	"fmt"
	"io"
	mrand "math/rand/v2"
	"net/http"
	"slices"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/aws/aws-sdk-go-v2/service/s3"
	digest "github.com/opencontainers/go-digest"

	"github.com/airlock-registry/airlock/shared/awscount"
	"github.com/airlock-registry/airlock/shared/storage"
	"github.com/airlock-registry/airlock/shared/storage/s3store"
)

// faultyTransport fails a share of requests: half of the failures before the
// request reaches the server, half after the server handled it (the reply is
// lost, so a write happened that the client believes failed), some of those
// as a 503 SlowDown the SDK would retry.
type faultyTransport struct {
	next   http.RoundTripper
	mu     sync.Mutex
	rnd    *mrand.Rand
	rate   float64
	faults atomic.Int64
}

var errInjected = errors.New("injected transport fault")

func (f *faultyTransport) RoundTrip(r *http.Request) (*http.Response, error) {
	f.mu.Lock()
	x := f.rnd.Float64()
	f.mu.Unlock()
	switch {
	case x < f.rate/2:
		f.faults.Add(1)
		if r.Body != nil {
			r.Body.Close()
		}
		return nil, errInjected
	case x < f.rate:
		f.faults.Add(1)
		resp, err := f.next.RoundTrip(r)
		if err != nil {
			return nil, err
		}
		io.Copy(io.Discard, resp.Body)
		resp.Body.Close()
		if x < f.rate*3/4 {
			return nil, errInjected
		}
		return &http.Response{
			StatusCode: http.StatusServiceUnavailable, Status: "503 Slow Down", Proto: "HTTP/1.1", ProtoMajor: 1, ProtoMinor: 1,
			Header:  http.Header{"Content-Type": {"application/xml"}},
			Body:    io.NopCloser(bytes.NewReader([]byte(`<Error><Code>SlowDown</Code><Message>injected</Message></Error>`))),
			Request: r,
		}, nil
	}
	return f.next.RoundTrip(r)
}

// TestTransportFaults pushes blobs through a client whose transport fails
// 20% of requests, with SDK retries off, retrying each Append from the last
// committed session state and Complete as a registry would, and checks every
// blob served is exactly what was pushed and nothing is left behind.
func TestTransportFaults(t *testing.T) {
	ctx := context.Background()
	c := &awscount.Counter{}
	clean, bucket := newClient(t, c)
	seed := uint64(time.Now().UnixNano())
	t.Logf("fault seed %d", seed)
	ft := &faultyTransport{next: http.DefaultTransport.(*http.Transport).Clone(), rnd: mrand.New(mrand.NewPCG(seed, 2)), rate: 0.2}
	faulty := s3.New(clean.Options(), func(o *s3.Options) {
		o.HTTPClient = &http.Client{Transport: ft}
		o.RetryMaxAttempts = 1
	})
	s := s3store.New(faulty, bucket)
	reader := s3store.New(clean, bucket)

	const tries = 300
	for _, tc := range []struct {
		name   string
		chunks []int
	}{
		{"small", []int{300 << 10, 1 << 20, 7}},
		{"1MiB", slices.Repeat([]int{1 << 20}, 12)},
		{"mixed", []int{3 << 20, 6 << 20, 256 << 10, 9<<20 + 1, 2 << 20}},
		{"streamed", []int{17<<20 + 5}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			u := &storage.Upload{ID: fmt.Sprintf("faults-%s-%d", tc.name, time.Now().UnixNano())}
			var all bytes.Buffer
			for _, n := range tc.chunks {
				b := make([]byte, n)
				rand.Read(b)
				all.Write(b)
				var err error
				for range tries {
					w := *u // the committed state, as GetUpload would return it
					w.Parts, w.Staged = slices.Clone(u.Parts), slices.Clone(u.Staged)
					if _, err = s.Append(ctx, &w, bytes.NewReader(b)); err == nil {
						*u = w // commit
						break
					}
				}
				if err != nil {
					t.Fatalf("Append failed %d times: %v", tries, err)
				}
			}
			d := digest.FromBytes(all.Bytes())
			var err error
			var key string
			for range tries {
				if key, err = s.Complete(ctx, u, d); err == nil {
					break
				}
			}
			if err != nil {
				t.Fatalf("Complete failed %d times: %v", tries, err)
			}
			url, err := reader.PresignGet(ctx, key, time.Minute)
			if err != nil {
				t.Fatal(err)
			}
			resp, err := http.Get(url)
			if err != nil {
				t.Fatal(err)
			}
			got, err := io.ReadAll(resp.Body)
			resp.Body.Close()
			if err != nil || resp.StatusCode != http.StatusOK || !bytes.Equal(got, all.Bytes()) {
				t.Fatalf("blob after faults: status %d, %d bytes (%v), want the %d bytes pushed", resp.StatusCode, len(got), err, all.Len())
			}
			// Abort of the finished session (what purge does) removes what
			// failed attempts left: multipart uploads whose creation reply was lost.
			if err := reader.Abort(ctx, u); err != nil {
				t.Fatalf("Abort: %v", err)
			}
			if left, err := reader.UploadLeftovers(ctx, u.ID); err != nil || len(left) > 0 {
				t.Errorf("leftovers: %q, %v", left, err)
			}
		})
	}
	t.Logf("%d faults injected in %d requests", ft.faults.Load(), c.Total())
	if ft.faults.Load() == 0 {
		t.Errorf("no fault injected: the test tested nothing")
	}
}
