// Package registry is Airlock's OCI distribution API as one http.Handler,
// used unchanged by the Lambda function (through the API Gateway adapter) and
// by localdev.
//
// The same handler serves Airlock's own API under /airlock/api/: the admin
// API (admin.go) and, for the web UI of package ui (served under /ui/, the
// root redirecting there), the browse endpoints (browse.go): GET
// /airlock/api/browse/me, repositories, images?repo=, tags?repo=&image=,
// manifest?repo=&image=&ref=[&index=] and search?q=, JSON, paged, authorized like the
// catalog (what the caller may browse or read), reading stored content only.
//
// Spec: https://github.com/opencontainers/distribution-spec/blob/main/spec.md
package registry

import (
	"context"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net/http"
	"strings"
	"time"

	"github.com/airlock-registry/airlock/shared/auth"
	"github.com/airlock-registry/airlock/shared/config"
	"github.com/airlock-registry/airlock/shared/repo"
	"github.com/airlock-registry/airlock/shared/storage"
)

// Deps are what the handler needs.
type Deps struct {
	Meta   storage.Metadata
	Blobs  storage.Blobs
	Config *config.Config
	// MaxBody is the largest request body accepted (0: no limit). It reproduces
	// the AWS front door (API Gateway + Lambda payload limits; README, Architecture: Front-door limits).
	MaxBody int64
	// ManifestRedirectSize bounds the manifest responses sent inline: a GET
	// whose body, as it would travel in a Lambda response (escaped as a JSON
	// string, or base64 when it is not UTF-8), is longer than this many bytes
	// is answered with a 307 to a presigned S3 URL instead (0: never). Only
	// bodies kept in S3 (larger than an item holds) can be that long. The
	// Lambda function sets it under the 6 MB response limit (README, Architecture: Front-door limits).
	ManifestRedirectSize int64
	// PresignTTL is the expiry of presigned blob URLs (default 5 minutes).
	PresignTTL time.Duration
	Logger     *slog.Logger
	// Now is the clock (default time.Now); tests may replace it.
	Now func() time.Time
	// Proxy tunes proxy repositories (fill hand-off, remote transport,
	// time-outs, auto-block back-off).
	Proxy repo.ProxyOptions
	// AuthOptions tune authentication (on when Config.Auth enables it).
	AuthOptions auth.Options
	// Direct tunes direct-to-S3 uploads (README, Direct-to-S3 uploads).
	Direct DirectOptions
	// IngressURL is the base URL (scheme://host[:port], no path) of the
	// upload ingress (README, Upload ingress): the same handler served
	// without the front door's body limit (Registry.Ingress). When set, an
	// upload POST that opens a session answers with an absolute Location on
	// it, so the PATCH and PUT bodies go there. "": relative Locations.
	IngressURL string
	// PurgeNow is the clock of the purge runs of the admin API (default
	// Now); localdev's -purge-clock-ahead sets it ahead for tests.
	PurgeNow func() time.Time
}

// Registry is the handler; build it with New.
type Registry struct {
	Deps
	repos *repo.Set
	auth  *auth.Service // nil: every request is allowed
	// col is Meta's storage.Collector: a manifest PUT touches what it
	// references (package purge's race safety).
	col storage.Collector
	// ingress: this is the upload ingress's view (Ingress): requests on an
	// existing upload session are authorized by the session id.
	ingress bool
}

var _ http.Handler = (*Registry)(nil)

