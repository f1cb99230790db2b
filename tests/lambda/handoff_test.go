package lambda_test

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net/http"
	"net/http/httptest"
	"strings"
	"sync"
	"testing"
	"time"

	digest "github.com/opencontainers/go-digest"
	ocispec "github.com/opencontainers/image-spec/specs-go/v1"

	"github.com/airlock-registry/airlock/localdev/harness"
	"github.com/airlock-registry/airlock/shared/storage"
	"github.com/airlock-registry/airlock/shared/storage/s3store"
)

// The verifier hand-off of direct-to-S3 uploads (README, Direct-to-S3
// uploads) with the real functions: an api function with
// AIRLOCK_VERIFY_INLINE=-1 (every direct upload handed off) and
// AIRLOCK_PROXYFETCH_FUNCTION=function invokes, through the AWS SDK pointed
// at AWS_ENDPOINT_URL_LAMBDA, the proxyfetch function running under its own
// emulator. Between the two sits invokeGate, a reverse proxy that records
// each Lambda Invoke and can hold it: while it is held the blob is pending
// for certain, which is when the manifest PUT is checked.
//
// What the emulator does with an asynchronous invoke: it ignores
// X-Amz-Invocation-Type: Event and runs the function synchronously,
// answering 200 with the function's result once it returns (Lambda answers
// 202 at once and runs it later). So under the emulator the api's
// completion only answers its 202 after the verification is over, and the
// first HEAD of the blob already tells the outcome; the tests still poll
// (bounded) as a client must.

// handoffImage is the repository the hand-off tests push to: the hosted
// repository itself (through the default group a manifest's missing blob
// is looked up in the Docker Hub proxy too, unreachable here).
const handoffImage = "local/lambda/handoff"

// gatedInvoke is one Lambda Invoke that passed the gate.
type gatedInvoke struct {
	path, invocationType string
	event                []byte
	// What the emulator answered.
	status        int
	functionError string
	answer        []byte
}

// invokeGate forwards Lambda API requests to an emulator, recording them;
// hold makes the next one wait until released.
type invokeGate struct {
	srv      *httptest.Server
	target   string // the emulator's base URL
	arrived  chan *gatedInvoke
	answered chan *gatedInvoke
	mu       sync.Mutex
	held     chan struct{}
}

func newInvokeGate(t *testing.T, fn *function) *invokeGate {
	g := &invokeGate{target: strings.TrimSuffix(fn.url, "/2015-03-31/functions/function/invocations"),
		arrived: make(chan *gatedInvoke, 8), answered: make(chan *gatedInvoke, 8)}
	g.srv = httptest.NewServer(http.HandlerFunc(g.serve))
	t.Cleanup(g.srv.Close)
	return g
}

func (g *invokeGate) serve(w http.ResponseWriter, r *http.Request) {
	body, err := io.ReadAll(r.Body)
	if err != nil {
		http.Error(w, err.Error(), http.StatusBadGateway)
		return
	}
	call := &gatedInvoke{path: r.URL.Path, invocationType: r.Header.Get("X-Amz-Invocation-Type"), event: body}
	g.mu.Lock()
	held := g.held
	g.held = nil
	g.mu.Unlock()
	g.arrived <- call
	if held != nil {
		select {
		case <-held:
		case <-r.Context().Done():
			return
		}
	}
	req, _ := http.NewRequestWithContext(r.Context(), r.Method, g.target+r.URL.RequestURI(), bytes.NewReader(body))
	req.Header = r.Header.Clone()
	res, err := http.DefaultClient.Do(req)
	if err != nil {
		http.Error(w, err.Error(), http.StatusBadGateway)
		return
	}
	defer res.Body.Close()
	call.answer, _ = io.ReadAll(res.Body)
	call.status, call.functionError = res.StatusCode, res.Header.Get("X-Amz-Function-Error")
	g.answered <- call
	for k, v := range res.Header {
		w.Header()[k] = v
	}
	w.WriteHeader(res.StatusCode)
	_, _ = w.Write(call.answer)
}

// hold makes the next invoke wait until the returned function is called.
func (g *invokeGate) hold() (release func()) {
	ch := make(chan struct{})
	g.mu.Lock()
	g.held = ch
	g.mu.Unlock()
	var once sync.Once
	return func() { once.Do(func() { close(ch) }) }
}

// invokeBackground sends an event (the admin's token added here, on the
// test's goroutine) and delivers the answer on the channel.
func (fn *function) invokeBackground(t *testing.T, event []byte) <-chan response {
	t.Helper()
	event = withToken(t, fn, event)
	ch := make(chan response, 1)
	go func() {
		fn.invokes.Add(1)
		res, err := fn.client.Post(fn.url, "application/json", bytes.NewReader(event))
		if err != nil {
			ch <- response{invokeStatus: -1, raw: []byte(err.Error())}
			return
		}
		defer res.Body.Close()
		raw, _ := io.ReadAll(res.Body)
		r := response{invokeStatus: res.StatusCode, raw: raw}
		_ = json.Unmarshal(raw, &r)
		ch <- r
	}()
	return ch
}

