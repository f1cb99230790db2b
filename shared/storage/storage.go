// Package storage defines what the registry needs from its two stores:
// Metadata (DynamoDB: tags, manifests, blob links, upload sessions, catalog)
// and Blobs (S3: content-addressed blob bytes, upload parts, large manifests).
//
// The contract is checked by one conformance suite (package storagetest) run
// against every implementation and every local emulator of the real APIs.
package storage

import (
	"context"
	"crypto/rand"
	"encoding/hex"
	"errors"
	"fmt"
	"io"
	"strconv"
	"strings"
	"time"

	digest "github.com/opencontainers/go-digest"
	ocispec "github.com/opencontainers/image-spec/specs-go/v1"
)

// Sentinel errors. Implementations wrap them with context; callers test with errors.Is.
var (
	// ErrNotFound: the item or object does not exist (or has expired).
	ErrNotFound = errors.New("not found")
	// ErrConflict: a conditional write lost (offset moved, lease held, tag exists under a policy).
	ErrConflict = errors.New("condition failed")
	// ErrBadCursor: a listing cursor that no listing returns (UploadLister).
	ErrBadCursor = errors.New("invalid listing cursor")
)

// Image names one image inside one configured repository: Repo "local",
// Name "team/app" is addressed by clients as "local/team/app" (or as "team/app"
// when "local" is the default repository).
type Image struct {
	Repo string
	Name string
}

// String returns "repo/name", the image's full name in the catalog.
func (i Image) String() string { return i.Repo + "/" + i.Name }

// Blob describes stored blob bytes: global record (BLOB#<digest>) or a link of
// the blob into one image (B#<digest> under IMG#<repo>/<name>). Both carry the
// object's key, so a blob GET is one read.
type Blob struct {
	Digest digest.Digest
	Size   int64
	// Key is the S3 object holding the bytes: BlobKey(Digest) for blobs put
	// whole, or the key a multipart upload was completed at (UploadKey).
	// "" (records written before keys were recorded) means BlobKey(Digest).
	Key     string
	Created time.Time
	// Touched is when a writer last relied on it (collect.go), zero when
	// unknown (items written before stores recorded it: Created counts).
	Touched time.Time
}

// ObjectKey returns the S3 key of the blob's bytes (Key, or BlobKey(Digest)
// when Key is empty).
func (b Blob) ObjectKey() string {
	if b.Key != "" {
		return b.Key
	}
	return BlobKey(b.Digest)
}

// Manifest is one stored manifest (M#<digest>).
type Manifest struct {
	Digest    digest.Digest
	MediaType string
	Size      int64
	// Body holds the bytes when they fit in an item; otherwise Body is nil and
	// BodyKey names the S3 object (Blobs.GetManifestBody) holding them.
	Body    []byte
	BodyKey string
	// Blobs are the config and layer digests it references; Children the
	// manifests an index references. Both were checked to exist on PUT.
	Blobs    []digest.Digest
	Children []digest.Digest
	// Subject is the digest of the manifest this one refers to (referrers API), or "".
	Subject      digest.Digest
	ArtifactType string
	Annotations  map[string]string
	Created      time.Time
	// Touched is when it was last written or referenced by a new index
	// (collect.go); Pulled when a proxy last served it (zero: never
	// recorded). Both are set by the store, never by PutManifest's caller.
	Touched time.Time
	Pulled  time.Time
}

// Descriptor returns the manifest's descriptor as listed by the referrers API.
func (m Manifest) Descriptor() ocispec.Descriptor {
	return ocispec.Descriptor{
		MediaType:    m.MediaType,
		Digest:       m.Digest,
		Size:         m.Size,
		ArtifactType: m.ArtifactType,
		Annotations:  m.Annotations,
	}
}

// TagRule is the condition a tag write must meet (deployment policies).
type TagRule int

const (
	// TagOverwrite writes the tag whatever it pointed at before.
	TagOverwrite TagRule = iota
	// TagCreateOnly writes the tag only when it does not exist or already
	// points at the same digest; otherwise the write fails with ErrConflict.
	TagCreateOnly
)

// Part is one completed S3 multipart part.
type Part struct {
	Number int32
	ETag   string
	Size   int64
}

