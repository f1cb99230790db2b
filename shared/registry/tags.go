package registry

import (
	"encoding/json"
	"fmt"
	"net/http"
	"net/url"
	"strconv"

	"github.com/opencontainers/image-spec/specs-go"
	ocispec "github.com/opencontainers/image-spec/specs-go/v1"
)

// maxPage caps n on listings.
const maxPage = 1000

// pageParams reads n and last; n is -1 when absent.
func pageParams(r *http.Request) (int, string, error) {
	q := r.URL.Query()
	n := -1
	if s := q.Get("n"); s != "" {
		v, err := strconv.Atoi(s)
		if err != nil || v < 0 {
			return 0, "", apiErr(http.StatusBadRequest, CodeUnsupported, "invalid n %q: want a non-negative integer", echo(s))
		}
		n = min(v, maxPage)
	}
	last := q.Get("last")
	if len(last) > maxNameLength {
		return 0, "", apiErr(http.StatusBadRequest, CodeUnsupported, "last is %d characters long; names and tags are at most %d", len(last), maxNameLength)
	}
	return n, last, nil
}

func writeJSON(w http.ResponseWriter, r *http.Request, contentType string, v any) {
	body, _ := json.Marshal(v)
	w.Header().Set("Content-Type", contentType)
	w.Header().Set("Content-Length", strconv.Itoa(len(body)))
	w.WriteHeader(http.StatusOK)
	if r.Method != http.MethodHead {
		_, _ = w.Write(body)
	}
}

// nextLink sets the Link header for the page after last.
func nextLink(w http.ResponseWriter, path string, n int, last string) {
	q := url.Values{"n": {strconv.Itoa(n)}, "last": {last}}
	w.Header().Set("Link", fmt.Sprintf(`<%s?%s>; rel="next"`, path, q.Encode()))
}

// listTags lists an image's tags in lexical order.
// https://github.com/opencontainers/distribution-spec/blob/main/spec.md#listing-tags
func (rg *Registry) listTags(w http.ResponseWriter, r *http.Request, t target) error {
	n, last, err := pageParams(r)
	if err != nil {
		return err
	}
	tags := []string{}
	if n != 0 {
		page, err := t.repo.Tags(r.Context(), t.name, last, max(n, 0))
		if err != nil {
			return fmt.Errorf("tags of %s: %w", t.full, err)
		}
		tags = append(tags, page.Items...)
		if page.More && n > 0 && len(tags) > 0 {
			nextLink(w, "/v2/"+t.full+"/tags/list", n, tags[len(tags)-1])
		}
	}
	writeJSON(w, r, "application/json", struct {
		Name string   `json:"name"`
		Tags []string `json:"tags"`
	}{t.full, tags})
	return nil
}

// catalog lists image names ("repo/name") in lexical order.
// https://distribution.github.io/distribution/spec/api/#listing-repositories
func (rg *Registry) catalog(w http.ResponseWriter, r *http.Request) error {
	if r.Method != http.MethodGet && r.Method != http.MethodHead {
		return notAllowed(r.Method, "/v2/_catalog", http.MethodGet, http.MethodHead)
	}
	n, last, err := pageParams(r)
	if err != nil {
		return err
	}
	// With auth on, a request without credentials is challenged first:
	// clients that authenticate only when asked (regctl) would otherwise
	// list the anonymous view of a logged-in user. Anonymous clients get an
	// anonymous token and list what anonymous may see.
	if rg.auth != nil && r.Header.Get("Authorization") == "" {
		return challenge(r, "registry:catalog:*", "authentication required to list the catalog: docker login "+r.Host+" (or use an anonymous token)")
	}
	id, err := rg.listCaller(r)
	if err != nil {
		return err
	}
	repos := []string{}
	if n != 0 {
		// With auth on, names the caller may not browse or read are skipped:
		// read further pages until n visible names (or the end) are found.
		after := last
		for {
			page, err := rg.Meta.ListImages(r.Context(), after, max(n, 0))
			if err != nil {
				return fmt.Errorf("list images: %w", err)
			}
			for _, name := range page.Items {
				if rg.visible(r, id, name) && (n <= 0 || len(repos) < n) {
					repos = append(repos, name)
				}
			}
			more := page.More
			if len(page.Items) > 0 {
				after = page.Items[len(page.Items)-1]
			}
			if !more || n > 0 && len(repos) >= n {
				if more && n > 0 && len(repos) > 0 {
					nextLink(w, "/v2/_catalog", n, repos[len(repos)-1])
				}
				break
			}
		}
	}
	writeJSON(w, r, "application/json", struct {
		Repositories []string `json:"repositories"`
	}{repos})
	return nil
}

// referrers lists the manifests whose subject is the given digest.
// https://github.com/opencontainers/distribution-spec/blob/main/spec.md#listing-referrers
func (rg *Registry) referrers(w http.ResponseWriter, r *http.Request, t target) error {
	d, err := parseDigest(t.ref)
	if err != nil {
		return err
	}
	descs, err := t.repo.Referrers(r.Context(), t.name, d)
	if err != nil {
		return fmt.Errorf("referrers of %s: %w", t.full, err)
	}
	out := []ocispec.Descriptor{}
	at := r.URL.Query().Get("artifactType")
	for _, desc := range descs {
		if at == "" || desc.ArtifactType == at {
			out = append(out, desc)
		}
	}
	if at != "" {
		w.Header().Set("OCI-Filters-Applied", "artifactType")
	}
	writeJSON(w, r, ocispec.MediaTypeImageIndex, ocispec.Index{
		Versioned: specsVersioned(),
		MediaType: ocispec.MediaTypeImageIndex,
		Manifests: out,
	})
	return nil
}

func specsVersioned() specs.Versioned { return specs.Versioned{SchemaVersion: 2} }