type directParts struct {
	Parts []struct {
		Number int32  `json:"number"`
		URL    string `json:"url"`
		Size   int64  `json:"size"`
	} `json:"parts"`
	PartSize int64 `json:"partSize"`
	Count    int32 `json:"count"`
}

type completedPart struct {
	Number int32  `json:"number"`
	ETag   string `json:"etag"`
}

// directUpload opens a session on fn, asks for 5 MiB part URLs, PUTs data's
// parts straight to versitygw (tamper flips a byte of that part) and
// returns the session's Location, its id and the completion body.
func directUpload(t *testing.T, fn *function, data []byte, tamper int32) (loc, id string, completion []byte) {
	t.Helper()
	loc, _ = fn.startUpload(t, handoffImage)
	id = loc[strings.LastIndex(loc, "/")+1:]
	r := fn.do(t, request{method: "POST", target: fmt.Sprintf("%s?size=%d&airlock-part-size=%d", loc, len(data), storage.MinPartSize)})
	wantStatus(t, "ask for part URLs", r, http.StatusOK)
	var a directParts
	if err := json.Unmarshal(r.body(), &a); err != nil || a.Count != 2 || len(a.Parts) != 2 {
		t.Fatalf("part URLs: want 2 parts of %d bytes: %s (%v)", storage.MinPartSize, r, err)
	}
	var parts []completedPart
	for _, p := range a.Parts {
		if !strings.HasPrefix(p.URL, suite.s3.Endpoint+"/") || !strings.Contains(p.URL, "X-Amz-Signature=") {
			t.Fatalf("part %d: URL %q is not presigned for the S3 endpoint %s", p.Number, p.URL, suite.s3.Endpoint)
		}
		off := int64(p.Number-1) * a.PartSize
		b := bytes.Clone(data[off : off+p.Size])
		if p.Number == tamper {
			b[0] ^= 0xff
		}
		req, _ := http.NewRequest(http.MethodPut, p.URL, bytes.NewReader(b))
		res, err := http.DefaultClient.Do(req)
		if err != nil {
			t.Fatal(err)
		}
		msg, _ := io.ReadAll(res.Body)
		res.Body.Close()
		if res.StatusCode != http.StatusOK || res.Header.Get("ETag") == "" {
			t.Fatalf("PUT part %d to S3: %d %q %.300s", p.Number, res.StatusCode, res.Header.Get("ETag"), msg)
		}
		parts = append(parts, completedPart{Number: p.Number, ETag: res.Header.Get("ETag")})
	}
	completion, _ = json.Marshal(map[string]any{"parts": parts})
	return loc, id, completion
}

// waitInvoke returns the next invoke through the gate, failing if the
// completion answers first.
func waitInvoke(t *testing.T, g *invokeGate, done <-chan response) *gatedInvoke {
	t.Helper()
	select {
	case call := <-g.arrived:
		return call
	case r := <-done:
		t.Fatalf("the completion answered without invoking the verifier: %s\napi output:\n%s", r, tail(suite.fn.out.String(), 2000))
	case <-time.After(60 * time.Second):
		t.Fatal("no Lambda Invoke reached the gate within 60 s")
	}
	return nil
}

// putManifest PUTs a manifest of cfg and layer through the suite's function.
func putManifest(t *testing.T, cfg, layer []byte) response {
	t.Helper()
	return do(t, request{method: "PUT", target: "/v2/" + handoffImage + "/manifests/handoff", body: manifestOf(cfg, layer, nil),
		header: []string{"Content-Type", ocispec.MediaTypeImageManifest}})
}

// headUntil polls HEAD of blob d until it answers want (at most 60 s) and
// returns the number of HEADs sent.
func headUntil(t *testing.T, d digest.Digest, want int) int {
	t.Helper()
	deadline := time.Now().Add(60 * time.Second)
	for n := 1; ; n++ {
		r := do(t, request{method: "HEAD", target: "/v2/" + handoffImage + "/blobs/" + d.String()})
		if r.StatusCode == want {
			return n
		}
		if r.StatusCode != http.StatusNotFound || time.Now().After(deadline) {
			t.Fatalf("HEAD blob after the completion (#%d): %s, want %d", n, r, want)
		}
		time.Sleep(200 * time.Millisecond)
	}
}