// Staged is one short chunk written as its own object until enough bytes are
// staged to make a multipart part (≥ 5 MiB).
type Staged struct {
	Key  string
	Size int64
}

// Upload is an upload session (UPLOAD#<id>). Any function instance can
// continue it: everything needed to resume lives here.
type Upload struct {
	ID    string
	Image Image
	// Offset is the number of bytes committed so far (parts + staged).
	Offset int64
	// MultipartID is the S3 multipart upload id (at UploadKey(ID)), "" until
	// the first part is written.
	MultipartID string
	// Parts are the multipart parts written, in order; all but a last one
	// written by Blobs.AppendLast have at least MinPartSize bytes.
	Parts  []Part
	Staged []Staged
	// HashState is the marshalled hash (encoding.BinaryMarshaler) of the
	// first Offset bytes, for HashAlgorithm ("sha256" or "sha512").
	HashAlgorithm string
	HashState     []byte
	// Lease is held by the writer currently appending; LeaseUntil bounds it so a
	// crashed writer does not block the session forever.
	Lease      string
	LeaseUntil time.Time
	Created    time.Time
	ExpiresAt  time.Time
}

// Page is one page of a lexically ordered listing.
type Page struct {
	Items []string
	// More is true when items after the last one exist.
	More bool
}

// Metadata is everything the registry keeps in DynamoDB. Every method is one
// or a few key-addressed calls; none scans.
type Metadata interface {
	// PutBlob records blob bytes stored at b.Key and returns the record now
	// stored: b, or the record that existed already (another upload of the same
	// bytes won; its Key may differ from b's). The existing record keeps
	// everything but its touch time, which is set to now (collect.go).
	PutBlob(ctx context.Context, b Blob) (Blob, error)
	// GetBlob returns the global record, or ErrNotFound.
	GetBlob(ctx context.Context, d digest.Digest) (Blob, error)

	// LinkBlob makes a blob visible in an image (idempotent). It touches the
	// blob's global record first and fails with ErrNotFound, linking
	// nothing, when there is none (collect.go: when it may skip the touch).
	LinkBlob(ctx context.Context, img Image, b Blob) error
	// StatBlob returns the link of a blob in an image (one read), or ErrNotFound.
	StatBlob(ctx context.Context, img Image, d digest.Digest) (Blob, error)
	// UnlinkBlob removes the link, or returns ErrNotFound when there is none.
	UnlinkBlob(ctx context.Context, img Image, d digest.Digest) error

	// PutManifest stores a manifest (and its referrer item when Subject is set)
	// and adds the image to the catalog. Overwriting the same digest is allowed.
	PutManifest(ctx context.Context, img Image, m Manifest) error
	// GetManifest returns a manifest by digest, or ErrNotFound.
	GetManifest(ctx context.Context, img Image, d digest.Digest) (Manifest, error)
	// DeleteManifest removes a manifest, its referrer item and every tag pointing at it.
	// It returns ErrNotFound when the manifest does not exist. When it was the
	// image's last manifest, the image's catalog entry goes too (ListImages
	// and Searcher.SearchImages stop listing it; the next PutManifest adds it
	// back). A PutManifest racing the delete never ends with a stored manifest
	// and no catalog entry; the reverse (an entry whose manifests are all gone,
	// after a crash or a racing delete of the same digest) may remain.
	DeleteManifest(ctx context.Context, img Image, d digest.Digest) error

	// ResolveTag returns the digest a tag points at, or ErrNotFound.
	ResolveTag(ctx context.Context, img Image, tag string) (digest.Digest, error)
	// PutTag points a tag at a digest under the given rule (ErrConflict when refused).
	PutTag(ctx context.Context, img Image, tag string, d digest.Digest, rule TagRule) error
	// DeleteTag removes a tag, or returns ErrNotFound.
	DeleteTag(ctx context.Context, img Image, tag string) error
	// ListTags returns up to n tags (n <= 0: all) strictly after last, in lexical order.
	ListTags(ctx context.Context, img Image, last string, n int) (Page, error)

	// ListReferrers returns the descriptors of manifests whose subject is d.
	ListReferrers(ctx context.Context, img Image, subject digest.Digest) ([]ocispec.Descriptor, error)

	// ListImages returns up to n image full names ("repo/name") strictly after
	// last, in lexical order, for the catalog.
	ListImages(ctx context.Context, last string, n int) (Page, error)
	// HasImage tells whether the catalog lists img (ListImages would name
	// it): one read of its catalog entry.
	HasImage(ctx context.Context, img Image) (bool, error)

	// CreateUpload stores a new session.
	CreateUpload(ctx context.Context, u Upload) error
	// GetUpload returns a session (strongly consistent), or ErrNotFound when it
	// does not exist or has expired.
	GetUpload(ctx context.Context, id string) (Upload, error)
	// AcquireUpload takes the session's lease for an append at offset: it
	// succeeds only when the committed offset equals offset and no other lease is
	// live (ErrConflict otherwise; ErrNotFound when there is no session). It
	// returns the session as stored, lease included.
	AcquireUpload(ctx context.Context, id string, offset int64, lease string, until time.Time) (Upload, error)
	// CommitUpload saves u (new offset, parts, staged objects, hash state) and
	// releases the lease; it fails with ErrConflict unless u.Lease still holds it.
	CommitUpload(ctx context.Context, u Upload) error
	// CommitUploadAt saves u (lease-free) on condition that the stored session
	// still has offset and no live lease, and has not expired: the one write
	// of an optimistic append that read the session (GetUpload) instead of
	// leasing it. It fails with ErrConflict otherwise, also when the session
	// is gone. Offsets only grow, so the condition detects any other commit.
	CommitUploadAt(ctx context.Context, u Upload, offset int64) error
	// DeleteUpload removes a session (idempotent).
	DeleteUpload(ctx context.Context, id string) error
}

