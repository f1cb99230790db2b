package registry_test

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net/http"
	"net/url"
	"strings"
	"sync"
	"testing"
	"time"

	digest "github.com/opencontainers/go-digest"
	ocispec "github.com/opencontainers/image-spec/specs-go/v1"

	"github.com/airlock-registry/airlock/shared/registry"
	"github.com/airlock-registry/airlock/shared/storage"
	"github.com/airlock-registry/airlock/shared/storage/memstore"
)

const mib = 1 << 20

// memEnv is env on a memstore (its presign server stands in for S3).
func memEnv(t *testing.T, opts ...func(*registry.Deps)) *env {
	t.Helper()
	st := memstore.New()
	t.Cleanup(func() { st.Close() })
	u, err := st.PresignGet(context.Background(), "x", time.Minute)
	if err != nil {
		t.Fatal(err)
	}
	pu, _ := url.Parse(u)
	e := &env{t: t, meta: st, blobs: st, s3: pu.Scheme + "://" + pu.Host}
	e.deps = registry.Deps{Meta: st, Blobs: st, Config: mustConfig(t, testConfig),
		Logger: slog.New(slog.NewTextHandler(t.Output(), &slog.HandlerOptions{Level: slog.LevelWarn}))}
	for _, o := range opts {
		o(&e.deps)
	}
	e.serve()
	return e
}

// onBoth runs f on memstore and on the emulators (dynalite + versitygw).
func onBoth(t *testing.T, f func(t *testing.T, e *env), opts ...func(*registry.Deps)) {
	t.Run("memstore", func(t *testing.T) { t.Parallel(); f(t, memEnv(t, opts...)) })
	t.Run("emulators", func(t *testing.T) { t.Parallel(); f(t, newEnv(t, opts...)) })
}

type partsAnswer struct {
	Parts []struct {
		Number int32  `json:"number"`
		URL    string `json:"url"`
		Size   int64  `json:"size"`
	} `json:"parts"`
	Size     int64 `json:"size"`
	PartSize int64 `json:"partSize"`
	Count    int32 `json:"count"`
	Next     int64 `json:"next"`
}

type etagPart struct {
	Number int32  `json:"number"`
	ETag   string `json:"etag"`
}

// askParts asks for part URLs of the upload at loc.
func (e *env) askParts(loc, query string) partsAnswer {
	e.t.Helper()
	r := e.do("POST", withQuery(loc, query), nil)
	wantStatus(e.t, "ask parts", r, http.StatusOK)
	var a partsAnswer
	if err := json.Unmarshal(r.Body, &a); err != nil {
		e.t.Fatalf("parts answer: %v: %s", err, r.Body)
	}
	return a
}

// sendParts PUTs data's parts to their URLs in parallel (tamper changes
// part n's bytes, same length) and returns the completion's parts.
func sendParts(t *testing.T, a partsAnswer, data []byte, tamper int32) []etagPart {
	t.Helper()
	out := make([]etagPart, len(a.Parts))
	var wg sync.WaitGroup
	errs := make([]error, len(a.Parts))
	for i, p := range a.Parts {
		off := int64(p.Number-1) * a.PartSize
		b := bytes.Clone(data[off : off+p.Size])
		if p.Number == tamper {
			b[0] ^= 0xff
		}
		wg.Go(func() {
			req, _ := http.NewRequest(http.MethodPut, p.URL, bytes.NewReader(b))
			res, err := http.DefaultClient.Do(req)
			if err != nil {
				errs[i] = err
				return
			}
			body, _ := io.ReadAll(res.Body)
			res.Body.Close()
			if res.StatusCode != http.StatusOK {
				errs[i] = fmt.Errorf("PUT part %d: %d %.300s", p.Number, res.StatusCode, body)
			}
			out[i] = etagPart{Number: p.Number, ETag: res.Header.Get("ETag")}
		})
	}
	wg.Wait()
	if err := errors.Join(errs...); err != nil {
		t.Fatal(err)
	}
	return out
}