// objectState reads the direct upload's object (storage.UploadKey) back
// from versitygw: its digest, or "" when it is gone.
func objectState(t *testing.T, id string) digest.Digest {
	t.Helper()
	ctx := context.Background()
	s3c, err := s3store.NewClient(ctx, s3store.Options{Endpoint: suite.s3.Endpoint, Region: harness.Region,
		AccessKey: harness.AccessKey, SecretKey: harness.SecretKey})
	if err != nil {
		t.Fatal(err)
	}
	rc, err := s3store.New(s3c, harness.Bucket).ReadBlob(ctx, storage.UploadKey(id))
	if errors.Is(err, storage.ErrNotFound) {
		return ""
	}
	if err != nil {
		t.Fatal(err)
	}
	defer rc.Close()
	d, err := digest.FromReader(rc)
	if err != nil {
		t.Fatal(err)
	}
	return d
}

// TestDirectUploadHandoff completes direct-to-S3 uploads on an api function
// that hands every verification to the proxyfetch function, each under its
// own emulator: a correct upload becomes visible once verified, a wrong
// digest never does and its object is deleted.
func TestDirectUploadHandoff(t *testing.T) {
	verifier := startNamed(t, "proxyfetch", "AWS_LAMBDA_FUNCTION_NAME=ProxyFetchFunction", "AWS_LAMBDA_FUNCTION_TIMEOUT=900")
	gate := newInvokeGate(t, verifier)
	api := startNamed(t, "api", "AIRLOCK_VERIFY_INLINE=-1", "AIRLOCK_PROXYFETCH_FUNCTION=function", "AWS_ENDPOINT_URL_LAMBDA="+gate.srv.URL)
	cfg := []byte(`{"architecture":"amd64","os":"linux","rootfs":{"type":"layers","diff_ids":[]},"handoff":true}`)
	pushMonolithic(t, handoffImage, cfg)

	// complete sends the completion in the background; when t ends, the
	// gate is released and the answer awaited (the emulator takes one
	// invoke at a time: the next subtest needs it idle).
	complete := func(t *testing.T, loc string, d digest.Digest, completion []byte, release func()) <-chan response {
		t.Helper()
		done := api.invokeBackground(t, api.door.event(t, request{method: "PUT", target: loc + "?digest=" + d.String() + "&airlock-complete=1", body: completion,
			header: []string{"Content-Type", "application/json"}}))
		answer, finished := make(chan response, 1), make(chan struct{})
		go func() { answer <- <-done; close(finished) }()
		t.Cleanup(func() {
			release()
			select {
			case <-finished:
			case <-time.After(60 * time.Second):
			}
		})
		return answer
	}
	// checkInvoke checks what the api asked of Lambda: an asynchronous
	// invoke of the function named by AIRLOCK_PROXYFETCH_FUNCTION with the
	// verify job of upload id.
	checkInvoke := func(t *testing.T, call *gatedInvoke, d digest.Digest, id string, size int) {
		t.Helper()
		if call.path != "/2015-03-31/functions/function/invocations" || call.invocationType != "Event" {
			t.Fatalf("the api invoked %s with X-Amz-Invocation-Type %q, want function asynchronously (Event)", call.path, call.invocationType)
		}
		var ev struct {
			Verify struct {
				Digest digest.Digest `json:"digest"`
				Key    string        `json:"key"`
				Size   int64         `json:"size"`
				Upload string        `json:"upload"`
			} `json:"verify"`
		}
		if err := json.Unmarshal(call.event, &ev); err != nil || ev.Verify.Digest != d || ev.Verify.Upload != id ||
			ev.Verify.Key != storage.UploadKey(id) || ev.Verify.Size != int64(size) {
			t.Fatalf("verifier event %s (%v), want the verify job of %s (upload %s, %d bytes)", call.event, err, d, id, size)
		}
	}
	// pendingNow checks, while the invoke is held, that the blob is not
	// visible, a manifest referencing it is refused as pending, and the
	// completion has not answered.
	pendingNow := func(t *testing.T, d digest.Digest, layer []byte, done <-chan response) {
		t.Helper()
		head := do(t, request{method: "HEAD", target: "/v2/" + handoffImage + "/blobs/" + d.String()})
		wantStatus(t, "HEAD blob while pending", head, http.StatusNotFound)
		m := putManifest(t, cfg, layer)
		wantStatus(t, "PUT manifest while pending", m, http.StatusBadRequest)
		if body := string(m.body()); !strings.Contains(body, `"MANIFEST_BLOB_UNKNOWN"`) || !strings.Contains(body, "verification is pending") || !strings.Contains(body, d.String()) {
			t.Fatalf("PUT manifest while pending: %s, want MANIFEST_BLOB_UNKNOWN saying the verification of %s is pending", m, d)
		}
		select {
		case r := <-done:
			t.Fatalf("the completion answered while its verifier invoke was held: %s", r)
		default:
		}
	}

	t.Run("verified", func(t *testing.T) {
		layer := randBytes(storage.MinPartSize + 300<<10)
		d := digest.FromBytes(layer)
		loc, id, completion := directUpload(t, api, layer, 0)
		release := gate.hold()
		done := complete(t, loc, d, completion, release)
		call := waitInvoke(t, gate, done)
		checkInvoke(t, call, d, id, len(layer))
		if got := objectState(t, id); got != d {
			t.Fatalf("while pending, the completed object holds %q, want %s", got, d)
		}
		pendingNow(t, d, layer, done)
		release()

		ans := <-gate.answered
		if ans.status/100 != 2 || ans.functionError != "" || strings.TrimSpace(string(ans.answer)) != "null" {
			t.Fatalf("proxyfetch answered the verify invoke %d (function error %q): %.500s\nproxyfetch output:\n%s",
				ans.status, ans.functionError, ans.answer, tail(verifier.out.String(), 2000))
		}
		r := <-done
		if r.StatusCode != http.StatusAccepted {
			t.Fatalf("completion: %s, want 202\napi output:\n%s", r, tail(api.out.String(), 2000))
		}
		wantHeader(t, "completion", r, "Location", "/v2/"+handoffImage+"/blobs/"+d.String())
		wantHeader(t, "completion", r, "Docker-Content-Digest", d.String())
		if !strings.Contains(string(r.body()), `"status":"verifying"`) {
			t.Fatalf("completion body %q, want status verifying", r.body())
		}
		n := headUntil(t, d, http.StatusOK)
		t.Logf("emulator's answer to the Event invoke: HTTP %d %q (Lambda: 202 at once); HEAD of the blob answered 200 at poll #%d after the 202", ans.status, ans.answer, n)

		m := putManifest(t, cfg, layer)
		wantStatus(t, "PUT manifest once verified", m, http.StatusCreated)
		get := do(t, request{method: "GET", target: "/v2/" + handoffImage + "/blobs/" + d.String()})
		wantStatus(t, "GET blob", get, http.StatusTemporaryRedirect)
		if got := fetchPresigned(t, get.header("Location")); digest.FromBytes(got) != d {
			t.Fatalf("GET blob: %d bytes with digest %s, want %s", len(got), digest.FromBytes(got), d)
		}
	})

	t.Run("wrong digest", func(t *testing.T) {
		layer := randBytes(storage.MinPartSize + 200<<10)
		d := digest.FromBytes(layer)
		loc, id, completion := directUpload(t, api, layer, 2) // part 2 is not what d says
		release := gate.hold()
		done := complete(t, loc, d, completion, release)
		call := waitInvoke(t, gate, done)
		checkInvoke(t, call, d, id, len(layer))
		if got := objectState(t, id); got == "" || got == d {
			t.Fatalf("while pending, the completed object's digest is %q, want the tampered bytes' (not %s)", got, d)
		}
		pendingNow(t, d, layer, done)
		release()

		ans := <-gate.answered
		var fnErr struct {
			ErrorMessage string `json:"errorMessage"`
		}
		if err := json.Unmarshal(ans.answer, &fnErr); err != nil || !strings.Contains(fnErr.ErrorMessage, "DIGEST_INVALID") || !strings.Contains(fnErr.ErrorMessage, "not "+d.String()) {
			t.Fatalf("proxyfetch answered the verify invoke %d %.500s, want the function error DIGEST_INVALID for %s", ans.status, ans.answer, d)
		}
		// The api only learns that the verifier started: 202 all the same.
		r := <-done
		if r.StatusCode != http.StatusAccepted {
			t.Fatalf("completion: %s, want 202\napi output:\n%s", r, tail(api.out.String(), 2000))
		}
		// Bounded wait for the verifier's verdict (under the emulator it is in already).
		deadline := time.Now().Add(60 * time.Second)
		for {
			m := putManifest(t, cfg, layer)
			wantStatus(t, "PUT manifest after failed verification", m, http.StatusBadRequest)
			body := string(m.body())
			if strings.Contains(body, "failed verification") && strings.Contains(body, `"MANIFEST_BLOB_UNKNOWN"`) {
				break
			}
			if !strings.Contains(body, "verification is pending") || time.Now().After(deadline) {
				t.Fatalf("PUT manifest after failed verification: %s, want MANIFEST_BLOB_UNKNOWN saying it failed", m)
			}
			time.Sleep(200 * time.Millisecond)
		}
		head := do(t, request{method: "HEAD", target: "/v2/" + handoffImage + "/blobs/" + d.String()})
		wantStatus(t, "HEAD blob after failed verification", head, http.StatusNotFound)
		if got := objectState(t, id); got != "" {
			t.Fatalf("after failed verification the object %s still exists (digest %s)", storage.UploadKey(id), got)
		}
	})
}
