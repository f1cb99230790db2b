package registry_test

import (
	"bytes"
	"context"
	"io"
	"net"
	"net/http"
	"net/http/httptest"
	"net/url"
	"strings"
	"testing"
	"time"

	digest "github.com/opencontainers/go-digest"

	"github.com/airlock-registry/airlock/shared/auth"
	"github.com/airlock-registry/airlock/shared/registry"
	"github.com/airlock-registry/airlock/shared/storage/memstore"
)

// ingressEnv is a registry with a body limit (the front door) and its
// upload ingress (Registry.Ingress) on a second server, auth on.
type ingressEnv struct {
	*authEnv
	ingress *httptest.Server
	limit   int64
}

func newIngressEnv(t *testing.T) *ingressEnv {
	t.Helper()
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	e := &ingressEnv{authEnv: &authEnv{t: t, clock: &clock{now: time.Now()}}, limit: 1 << 20}
	st := memstore.New(memstore.WithClock(e.clock.Now))
	t.Cleanup(func() { st.Close() })
	reg, err := registry.New(registry.Deps{Meta: st, Blobs: st, Config: mustConfig(t, authConfig), Now: e.clock.Now,
		AuthOptions: auth.Options{BcryptCost: 4}, MaxBody: e.limit, IngressURL: "http://" + l.Addr().String()})
	if err != nil {
		t.Fatal(err)
	}
	e.reg = reg
	e.srv = httptest.NewServer(reg)
	t.Cleanup(e.srv.Close)
	e.host = strings.TrimPrefix(e.srv.URL, "http://")
	e.ingress = &httptest.Server{Listener: l, Config: &http.Server{Handler: reg.Ingress()}}
	e.ingress.Start()
	t.Cleanup(e.ingress.Close)
	if err := reg.Auth().Users.CreateUser(context.Background(), "alice", "alice-password-1234", []string{"team-a"}); err != nil {
		t.Fatal(err)
	}
	return e
}

// send sends method u (absolute) with body and optional bearer token.
func (e *ingressEnv) send(method, u, bearer string, body []byte) resp {
	e.t.Helper()
	var rd io.Reader
	if body != nil {
		rd = bytes.NewReader(body)
	}
	req, err := http.NewRequest(method, u, rd)
	if err != nil {
		e.t.Fatal(err)
	}
	if bearer != "" {
		req.Header.Set("Authorization", "Bearer "+bearer)
	}
	res, err := noRedirect.Do(req)
	if err != nil {
		e.t.Fatal(err)
	}
	defer res.Body.Close()
	b, _ := io.ReadAll(res.Body)
	return resp{Status: res.StatusCode, Header: res.Header, Body: b}
}

