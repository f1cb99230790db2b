// Package registry is Airlock's OCI distribution API as one http.Handler,
// used unchanged by the Lambda function (through the API Gateway adapter) and
// by localdev.
//
// Spec: https://github.com/opencontainers/distribution-spec/blob/main/spec.md
package registry

import (
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net/http"
	"path"
	"regexp"
	"strings"
	"time"

	"github.com/airlock-registry/airlock/shared/config"
	"github.com/airlock-registry/airlock/shared/storage"
)

// Deps are what the handler needs.
type Deps struct {
	Meta   storage.Metadata
	Blobs  storage.Blobs
	Config *config.Config
	// MaxBody is the largest request body accepted (0: no limit). It reproduces
	// the AWS front door (API Gateway + Lambda payload limits, DESIGN §6).
	MaxBody int64
	// ManifestRedirectSize bounds the manifest responses sent inline: a GET
	// whose body, as it would travel in a Lambda response (escaped as a JSON
	// string, or base64 when it is not UTF-8), is longer than this many bytes
	// is answered with a 307 to a presigned S3 URL instead (0: never). Only
	// bodies kept in S3 (larger than an item holds) can be that long. The
	// Lambda function sets it under the 6 MB response limit (DESIGN §6).
	ManifestRedirectSize int64
	// PresignTTL is the expiry of presigned blob URLs (default 5 minutes).
	PresignTTL time.Duration
	Logger     *slog.Logger
	// Now is the clock (default time.Now); tests may replace it.
	Now func() time.Time
}

// Registry is the handler; build it with New.
type Registry struct {
	Deps
}

var _ http.Handler = (*Registry)(nil)

// New checks deps and returns the registry handler.
func New(d Deps) (*Registry, error) {
	if d.Meta == nil || d.Blobs == nil || d.Config == nil {
		return nil, errors.New("registry: Meta, Blobs and Config are required")
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
	return &Registry{Deps: d}, nil
}

// target is a parsed request path: the image and what of it is addressed.
type target struct {
	full string // the name as the client wrote it
	img  storage.Image
	repo *config.Repository
	kind string // "blob", "upload", "manifest", "tags", "referrers"
	ref  string // digest, upload id, tag or digest
}

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
			return apiErr(http.StatusMethodNotAllowed, CodeUnsupported, "method %s not allowed on /v2/", r.Method)
		}
		w.Header().Set("Content-Type", "application/json")
		w.Header().Set("Content-Length", "2")
		w.WriteHeader(http.StatusOK)
		if r.Method == http.MethodGet {
			_, _ = io.WriteString(w, "{}")
		}
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
	t, err := rg.parse(r)
	if err != nil {
		return err
	}
	switch t.kind {
	case "blob":
		switch r.Method {
		case http.MethodGet, http.MethodHead:
			return rg.getBlob(w, r, t)
		case http.MethodDelete:
			return rg.deleteBlob(w, r, t)
		}
	case "upload":
		switch r.Method {
		case http.MethodPost:
			if t.ref == "" {
				return rg.startUpload(w, r, t)
			}
		case http.MethodPatch:
			return rg.patchUpload(w, r, t)
		case http.MethodPut:
			return rg.putUpload(w, r, t)
		case http.MethodGet, http.MethodHead:
			return rg.uploadStatus(w, r, t)
		case http.MethodDelete:
			return rg.cancelUpload(w, r, t)
		}
	case "manifest":
		switch r.Method {
		case http.MethodGet, http.MethodHead:
			return rg.getManifest(w, r, t)
		case http.MethodPut:
			return rg.putManifest(w, r, t)
		case http.MethodDelete:
			return rg.deleteManifest(w, r, t)
		}
	case "tags":
		if r.Method == http.MethodGet || r.Method == http.MethodHead {
			return rg.listTags(w, r, t)
		}
	case "referrers":
		if r.Method == http.MethodGet || r.Method == http.MethodHead {
			return rg.referrers(w, r, t)
		}
	}
	return apiErr(http.StatusMethodNotAllowed, CodeUnsupported, "method %s not allowed on %s", r.Method, p)
}

// nameComponent is one path component of a repository name (distribution spec).
var nameRe = regexp.MustCompile(`^[a-z0-9]+(?:(?:\.|_|__|-+)[a-z0-9]+)*(?:/[a-z0-9]+(?:(?:\.|_|__|-+)[a-z0-9]+)*)*$`)

// uploadIDRe matches the session ids newID makes.
var uploadIDRe = regexp.MustCompile(`^[0-9a-f]{32}$`)

