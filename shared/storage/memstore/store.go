package memstore

import (
	"crypto/rand"
	"errors"
	"maps"
	"net"
	"net/http"
	"sync"
	"time"

	digest "github.com/opencontainers/go-digest"
	ocispec "github.com/opencontainers/image-spec/specs-go/v1"

	"github.com/airlock-registry/airlock/shared/storage"
)

// Compile-time checks of the storage interfaces (the test checks the
// storagetest ones: this package does not import the test suite).
var (
	_ storage.Metadata      = (*Store)(nil)
	_ storage.ProxyMetadata = (*Store)(nil)
	_ storage.Blobs         = (*Store)(nil)
	_ storage.StagedReader  = (*Store)(nil)
	_ storage.BlobReader    = (*Store)(nil)
	_ storage.ChunkStager   = (*Store)(nil)
	_ storage.BatchReader   = (*Store)(nil)
	_ storage.Searcher      = (*Store)(nil)
	_ storage.Collector     = (*Store)(nil)
)

// DefaultPartSize is the size of the multipart parts Append writes, as in
// package s3store.
const DefaultPartSize = 8 << 20

// DynamoDB's key size limits, in bytes of UTF-8, which the store keeps to
// with the same key layout as package dynamo.
const (
	maxPK = 2048
	maxSK = 1024
)

// maxManifestBody caps GetManifestBody, as in package s3store.
const maxManifestBody = 32 << 20

// errKeyTooLong is returned by writes of keys over DynamoDB's limits.
var errKeyTooLong = errors.New("key too long for DynamoDB (partition key ≤ 2048 bytes, sort key ≤ 1024)")

// Store is an in-memory storage.Metadata, storage.ProxyMetadata and
// storage.Blobs (see the package comment). It is safe for concurrent use.
// Its zero value is not usable: call New, and Close when done.
type Store struct {
	now      func() time.Time
	partSize int64
	secret   []byte // HMAC key of presigned URLs

	mu sync.Mutex // guards everything below
	// Metadata (DynamoDB).
	blobs   map[digest.Digest]storage.Blob
	images  map[string]*image // by "IMG#" partition: img.String()
	catalog map[string]struct{}
	uploads map[string]uploadRec
	markers map[string]map[string]storage.Marker // group → key → marker (Until to the ms)
	// Blobs (S3).
	objects    map[string][]byte    // never modified once stored: readers share them
	modified   map[string]time.Time // LastModified of each object (store clock, ms)
	multiparts map[string]*multipart
	seq        int64 // multipart upload ids and part ETags
	calls      map[string]int
	sent       map[string]int64

	srvMu  sync.Mutex // guards the presign server
	srv    *http.Server
	base   string // "http://127.0.0.1:<port>"
	closed bool
}

// image holds the items of one IMG#<repo>/<name> partition.
type image struct {
	tags      map[string]tagRec
	links     map[digest.Digest]storage.Blob
	manifests map[digest.Digest]storage.Manifest
	referrers map[string]ocispec.Descriptor // by "<subject>#<digest>"
}

// tagRec is a tag item: its digest, when it was last written (epoch ms)
// and, for proxies, when it was last checked (epoch ms, 0: never).
type tagRec struct {
	digest  digest.Digest
	at      int64
	checked int64
}

// Option configures New.
type Option func(*Store)

// WithClock sets the clock of every expiry check (upload sessions, leases,
// markers and presigned URLs) and of touch times (default time.Now).
func WithClock(now func() time.Time) Option {
	return func(s *Store) { s.now = now }
}

// WithPartSize sets the size of the multipart parts Append writes; values
// below storage.MinPartSize are raised to it (as s3store.WithPartSize).
func WithPartSize(n int64) Option {
	return func(s *Store) { s.partSize = max(n, storage.MinPartSize) }
}

// New returns an empty Store.
func New(opts ...Option) *Store {
	s := &Store{
		now:        time.Now,
		partSize:   DefaultPartSize,
		secret:     make([]byte, 32),
		blobs:      map[digest.Digest]storage.Blob{},
		images:     map[string]*image{},
		catalog:    map[string]struct{}{},
		uploads:    map[string]uploadRec{},
		markers:    map[string]map[string]storage.Marker{},
		objects:    map[string][]byte{},
		modified:   map[string]time.Time{},
		multiparts: map[string]*multipart{},
	}
	_, _ = rand.Read(s.secret) // crypto/rand.Read does not fail
	for _, o := range opts {
		o(s)
	}
	return s
}