// TestIngressUpload: with an ingress, the front door's upload POST answers
// with an absolute Location on the ingress, where a layer over the front
// door's limit is sent and completed without a token (the session id is the
// capability); the blob is then visible on the front door.
func TestIngressUpload(t *testing.T) {
	e := newIngressEnv(t)
	tok, r := e.token("alice", "repository:team-a/app:pull,push")
	wantStatus(t, "token", r, http.StatusOK)
	r = e.req(http.MethodPost, "/v2/team-a/app/blobs/uploads/", tok)
	wantStatus(t, "POST upload", r, http.StatusAccepted)
	loc := r.Header.Get("Location")
	if !strings.HasPrefix(loc, e.ingress.URL+"/v2/team-a/app/blobs/uploads/") {
		t.Fatalf("POST upload: Location %q, want an absolute URL on the ingress %s", loc, e.ingress.URL)
	}
	if v := r.Header.Get("OCI-Chunk-Max-Length"); v != "" {
		t.Errorf("POST upload with an ingress: OCI-Chunk-Max-Length %q, want none (the ingress takes any length)", v)
	}
	data := randBytes(3 << 20) // three times the front door's limit
	d := digest.FromBytes(data)

	// The same body on the front door is refused with the ingress named.
	r = e.send(http.MethodPatch, e.srv.URL+strings.TrimPrefix(loc, e.ingress.URL), tok, data)
	wantErr(t, "PATCH on the front door", r, http.StatusRequestEntityTooLarge, registry.CodeSizeInvalid)
	if msg := errMessage(r); !strings.Contains(msg, e.ingress.URL) || !strings.Contains(msg, "airlock push") {
		t.Errorf("413 with an ingress: message %q names neither the ingress %s nor airlock push", msg, e.ingress.URL)
	}

	// On the ingress, no token: docker and crane send none to another host.
	r = e.send(http.MethodPatch, loc, "", data)
	wantStatus(t, "PATCH on the ingress", r, http.StatusAccepted)
	wantHeader(t, "PATCH on the ingress", r, "Range", "0-3145727")
	next, err := url.Parse(e.ingress.URL)
	if err != nil {
		t.Fatal(err)
	}
	next, err = next.Parse(r.Header.Get("Location"))
	if err != nil {
		t.Fatal(err)
	}
	r = e.send(http.MethodGet, next.String(), "", nil)
	wantStatus(t, "GET upload status on the ingress", r, http.StatusNoContent)
	// skopeo sends the front door's token (another service) along: ignored.
	r = e.send(http.MethodPut, next.String()+"?digest="+d.String(), tok, nil)
	wantStatus(t, "PUT on the ingress", r, http.StatusCreated)
	r = e.req(http.MethodHead, "/v2/team-a/app/blobs/"+d.String(), tok)
	wantStatus(t, "HEAD the blob on the front door", r, http.StatusOK)
	wantHeader(t, "HEAD the blob on the front door", r, "Content-Length", "3145728")

	// A mount and a monolithic POST complete on the front door: relative Locations.
	tok2, _ := e.token("alice", "repository:team-a/other:pull,push", "repository:team-a/app:pull")
	r = e.req(http.MethodPost, "/v2/team-a/other/blobs/uploads/?mount="+d.String()+"&from=team-a/app", tok2)
	wantStatus(t, "mount", r, http.StatusCreated)
	wantHeader(t, "mount", r, "Location", "/v2/team-a/other/blobs/"+d.String())
	small := randBytes(1000)
	ds := digest.FromBytes(small)
	r = e.send(http.MethodPost, e.srv.URL+"/v2/team-a/other/blobs/uploads/?digest="+ds.String(), tok2, small)
	wantStatus(t, "monolithic POST", r, http.StatusCreated)
	wantHeader(t, "monolithic POST", r, "Location", "/v2/team-a/other/blobs/"+ds.String())
}

