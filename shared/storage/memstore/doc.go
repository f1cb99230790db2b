// Package memstore is an in-memory implementation of the whole storage
// contract, for fast table tests of registry logic: one Store is a
// storage.Metadata, storage.ProxyMetadata and storage.Blobs, with the
// optional capabilities storage.BatchReader, storage.Searcher,
// storage.StagedReader, storage.BlobReader, storage.ChunkStager,
// storage.PartPresigner, and the purge's storage.Collector,
// storage.UploadLister and storage.ObjectLister, and the
// test hooks storagetest.UploadInspector and
// storagetest.RequestCounter. It passes the same conformance suite
// (storagetest.TestMetadata and TestBlobs) as packages dynamo and s3store.
//
//	s := memstore.New(memstore.WithClock(clock.Now))
//	t.Cleanup(func() { s.Close() })
//	reg, err := registry.New(registry.Deps{Meta: s, Blobs: s, Config: cfg, Now: clock.Now})
//
// # Design
//
// Everything is guarded by one mutex; every method copies what it is given
// and what it returns (slices, maps, byte bodies), so neither the store nor
// its callers see each other's later changes. Stored objects are never
// modified once written, which lets readers and the presign server share them.
//
// Metadata mirrors package dynamo item for item, not just the interface:
//   - the same key layout and key size limits (partition key ≤ 2048 bytes,
//     sort key ≤ 1024): reads of keys that cannot exist are ErrNotFound,
//     writes of them an error, listings may start after any string;
//   - the same precisions: upload ExpiresAt to the second, leases, marker
//     Until and tag checks to the millisecond, times read back in UTC, empty
//     lists, maps and byte slices read back as nil;
//   - the same conditions: create-only tags, PutBlob keeping the first
//     record, upload leases (AcquireUpload, CommitUpload, CommitUploadAt on
//     offset, live lease and expiry), markers acquired and released on Value
//     or expiry, and expired sessions and markers reading as absent while
//     they stay stored (there is no TTL deletion, as in the emulators);
//   - listings in byte order with the same Page.More, the catalog fed by
//     PutManifest, referrers in digest order, DeleteManifest removing the
//     tags pointing at the manifest and, with the image's last manifest,
//     its catalog entry; SearchImages matching as package dynamo does
//     (substring, ASCII case-insensitive), batch reads answering exactly as
//     the one-by-one reads.
//
// DynamoDB's 400 KB item limit is not enforced (package dynamo compresses
// large manifests to stay under it; the registry keeps items within it).
//
// Blobs simulate one S3 bucket: objects by key and multipart uploads with
// parts, ETags, and S3's completion rules (ascending parts with matching
// ETags, all but the last at least storage.MinPartSize). On top of it,
// Append, AppendLast, AddChunk, StageChunk, Complete and Abort follow
// package s3store step by step: the same part size (WithPartSize, default
// 8 MiB), staged object keys under storage.UploadPrefix, coalescing of tiny
// chunks, a short tail joined to the part before it, Complete at
// storage.UploadKey for multipart uploads and at storage.BlobKey otherwise,
// retries of Complete after success, and leftovers of lost attempts that
// Abort removes. Each simulated request is counted as awscount counts real
// ones ("S3.PutObject", "S3.UploadPart", …), so request-count tests hold
// for both. Append reads the body whole before writing anything (memory is
// not bounded by parts as in s3store), so a failed Append writes nothing.
//
// Presigned URLs are served by one loopback HTTP server per store, started
// on first use (127.0.0.1, a free port) and stopped by Close. A URL carries
// S3-style X-Amz-Date, X-Amz-Expires and response-content-type parameters
// and an X-Amz-Signature: an HMAC-SHA256, under a key random per store, of
// the object key and those parameters. The server answers 403 to a
// signature that does not match (another key, a tampered parameter) or has
// expired by the store's clock (WithClock), 404 for a missing object, and
// the object's bytes, with Range support and the signed Content-Type,
// otherwise.
package memstore
