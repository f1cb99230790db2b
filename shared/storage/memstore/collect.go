package memstore

import (
	"cmp"
	"context"
	"encoding/base64"
	"encoding/json"
	"fmt"
	"slices"
	"strings"
	"time"

	digest "github.com/opencontainers/go-digest"

	"github.com/airlock-registry/airlock/shared/storage"
)

// defaultScanPage is the number of entries of a Scan page when n <= 0.
const defaultScanPage = 1000

// touchedSince is the condition of the conditional deletes: storage.ErrConflict
// when an item was last touched at or after cut, nil when before. Its last
// touch is touched, or created for one without a touch time (package
// dynamo's items written before touch times); the times compare to the
// millisecond (as package dynamo compares them).
func touchedSince(touched, created, cut time.Time) error {
	t := touched
	if t.IsZero() {
		t = created
	}
	if t.UnixMilli() >= cut.UnixMilli() {
		return fmt.Errorf("touched %v, not before %v: %w", t, cut, storage.ErrConflict)
	}
	return nil
}

// TouchLink sets the touch time of the link of d in img to now and returns
// the link; storage.ErrNotFound when there is none.
func (s *Store) TouchLink(_ context.Context, img storage.Image, d digest.Digest) (storage.Blob, error) {
	now := s.touchTime()
	s.mu.Lock()
	defer s.mu.Unlock()
	if im, b, ok := entry(s, img, linksOf, d); ok {
		b.Touched = now
		im.links[d] = b
		return b, nil
	}
	return storage.Blob{}, fmt.Errorf("touch link %.80s in %.80s: %w", d, img, storage.ErrNotFound)
}

// updateManifest applies fn to manifest d of img and reports whether
// it is stored (false: nothing changed).
func (s *Store) updateManifest(img storage.Image, d digest.Digest, fn func(*storage.Manifest)) bool {
	s.mu.Lock()
	defer s.mu.Unlock()
	im, m, ok := entry(s, img, manifestsOf, d)
	if ok {
		fn(&m)
		im.manifests[d] = m
	}
	return ok
}

// TouchManifest sets the touch time of manifest d of img to now;
// storage.ErrNotFound when it is not stored.
func (s *Store) TouchManifest(_ context.Context, img storage.Image, d digest.Digest) error {
	now := s.touchTime()
	if !s.updateManifest(img, d, func(m *storage.Manifest) { m.Touched = now }) {
		return fmt.Errorf("touch manifest %.80s in %.80s: %w", d, img, storage.ErrNotFound)
	}
	return nil
}

// MarkPulled sets Pulled of manifest d of img to now; storage.ErrNotFound
// when it is not stored.
func (s *Store) MarkPulled(_ context.Context, img storage.Image, d digest.Digest) error {
	now := s.touchTime()
	if !s.updateManifest(img, d, func(m *storage.Manifest) { m.Pulled, m.Touched = now, now }) {
		return fmt.Errorf("mark manifest %.80s in %.80s pulled: %w", d, img, storage.ErrNotFound)
	}
	return nil
}

// item returns the tag as Collector lists it.
func (t tagRec) item(tag string) storage.TagItem {
	return storage.TagItem{Tag: tag, Digest: t.digest, Updated: fromMillis(t.at)}
}

// listed returns m as Collector lists it: a copy without body.
func listed(m storage.Manifest) storage.Manifest {
	m = cloneManifest(m)
	m.Body = nil
	return m
}

// ListImage returns every tag (by name), manifest without body and link
// (by digest) of img.
func (s *Store) ListImage(_ context.Context, img storage.Image) (storage.ImageItems, error) {
	out := storage.ImageItems{Image: img}
	s.mu.Lock()
	defer s.mu.Unlock()
	im := s.image(img, false)
	if im == nil {
		return out, nil
	}
	for _, tag := range sortedKeys(im.tags) {
		out.Tags = append(out.Tags, im.tags[tag].item(tag))
	}
	for _, d := range sortedDigests(im.manifests) {
		out.Manifests = append(out.Manifests, listed(im.manifests[d]))
	}
	for _, d := range sortedDigests(im.links) {
		out.Links = append(out.Links, im.links[d])
	}
	return out, nil
}