// Blobs is everything the registry keeps in S3.
type Blobs interface {
	// Append writes r (the bytes after u.Offset) into the upload: parts of the
	// store's part size go to the multipart upload, a short tail is staged as
	// its own object (or, when a part precedes it in the same call, joins that
	// part), and once staged bytes and new ones reach MinPartSize the staged
	// objects are read back once and written with the new bytes as one part.
	// It updates u's Offset, MultipartID, Parts and Staged and returns the
	// number of bytes appended; on error u is unchanged. Memory is bounded by
	// a few parts.
	Append(ctx context.Context, u *Upload, r io.Reader) (int64, error)
	// AppendLast is Append for the upload's last bytes (PUT ?digest= with a
	// body): when the upload has a multipart upload, or the bytes make one,
	// staged and new bytes go straight into parts, the last of which may be
	// shorter than MinPartSize; nothing can be appended after it. Without a
	// multipart upload, short bytes are staged as by Append.
	AppendLast(ctx context.Context, u *Upload, r io.Reader) (int64, error)
	// Complete turns the upload's bytes into the blob object for d (which the
	// caller has verified from the hash state) and returns its key: a
	// multipart upload is completed where it was written (UploadKey(u.ID)),
	// without a copy; staged bytes without one are put at BlobKey(d). Staged
	// objects still listed in u are removed; those already read into parts are
	// left to the bucket's lifecycle rule on UploadPrefix. Complete may be
	// retried, also after it succeeded.
	Complete(ctx context.Context, u *Upload, d digest.Digest) (key string, err error)
	// Abort removes everything the upload wrote that is not a completed blob,
	// also what failed attempts left (idempotent; the purge and cancel path,
	// it may list).
	Abort(ctx context.Context, u *Upload) error
	// PutSmall stores a whole blob of at most MinPartSize bytes, already
	// verified to have digest d, with one write at BlobKey(d), and returns the key.
	PutSmall(ctx context.Context, d digest.Digest, body []byte) (key string, err error)

	// PresignGet returns a URL that serves the object at key (Blob.ObjectKey) for ttl.
	PresignGet(ctx context.Context, key string, ttl time.Duration) (string, error)
	// BlobExists tells whether the object at key exists (S3 HeadObject; never
	// on a request path).
	BlobExists(ctx context.Context, key string) (bool, error)
	// DeleteBlob removes the object at key (garbage collection, and the
	// loser's object when two uploads of one blob race); a missing object is
	// not an error.
	DeleteBlob(ctx context.Context, key string) error

	// PutManifestBody stores a manifest too large for an item and returns its key.
	PutManifestBody(ctx context.Context, d digest.Digest, body []byte) (string, error)
	// GetManifestBody reads a manifest body stored by PutManifestBody.
	GetManifestBody(ctx context.Context, key string) ([]byte, error)
	// PresignManifest returns a URL serving a stored manifest body for ttl,
	// with mediaType as the response's Content-Type.
	PresignManifest(ctx context.Context, key, mediaType string, ttl time.Duration) (string, error)
}

