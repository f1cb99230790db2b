package repo

import (
	"context"
	"encoding/json"
	"time"

	digest "github.com/opencontainers/go-digest"
	ocispec "github.com/opencontainers/image-spec/specs-go/v1"

	"github.com/airlock-registry/airlock/shared/storage"
)

// groupForeign + <repo>, key <image>@<digest>: the URLs of a foreign layer
// of a cached manifest (a blob GET only knows the digest).
const (
	groupForeign = "foreign:"
	foreignTTL   = 365 * 24 * time.Hour
)

// rememberForeign records the URLs of a cached manifest's foreign layers.
func (p *Proxy) rememberForeign(ctx context.Context, img storage.Image, layers []ocispec.Descriptor) {
	for _, l := range layers {
		doc, _ := json.Marshal(l.URLs)
		m := storage.Marker{Group: groupForeign + p.cfg.Name, Key: img.Name + "@" + l.Digest.String(), Value: string(doc), Until: p.now().Add(foreignTTL)}
		if err := p.meta.PutMarker(ctx, m); err != nil {
			p.deps.Logger.WarnContext(ctx, "remember a foreign layer", "digest", l.Digest, "err", err)
		}
	}
}

// foreignURLs returns the URLs recorded for a foreign layer of img.
func (p *Proxy) foreignURLs(ctx context.Context, img storage.Image, d digest.Digest) []string {
	m, err := p.meta.GetMarker(ctx, groupForeign+p.cfg.Name, img.Name+"@"+d.String())
	if err != nil {
		return nil
	}
	var urls []string
	_ = json.Unmarshal([]byte(m.Value), &urls)
	return urls
}
