package registry

import (
	"net/http"
	"slices"
	"strconv"
	"strings"
	"sync"

	"github.com/airlock-registry/airlock/shared/auth"
	"github.com/airlock-registry/airlock/shared/config"
	"github.com/airlock-registry/airlock/shared/repo"
	"github.com/airlock-registry/airlock/shared/storage"
	"github.com/airlock-registry/airlock/shared/ui"
)

// browsePrefix is where the browse endpoints of the web UI live (package
// ui serves the pages under ui.Prefix).
const browsePrefix = adminPrefix + "browse/"

// The browse endpoints (GET or HEAD; JSON; errors in the OCI envelope):
//
//	GET /airlock/api/browse/me                      {auth, user, admin}: who the caller is
//	GET /airlock/api/browse/repositories            every repository the caller may see: kind, policy,
//	                                                anonymousPull, members, writeMember; a proxy's remote and health
//	GET /airlock/api/browse/images?repo=&n=&last=   image names of a repository (a group: of its members), paged
//	GET /airlock/api/browse/tags?repo=&image=&n=&last=
//	                                                tags with digest, media type, size, total size,
//	                                                push and creation time, an index's platforms; paged
//	GET /airlock/api/browse/manifest?repo=&image=&ref=&index=
//	                                                one manifest by tag or digest: its platform, config, layers,
//	                                                an index's manifests, annotations, subject and referrers;
//	                                                index (a digest): ref is that index's manifest for one platform
//	GET /airlock/api/browse/search?q=&n=&page=      images whose name contains q (the catalog; no remote index)
//
// They read what Airlock stores (hosted images and proxy caches), never a
// remote. Authorization is the catalog's: with auth on, an image is listed
// when the caller (a bearer token from /v2/token, HTTP Basic, or nobody)
// may browse or read it in the repository viewed (the group's privileges
// for a group); a repository when some privilege names it
// (auth.Service.CanBrowseRepository). What the caller may not see answers
// like what does not exist: 401 for anonymous (log in), 404 otherwise.
// Paged lists (n at most 100 tags or 200 images) keep answers far under
// Lambda's 6 MB response limit; `next` is the `last` of the following page.
// Answers carry the UI's security headers and Cache-Control: no-store.

// uiHandler serves the embedded UI files.
var uiHandler = sync.OnceValue(ui.New)

// serveWeb serves the web UI (/, /ui, /ui/...) and the browse endpoints;
// handled is false for every other path.
func (rg *Registry) serveWeb(w http.ResponseWriter, r *http.Request) (handled bool, err error) {
	p := r.URL.Path
	switch {
	case p == "/" || p == "/ui" || strings.HasPrefix(p, ui.Prefix):
		uiHandler().ServeHTTP(w, r)
		return true, nil
	case strings.HasPrefix(p, browsePrefix):
		ui.SetSecurityHeaders(w.Header())
		w.Header().Set("Cache-Control", "no-store")
		return true, rg.browse(w, r, strings.TrimPrefix(p, browsePrefix))
	}
	return false, nil
}

// Page sizes of the browse endpoints.
const (
	defaultImagesPage = 50
	maxImagesPage     = 200
	defaultTagsPage   = 25
	maxTagsPage       = 100
	// maxBrowseRounds bounds the listing pages read per source for one
	// answer when names the caller may not see are skipped (the answer then
	// has fewer items and a next cursor).
	maxBrowseRounds = 10
)