// New checks deps and returns the registry handler.
func New(d Deps) (*Registry, error) {
	if d.Meta == nil || d.Blobs == nil || d.Config == nil {
		return nil, errors.New("registry: Meta, Blobs and Config are required")
	}
	col, ok := d.Meta.(storage.Collector)
	if !ok {
		return nil, fmt.Errorf("registry: the metadata store %T does not implement storage.Collector (every store of this module does)", d.Meta)
	}
	if d.PresignTTL == 0 {
		d.PresignTTL = 5 * time.Minute
	}
	if d.Logger == nil {
		d.Logger = slog.New(slog.NewTextHandler(io.Discard, nil))
	}
	if d.Now == nil {
		d.Now = time.Now
	}
	if d.PurgeNow == nil {
		d.PurgeNow = d.Now
	}
	repos, err := repo.New(context.Background(), d.Config, repo.Deps{Meta: d.Meta, Blobs: d.Blobs, Logger: d.Logger, Now: d.Now, Proxy: d.Proxy})
	if err != nil {
		return nil, fmt.Errorf("registry: %w", err)
	}
	if d.AuthOptions.Now == nil {
		d.AuthOptions.Now = d.Now
	}
	as, err := buildAuth(context.Background(), d, func(name string) (string, string, error) {
		rp, image, err := repos.Resolve(name, "")
		if err != nil {
			return "", "", err
		}
		return rp.Name(), image, nil
	})
	if err != nil {
		return nil, fmt.Errorf("registry: %w", err)
	}
	if d.IngressURL != "" {
		if err := checkIngressURL(d.IngressURL); err != nil {
			return nil, fmt.Errorf("registry: %w", err)
		}
	}
	return &Registry{Deps: d, repos: repos, auth: as, col: col}, nil
}

// Ingress returns the upload ingress's view of the registry (README, Upload
// ingress): the whole API over the same repositories, stores and signing
// keys, without a body limit, whose upload sessions are capabilities: a
// request on an existing session (PATCH, PUT, GET, DELETE, direct-upload
// parts) is authorized by its unguessable id, because stock clients send no
// Authorization header to the absolute Location of another host. Everything
// else needs the usual token (with the ingress host as its service).
func (rg *Registry) Ingress() *Registry {
	v := *rg
	v.MaxBody = 0
	v.IngressURL = ""
	v.ingress = true
	return &v
}

// Repositories returns the configured repositories (the proxyfetch entry
// points and admin calls use them).
func (rg *Registry) Repositories() *repo.Set { return rg.repos }

// ServeHTTP routes a request.
func (rg *Registry) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	w.Header().Set("Docker-Distribution-API-Version", "registry/2.0")
	body := r.Body
	if err := rg.serve(w, r); err != nil {
		var e *Error
		if body != nil && errors.As(err, &e) && e.Status == http.StatusRequestEntityTooLarge {
			// Read what the client is still sending before answering: a server
			// that closes with unread bytes resets the connection, and the
			// client (docker streams a layer as one PATCH) would see the reset
			// instead of this error. The front door does the same.
			_, _ = io.Copy(io.Discard, io.LimitReader(body, maxDrain))
		}
		writeError(w, r, rg.Logger, err)
	}
}

// maxDrain bounds how much of a refused body is read and discarded.
const maxDrain = 1 << 30

func (rg *Registry) serve(w http.ResponseWriter, r *http.Request) error {
	p := r.URL.Path
	if p == "/v2" || p == "/v2/" {
		if r.Method != http.MethodGet && r.Method != http.MethodHead {
			return notAllowed(r.Method, "/v2/", http.MethodGet, http.MethodHead)
		}
		if err := rg.authorizeBase(r); err != nil {
			return err
		}
		w.Header().Set("Content-Type", "application/json")
		w.Header().Set("Content-Length", "2")
		w.WriteHeader(http.StatusOK)
		if r.Method == http.MethodGet {
			_, _ = io.WriteString(w, "{}")
		}
		return nil
	}
	if handled, err := rg.serveWeb(w, r); handled { // the web UI and its browse endpoints (browse.go)
		return err
	}
	if strings.HasPrefix(p, adminPrefix) {
		return rg.admin(w, r)
	}
	switch p {
	case tokenPath:
		return rg.tokenEndpoint(w, r)
	case "/v1/search":
		return rg.search(w, r)
	case "/v1/_ping": // docker search checks the v1 endpoint first
		w.Header().Set("X-Docker-Registry-Standalone", "true")
		writeJSON(w, r, "application/json", map[string]bool{"standalone": true})
		return nil
	}
	if !strings.HasPrefix(p, "/v2/") {
		return apiErr(http.StatusNotFound, CodeNameUnknown, "not a registry path: only /v2/ is served")
	}
	if err := rg.limitBody(r); err != nil {
		return err
	}
	if p == "/v2/_catalog" {
		return rg.catalog(w, r)
	}
	rt, err := parseRoute(r)
	if err != nil {
		return err
	}
	t, err := rg.resolve(r, rt)
	if err != nil {
		return err
	}
	if err := rg.authorize(r, t); err != nil {
		return err
	}
	return rg.dispatch(w, r, t)
}

