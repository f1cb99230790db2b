package repo

import (
	"context"
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"net/url"
	"strings"
	"time"

	"github.com/airlock-registry/airlock/shared/storage"
)

// SearchResult is one docker search result (Docker Hub's v1 format).
type SearchResult struct {
	Name        string `json:"name"`
	Description string `json:"description"`
	StarCount   int    `json:"star_count"`
	IsOfficial  bool   `json:"is_official"`
	IsAutomated bool   `json:"is_automated"`
}

const (
	groupSearch   = "search:" // + <proxy>, key <query>: the remote index's answer, cached briefly
	searchTTL     = 10 * time.Minute
	searchTimeout = 3 * time.Second
	// maxSearch bounds the results one search gathers.
	maxSearch = 1000
)

// Search finds images by substring: the names stored in every repository
// (hosted images and proxy caches, from the catalog: no table scan), then
// the remote search index of each proxy that has one (Docker Hub's for a
// proxy of Docker Hub), whose results are cached for a few minutes and whose
// failure leaves the local results (logged). Names are as clients pull them:
// "<repository>/<image>".
func (s *Set) Search(ctx context.Context, query string) ([]SearchResult, error) {
	sr, ok := s.deps.Meta.(storage.Searcher)
	if !ok {
		return nil, fmt.Errorf("the metadata store %T cannot search (storage.Searcher)", s.deps.Meta)
	}
	names, err := sr.SearchImages(ctx, strings.ToLower(query), maxSearch)
	if err != nil {
		return nil, fmt.Errorf("search images: %w", err)
	}
	out := make([]SearchResult, 0, len(names))
	seen := map[string]bool{}
	for _, n := range names {
		seen[n] = true
		out = append(out, SearchResult{Name: n})
	}
	for _, p := range s.Proxies() {
		rs, err := p.searchIndex(ctx, query)
		if err != nil {
			s.deps.Logger.WarnContext(ctx, "remote search index left out", "repo", p.Name(), "err", err)
			continue
		}
		for _, r := range rs {
			if !seen[r.Name] && len(out) < maxSearch {
				seen[r.Name] = true
				out = append(out, r)
			}
		}
	}
	return out, nil
}

// indexURL is the proxy's remote search index ("" for none).
func (p *Proxy) indexURL() string {
	switch {
	case p.cfg.SearchIndex == "none":
		return ""
	case p.cfg.SearchIndex != "":
		return p.cfg.SearchIndex
	case p.up.DockerHub():
		return "https://index.docker.io"
	}
	return ""
}

// searchIndex asks the proxy's remote index (cached for searchTTL); names
// come back as this proxy serves them (Docker Hub's official "nginx" as
// "<proxy>/library/nginx").
func (p *Proxy) searchIndex(ctx context.Context, query string) ([]SearchResult, error) {
	base := p.indexURL()
	if base == "" || query == "" {
		return nil, nil
	}
	var rs []SearchResult
	if m, err := p.meta.GetMarker(ctx, groupSearch+p.cfg.Name, query); err == nil && json.Unmarshal([]byte(m.Value), &rs) == nil {
		return rs, nil
	}
	cctx, cancel := context.WithTimeout(ctx, searchTimeout)
	defer cancel()
	u := base + "/v1/search?" + url.Values{"q": {query}, "n": {"25"}}.Encode()
	req, err := http.NewRequestWithContext(cctx, http.MethodGet, u, nil)
	if err != nil {
		return nil, err
	}
	hc := &http.Client{Transport: p.deps.Proxy.Transport}
	resp, err := hc.Do(req)
	if err != nil {
		return nil, fmt.Errorf("search %s: %w", base, err)
	}
	defer resp.Body.Close()
	if resp.StatusCode != http.StatusOK {
		return nil, fmt.Errorf("search %s: HTTP %d", base, resp.StatusCode)
	}
	var doc struct {
		Results []SearchResult `json:"results"`
	}
	if err := json.NewDecoder(io.LimitReader(resp.Body, 1<<20)).Decode(&doc); err != nil {
		return nil, fmt.Errorf("search %s: %w", base, err)
	}
	for _, r := range doc.Results {
		if r.Name == "" {
			continue
		}
		name := r.Name
		if p.up.DockerHub() && !strings.Contains(name, "/") {
			name = "library/" + name
		}
		r.Name = p.cfg.Name + "/" + name
		r.Description = truncate(r.Description, 300)
		rs = append(rs, r)
		if len(rs) == 25 {
			break
		}
	}
	if doc, err := json.Marshal(rs); err == nil {
		m := storage.Marker{Group: groupSearch + p.cfg.Name, Key: query, Value: string(doc), Until: p.now().Add(searchTTL)}
		if err := p.meta.PutMarker(ctx, m); err != nil {
			p.deps.Logger.WarnContext(ctx, "cache a search", "repo", p.cfg.Name, "err", err)
		}
	}
	return rs, nil
}

func truncate(s string, n int) string {
	if len(s) <= n {
		return s
	}
	return s[:n]
}
