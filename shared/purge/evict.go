package purge

import (
	"context"
	"fmt"
	"strings"
	"time"

	digest "github.com/opencontainers/go-digest"

	"github.com/airlock-registry/airlock/shared/config"
	"github.com/airlock-registry/airlock/shared/storage"
)

// TaskProxyEvict evicts cached images of proxy repositories not pulled for
// their purge.evictAfter (package doc).
const TaskProxyEvict = "proxy-evict"

// foreignGroup is the marker group prefix of a proxy's foreign layer URLs
// (shared/repo's groupForeign): group foreign:<proxy>, key <image>@<digest>.
const foreignGroup = "foreign:"

func proxyEvict(ctx context.Context, p *Purger, r *Report) error {
	pm, err := markers(p)
	if err != nil {
		return err
	}
	now := p.d.Now()
	foreign := map[string]map[string][]storage.Marker{} // proxy -> image name -> markers, listed once per run
	applies := func(rc *config.Repository) bool { return rc.Kind == config.KindProxy && rc.EvictAge() > 0 }
	return walkImages(ctx, p, r, applies, func(col storage.Collector, img storage.Image, rc *config.Repository, items storage.ImageItems) error {
		cut := now.Add(-rc.EvictAge())
		roots := map[digest.Digest]string{}
		for _, m := range items.Manifests {
			if !older(lastUse(m), cut) {
				roots[m.Digest] = skipPulled
			}
		}
		pl := planManifests(items.Manifests, roots)
		gone := pl.run(ctx, col, r, img, cut)
		if len(pl.kept) > 0 || gone < len(pl.drop) {
			return nil // the image stays cached: its foreign layer URLs are still needed
		}
		byImage, ok := foreign[img.Repo]
		if !ok {
			ms, err := pm.ListMarkers(ctx, foreignGroup+img.Repo, 0)
			if err != nil {
				return fmt.Errorf("list the foreign layers of proxy %s: %w", img.Repo, err)
			}
			byImage = map[string][]storage.Marker{}
			for _, m := range ms {
				if name, _, ok := strings.Cut(m.Key, "@"); ok {
					byImage[name] = append(byImage[name], m)
				}
			}
			foreign[img.Repo] = byImage
		}
		return evictForeign(ctx, col, pm, r, img, byImage[img.Name])
	})
}

// lastUse is when a cached manifest was last pulled, or cached (re-cached).
func lastUse(m storage.Manifest) time.Time {
	if t := lastWrite(m); !m.Pulled.After(t) {
		return t
	}
	return m.Pulled
}

// evictForeign deletes the foreign layer markers of an image whose cached
// manifests are all gone. A fill caching a manifest of the image again
// stores the manifest first and writes its markers after; so after the
// deletes the image is listed again, and when a manifest appeared
// meanwhile the markers are written back (its fill may have written them
// before the delete).
func evictForeign(ctx context.Context, col storage.Collector, pm storage.ProxyMetadata, r *Report, img storage.Image, ms []storage.Marker) error {
	if len(ms) == 0 {
		return nil
	}
	r.Considered += len(ms)
	item := func(m storage.Marker) Item {
		return Item{Kind: "marker", ID: m.Group + "/" + m.Key, Image: img.String()}
	}
	if r.DryRun {
		for _, m := range ms {
			r.add(item(m))
		}
		return nil
	}
	var deleted []storage.Marker
	for _, m := range ms {
		if err := pm.DeleteMarker(ctx, m.Group, m.Key); err != nil {
			r.fail("delete marker %s/%s: %v", m.Group, m.Key, err)
			continue
		}
		deleted = append(deleted, m)
	}
	again, err := col.ListImage(ctx, img)
	if err != nil {
		err = fmt.Errorf("list %s again after deleting its foreign layer markers: %w", img, err)
	}
	if err != nil || len(again.Manifests) > 0 {
		for _, m := range deleted {
			if perr := pm.PutMarker(context.WithoutCancel(ctx), m); perr != nil {
				r.fail("write back marker %s/%s: %v", m.Group, m.Key, perr)
			}
			r.skip(skipBusy)
		}
		return err
	}
	for _, m := range deleted {
		r.add(item(m))
	}
	return nil
}