// PartSize returns the size of the multipart parts Append writes.
func (s *Store) PartSize() int64 { return s.partSize }

// Close stops the presigned URLs' HTTP server, if one was started; URLs
// presigned before stop working. The data stays readable through the
// methods; presigning after Close is an error. Close is idempotent.
func (s *Store) Close() error {
	s.srvMu.Lock()
	defer s.srvMu.Unlock()
	s.closed = true
	if s.srv == nil {
		return nil
	}
	err := s.srv.Close()
	s.srv = nil
	if errors.Is(err, net.ErrClosed) {
		err = nil
	}
	return err
}

// Requests returns how many simulated S3 requests the Blobs methods made
// since the last ResetRequests, keyed "S3.<operation>" as package awscount
// counts real ones (storagetest.RequestCounter). Metadata calls and GETs of
// presigned URLs are not counted.
func (s *Store) Requests() map[string]int {
	s.mu.Lock()
	defer s.mu.Unlock()
	return maps.Clone(s.calls)
}

// RequestBytes returns the body bytes of the counted PutObject and
// UploadPart requests, keyed like Requests.
func (s *Store) RequestBytes() map[string]int64 {
	s.mu.Lock()
	defer s.mu.Unlock()
	return maps.Clone(s.sent)
}

// ResetRequests forgets the request counts.
func (s *Store) ResetRequests() {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.calls, s.sent = nil, nil
}

// count records one simulated S3 request of op with n body bytes (s.mu held).
func (s *Store) count(op string, n int64) {
	if s.calls == nil {
		s.calls, s.sent = map[string]int{}, map[string]int64{}
	}
	s.calls["S3."+op]++
	if n > 0 || op == "PutObject" || op == "UploadPart" {
		s.sent["S3."+op] += n
	}
}

// fits reports whether an item key is within DynamoDB's limits.
func fits(pk, sk string) bool { return len(pk) <= maxPK && len(sk) <= maxSK }

func imagePK(img storage.Image) string { return "IMG#" + img.String() }

// image returns img's partition, creating it when create is set (else nil
// when it has no items).
func (s *Store) image(img storage.Image, create bool) *image {
	im := s.images[img.String()]
	if im == nil && create {
		im = &image{
			tags:      map[string]tagRec{},
			links:     map[digest.Digest]storage.Blob{},
			manifests: map[digest.Digest]storage.Manifest{},
			referrers: map[string]ocispec.Descriptor{},
		}
		s.images[img.String()] = im
	}
	return im
}

// entry returns img's partition and item d of the map of it that items picks
// (linksOf, manifestsOf); ok is false when either is missing (s.mu held).
func entry[V any](s *Store, img storage.Image, items func(*image) map[digest.Digest]V, d digest.Digest) (im *image, v V, ok bool) {
	if im = s.image(img, false); im != nil {
		v, ok = items(im)[d]
	}
	return im, v, ok
}

// linksOf and manifestsOf pick a map of an image for entry.
func linksOf(im *image) map[digest.Digest]storage.Blob         { return im.links }
func manifestsOf(im *image) map[digest.Digest]storage.Manifest { return im.manifests }

// millis returns t in epoch milliseconds, 0 for the zero time.
func millis(t time.Time) int64 {
	if t.IsZero() {
		return 0
	}
	return t.UnixMilli()
}

// fromMillis reverses millis (in UTC).
func fromMillis(ms int64) time.Time {
	if ms == 0 {
		return time.Time{}
	}
	return time.UnixMilli(ms).UTC()
}

// cloneBytes copies b; empty is nil (as DynamoDB's omitempty attributes read back).
func cloneBytes(b []byte) []byte {
	if len(b) == 0 {
		return nil
	}
	return append([]byte(nil), b...)
}

// cloneSlice copies x; empty is nil.
func cloneSlice[T any](x []T) []T {
	if len(x) == 0 {
		return nil
	}
	return append([]T(nil), x...)
}

// cloneMap copies m; empty is nil.
func cloneMap(m map[string]string) map[string]string {
	if len(m) == 0 {
		return nil
	}
	return maps.Clone(m)
}