func completeDirect(e *env, loc string, d digest.Digest, parts []etagPart) resp {
	e.t.Helper()
	return e.do("PUT", withQuery(loc, "digest="+d.String()+"&airlock-complete=1"), mustJSON(map[string]any{"parts": parts}))
}

// directPush uploads data in 5 MiB parts straight to storage and completes with d.
func (e *env) directPush(t *testing.T, name string, data []byte, d digest.Digest, tamper int32) (string, resp) {
	loc := e.startUpload(name, "")
	a := e.askParts(loc, fmt.Sprintf("size=%d&airlock-part-size=%d", len(data), 5*mib))
	return loc, completeDirect(e, loc, d, sendParts(t, a, data, tamper))
}

// layerManifest pushes a config and returns a manifest over it and layer.
func (e *env) layerManifest(name string, layer []byte) []byte {
	cfg := []byte(`{"architecture":"amd64","os":"linux","n":"` + digest.FromBytes(layer).Encoded()[:12] + `"}`)
	e.pushBlob(name, cfg)
	return manifestJSON(ocispec.MediaTypeImageManifest, desc(ocispec.MediaTypeImageConfig, cfg), desc(ocispec.MediaTypeImageLayerGzip, layer))
}

func TestDirectUpload(t *testing.T) {
	onBoth(t, func(t *testing.T, e *env) {
		e = e.sub(t)
		data := randBytes(12 * mib)
		d := digest.FromBytes(data)
		loc := e.startUpload("direct/app", "")
		if r := e.do("POST", "/v2/direct/app/blobs/uploads/", nil); r.Header.Get("Airlock-Direct-Upload") != "parts" {
			t.Errorf("upload POST: Airlock-Direct-Upload = %q, want parts", r.Header.Get("Airlock-Direct-Upload"))
		}
		q := fmt.Sprintf("size=%d&airlock-part-size=%d", len(data), 5*mib)
		a := e.askParts(loc, q)
		if a.Count != 3 || len(a.Parts) != 3 || a.PartSize != 5*mib || a.Parts[2].Size != 2*mib || a.Size != int64(len(data)) {
			t.Fatalf("parts answer: %+v", a)
		}
		for _, p := range a.Parts {
			if !strings.HasPrefix(p.URL, e.s3+"/") {
				t.Fatalf("part URL %q is not on the S3 endpoint %s", p.URL, e.s3)
			}
		}
		// Asking again with the same plan gives fresh URLs of the same upload; another plan is refused.
		a = e.askParts(loc, fmt.Sprintf("size=%d&airlock-parts=3&airlock-part-size=%d", len(data), 5*mib))
		wantErr(t, "another plan", e.do("POST", withQuery(loc, fmt.Sprintf("size=%d&airlock-parts=2", len(data))), nil), http.StatusBadRequest, registry.CodeBlobUploadInvalid)
		// Chunks cannot be mixed into a direct upload.
		chunk := data[:64<<10]
		wantErr(t, "chunk into a direct upload", e.do("PATCH", loc, chunk, "Content-Range", fmt.Sprintf("0-%d", len(chunk)-1)), http.StatusBadRequest, registry.CodeBlobUploadInvalid)
		wantErr(t, "stream into a direct upload", e.do("PATCH", loc, bytes.NewReader(chunk)), http.StatusBadRequest, registry.CodeBlobUploadInvalid)
		wantErr(t, "monolithic PUT into a direct upload", e.do("PUT", withQuery(loc, "digest="+d.String()), data[:1000]), http.StatusBadRequest, registry.CodeBlobUploadInvalid)
		e.assertBlobAbsent("direct/app", d)

		parts := sendParts(t, a, data, 0)
		bad := func(what string, ps []etagPart) {
			t.Helper()
			wantErr(t, what, completeDirect(e, loc, d, ps), http.StatusBadRequest, registry.CodeBlobUploadInvalid)
		}
		bad("missing part", parts[:2])
		bad("extra part", append(append([]etagPart{}, parts...), etagPart{Number: 4, ETag: parts[0].ETag}))
		bad("duplicated part", []etagPart{parts[0], parts[0], parts[1]})
		bad("parts out of order", []etagPart{parts[1], parts[0], parts[2]})
		bad("no ETag", []etagPart{parts[0], {Number: 2}, parts[2]})
		wrong := []etagPart{parts[0], {Number: 2, ETag: parts[0].ETag}, parts[2]}
		r := completeDirect(e, loc, d, wrong)
		wantErr(t, "wrong ETag", r, http.StatusBadRequest, registry.CodeBlobUploadInvalid)
		if !strings.Contains(errMessage(r), "S3 refused the part list") {
			t.Errorf("wrong ETag: message %q", errMessage(r))
		}
		wantErr(t, "not JSON", e.do("PUT", withQuery(loc, "digest="+d.String()+"&airlock-complete=1"), "parts"), http.StatusBadRequest, registry.CodeBlobUploadInvalid)
		e.assertBlobAbsent("direct/app", d)

		r = completeDirect(e, loc, d, parts)
		wantStatus(t, "complete", r, http.StatusCreated)
		wantHeader(t, "complete", r, "Docker-Content-Digest", d.String())
		if got := e.pullBlob("direct/app", d); !bytes.Equal(got, data) {
			t.Fatalf("pulled %d bytes, not the %d pushed", len(got), len(data))
		}
		wantStatus(t, "session after completion", e.do("GET", loc, nil), http.StatusNotFound)
		// A retried completion (lost answer) finds the blob.
		wantStatus(t, "completion retried", completeDirect(e, loc, d, parts), http.StatusCreated)
		m := e.layerManifest("direct/app", data)
		wantStatus(t, "manifest over the direct blob", e.putManifest("direct/app", "v1", ocispec.MediaTypeImageManifest, m), http.StatusCreated)
		if b, err := e.meta.GetBlob(context.Background(), d); err != nil || b.Size != int64(len(data)) {
			t.Errorf("blob record: %+v %v", b, err)
		}
	})
}