// dispatch runs the operation.
func (rg *Registry) dispatch(w http.ResponseWriter, r *http.Request, t target) error {
	switch t.op {
	case opBlobGet, opBlobHead:
		return rg.getBlob(w, r, t)
	case opBlobDelete:
		return rg.deleteBlob(w, r, t)
	case opUploadStart:
		return rg.startUpload(w, r, t)
	case opUploadPatch:
		return rg.patchUpload(w, r, t)
	case opUploadPut:
		return rg.putUpload(w, r, t)
	case opUploadStatus:
		return rg.uploadStatus(w, r, t)
	case opUploadParts:
		return rg.presignParts(w, r, t)
	case opUploadCancel:
		return rg.cancelUpload(w, r, t)
	case opManifestGet, opManifestHead:
		return rg.getManifest(w, r, t)
	case opManifestPut:
		return rg.putManifest(w, r, t)
	case opManifestDelete:
		return rg.deleteManifest(w, r, t)
	case opTags:
		return rg.listTags(w, r, t)
	case opReferrers:
		return rg.referrers(w, r, t)
	}
	return apiErr(http.StatusMethodNotAllowed, CodeUnsupported, "method %s not allowed on %s", r.Method, r.URL.Path)
}

// errBodyTooLarge is returned by a request body read past Deps.MaxBody.
var errBodyTooLarge = errors.New("request body too large")

func (rg *Registry) tooLarge() *Error {
	ingress := "or deploy the upload ingress (template parameter UploadIngress=fargate), which takes stock clients' layers of any size"
	if rg.IngressURL != "" {
		ingress = "or open the upload with POST /v2/<name>/blobs/uploads/ (no digest) and send the layer to its Location, on the upload ingress " +
			rg.IngressURL + ", which takes any size"
	}
	return apiErr(http.StatusRequestEntityTooLarge, CodeSizeInvalid,
		"request body exceeds the %d-byte limit of the registry's front door (API Gateway and Lambda cap request payloads); "+
			"push large layers with 'airlock push' / 'airlock copy', which send layers straight to S3 (direct-to-S3 uploads, README), "+
			"%s, or in chunks: PATCH the upload with Content-Range chunks of at most %d bytes "+
			"(regctl: 'regctl registry set --blob-chunk %d <host>'); the upload session stays open, continue it in chunks",
		rg.MaxBody, ingress, rg.MaxBody, rg.MaxBody)
}

// limitBody answers 413 at once when Content-Length is over the limit and
// otherwise caps the body so that a streamed body fails with errBodyTooLarge.
func (rg *Registry) limitBody(r *http.Request) error {
	if rg.MaxBody <= 0 || r.Body == nil {
		return nil
	}
	if r.ContentLength > rg.MaxBody {
		return rg.tooLarge()
	}
	r.Body = &cappedBody{ReadCloser: r.Body, left: rg.MaxBody}
	return nil
}

type cappedBody struct {
	io.ReadCloser
	left int64
}

func (c *cappedBody) Read(p []byte) (int, error) {
	if c.left < 0 {
		return 0, errBodyTooLarge
	}
	if int64(len(p)) > c.left+1 {
		p = p[:c.left+1]
	}
	n, err := c.ReadCloser.Read(p)
	c.left -= int64(n)
	if c.left < 0 {
		return n, errBodyTooLarge
	}
	return n, err
}

// bodyErr turns a failed body read into the right API error.
func (rg *Registry) bodyErr(err error, what string) error {
	if errors.Is(err, errBodyTooLarge) {
		return rg.tooLarge()
	}
	return fmt.Errorf("%s: %w", what, err)
}