// BlobKey is the content-addressed S3 key of a blob: blobs/<alg>/<2 hex>/<hex>.
func BlobKey(d digest.Digest) string {
	hex := d.Encoded()
	return "blobs/" + string(d.Algorithm()) + "/" + hex[:2] + "/" + hex
}

// ManifestKey is the S3 key of a manifest body too large for an item, as
// written before keys were made unique (NewManifestKey).
func ManifestKey(d digest.Digest) string {
	hex := d.Encoded()
	return "manifests/" + string(d.Algorithm()) + "/" + hex[:2] + "/" + hex
}

// NewBlobKey returns a key for a whole blob put by PutSmall: BlobKey(d)
// followed by "." and 16 random hex digits. Every object a store writes is
// written once, at a key no earlier write used: the blob garbage collection
// (package purge) deletes a record before its object, and a key reused by a
// later upload of the same bytes could have its new object deleted under a
// new record.
func NewBlobKey(d digest.Digest) string { return BlobKey(d) + "." + randomHex() }

// NewManifestKey is NewBlobKey for manifest bodies (ManifestKey(d) + "." + 16 hex).
func NewManifestKey(d digest.Digest) string { return ManifestKey(d) + "." + randomHex() }

func randomHex() string {
	var b [8]byte
	if _, err := rand.Read(b[:]); err != nil {
		panic(err) // crypto/rand never fails on supported platforms
	}
	return hex.EncodeToString(b[:])
}

// UploadPrefix is the S3 prefix under which an upload's staged objects live
// (the bucket's lifecycle rule expires it).
func UploadPrefix(id string) string { return "uploads/" + id + "/" }

// UploadKey is the S3 key of an upload's multipart upload, and of the blob
// once completed: outside UploadPrefix (so the lifecycle rule keeps it) and a
// leaf (no other key starts with it followed by "/").
func UploadKey(id string) string { return "blobs/uploads/" + id }

// MinPartSize is S3's minimum size of every multipart part but the last.
const MinPartSize = 5 << 20

// StagedReader is an optional capability of a Blobs store: it reads back the
// staged bytes of an upload that has no multipart part yet (all its bytes are
// staged), in order. The registry uses it to verify a digest of another
// algorithm than the session hashed with (a short upload completed with sha512).
type StagedReader interface {
	ReadStaged(ctx context.Context, u *Upload) (io.ReadCloser, error)
}

// BlobReader is an optional capability of a Blobs store: it reads a stored
// object back. The registry uses it only to verify a digest of another
// algorithm than the session hashed with when the bytes are already in
// multipart parts (a chunked sha512 push that did not announce its
// algorithm): it completes the upload, hashes the object, and deletes it on a
// mismatch.
type BlobReader interface {
	ReadBlob(ctx context.Context, key string) (io.ReadCloser, error)
}

// ChunkStager is an optional capability of a Blobs store for the hot path of
// a chunked push (README, Architecture: Request flows). A chunk of known bytes is staged under a key of
// its own before the session is read, in parallel with that read; then the
// session changes in memory and is saved with one conditional write
// (Metadata.CommitUploadAt). Only a chunk that completes a part needs the
// session's lease, since it writes a multipart part.
type ChunkStager interface {
	// StageChunk writes b, the bytes of upload id from offset off, as a
	// staged object whose key is unique to token (writers racing at one offset
	// never share a key). It needs no session.
	StageChunk(ctx context.Context, id string, off int64, token string, b []byte) (Staged, error)
	// AddChunk appends the chunk staged by StageChunk (holding b) at u.Offset.
	// When u's staged bytes and b reach MinPartSize, the staged objects are
	// read back (b is not) and sent with b as the next part, which requires u
	// to hold the session's lease; otherwise only u changes (no request).
	AddChunk(ctx context.Context, u *Upload, st Staged, b []byte) error
}

