// Package upstreamtest runs a real upstream registry for tests of Airlock's
// proxy repositories (the pull-through cache of Docker Hub or any other V2
// registry).
//
// [New] starts go-containerregistry's in-memory registry (pkg/registry) on
// 127.0.0.1 and wraps it so that it behaves the way the proxy meets upstreams
// in the wild:
//
//   - Docker Hub's bearer-token flow ([WithToken]): 401 challenges naming
//     realm, service and scope, a /token endpoint that issues opaque tokens
//     for the scopes asked (anonymously, or behind HTTP Basic), and tokens
//     that authorize only the repositories they were issued for.
//   - Blob GETs redirected to a second server on another host name, the
//     "CDN" ([WithBlobRedirect]), which records any request that carries an
//     Authorization header ([Upstream.CDNAuthLeaks]): credentials meant for
//     the registry must never reach it.
//   - Docker Hub's rate-limit headers on manifests (ratelimit-limit,
//     ratelimit-remaining), ETag and 304 Not Modified for an If-None-Match
//     naming the manifest's digest.
//   - Faults switched at any time with [Upstream.SetFault]: connection
//     refused and back on the same address ([FaultDown]), TCP reset
//     ([FaultReset]), any status ([FaultStatus]), 429 with Retry-After
//     ([FaultTooManyRequests]), corrupted or trickled blob bytes
//     ([FaultCorruptBlobs], [FaultSlowBlobs]) and a server that never
//     answers ([FaultHang]); [Fault.On] restricts one to kinds of request and
//     [Fault.Times] to the next n of them. [Upstream.Fail401OnHEAD] refuses
//     manifest HEADs by digest.
//
// Every request to either server is recorded (method, path, kind, status,
// If-None-Match, Range, Authorization) and counted: [Upstream.Count],
// [Upstream.BlobGets], [Upstream.ManifestGets], [Upstream.NotModified],
// [Upstream.Requests], [Upstream.Reset].
//
// Content is put in place with [Upstream.PushImage], [Upstream.Push],
// [Upstream.PushIndex], [Upstream.Retag], [Upstream.DeleteTag] and
// [Upstream.DeleteBlob]. They talk to the inner registry directly, so they
// are neither authenticated, faulted nor counted.
//
// Request kinds, as [Upstream.Count] and [Request.Kind] name them:
//
//	ping       GET /v2/
//	token      the token endpoint, /token
//	manifest   /v2/<name>/manifests/<reference>
//	blob       /v2/<name>/blobs/<digest> (not uploads)
//	tags       /v2/<name>/tags/list
//	referrers  /v2/<name>/referrers/<digest>
//	cdn        any request to the CDN server
//	other      anything else (uploads, _catalog, unknown paths)
package upstreamtest
