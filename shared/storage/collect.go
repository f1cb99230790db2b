package storage

import (
	"context"
	"time"

	digest "github.com/opencontainers/go-digest"
)

// Touch times: every item a purge may delete (a blob record, a link, a
// manifest) carries the time it was last written or "touched" by a writer
// that relies on it, by the store's clock, kept to the millisecond. A purge
// deletes such an item only with a condition "not touched since cut", so a
// writer racing the purge either touches first (the purge's delete fails
// and the item stays) or finds the item gone (its conditional touch fails
// with ErrNotFound and the request fails cleanly, nothing dangles). The
// argument is in package purge's doc.
//
// Writers that touch (Metadata's contract, extended):
//   - PutBlob: a new record is written with touched = now; when a record
//     exists already, it is touched (conditional on existing) and returned;
//   - LinkBlob: touches the global record first (ErrNotFound when there is
//     none: a link never points at a record being deleted), then writes the
//     link with touched = now. The touch is left out when b itself was
//     touched less than FreshFor ago (b as PutBlob, TouchLink or StatBlob
//     returned it): that record, or the link naming it, is protected for
//     the grace period (at least an hour) anyway, so the upload finish after
//     PutBlob costs no extra call;
//   - PutManifest: writes the manifest with touched = now;
//   - a manifest PUT checks its references with Collector.TouchLink and
//     Collector.TouchManifest instead of reads (one call each, as before).

// FreshFor is how recent Blob.Touched must be for LinkBlob to skip the
// record's touch. Safe while the purge's grace period exceeds FreshFor plus
// the longest request (the grace is at least an hour; package purge's doc
// has the argument): a link or record touched that recently cannot be
// deleted by a pass that could miss the new link.
const FreshFor = 2 * time.Second

// FreshTouch tells whether b was touched less than FreshFor before now.
func FreshTouch(b Blob, now time.Time) bool {
	return !b.Touched.IsZero() && now.Sub(b.Touched) < FreshFor && !b.Touched.After(now.Add(FreshFor))
}

// TagItem is a tag as Collector lists it.
type TagItem struct {
	Tag    string
	Digest digest.Digest
	// Updated is when the tag was last written (PutTag, PutTagCheck), zero
	// for tags written before stores recorded it.
	Updated time.Time
}

// ImageItems is everything stored under one image but manifest bodies.
type ImageItems struct {
	Image Image
	Tags  []TagItem
	// Manifests have Body nil (BodyKey kept when the body is in S3).
	Manifests []Manifest
	Links     []Blob
}

// EntryKind says what a scanned item is.
type EntryKind int

const (
	// EntryOther is any item purge does not look at (catalog entries,
	// referrer items, index entries of upload sessions, keys).
	EntryOther EntryKind = iota
	// EntryTag: Image, Tag.
	EntryTag
	// EntryManifest: Image, Manifest (Body nil).
	EntryManifest
	// EntryLink: Image, Blob (the link).
	EntryLink
	// EntryBlob: Blob (the global record).
	EntryBlob
	// EntryUpload: Upload (an upload session, expired ones included).
	EntryUpload
	// EntryMarker: Marker (expired ones included; Until tells).
	EntryMarker
)

// Entry is one item of a Scan.
type Entry struct {
	Kind     EntryKind
	Image    Image
	Tag      TagItem
	Manifest Manifest
	Blob     Blob
	Upload   Upload
	Marker   Marker
}

// Collector is the capability of a Metadata store that package purge needs
// (never on a read path; TouchLink and TouchManifest are on the manifest
// PUT path). Every Metadata store of this module implements it (the
// conformance suite requires it).
type Collector interface {
	// TouchLink sets the touch time of the link of d in img to now and
	// returns the link (one conditional write); ErrNotFound when d is not
	// linked there.
	TouchLink(ctx context.Context, img Image, d digest.Digest) (Blob, error)
	// TouchManifest sets the touch time of manifest d of img to now (one
	// conditional write); ErrNotFound when it is not stored there.
	TouchManifest(ctx context.Context, img Image, d digest.Digest) error
	// MarkPulled records that manifest d of img was pulled now (Manifest.
	// Pulled, the proxy cache eviction's clock, and Touched, so that a
	// conditional delete decided before the pull fails). Callers write it
	// at most once a day per manifest; ErrNotFound when it is not stored.
	MarkPulled(ctx context.Context, img Image, d digest.Digest) error

	// ListImage returns every tag, manifest (without body) and link of img
	// (one Query per 1 MB of items).
	ListImage(ctx context.Context, img Image) (ImageItems, error)
	// Scan returns up to about n entries of the whole store (n <= 0: a
	// page of the store's choosing) after cursor ("" = from the start),
	// strongly consistent, and the cursor of the next page ("" when done).
	// Items are in no particular order; an item that exists during the whole
	// scan is returned exactly once, one written or deleted meanwhile may or
	// may not be.
	Scan(ctx context.Context, cursor string, n int) ([]Entry, string, error)

	// DeleteLinkIf removes the link of d from img when it was not touched
	// at or after cut; ErrConflict when it was, ErrNotFound when there is none.
	DeleteLinkIf(ctx context.Context, img Image, d digest.Digest, cut time.Time) error
	// DeleteBlobIf removes the global record of d when it was not touched
	// at or after cut; ErrConflict when it was, ErrNotFound when there is none.
	DeleteBlobIf(ctx context.Context, d digest.Digest, cut time.Time) error
	// DeleteManifestIf is DeleteManifest (tags pointing at it, referrer
	// item, catalog entry when last) on condition that the manifest was not
	// touched (nor written) at or after cut; ErrConflict when it was, and
	// then nothing is deleted.
	DeleteManifestIf(ctx context.Context, img Image, d digest.Digest, cut time.Time) error
	// DeleteTagIf removes the tag when it is still as listed: it points at
	// want.Digest and was last written at want.Updated (zero: a tag written
	// before stores recorded it, never written since). ErrConflict when it
	// was written again (even to the same digest), ErrNotFound when there
	// is none.
	DeleteTagIf(ctx context.Context, img Image, want TagItem) error
}

// Object is one S3 object as ObjectLister lists it.
type Object struct {
	Key      string
	Size     int64
	Modified time.Time
}

// ObjectLister is the capability of a Blobs store that the blob garbage
// collection's reconciliation needs (S3 ListObjectsV2 and DeleteObjects).
// Every Blobs store of this module implements it.
type ObjectLister interface {
	// ListObjects returns up to n (n <= 0: 1000) objects whose key starts
	// with prefix and sorts after after, in key order, and whether more follow.
	ListObjects(ctx context.Context, prefix, after string, n int) ([]Object, bool, error)
	// DeleteObjects removes the objects (up to 1000 per request; missing
	// ones are not an error) and returns the keys it could not delete with
	// the first error.
	DeleteObjects(ctx context.Context, keys []string) ([]string, error)
	// WriteObject stores body at key (one PutObject; the purge's own
	// checkpoint state under PurgePrefix, never a blob).
	WriteObject(ctx context.Context, key string, body []byte) error
	// ReadObject returns the object at key (one GetObject), or ErrNotFound.
	ReadObject(ctx context.Context, key string) ([]byte, error)
}

// PurgePrefix is where package purge keeps the state of a garbage
// collection pass between runs (never listed by the reconciliation).
const PurgePrefix = "purge/"