// sortedDigests returns m's keys in byte order.
func sortedDigests[V any](m map[digest.Digest]V) []digest.Digest {
	keys := make([]digest.Digest, 0, len(m))
	for k := range m {
		keys = append(keys, k)
	}
	slices.Sort(keys)
	return keys
}

// scanItem is one item of a Scan with the key package dynamo would store it
// under (the order and the cursor).
type scanItem struct {
	pk, sk string
	e      storage.Entry
}

// items returns every item of the store in key order (s.mu held).
func (s *Store) items() []scanItem {
	var out []scanItem
	for name, im := range s.images {
		pk := "IMG#" + name
		img := imageOf(name)
		for tag, t := range im.tags {
			out = append(out, scanItem{pk, "T#" + tag, storage.Entry{Kind: storage.EntryTag, Image: img, Tag: t.item(tag)}})
		}
		for d, m := range im.manifests {
			out = append(out, scanItem{pk, "M#" + d.String(), storage.Entry{Kind: storage.EntryManifest, Image: img, Manifest: listed(m)}})
		}
		for d, b := range im.links {
			out = append(out, scanItem{pk, "B#" + d.String(), storage.Entry{Kind: storage.EntryLink, Image: img, Blob: b}})
		}
		for k := range im.referrers {
			out = append(out, scanItem{pk, "R#" + k, storage.Entry{Kind: storage.EntryOther, Image: img}})
		}
	}
	for d, b := range s.blobs {
		out = append(out, scanItem{"BLOB#" + d.String(), "BLOB", storage.Entry{Kind: storage.EntryBlob, Blob: b}})
	}
	for name := range s.catalog {
		out = append(out, scanItem{"CATALOG", name, storage.Entry{Kind: storage.EntryOther}})
	}
	for id, r := range s.uploads {
		out = append(out, scanItem{uploadPK(id), "UPLOAD", storage.Entry{Kind: storage.EntryUpload, Upload: cloneUpload(r.u)}})
	}
	for group, g := range s.markers {
		for k, m := range g {
			out = append(out, scanItem{markerPK(group), k, storage.Entry{Kind: storage.EntryMarker, Marker: m}})
		}
	}
	slices.SortFunc(out, func(a, b scanItem) int { return cmp.Or(strings.Compare(a.pk, b.pk), strings.Compare(a.sk, b.sk)) })
	return out
}

// imageOf reverses storage.Image.String (repository names have no "/").
func imageOf(name string) storage.Image {
	repo, rest, _ := strings.Cut(name, "/")
	return storage.Image{Repo: repo, Name: rest}
}

// scanCursor is the key of the last item of a page.
type scanCursor struct {
	PK string `json:"pk"`
	SK string `json:"sk"`
}

// Scan returns up to n entries (n <= 0: 1000) in key order after cursor,
// and the cursor of the next page ("" when done). The cursor is opaque
// (the last item's key); a malformed one is an error.
func (s *Store) Scan(_ context.Context, cursor string, n int) ([]storage.Entry, string, error) {
	if n <= 0 {
		n = defaultScanPage
	}
	var after *scanCursor
	if cursor != "" {
		b, err := base64.RawURLEncoding.DecodeString(cursor)
		var c scanCursor
		if err == nil {
			err = json.Unmarshal(b, &c)
		}
		if err != nil || c.PK == "" {
			return nil, "", fmt.Errorf("scan: malformed cursor %.40q (pass \"\" or the cursor a Scan returned)", cursor)
		}
		after = &c
	}
	s.mu.Lock()
	all := s.items()
	s.mu.Unlock()
	i := 0
	if after != nil {
		i, _ = slices.BinarySearchFunc(all, *after, func(it scanItem, c scanCursor) int {
			return cmp.Or(strings.Compare(it.pk, c.PK), strings.Compare(it.sk, c.SK))
		})
		if i < len(all) && all[i].pk == after.PK && all[i].sk == after.SK {
			i++
		}
	}
	page := all[i:min(i+n, len(all))]
	out := make([]storage.Entry, len(page))
	for j, it := range page {
		out[j] = it.e
	}
	next := ""
	if i+len(page) < len(all) {
		last := page[len(page)-1]
		b, _ := json.Marshal(scanCursor{PK: last.pk, SK: last.sk}) // strings marshal
		next = base64.RawURLEncoding.EncodeToString(b)
	}
	return out, next, nil
}