// maxNameLength is the longest name accepted (distribution's limit).
const maxNameLength = 255

// parse splits /v2/<name>/<kind>/<ref> and resolves the repository.
func (rg *Registry) parse(r *http.Request) (target, error) {
	if strings.Contains(r.URL.RawPath, "%") {
		return target{}, apiErr(http.StatusBadRequest, CodeNameInvalid, "escaped characters are not allowed in registry paths")
	}
	return rg.parsePath(r.URL.Path)
}

// parsePath resolves a decoded /v2/... path.
func (rg *Registry) parsePath(p string) (target, error) {
	rest := strings.TrimPrefix(p, "/v2/")
	trailing := strings.HasSuffix(rest, "/")
	rest = strings.TrimSuffix(rest, "/")
	if cleaned := path.Clean("/" + rest); cleaned != "/"+rest {
		return target{}, apiErr(http.StatusBadRequest, CodeNameInvalid, "path %q is not clean (no '.', '..' or empty components)", p)
	}
	segs := strings.Split(rest, "/")
	n := len(segs)
	var t target
	var nameSegs []string
	switch {
	case n >= 3 && segs[n-2] == "blobs" && segs[n-1] == "uploads":
		t.kind, nameSegs = "upload", segs[:n-2]
	case n >= 4 && segs[n-3] == "blobs" && segs[n-2] == "uploads" && !trailing:
		t.kind, t.ref, nameSegs = "upload", segs[n-1], segs[:n-3]
	case n >= 3 && segs[n-2] == "blobs" && !trailing:
		t.kind, t.ref, nameSegs = "blob", segs[n-1], segs[:n-2]
	case n >= 3 && segs[n-2] == "manifests" && !trailing:
		t.kind, t.ref, nameSegs = "manifest", segs[n-1], segs[:n-2]
	case n >= 3 && segs[n-2] == "tags" && segs[n-1] == "list":
		t.kind, nameSegs = "tags", segs[:n-2]
	case n >= 3 && segs[n-2] == "referrers" && !trailing:
		t.kind, t.ref, nameSegs = "referrers", segs[n-1], segs[:n-2]
	default:
		return target{}, apiErr(http.StatusNotFound, CodeNameUnknown, "no registry endpoint at %s", p)
	}
	if t.kind == "upload" && t.ref != "" && !uploadIDRe.MatchString(t.ref) {
		return target{}, uploadUnknown(t.ref)
	}
	t.full = strings.Join(nameSegs, "/")
	if len(t.full) > maxNameLength {
		return target{}, apiErr(http.StatusBadRequest, CodeNameInvalid, "repository name is %d characters long; the limit is %d", len(t.full), maxNameLength)
	}
	if !nameRe.MatchString(t.full) {
		return target{}, apiErr(http.StatusBadRequest, CodeNameInvalid, "invalid repository name %q: components are lower-case letters and digits separated by '.', '_', '__' or '-'", t.full)
	}
	if repo, ok := rg.Config.Repository(nameSegs[0]); ok && len(nameSegs) > 1 {
		t.repo, t.img = repo, storage.Image{Repo: repo.Name, Name: strings.Join(nameSegs[1:], "/")}
	} else if rg.Config.Default != "" {
		t.repo, _ = rg.Config.Repository(rg.Config.Default)
		t.img = storage.Image{Repo: t.repo.Name, Name: t.full}
	} else {
		return target{}, apiErr(http.StatusNotFound, CodeNameUnknown, "%q names no repository and no default repository is configured", t.full)
	}
	return t, nil
}

// errBodyTooLarge is returned by a request body read past Deps.MaxBody.
var errBodyTooLarge = errors.New("request body too large")

func (rg *Registry) tooLarge() *Error {
	return apiErr(http.StatusRequestEntityTooLarge, CodeSizeInvalid,
		"request body exceeds the %d-byte limit of the registry's front door (API Gateway and Lambda cap request payloads); "+
			"push large layers in chunks: PATCH the upload with Content-Range chunks of at most %d bytes "+
			"(regctl: 'regctl registry set --blob-chunk %d <host>'); the upload session stays open, continue it in chunks",
		rg.MaxBody, rg.MaxBody, rg.MaxBody)
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

// denyWrites refuses any change to a read-only repository.
func denyWrites(t target) error {
	if t.repo.Policy == config.PolicyReadOnly {
		return apiErr(http.StatusForbidden, CodeDenied, "repository %q is read-only (deployment policy read-only)", t.repo.Name)
	}
	return nil
}