func (rg *Registry) browse(w http.ResponseWriter, r *http.Request, what string) error {
	if r.Method != http.MethodGet && r.Method != http.MethodHead {
		return notAllowed(r.Method, r.URL.Path, http.MethodGet, http.MethodHead)
	}
	id, err := rg.listCaller(r)
	if err != nil {
		return err
	}
	switch what {
	case "me":
		writeJSON(w, r, "application/json", struct {
			Auth  bool   `json:"auth"`
			User  string `json:"user,omitempty"`
			Admin bool   `json:"admin"`
		}{rg.auth != nil, id.Name, rg.auth == nil || rg.auth.IsAdmin(id)})
		return nil
	case "repositories":
		return rg.browseRepositories(w, r, id)
	case "images":
		return rg.browseImages(w, r, id)
	case "tags":
		return rg.browseTags(w, r, id)
	case "manifest":
		return rg.browseManifest(w, r, id)
	case "search":
		return rg.browseSearch(w, r, id)
	}
	return apiErr(http.StatusNotFound, CodeNameUnknown, "no browse endpoint at %s%s (me, repositories, images, tags, manifest, search)", browsePrefix, echo(what))
}

// seesRepo reports whether id may see repository name.
func (rg *Registry) seesRepo(id auth.Identity, name string) bool {
	return rg.auth == nil || rg.auth.CanBrowseRepository(id, name)
}

// seesImage reports whether id may browse or read image in repository repoName.
func (rg *Registry) seesImage(id auth.Identity, repoName, image string) bool {
	if rg.auth == nil {
		return true
	}
	p := auth.Path(image)
	return rg.auth.Can(id, repoName, p, config.ActionBrowse) || rg.auth.Can(id, repoName, p, config.ActionRead)
}

// hidden is the answer about what does not exist or id may not see (the
// same answer, so that nothing tells them apart).
func (rg *Registry) hidden(r *http.Request, id auth.Identity, code Code, format string, args ...any) error {
	e := apiErr(http.StatusNotFound, code, format, args...)
	if rg.auth != nil && id.Anonymous() {
		c := challenge(r, "", e.Message+" for anonymous visitors: log in to see more")
		return c
	}
	if rg.auth != nil {
		e.Message += " (or you may not browse it)"
	}
	return e
}

// browseRepo reads ?repo= and returns the repository, if id may see it.
func (rg *Registry) browseRepo(r *http.Request, id auth.Identity) (repo.Repository, error) {
	name := r.URL.Query().Get("repo")
	if name == "" {
		return nil, apiErr(http.StatusBadRequest, CodeNameInvalid, "?repo= is required: a repository name (GET %srepositories lists them)", browsePrefix)
	}
	rp, ok := rg.repos.Get(name)
	if !ok || !rg.seesRepo(id, name) {
		return nil, rg.hidden(r, id, CodeNameUnknown, "no repository %q", echo(name))
	}
	return rp, nil
}

// browseImage reads ?repo= (browseRepo) and ?image=, and checks that id may see the image in it.
func (rg *Registry) browseImage(r *http.Request, id auth.Identity) (repo.Repository, string, error) {
	rp, err := rg.browseRepo(r, id)
	if err != nil {
		return nil, "", err
	}
	image := r.URL.Query().Get("image")
	if image == "" {
		return nil, "", apiErr(http.StatusBadRequest, CodeNameInvalid, "?image= is required: an image name inside repository %s", rp.Name())
	}
	if err := checkName(image); err != nil {
		return nil, "", err
	}
	if !rg.seesImage(id, rp.Name(), image) {
		return nil, "", rg.hidden(r, id, CodeNameUnknown, "no image %s/%s", rp.Name(), echo(image))
	}
	return rp, image, nil
}

// leaves are the repositories whose stored content rp shows: itself, or a
// group's hosted and proxy members in lookup order.
func (rg *Registry) leaves(rp repo.Repository) []string {
	if rp.Kind() == config.KindGroup {
		return rg.Config.Reachable(rp.Name())
	}
	return []string{rp.Name()}
}

// intParam reads a positive integer query parameter (def when absent),
// capped at limit.
func intParam(r *http.Request, name string, def, limit int) (int, error) {
	s := r.URL.Query().Get(name)
	if s == "" {
		return def, nil
	}
	v, err := strconv.Atoi(s)
	if err != nil || v < 1 {
		return 0, apiErr(http.StatusBadRequest, CodeUnsupported, "invalid %s %q: want a positive integer (at most %d)", name, echo(s), limit)
	}
	return min(v, limit), nil
}