func TestDirectWrongDigest(t *testing.T) {
	onBoth(t, func(t *testing.T, e *env) {
		e = e.sub(t)
		ctx := context.Background()
		for _, c := range []struct {
			name   string
			tamper int32
		}{{"wrong digest", 0}, {"tampered part", 2}} {
			data := randBytes(12 * mib)
			claimed := digest.FromBytes(data)
			if c.tamper == 0 {
				claimed = digest.FromBytes(append(bytes.Clone(data), 1))
			}
			loc, r := e.directPush(t, "direct/bad", data, claimed, c.tamper)
			wantErr(t, c.name, r, http.StatusBadRequest, registry.CodeDigestInvalid)
			id := loc[strings.LastIndex(loc, "/")+1:]
			if _, err := e.meta.GetBlob(ctx, claimed); !errors.Is(err, storage.ErrNotFound) {
				t.Errorf("%s: GetBlob: %v, want not found", c.name, err)
			}
			if ok, err := e.blobs.BlobExists(ctx, storage.UploadKey(id)); ok || err != nil {
				t.Errorf("%s: the uploaded object is still there (%v)", c.name, err)
			}
			e.assertBlobAbsent("direct/bad", claimed)
			wantErr(t, c.name+": session", e.do("GET", loc, nil), http.StatusNotFound, registry.CodeBlobUploadUnknown)
			m := e.layerManifest("direct/bad", data)
			wantErr(t, c.name+": manifest", e.putManifest("direct/bad", "v1", ocispec.MediaTypeImageManifest, m), http.StatusBadRequest, registry.CodeManifestBlobUnknown)
		}
	})
}