// Marker is a small expiring item of the registry's own bookkeeping, grouped
// for listing (MARK#<group>, sk <key>): a proxy's blob-fill leases, negative
// cache entries ("not found upstream"), the remote's auto-block state, and
// fills handed to the proxyfetch function. A marker is live while the store's
// clock is before Until; from Until on it reads as absent everywhere (Get,
// List, Acquire, Release), whether or not it was deleted yet (DynamoDB's TTL
// deletion is lazy; emulators have none).
type Marker struct {
	// Group and Key address the marker; Key must not be empty. Keys over the
	// store's limits (DynamoDB: sort key ≤ 1024 bytes) cannot be written and
	// read as absent.
	Group string
	Key   string
	// Value is the marker's payload (a lease owner, a digest, a JSON document
	// of at most a few KB); "" is a value like any other.
	Value string
	// Count is a counter (consecutive upstream failures).
	Count int
	// Until is when the marker expires, kept to the millisecond (required:
	// markers never live forever; a write without it is an error).
	Until time.Time
}

// TagCheck is a tag of a proxy's cache with the time it was last checked
// against the upstream (zero: never).
type TagCheck struct {
	Digest digest.Digest
	// Checked is kept to the millisecond (truncated).
	Checked time.Time
}

// ProxyMetadata is what proxy repositories need beyond Metadata. Every method
// is one key-addressed call (ListMarkers one Query). Every Metadata store
// implements it (the conformance suite requires it).
type ProxyMetadata interface {
	// GetTagCheck returns the digest a tag points at and when it was last
	// checked against the upstream (zero when it never was: a hosted tag, or
	// one last written by PutTag), or ErrNotFound. One read, like ResolveTag.
	GetTagCheck(ctx context.Context, img Image, tag string) (TagCheck, error)
	// PutTagCheck points the tag at c.Digest and records c.Checked
	// (overwrites, whatever rule a hosted tag would have; ListTags,
	// ResolveTag, DeleteTag and DeleteManifest see it as any tag). A later
	// PutTag resets Checked to zero.
	PutTagCheck(ctx context.Context, img Image, tag string, c TagCheck) error

	// PutMarker writes m (overwrites).
	PutMarker(ctx context.Context, m Marker) error
	// GetMarker returns a live marker, or ErrNotFound when it is absent or expired.
	GetMarker(ctx context.Context, group, key string) (Marker, error)
	// DeleteMarker removes a marker (idempotent).
	DeleteMarker(ctx context.Context, group, key string) error
	// ListMarkers returns up to n (n <= 0: all) live markers of a group in
	// key order (bytes of UTF-8); none is an empty slice.
	ListMarkers(ctx context.Context, group string, n int) ([]Marker, error)
	// AcquireMarker writes m only when no live marker exists at its key or
	// the live one has the same Value (a lease renewed by its owner: Until and
	// Count are replaced); it fails with ErrConflict otherwise. An expired
	// marker is taken over. Of concurrent acquirers with different values
	// exactly one wins.
	AcquireMarker(ctx context.Context, m Marker) error
	// ReleaseMarker deletes the marker only when its Value is value (the
	// owner releasing its lease); a missing or expired marker is not an
	// error (an expired one may be deleted); one live and held by another
	// value is ErrConflict, and stays.
	ReleaseMarker(ctx context.Context, group, key, value string) error
}

// BatchReader is an optional capability of a Metadata store: it reads one
// key in several images at once, for a group repository (one URL over
// ordered member repositories) asking all its hosted members in one round
// trip. Each result is exactly what the one-by-one read (ResolveTag,
// StatBlob, GetManifest) would return for that image, strongly consistent
// like it, with ErrNotFound as "absent" and any other error failing the
// whole call. Images may repeat (each position gets its answer); keys over
// the store's limits (DynamoDB: partition key ≤ 2048 bytes, sort key ≤ 1024)
// read as absent without a request. A call costs one round trip for up to
// 100 distinct keys (DynamoDB BatchGetItem's limit; larger inputs take one
// per 100, and keys the service leaves unprocessed are retried after a short
// backoff). Every Metadata store of this module implements it (the
// conformance suite requires it).
type BatchReader interface {
	// ResolveTags returns, for each image in order, the digest tag points at ("" when the image has no such tag).
	ResolveTags(ctx context.Context, imgs []Image, tag string) ([]digest.Digest, error)
	// StatBlobs returns, for each image in order, the blob's link (ok[i] false when not linked there).
	StatBlobs(ctx context.Context, imgs []Image, d digest.Digest) (links []Blob, ok []bool, err error)
	// HasManifests tells, for each image in order, whether manifest d is stored there.
	HasManifests(ctx context.Context, imgs []Image, d digest.Digest) ([]bool, error)
}