// repoInfo is one repository as the repositories page shows it.
type repoInfo struct {
	Name          string        `json:"name"`
	Kind          config.Kind   `json:"kind"`
	Policy        config.Policy `json:"policy,omitempty"`
	AnonymousPull bool          `json:"anonymousPull"`
	Default       bool          `json:"default"`
	Members       []string      `json:"members,omitempty"`
	WriteMember   string        `json:"writeMember,omitempty"`
	Remote        string        `json:"remote,omitempty"`
	Health        *repo.Status  `json:"health,omitempty"`
}

// browseRepositories lists the repositories id may see, in configuration
// order (one GetItem and one Query per proxy: its health).
func (rg *Registry) browseRepositories(w http.ResponseWriter, r *http.Request, id auth.Identity) error {
	out := []repoInfo{}
	for _, rc := range rg.Config.Repositories {
		if !rg.seesRepo(id, rc.Name) {
			continue
		}
		info := repoInfo{Name: rc.Name, Kind: rc.Kind, AnonymousPull: rc.AnonymousPull, Default: rc.Name == rg.Config.Default}
		switch rc.Kind {
		case config.KindHosted:
			info.Policy = rc.Policy
			if info.Policy == "" {
				info.Policy = config.PolicyAllow
			}
		case config.KindGroup:
			info.Members = []string{}
			for _, m := range rc.Members {
				if rg.seesRepo(id, m) {
					info.Members = append(info.Members, m)
				}
			}
			if rg.seesRepo(id, rc.WriteMember) {
				info.WriteMember = rc.WriteMember
			}
		case config.KindProxy:
			rp, _ := rg.repos.Get(rc.Name)
			if p, ok := rp.(*repo.Proxy); ok {
				st, err := p.Status(r.Context())
				if err != nil {
					return err
				}
				info.Remote, info.Health = p.Remote(), &st
			}
		}
		out = append(out, info)
	}
	writeJSON(w, r, "application/json", struct {
		Repositories []repoInfo `json:"repositories"`
	}{out})
	return nil
}

// browseImages lists the image names of a repository (for a group, of its
// members, merged) that id may see: one ListImages Query per member and page.
func (rg *Registry) browseImages(w http.ResponseWriter, r *http.Request, id auth.Identity) error {
	rp, err := rg.browseRepo(r, id)
	if err != nil {
		return err
	}
	n, err := intParam(r, "n", defaultImagesPage, maxImagesPage)
	if err != nil {
		return err
	}
	last := r.URL.Query().Get("last")
	if len(last) > maxNameLength {
		return apiErr(http.StatusBadRequest, CodeUnsupported, "last is %d characters long; names are at most %d", len(last), maxNameLength)
	}
	leaves := rg.leaves(rp)
	names, next, err := mergePages(len(leaves), func(i int, after string, n int) (storage.Page, error) {
		return rg.leafImages(r, leaves[i], after, n)
	}, last, n, func(image string) bool { return rg.seesImage(id, rp.Name(), image) })
	if err != nil {
		return err
	}
	type image struct {
		Name string `json:"name"`
	}
	out := make([]image, len(names))
	for i, n := range names {
		out[i] = image{n}
	}
	writeJSON(w, r, "application/json", struct {
		Repository string  `json:"repository"`
		Images     []image `json:"images"`
		Next       string  `json:"next,omitempty"`
	}{rp.Name(), out, next})
	return nil
}