// TestIngressAuth: on the ingress only requests on an existing session of
// the same image go without a token; everything else is challenged with the
// ingress's own realm, and a session id used under another image, or an
// unknown one, is 404 BLOB_UPLOAD_UNKNOWN.
func TestIngressAuth(t *testing.T) {
	e := newIngressEnv(t)
	ing := e.ingress.URL
	ingHost := strings.TrimPrefix(ing, "http://")
	wantChallenge := func(what string, r resp) {
		t.Helper()
		wantErr(t, what, r, http.StatusUnauthorized, registry.CodeUnauthorized)
		if h := r.Header.Get("Www-Authenticate"); !strings.Contains(h, `realm="`+ing+`/v2/token"`) || !strings.Contains(h, `service="`+ingHost+`"`) {
			t.Errorf("%s: Www-Authenticate %q, want the ingress's realm and service", what, h)
		}
	}
	d := digest.FromBytes([]byte("x"))
	wantChallenge("GET /v2/", e.send(http.MethodGet, ing+"/v2/", "", nil))
	wantChallenge("POST upload", e.send(http.MethodPost, ing+"/v2/team-a/app/blobs/uploads/", "", nil))
	wantChallenge("monolithic POST", e.send(http.MethodPost, ing+"/v2/team-a/app/blobs/uploads/?digest="+d.String(), "", []byte("x")))
	wantChallenge("blob GET", e.send(http.MethodGet, ing+"/v2/team-a/app/blobs/"+d.String(), "", nil))
	wantChallenge("manifest PUT", e.send(http.MethodPut, ing+"/v2/team-a/app/manifests/1", "", []byte("{}")))
	wantChallenge("tags", e.send(http.MethodGet, ing+"/v2/team-a/app/tags/list", "", nil))
	// A token for the front door's service is not one for the ingress's.
	tok, _ := e.token("alice", "repository:team-a/app:pull,push")
	wantChallenge("POST upload with the front door's token", e.send(http.MethodPost, ing+"/v2/team-a/app/blobs/uploads/", tok, nil))

	r := e.req(http.MethodPost, "/v2/team-a/app/blobs/uploads/", tok)
	wantStatus(t, "POST upload", r, http.StatusAccepted)
	id := r.Header.Get("Docker-Upload-UUID")
	unknown := strings.Repeat("0", len(id))
	for _, tc := range []struct{ what, method, path string }{
		{"PATCH of an unknown session", http.MethodPatch, "/v2/team-a/app/blobs/uploads/" + unknown},
		{"PUT of an unknown session", http.MethodPut, "/v2/team-a/app/blobs/uploads/" + unknown + "?digest=" + d.String()},
		{"GET of an unknown session", http.MethodGet, "/v2/team-a/app/blobs/uploads/" + unknown},
		{"DELETE of an unknown session", http.MethodDelete, "/v2/team-a/app/blobs/uploads/" + unknown},
		{"parts of an unknown session", http.MethodPost, "/v2/team-a/app/blobs/uploads/" + unknown + "?size=10"},
		{"PATCH of the session under another image", http.MethodPatch, "/v2/team-b/app/blobs/uploads/" + id},
		{"PUT of the session under another image", http.MethodPut, "/v2/team-b/app/blobs/uploads/" + id + "?digest=" + d.String()},
		{"DELETE of the session under another image", http.MethodDelete, "/v2/team-b/app/blobs/uploads/" + id},
	} {
		r := e.send(tc.method, ing+tc.path, "", []byte("x"))
		wantErr(t, tc.what, r, http.StatusNotFound, registry.CodeBlobUploadUnknown)
	}
	// The session itself is untouched by all that, and can be cancelled.
	r = e.send(http.MethodGet, ing+"/v2/team-a/app/blobs/uploads/"+id, "", nil)
	wantStatus(t, "GET the session", r, http.StatusNoContent)
	wantHeader(t, "GET the session", r, "Range", "0-0")
	r = e.send(http.MethodDelete, ing+"/v2/team-a/app/blobs/uploads/"+id, "", nil)
	wantStatus(t, "DELETE the session", r, http.StatusNoContent)
	r = e.send(http.MethodPatch, ing+"/v2/team-a/app/blobs/uploads/"+id, "", []byte("x"))
	wantErr(t, "PATCH after DELETE", r, http.StatusNotFound, registry.CodeBlobUploadUnknown)
}

// TestIngressURLChecked: a malformed ingress URL stops New with a message
// showing the expected form; without an ingress the 413 names how to get one.
func TestIngressURLChecked(t *testing.T) {
	st := memstore.New()
	t.Cleanup(func() { st.Close() })
	for _, u := range []string{"push.example.com", "ftp://push.example.com", "https://push.example.com/", "https://push.example.com/x", "https://push.example.com?a=1", "https://"} {
		_, err := registry.New(registry.Deps{Meta: st, Blobs: st, Config: mustConfig(t, testConfig), IngressURL: u})
		if err == nil || !strings.Contains(err.Error(), "want scheme://host[:port]") {
			t.Errorf("IngressURL %q: err %v, want a refusal showing the form", u, err)
		}
	}
	reg, err := registry.New(registry.Deps{Meta: st, Blobs: st, Config: mustConfig(t, testConfig), MaxBody: 1000})
	if err != nil {
		t.Fatal(err)
	}
	srv := httptest.NewServer(reg)
	t.Cleanup(srv.Close)
	e := &ingressEnv{authEnv: &authEnv{t: t, srv: srv}}
	r := e.send(http.MethodPost, srv.URL+"/v2/app/blobs/uploads/", "", nil)
	wantStatus(t, "POST upload", r, http.StatusAccepted)
	if loc := r.Header.Get("Location"); !strings.HasPrefix(loc, "/v2/app/blobs/uploads/") {
		t.Errorf("POST upload without an ingress: Location %q, want a relative one", loc)
	}
	r = e.send(http.MethodPatch, srv.URL+r.Header.Get("Location"), "", randBytes(2000))
	wantErr(t, "PATCH over the limit", r, http.StatusRequestEntityTooLarge, registry.CodeSizeInvalid)
	if msg := errMessage(r); !strings.Contains(msg, "airlock push") || !strings.Contains(msg, "UploadIngress=fargate") {
		t.Errorf("413 without an ingress: message %q does not name both ways out (airlock push, the upload ingress)", msg)
	}
}