// Searcher is an optional capability of a Metadata store: catalog search
// (docker search). It reads the catalog's own items (DynamoDB: one Query of
// the catalog partition with a filter, paged), never a table scan. Every
// Metadata store of this module implements it (the conformance suite
// requires it).
type Searcher interface {
	// SearchImages returns up to n (n <= 0: all) catalog names ("repo/name",
	// as ListImages lists them) that contain query as a substring, ASCII
	// letters compared case-insensitively (other bytes as they are), in
	// lexical (byte) order; "" matches every name, and none is an empty
	// slice. (Names are lower-case anyway: repository names by
	// configuration, image names by the distribution spec.)
	SearchImages(ctx context.Context, query string, n int) ([]string, error)
}

// ListedUpload is an upload session as UploadLister lists it: the session as
// stored, and when the store last wrote it.
type ListedUpload struct {
	Upload
	// Updated is when the store last wrote the session (CreateUpload,
	// AcquireUpload, CommitUpload, CommitUploadAt), kept to the millisecond;
	// for a session written before stores recorded it, Created.
	Updated time.Time
	// Cursor is the session's place in the listing order (UploadCursor of
	// the time it is indexed under and its ID): passed as ListUploads'
	// after, the listing goes on with the sessions that follow it.
	Cursor string
}

// UploadCursor is the cursor of a session indexed at t (kept to the
// millisecond, before 1970 as 1970) with the given ID:
// "<epoch ms, 13 digits>#<id>". Cursors sort as the listing does.
func UploadCursor(t time.Time, id string) string {
	return fmt.Sprintf("%013d#%s", max(t.UnixMilli(), 0), id)
}

// ParseUploadCursor returns the time and ID of an UploadCursor, or an
// error wrapping ErrBadCursor for any other string.
func ParseUploadCursor(c string) (time.Time, string, error) {
	ms, id, ok := strings.Cut(c, "#")
	digits := len(ms) == 13 && strings.Trim(ms, "0123456789") == ""
	n, err := strconv.ParseInt(ms, 10, 64)
	if !ok || !digits || err != nil || id == "" {
		return time.Time{}, "", fmt.Errorf("upload listing cursor %.80q: want <epoch ms, 13 digits>#<upload id>, as ListUploads returns it: %w", c, ErrBadCursor)
	}
	return time.UnixMilli(n).UTC(), id, nil
}

// UploadListDays bounds how far back UploadLister looks: a session created
// more than this many days before olderThan may be missing from the
// listing (package dynamo's index entries expire then; by that age the
// bucket's lifecycle rule has aborted its multipart upload and DynamoDB's
// TTL has long removed an idle session).
const UploadListDays = 8

// UploadLister is an optional capability of a Metadata store for the purge
// of incomplete uploads (package purge; never on a request path): it lists
// upload sessions by creation time without a table scan. Package dynamo
// keeps an index entry per session (UPLOADS#<day>, README, Architecture:
// Where data lives) written by CreateUpload; memstore reads its map. Every
// Metadata store of this module implements it (the conformance suite
// requires it).
type UploadLister interface {
	// ListUploads returns up to n (n <= 0: all) sessions created before
	// olderThan, oldest first (Created, then ID: Cursor order), expired
	// ones included (GetUpload hides those; their S3 leftovers still need
	// removing), after the cursor after ("": from the first). A cursor is
	// a place, not a session: it stays valid when its session is gone (the
	// listing goes on with the sessions after that place), and paging with
	// the last listed Cursor lists every session once. A string that is no
	// UploadCursor fails with an error wrapping ErrBadCursor, before any
	// call. Sessions created more than UploadListDays days before olderThan
	// may be missing. A deleted session is never listed.
	ListUploads(ctx context.Context, olderThan time.Time, after string, n int) ([]ListedUpload, error)
}
