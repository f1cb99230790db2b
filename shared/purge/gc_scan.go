package purge

import (
	"context"
	"fmt"
	"slices"
	"strings"
	"time"

	digest "github.com/opencontainers/go-digest"

	"github.com/airlock-registry/airlock/shared/repo"
	"github.com/airlock-registry/airlock/shared/storage"
)

// blob-gc's scan phase: reading the table into the pass state, and the
// plan of candidates it makes.

// scan reads the whole metadata store (Collector.Scan pages).
func (g *gc) scan(ctx context.Context) (bool, error) {
	st := g.st
	for {
		if !g.budget(ctx) {
			return false, nil
		}
		entries, next, err := g.col.Scan(ctx, st.Cursor, g.p.d.ScanPage)
		if err != nil {
			return false, fmt.Errorf("scan: %w", err)
		}
		for _, e := range entries {
			g.see(e)
		}
		g.work += max(1, len(entries)/100)
		st.Cursor = next
		if next == "" {
			g.plan()
			return true, nil
		}
	}
}

func (g *gc) image(img storage.Image) *gcImage {
	k := img.String()
	im := g.st.Images[k]
	if im == nil {
		im = &gcImage{Refs: map[digest.Digest]bool{}, Links: map[digest.Digest]gcLink{}}
		g.st.Images[k] = im
	}
	return im
}

func age(created, touched time.Time) time.Time {
	if touched.After(created) {
		return touched.UTC()
	}
	return created.UTC()
}

// see records one scanned item.
func (g *gc) see(e storage.Entry) {
	st := g.st
	g.r.Considered++
	switch e.Kind {
	case storage.EntryManifest:
		im := g.image(e.Image)
		for _, d := range e.Manifest.Blobs {
			im.Refs[d] = true
		}
		if e.Manifest.BodyKey != "" {
			st.Bodies[e.Manifest.BodyKey] = true
		}
	case storage.EntryLink:
		g.image(e.Image).Links[e.Blob.Digest] = gcLink{Key: e.Blob.ObjectKey(), Size: e.Blob.Size, Age: age(e.Blob.Created, e.Blob.Touched)}
	case storage.EntryBlob:
		st.Records[e.Blob.Digest] = gcRec{Key: e.Blob.ObjectKey(), Size: e.Blob.Size, Age: age(e.Blob.Created, e.Blob.Touched)}
	case storage.EntryUpload:
		st.Uploads[e.Upload.ID] = true
	case storage.EntryMarker:
		if strings.HasPrefix(e.Marker.Group, repo.HoldsGroupPrefix) {
			st.Holds[e.Marker.Group] = append(st.Holds[e.Marker.Group], e.Marker.Key)
		}
	}
}

// plan lists the candidates once the scan is complete, in a fixed order
// (a dry run and the real run that follows report the same list).
func (g *gc) plan() {
	st := g.st
	for _, name := range sortedKeys(st.Images) {
		im := st.Images[name]
		for _, d := range sortedKeys(im.Links) {
			if im.Refs[d] {
				continue
			}
			st.LinkCands = append(st.LinkCands, linkCand{Image: name, Digest: d})
		}
	}
}

func sortedKeys[K ~string, V any](m map[K]V) []K {
	ks := make([]K, 0, len(m))
	for k := range m {
		ks = append(ks, k)
	}
	slices.Sort(ks)
	return ks
}

func parseImage(s string) storage.Image {
	repoName, name, _ := strings.Cut(s, "/")
	return storage.Image{Repo: repoName, Name: name}
}