// leafImages lists up to n image names of repository leaf after after
// (one Query of the catalog: its names are "<repository>/<image>", so a
// repository's images are contiguous).
func (rg *Registry) leafImages(r *http.Request, leaf, after string, n int) (storage.Page, error) {
	prefix := leaf + "/"
	pg, err := rg.Meta.ListImages(r.Context(), prefix+after, n+1)
	if err != nil {
		return storage.Page{}, err
	}
	out := storage.Page{Items: []string{}}
	for _, full := range pg.Items {
		name, ok := strings.CutPrefix(full, prefix)
		if !ok {
			return out, nil // past the repository's names
		}
		if len(out.Items) == n {
			out.More = true
			return out, nil
		}
		out.Items = append(out.Items, name)
	}
	out.More = pg.More
	return out, nil
}

// mergePages lists up to n names after last from k lexically ordered
// sources (list(i, after, n) pages source i), deduplicated, in lexical
// order, keeping those keep accepts. next is the last of the following
// page ("" at the end). Names past the smallest last name of a source that
// has more are left for the next round, so no source's name is skipped.
func mergePages(k int, list func(i int, after string, n int) (storage.Page, error), last string, n int, keep func(string) bool) (items []string, next string, err error) {
	items = []string{}
	cursor := last
	for round := 0; round < maxBrowseRounds; round++ {
		var merged []string
		bound, bounded := "", false
		for i := range k {
			pg, err := list(i, cursor, n)
			if err != nil {
				return nil, "", err
			}
			merged = append(merged, pg.Items...)
			if pg.More && len(pg.Items) > 0 {
				if l := pg.Items[len(pg.Items)-1]; !bounded || l < bound {
					bound, bounded = l, true
				}
			}
		}
		slices.Sort(merged)
		merged = slices.Compact(merged)
		for i, it := range merged {
			if bounded && it > bound {
				break
			}
			if !keep(it) {
				continue
			}
			items = append(items, it)
			if len(items) == n {
				if bounded || i < len(merged)-1 {
					next = it
				}
				return items, next, nil
			}
		}
		if !bounded {
			return items, "", nil
		}
		cursor = bound
	}
	return items, cursor, nil // read enough for one answer: continue from here
}

// browseSearch finds the images whose name contains q in the catalog
// (Searcher: one Query of the catalog partition with a filter; no remote
// search index), those id may see, paged by page.
func (rg *Registry) browseSearch(w http.ResponseWriter, r *http.Request, id auth.Identity) error {
	q := r.URL.Query().Get("q")
	if len(q) > maxNameLength {
		return apiErr(http.StatusBadRequest, CodeUnsupported, "q is %d bytes long; names are at most %d", len(q), maxNameLength)
	}
	n, err := intParam(r, "n", defaultImagesPage, maxImagesPage)
	if err != nil {
		return err
	}
	page, err := intParam(r, "page", 1, 1<<20)
	if err != nil {
		return err
	}
	sr, ok := rg.Meta.(storage.Searcher)
	if !ok {
		return apiErr(http.StatusNotImplemented, CodeUnsupported, "the metadata store %T cannot search", rg.Meta)
	}
	names, err := sr.SearchImages(r.Context(), strings.ToLower(q), maxSearchResults)
	if err != nil {
		return err
	}
	type result struct {
		Name       string `json:"name"`
		Repository string `json:"repository"`
		Image      string `json:"image"`
	}
	all := []result{}
	for _, full := range names {
		repoName, image, _ := strings.Cut(full, "/")
		if _, configured := rg.repos.Get(repoName); configured && rg.seesRepo(id, repoName) && rg.seesImage(id, repoName, image) {
			all = append(all, result{full, repoName, image})
		}
	}
	start := min((page-1)*n, len(all))
	writeJSON(w, r, "application/json", struct {
		Query   string   `json:"query"`
		Total   int      `json:"total"`
		Page    int      `json:"page"`
		Pages   int      `json:"pages"`
		Results []result `json:"results"`
		Capped  bool     `json:"capped,omitempty"`
	}{q, len(all), page, (len(all) + n - 1) / n, all[start:min(start+n, len(all))], len(names) == maxSearchResults})
	return nil
}

// maxSearchResults bounds the names one search reads (as /v1/search).
const maxSearchResults = 1000
