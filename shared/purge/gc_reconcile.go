package purge

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"slices"
	"strings"

	digest "github.com/opencontainers/go-digest"

	"github.com/airlock-registry/airlock/shared/repo"
	"github.com/airlock-registry/airlock/shared/storage"
)

// blob-gc's reconciliation: the bucket's objects that nothing owns, and
// the owners of an upload's objects the scan may miss.

// objects lists the bucket's blob, manifest and staging prefixes and
// deletes what no record, manifest or live upload owns, once older than
// the grace period.
func (g *gc) objects(ctx context.Context) (bool, error) {
	st := g.st
	owned := map[string]bool{}
	for _, rec := range st.Records {
		if !st.Gone[rec.Key] {
			owned[rec.Key] = true
		}
	}
	for _, im := range st.Images {
		for _, l := range im.Links {
			owned[l.Key] = true
		}
	}
	var pending map[string]bool // upload ids of pending direct verifications (read once per run)
	for ; st.Prefix < len(gcPrefixes); st.Prefix, st.After = st.Prefix+1, "" {
		prefix := gcPrefixes[st.Prefix]
		for {
			if !g.budget(ctx) {
				return false, nil
			}
			objs, more, err := g.ol.ListObjects(ctx, prefix, st.After, 1000)
			if err != nil {
				return false, fmt.Errorf("list %s: %w", prefix, err)
			}
			g.work += max(1, len(objs)/100)
			var del []string
			var items []Item
			for _, o := range objs {
				st.After = o.Key
				st.Listed[o.Key] = true
				g.r.Considered++
				if owned[o.Key] || st.Bodies[o.Key] || st.Gone[o.Key] {
					continue // owned, or deleted with its record (reported there)
				}
				if !o.Modified.Before(st.Cut) {
					g.r.skip(skipGCYoung)
					continue
				}
				id, isUpload := uploadOf(o.Key)
				if isUpload && st.Uploads[id] {
					g.r.skip(skipInUse)
					continue
				}
				if isUpload {
					if pending == nil {
						if pending, err = g.pendingVerifications(ctx); err != nil {
							return false, err
						}
					}
					inUse, err := g.uploadInUse(ctx, id, o.Key, pending)
					if err != nil {
						g.r.fail("check upload %s: %v", id, err)
						continue
					}
					if inUse {
						g.r.skip(skipInUse)
						continue
					}
				}
				del = append(del, o.Key)
				items = append(items, Item{Kind: kindObject, ID: o.Key, Keys: []string{o.Key}, Bytes: o.Size, Created: o.Modified})
			}
			if len(del) > 0 && !g.dry {
				failed, err := g.ol.DeleteObjects(ctx, del)
				if err != nil {
					g.r.fail("delete %d objects: %v", len(failed), err)
				}
				items = slices.DeleteFunc(items, func(it Item) bool { return slices.Contains(failed, it.ID) })
			}
			for _, it := range items {
				g.r.add(it)
			}
			if !more {
				break
			}
		}
	}
	// Both ways: a record whose object is missing is reported (its bytes
	// are lost; a client's HEAD still says the blob exists until an
	// operator deletes the record).
	for _, d := range sortedKeys(st.Records) {
		rec := st.Records[d]
		if !st.Gone[rec.Key] && !st.Listed[rec.Key] && rec.Age.Before(st.Cut) {
			g.r.fail("blob record %s names object %s, which the bucket does not hold", d, rec.Key)
		}
	}
	return true, nil
}

// uploadOf returns the upload id of an object written by an upload: its
// multipart object (storage.UploadKey) or a staged chunk (storage.UploadPrefix).
func uploadOf(key string) (string, bool) {
	if id, ok := strings.CutPrefix(key, storage.UploadKey("")); ok {
		return id, true
	}
	if rest, ok := strings.CutPrefix(key, "uploads/"); ok {
		id, _, _ := strings.Cut(rest, "/")
		return id, true
	}
	return "", false
}

// uploadInUse tells whether the object of upload id is owned by a writer
// the scan could have missed. Writers hand ownership on in this order: the
// session (UPLOAD#), a pending direct verification, the record (whose
// writer first leaves a repo.UploadedGroup marker); each is created before
// the previous one is removed, so reading them in the same order misses
// none (package doc).
func (g *gc) uploadInUse(ctx context.Context, id, key string, pending map[string]bool) (bool, error) {
	if _, err := g.p.d.Meta.GetUpload(ctx, id); err == nil {
		return true, nil
	} else if !errors.Is(err, storage.ErrNotFound) {
		return false, err
	}
	if pending[id] {
		return true, nil
	}
	if !strings.HasPrefix(key, storage.UploadKey("")) {
		return false, nil // a staged chunk: only a session owns it
	}
	m, err := g.pm.GetMarker(ctx, repo.UploadedGroup, id)
	if errors.Is(err, storage.ErrNotFound) {
		return false, nil
	}
	if err != nil {
		return false, err
	}
	b, err := g.p.d.Meta.GetBlob(ctx, digest.Digest(m.Value))
	if errors.Is(err, storage.ErrNotFound) {
		return false, nil
	}
	if err != nil {
		return false, err
	}
	return b.ObjectKey() == key, nil
}

// pendingVerifications returns the upload ids of direct uploads whose
// verification is pending (one Query of their marker group).
func (g *gc) pendingVerifications(ctx context.Context) (map[string]bool, error) {
	ms, err := g.pm.ListMarkers(ctx, repo.DirectVerifyGroup, 0)
	if err != nil {
		return nil, fmt.Errorf("list pending verifications: %w", err)
	}
	out := map[string]bool{}
	for _, m := range ms {
		var v struct {
			Job struct {
				Upload string `json:"upload"`
			}
		}
		if json.Unmarshal([]byte(m.Value), &v) == nil && v.Job.Upload != "" {
			out[v.Job.Upload] = true
		}
	}
	return out, nil
}