// DeleteLinkIf removes the link of d from img unless it was touched at or
// after cut (storage.ErrConflict); storage.ErrNotFound when there is none.
func (s *Store) DeleteLinkIf(_ context.Context, img storage.Image, d digest.Digest, cut time.Time) error {
	s.mu.Lock()
	defer s.mu.Unlock()
	im, b, ok := entry(s, img, linksOf, d)
	if !ok {
		return fmt.Errorf("delete link %.80s from %.80s: %w", d, img, storage.ErrNotFound)
	}
	if err := touchedSince(b.Touched, b.Created, cut); err != nil {
		return fmt.Errorf("delete link %s from %s: %w", d, img, err)
	}
	delete(im.links, d)
	return nil
}

// DeleteBlobIf removes the global record of d unless it was touched at or
// after cut (storage.ErrConflict); storage.ErrNotFound when there is none.
func (s *Store) DeleteBlobIf(_ context.Context, d digest.Digest, cut time.Time) error {
	s.mu.Lock()
	defer s.mu.Unlock()
	b, ok := s.blobs[d]
	if !ok {
		return fmt.Errorf("delete blob record %.80s: %w", d, storage.ErrNotFound)
	}
	if err := touchedSince(b.Touched, b.Created, cut); err != nil {
		return fmt.Errorf("delete blob record %s: %w", d, err)
	}
	delete(s.blobs, d)
	return nil
}

// DeleteManifestIf is DeleteManifest (under the one lock) on condition that
// the manifest was not touched at or after cut (storage.ErrConflict, and
// nothing is deleted); storage.ErrNotFound when it is not stored. As in
// package dynamo, tags written at or after cut stay (there, a push racing
// the delete writes the manifest again before its tag).
func (s *Store) DeleteManifestIf(_ context.Context, img storage.Image, d digest.Digest, cut time.Time) error {
	s.mu.Lock()
	defer s.mu.Unlock()
	im, m, ok := entry(s, img, manifestsOf, d)
	if !ok {
		return fmt.Errorf("delete manifest %.80s in %.80s: %w", d, img, storage.ErrNotFound)
	}
	if err := touchedSince(m.Touched, m.Created, cut); err != nil {
		return fmt.Errorf("delete manifest %s in %s: %w", d, img, err)
	}
	s.removeManifest(img, im, m, cut)
	return nil
}

// DeleteTagIf removes tag from img when it points at d; storage.ErrConflict
// when it points elsewhere, storage.ErrNotFound when there is none.
func (s *Store) DeleteTagIf(_ context.Context, img storage.Image, want storage.TagItem) error {
	s.mu.Lock()
	defer s.mu.Unlock()
	tag := want.Tag
	t, ok := s.tag(img, tag)
	if !ok {
		return fmt.Errorf("delete tag %.80s:%.80s: %w", img, tag, storage.ErrNotFound)
	}
	if t.digest != want.Digest {
		return fmt.Errorf("delete tag %s:%s of %s: it points at %s: %w", img, tag, want.Digest, t.digest, storage.ErrConflict)
	}
	if t.at != want.Updated.UnixMilli() && !(want.Updated.IsZero() && t.at == 0) {
		return fmt.Errorf("delete tag %s:%s: written again at %d ms: %w", img, tag, t.at, storage.ErrConflict)
	}
	delete(s.image(img, false).tags, tag)
	return nil
}
