package registry

import (
	"net/http"
	"path"
	"regexp"
	"strings"

	"github.com/airlock-registry/airlock/shared/repo"
	"github.com/airlock-registry/airlock/shared/storage"
)

// op is a typed operation of the distribution API, parsed once from the
// method and path (route), before the name is resolved to a repository.
type op int

// Operations.
const (
	opBlobGet op = iota
	opBlobHead
	opBlobDelete
	opUploadStart
	opUploadPatch
	opUploadPut
	opUploadStatus
	opUploadCancel
	opManifestGet
	opManifestHead
	opManifestPut
	opManifestDelete
	opTags
	opReferrers
	// opUploadParts asks for a direct upload's part URLs (POST <location>; direct.go).
	opUploadParts
)

// writes reports whether the operation changes a repository (it goes to the
// hosted repository Repository.Push returns).
func (o op) writes() bool {
	switch o {
	case opBlobDelete, opUploadStart, opUploadPatch, opUploadPut, opUploadCancel, opUploadParts, opManifestPut, opManifestDelete:
		return true
	}
	return false
}

// route is a parsed request: what is asked of which name. Pure: no storage.
type route struct {
	op   op
	full string // the name as the client wrote it
	ref  string // digest, upload id, tag or digest ("" for tags and upload start)
}

// target is a resolved request: the route plus the repository serving it.
type target struct {
	route
	repo repo.Repository
	// name is the image's name inside repo.
	name string
	// hosted takes the writes (write operations only); img is the image
	// written there, or for reads the image's address in repo.
	hosted *repo.Hosted
	img    storage.Image
	// kind is the route's endpoint family (for messages).
	kind string
}

// nameRe is a repository name (distribution spec).
var nameRe = regexp.MustCompile(`^[a-z0-9]+(?:(?:\.|_|__|-+)[a-z0-9]+)*(?:/[a-z0-9]+(?:(?:\.|_|__|-+)[a-z0-9]+)*)*$`)

// uploadIDRe matches the session ids newID makes.
var uploadIDRe = regexp.MustCompile(`^[0-9a-f]{32}$`)

// maxNameLength is the longest name accepted (distribution's limit).
const maxNameLength = 255

// parseRoute splits /v2/<name>/<kind>/<ref> and picks the operation.
func parseRoute(r *http.Request) (route, error) {
	if strings.Contains(r.URL.RawPath, "%") {
		return route{}, apiErr(http.StatusBadRequest, CodeNameInvalid, "escaped characters are not allowed in registry paths")
	}
	p := r.URL.Path
	kind, rt, err := parsePath(p)
	if err != nil {
		return rt, err
	}
	m := r.Method
	get := m == http.MethodGet || m == http.MethodHead
	ok := true
	switch kind {
	case "blob":
		switch {
		case m == http.MethodGet:
			rt.op = opBlobGet
		case m == http.MethodHead:
			rt.op = opBlobHead
		case m == http.MethodDelete:
			rt.op = opBlobDelete
		default:
			ok = false
		}
	case "upload":
		switch {
		case m == http.MethodPost && rt.ref == "":
			rt.op = opUploadStart
		case m == http.MethodPost:
			rt.op = opUploadParts
		case m == http.MethodPatch && rt.ref != "":
			rt.op = opUploadPatch
		case m == http.MethodPut && rt.ref != "":
			rt.op = opUploadPut
		case get && rt.ref != "":
			rt.op = opUploadStatus
		case m == http.MethodDelete && rt.ref != "":
			rt.op = opUploadCancel
		default:
			ok = false
		}
	case "manifest":
		switch {
		case m == http.MethodGet:
			rt.op = opManifestGet
		case m == http.MethodHead:
			rt.op = opManifestHead
		case m == http.MethodPut:
			rt.op = opManifestPut
		case m == http.MethodDelete:
			rt.op = opManifestDelete
		default:
			ok = false
		}
	case "tags":
		rt.op, ok = opTags, get
	case "referrers":
		rt.op, ok = opReferrers, get
	}
	if !ok {
		return rt, notAllowed(m, p, allowed(kind, rt.ref)...)
	}
	return rt, nil
}