func TestDirectPendingVerification(t *testing.T) {
	var mu sync.Mutex
	jobs := map[*testing.T][]registry.VerifyJob{}
	onBoth(t, func(t *testing.T, e *env) {
		e = e.sub(t)
		e.deps.Direct.VerifyInline = 1
		e.deps.Direct.Handoff = func(_ context.Context, j registry.VerifyJob) error {
			mu.Lock()
			defer mu.Unlock()
			jobs[t] = append(jobs[t], j)
			return nil
		}
		e.serve()
		verifier, err := registry.New(e.deps) // the verifier function: the same stores
		if err != nil {
			t.Fatal(err)
		}
		take := func() registry.VerifyJob {
			mu.Lock()
			defer mu.Unlock()
			if len(jobs[t]) != 1 {
				t.Fatalf("%d verification jobs handed off, want 1", len(jobs[t]))
			}
			j := jobs[t][0]
			jobs[t] = nil
			return j
		}
		ctx := context.Background()

		data := randBytes(6 * mib)
		d := digest.FromBytes(data)
		_, r := e.directPush(t, "direct/big", data, d, 0)
		wantStatus(t, "complete", r, http.StatusAccepted)
		if !strings.Contains(string(r.Body), "verif") {
			t.Errorf("202 body does not say verification is pending: %s", r.Body)
		}
		job := take()
		if job.Digest != d || job.Size != int64(len(data)) {
			t.Errorf("job %+v", job)
		}
		e.assertBlobAbsent("direct/big", d)
		if _, err := e.meta.GetBlob(ctx, d); !errors.Is(err, storage.ErrNotFound) {
			t.Errorf("pending blob recorded: %v", err)
		}
		m := e.layerManifest("direct/big", data)
		r = e.putManifest("direct/big", "v1", ocispec.MediaTypeImageManifest, m)
		wantErr(t, "manifest while pending", r, http.StatusBadRequest, registry.CodeManifestBlobUnknown)
		if !strings.Contains(errMessage(r), "pending") {
			t.Errorf("manifest while pending: message %q does not say verification is pending", errMessage(r))
		}
		raw, _ := json.Marshal(job) // the job travels as JSON to the verifier function
		var got registry.VerifyJob
		if err := json.Unmarshal(raw, &got); err != nil {
			t.Fatal(err)
		}
		if err := verifier.Verify(ctx, got); err != nil {
			t.Fatalf("Verify: %v", err)
		}
		if err := verifier.Verify(ctx, got); err != nil {
			t.Errorf("Verify again: %v", err)
		}
		wantStatus(t, "HEAD verified blob", e.do("HEAD", "/v2/direct/big/blobs/"+d.String(), nil), http.StatusOK)
		wantStatus(t, "manifest after verification", e.putManifest("direct/big", "v1", ocispec.MediaTypeImageManifest, m), http.StatusCreated)
		if got := e.pullBlob("direct/big", d); !bytes.Equal(got, data) {
			t.Error("pulled bytes differ")
		}

		// A wrong digest found by the verifier: never visible, object deleted, the manifest says so.
		data = randBytes(6 * mib)
		claimed := digest.FromBytes(append(bytes.Clone(data), 0))
		_, r = e.directPush(t, "direct/big", data, claimed, 0)
		wantStatus(t, "complete (wrong digest)", r, http.StatusAccepted)
		job = take()
		if err := verifier.Verify(ctx, job); err == nil {
			t.Error("Verify of a wrong digest succeeded")
		}
		if ok, _ := e.blobs.BlobExists(ctx, job.Key); ok {
			t.Error("object of a failed verification still there")
		}
		if _, err := e.meta.GetBlob(ctx, claimed); !errors.Is(err, storage.ErrNotFound) {
			t.Errorf("failed blob recorded: %v", err)
		}
		e.assertBlobAbsent("direct/big", claimed)
		m = manifestJSON(ocispec.MediaTypeImageManifest, desc(ocispec.MediaTypeImageConfig, []byte("{}")),
			ocispec.Descriptor{MediaType: ocispec.MediaTypeImageLayerGzip, Digest: claimed, Size: int64(len(data))})
		e.pushBlob("direct/big", []byte("{}"))
		r = e.putManifest("direct/big", "v2", ocispec.MediaTypeImageManifest, m)
		wantErr(t, "manifest after failed verification", r, http.StatusBadRequest, registry.CodeManifestBlobUnknown)
		if !strings.Contains(errMessage(r), "failed verification") {
			t.Errorf("manifest after failed verification: message %q", errMessage(r))
		}
	})
}

