package registry

import (
	"net/http"
	"strconv"
	"unicode/utf8"
)

// maxSearchPage caps n of /v1/search.
const maxSearchPage = 100

// search answers docker search (GET /v1/search?q=&n=&page=) in Docker Hub's
// v1 format: images whose names contain q, from every repository (hosted
// images, proxy caches) and the search indexes of proxies of Docker Hub.
// https://docs.docker.com/reference/api/registry/latest/ (v1 search)
func (rg *Registry) search(w http.ResponseWriter, r *http.Request) error {
	if r.Method != http.MethodGet && r.Method != http.MethodHead {
		return notAllowed(r.Method, "/v1/search", http.MethodGet, http.MethodHead)
	}
	q := r.URL.Query()
	query := q.Get("q")
	if len(query) > maxNameLength {
		return apiErr(http.StatusBadRequest, CodeUnsupported, "q is %d bytes long; names are at most %d", len(query), maxNameLength)
	}
	if !utf8.ValidString(query) {
		return apiErr(http.StatusBadRequest, CodeUnsupported, "q %q is not UTF-8 (names are lower-case letters, digits, '.', '_', '-' and '/')", query)
	}
	intParam := func(name string, def int) (int, error) {
		s := q.Get(name)
		if s == "" {
			return def, nil
		}
		v, err := strconv.Atoi(s)
		if err != nil || v < 1 {
			return 0, apiErr(http.StatusBadRequest, CodeUnsupported, "invalid %s %q: want a positive integer", name, echo(s))
		}
		return v, nil
	}
	n, err := intParam("n", 25)
	if err != nil {
		return err
	}
	n = min(n, maxSearchPage)
	page, err := intParam("page", 1)
	if err != nil {
		return err
	}
	id, err := rg.listCaller(r)
	if err != nil {
		return err
	}
	found, err := rg.repos.Search(r.Context(), query)
	if err != nil {
		return err
	}
	all := found[:0:0]
	for _, res := range found {
		if rg.visible(r, id, res.Name) {
			all = append(all, res)
		}
	}
	start := len(all) // a page past the last (also one whose offset would overflow)
	if page-1 <= len(all)/n {
		start = min((page-1)*n, len(all))
	}
	results := all[start:min(start+n, len(all))]
	pages := (len(all) + n - 1) / n
	writeJSON(w, r, "application/json", map[string]any{
		"num_results": len(all),
		"query":       query,
		"page":        page,
		"num_pages":   pages,
		"page_size":   n,
		"results":     results,
	})
	return nil
}