// allowed lists the methods an endpoint kind takes (ref: the route's ref).
func allowed(kind, ref string) []string {
	switch {
	case kind == "blob":
		return []string{http.MethodGet, http.MethodHead, http.MethodDelete}
	case kind == "upload" && ref == "":
		return []string{http.MethodPost}
	case kind == "upload":
		return []string{http.MethodGet, http.MethodHead, http.MethodPatch, http.MethodPut, http.MethodDelete, http.MethodPost}
	case kind == "manifest":
		return []string{http.MethodGet, http.MethodHead, http.MethodPut, http.MethodDelete}
	}
	return []string{http.MethodGet, http.MethodHead} // tags, referrers
}

// parsePath parses a decoded /v2/... path into the endpoint kind and route.
func parsePath(p string) (string, route, error) {
	rest := strings.TrimPrefix(p, "/v2/")
	trailing := strings.HasSuffix(rest, "/")
	rest = strings.TrimSuffix(rest, "/")
	if cleaned := path.Clean("/" + rest); cleaned != "/"+rest {
		return "", route{}, apiErr(http.StatusBadRequest, CodeNameInvalid, "path %q is not clean (no '.', '..' or empty components)", p)
	}
	segs := strings.Split(rest, "/")
	n := len(segs)
	var rt route
	var kind string
	var nameSegs []string
	switch {
	case n >= 3 && segs[n-2] == "blobs" && segs[n-1] == "uploads":
		kind, nameSegs = "upload", segs[:n-2]
	case n >= 4 && segs[n-3] == "blobs" && segs[n-2] == "uploads" && !trailing:
		kind, rt.ref, nameSegs = "upload", segs[n-1], segs[:n-3]
	case n >= 3 && segs[n-2] == "blobs" && !trailing:
		kind, rt.ref, nameSegs = "blob", segs[n-1], segs[:n-2]
	case n >= 3 && segs[n-2] == "manifests" && !trailing:
		kind, rt.ref, nameSegs = "manifest", segs[n-1], segs[:n-2]
	case n >= 3 && segs[n-2] == "tags" && segs[n-1] == "list":
		kind, nameSegs = "tags", segs[:n-2]
	case n >= 3 && segs[n-2] == "referrers" && !trailing:
		kind, rt.ref, nameSegs = "referrers", segs[n-1], segs[:n-2]
	default:
		return "", route{}, unknownEndpoint(p)
	}
	if kind == "upload" && rt.ref != "" && !uploadIDRe.MatchString(rt.ref) {
		return "", route{}, uploadUnknown(rt.ref)
	}
	rt.full = strings.Join(nameSegs, "/")
	if err := checkName(rt.full); err != nil {
		return "", route{}, err
	}
	return kind, rt, nil
}

// unknownEndpoint is the 404 of a /v2/ path that is no endpoint of the
// distribution spec: UNSUPPORTED (the spec's code for an operation the
// registry does not offer; no repository name is unknown), listing the
// endpoints there are.
func unknownEndpoint(p string) error {
	return apiErr(http.StatusNotFound, CodeUnsupported, "no registry endpoint at %s: the endpoints are /v2/, /v2/_catalog, /v2/<name>/manifests/<reference>, "+
		"/v2/<name>/blobs/<digest>, /v2/<name>/blobs/uploads/ (and /v2/<name>/blobs/uploads/<session>), /v2/<name>/tags/list and /v2/<name>/referrers/<digest>", echo(p))
}

// checkName validates a repository name.
func checkName(full string) error {
	if len(full) > maxNameLength {
		return apiErr(http.StatusBadRequest, CodeNameInvalid, "repository name is %d characters long; the limit is %d", len(full), maxNameLength)
	}
	if !nameRe.MatchString(full) {
		return apiErr(http.StatusBadRequest, CodeNameInvalid, "invalid repository name %q: components are lower-case letters and digits separated by '.', '_', '__' or '-'", full)
	}
	return nil
}

// resolve finds the repository serving the route's name and, for writes,
// the hosted repository that takes them.
func (rg *Registry) resolve(r *http.Request, rt route) (target, error) {
	rp, name, err := rg.repos.Resolve(rt.full, r.URL.Query().Get("ns"))
	if err != nil {
		return target{}, apiErr(http.StatusNotFound, CodeNameUnknown, "%v", err)
	}
	t := target{route: rt, repo: rp, name: name, img: storage.Image{Repo: rp.Name(), Name: name}}
	if rt.op.writes() {
		h, err := rp.Push()
		if err != nil {
			return t, err
		}
		t.hosted, t.img = h, h.Image(name)
	}
	if rt.op == opUploadStatus { // a read of a session, which lives where pushes go
		if h, err := rp.Push(); err == nil {
			t.img = h.Image(name)
		}
	}
	return t, nil
}