// TestDirectInProcessVerifier: without a Handoff the registry verifies in a goroutine (localdev).
func TestDirectInProcessVerifier(t *testing.T) {
	e := memEnv(t, func(d *registry.Deps) { d.Direct.VerifyInline = -1 })
	data := randBytes(6 * mib)
	d := digest.FromBytes(data)
	_, r := e.directPush(t, "direct/local", data, d, 0)
	wantStatus(t, "complete", r, http.StatusAccepted)
	for deadline := time.Now().Add(10 * time.Second); ; time.Sleep(20 * time.Millisecond) {
		if e.do("HEAD", "/v2/direct/local/blobs/"+d.String(), nil).Status == http.StatusOK {
			break
		}
		if time.Now().After(deadline) {
			t.Fatal("blob not verified in 10 s")
		}
	}
	wantStatus(t, "manifest", e.putManifest("direct/local", "v1", ocispec.MediaTypeImageManifest, e.layerManifest("direct/local", data)), http.StatusCreated)
}

func TestDirectBadInput(t *testing.T) {
	onBoth(t, func(t *testing.T, e *env) {
		e = e.sub(t)
		loc := e.startUpload("direct/in", "")
		ask := func(what, q string, code registry.Code) {
			t.Helper()
			wantErr(t, what, e.do("POST", withQuery(loc, q), nil), http.StatusBadRequest, code)
		}
		ask("no size", "airlock-parts=3", registry.CodeSizeInvalid)
		ask("size 0", "size=0", registry.CodeSizeInvalid)
		ask("size not a number", "size=x", registry.CodeSizeInvalid)
		ask("over 5 TiB", fmt.Sprintf("size=%d", int64(storage.MaxObjectSize)+1), registry.CodeSizeInvalid)
		ask("10,001 parts", "size=60000000000&airlock-parts=10001", registry.CodeSizeInvalid)
		ask("parts under 5 MiB", fmt.Sprintf("size=%d&airlock-parts=3", 12*mib), registry.CodeSizeInvalid)
		ask("part size under 5 MiB", fmt.Sprintf("size=%d&airlock-part-size=%d", 12*mib, 4*mib), registry.CodeSizeInvalid)
		ask("parts over 5 GiB", fmt.Sprintf("size=%d&airlock-parts=1", int64(storage.MaxPartSize)+1), registry.CodeSizeInvalid)
		ask("count and part size disagree", fmt.Sprintf("size=%d&airlock-parts=2&airlock-part-size=%d", 12*mib, 5*mib), registry.CodeSizeInvalid)
		ask("first out of range", fmt.Sprintf("size=%d&airlock-part-size=%d&first=4", 12*mib, 5*mib), registry.CodeSizeInvalid)
		// A chosen layout: the default part size, one part for a small blob.
		a := e.askParts(e.startUpload("direct/in", ""), "size=1000")
		if a.Count != 1 || a.Parts[0].Size != 1000 {
			t.Errorf("1000 bytes: %+v", a)
		}

		unknown := "/v2/direct/in/blobs/uploads/0123456789abcdef0123456789abcdef"
		wantErr(t, "parts of an unknown session", e.do("POST", withQuery(unknown, "size=1000"), nil), http.StatusNotFound, registry.CodeBlobUploadUnknown)
		wantErr(t, "complete an unknown session", completeDirect(e, unknown, digest.FromString("x"), []etagPart{{1, `"x"`}}), http.StatusNotFound, registry.CodeBlobUploadUnknown)
		wantErr(t, "parts of another image's session", e.do("POST", withQuery(strings.Replace(loc, "direct/in", "direct/other", 1), "size=1000"), nil), http.StatusNotFound, registry.CodeBlobUploadUnknown)

		// A session with chunked bytes cannot turn direct, nor be completed as one.
		chunked := e.startUpload("direct/in", "")
		wantStatus(t, "chunk", e.do("PATCH", chunked, randBytes(1000), "Content-Range", "0-999"), http.StatusAccepted)
		wantErr(t, "parts after chunks", e.do("POST", withQuery(chunked, "size=1000"), nil), http.StatusBadRequest, registry.CodeBlobUploadInvalid)
		wantErr(t, "direct completion after chunks", completeDirect(e, chunked, digest.FromString("x"), []etagPart{{1, `"x"`}}), http.StatusBadRequest, registry.CodeBlobUploadInvalid)
		// A session never asked for parts cannot be completed as direct.
		wantErr(t, "direct completion of a plain session", completeDirect(e, e.startUpload("direct/in", ""), digest.FromString("x"), []etagPart{{1, `"x"`}}), http.StatusBadRequest, registry.CodeBlobUploadInvalid)
		// Many parts are listed a thousand at a time.
		big := e.startUpload("direct/in", "")
		a = e.askParts(big, fmt.Sprintf("size=%d&airlock-part-size=%d", int64(2500)*5*mib, 5*mib))
		if a.Count != 2500 || len(a.Parts) != 1000 || a.Next != 1001 {
			t.Errorf("2500 parts: count %d, %d listed, next %d", a.Count, len(a.Parts), a.Next)
		}
		a = e.askParts(big, fmt.Sprintf("size=%d&airlock-part-size=%d&first=2001", int64(2500)*5*mib, 5*mib))
		if len(a.Parts) != 500 || a.Parts[0].Number != 2001 || a.Next != 0 {
			t.Errorf("parts from 2001: %d listed from %d, next %d", len(a.Parts), a.Parts[0].Number, a.Next)
		}
		wantStatus(t, "cancel a direct upload", e.do("DELETE", big, nil), http.StatusNoContent)
	})
}

// TestDirectPendingThroughGroup: a manifest pushed through a group whose
// proxy member's remote is down, referencing a blob whose direct upload is
// still being verified, gets the "verification is pending" answer (400
// MANIFEST_BLOB_UNKNOWN), not the proxy's 503: the pending blob is not
// asked of the other members.
func TestDirectPendingThroughGroup(t *testing.T) {
	onBoth(t, func(t *testing.T, e *env) {
		e = e.sub(t)
		e.deps.Config = mustConfig(t, deadProxyGroup("docker"))
		e.deps.Direct.VerifyInline = 1
		e.deps.Direct.Handoff = func(context.Context, registry.VerifyJob) error { return nil } // never verified here
		e.serve()
		data := randBytes(6 * mib)
		d := digest.FromBytes(data)
		_, r := e.directPush(t, "docker/direct/g", data, d, 0)
		wantStatus(t, "complete", r, http.StatusAccepted)
		m := e.layerManifest("docker/direct/g", data)
		r = e.putManifest("docker/direct/g", "v1", ocispec.MediaTypeImageManifest, m)
		wantErr(t, "manifest through the group while pending", r, http.StatusBadRequest, registry.CodeManifestBlobUnknown)
		if !strings.Contains(errMessage(r), "pending") {
			t.Errorf("message %q does not say verification is pending", errMessage(r))
		}
	})
}

// TestDirectCompleteFlag: airlock-complete takes only the value 1 (README,
// Direct uploads), given once; any other (0, "", true, repeated) is 400
// naming the value, and the session is left as it was.
func TestDirectCompleteFlag(t *testing.T) {
	e := memEnv(t)
	data := randBytes(1000)
	d := digest.FromBytes(data)
	loc := e.startUpload("direct/flag", "")
	e.askParts(loc, "size=1000")
	for _, q := range []string{"airlock-complete=0", "airlock-complete=", "airlock-complete", "airlock-complete=true", "airlock-complete=1&airlock-complete=1"} {
		r := e.do("PUT", withQuery(loc, "digest="+d.String()+"&"+q), mustJSON(map[string]any{"parts": []etagPart{{1, `"x"`}}}))
		wantErr(t, q, r, http.StatusBadRequest, registry.CodeBlobUploadInvalid)
		if msg := errMessage(r); !strings.Contains(msg, "airlock-complete=1") {
			t.Errorf("%s: message %q does not name airlock-complete=1", q, msg)
		}
		wantStatus(t, q+": session after", e.do("GET", loc, nil), http.StatusNoContent)
	}
	e.assertBlobAbsent("direct/flag", d)
}
