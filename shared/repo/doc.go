// Package repo is what one configured repository serves, whatever its kind:
// the Repository interface, the Hosted repository (a private registry), the
// Proxy repository (a pull-through cache of one remote registry) and the
// Group (one endpoint over ordered members), and the Set that resolves
// request names to them (Resolve; containerd's ?ns=<registry> picks the
// proxy of that registry, and a registry other than Docker Hub with no
// proxy of it is not found rather than served from the default) and
// searches them (Search). The registry handler routes a
// request, resolves its name here, authorizes, and dispatches to a
// Repository; it never asks a repository's kind. Writes go to the *Hosted
// that Repository.Push returns (a proxy refuses with a *DeniedError naming
// the hosted repositories). Errors are typed (NotFoundError, DeniedError,
// UnavailableError, RateLimitedError, BadUpstreamError, RedirectError); the
// registry maps them to API answers in one place.
//
// # Hosted
//
// Owns the deployment policy (TagRule, RedeployDenied, read-only Push) and
// the "record the blob, or keep the record another writer made first, then
// link" step (Record, RecordAndLink) that uploads and proxy fills share.
// Recording a blob kept at an upload's own key also writes an "uploaded"
// marker (UploadedGroup), which tells the blob garbage collection (package
// purge) that object from an orphan.
//
// # Proxy
//
// A proxy is a Hosted cache under the proxy's own name (IMG#<proxy>/<image>
// items, blobs in the shared content-addressed store) plus an upstream
// client (package upstream). No state lives in process memory: everything a
// request or another instance needs is an item (storage.ProxyMetadata).
//
//   - Manifest by tag: the tag item carries when it was last checked against
//     the remote (GetTagCheck: the same one read as a hosted tag). Checked
//     within metadataMaxAge: served from the cache, no remote call (a warm
//     pull costs what a hosted pull costs). Older: one conditional HEAD
//     (If-None-Match: the cached digest; Docker Hub does not count HEADs
//     against its pull quota); unchanged (304 or same digest) records the
//     check; a new digest is fetched by digest, verified, stored as the exact
//     bytes received, and the tag moved. Nothing cached: one GET by tag,
//     one across instances (a lease marker mfill/<proxy>/<image>@<ref>; the
//     others poll the cache).
//     Any remote failure with a cached tag serves the cached copy with a
//     `Warning: 110` header (a tag deleted upstream too).
//   - Manifest by digest: immutable; fetched once, verified, never revalidated.
//     A served cached manifest records the pull at most once a day
//     (storage.Manifest.Pulled: the proxy-evict purge's clock).
//   - Blob: a link in the image is one read and a 307 (as hosted). Bytes
//     stored already (another image or repository) are linked after a remote
//     HEAD confirms the image has them (no bytes move; a digest alone never
//     reveals another repository's blob). Otherwise exactly one fill per blob
//     across all instances: a lease marker (fill/<proxy>/<digest>, one conditional
//     write, expiring after LeaseTTL) goes to one request, which streams the
//     remote's bytes into the Blobs store (multipart parts: bounded memory;
//     one PutObject for a blob of known size up to 5 MiB), hashing and
//     counting while streaming; bytes that do not match digest or announced
//     size are aborted, never recorded, and the client gets 502. Other
//     requests poll the blob record (Poll) and take over if the lease
//     vanishes without a blob. All within the fill budget.
//   - Past the budget the filler stops reading (no byte is lost: what was
//     read is in parts and staged objects), saves the upload session with
//     its hash state (UPLOAD#<id>) and a pending-fill marker, and hands the
//     FillJob to proxyfetch (ProxyOptions.Handoff: an async Lambda invoke;
//     localdev: a goroutine). The client gets 503 + Retry-After (onTimeout:
//     retry) or a 307 to the remote's own blob URL (onTimeout: redirect).
//     proxyfetch renews the lease with the same owner and resumes with a
//     ranged GET from the saved offset, so the bytes already fetched are not
//     fetched again. Set.RetryFills (the schedule) resumes parked fills whose
//     hand-off was lost. With ProxyOptions.FillUntilDeadline (behind a
//     Lambda function URL) a fill runs until the request's deadline less
//     2 s instead of stopping at the budget.
//   - Remote trouble: every metadata call is bounded by UpstreamTimeout and
//     the request's deadline; a blob GET must start answering within it.
//     "Down" (refused, reset, time-out, 5xx) counts towards the auto-block
//     marker (block/<proxy>): after BlockAfter consecutive failures the
//     remote is not asked for a back-off doubling from BlockBase to BlockMax,
//     and only the cache serves; a success clears it. 429 is passed on with
//     the remote's Retry-After; 404 (and 401/403, Docker Hub's answer for a
//     name it does not know) is remembered for negativeCacheTTL
//     (neg:<proxy>/<image>@<ref>) and is the only case answered "unknown".
//   - Foreign layers: their URLs are remembered when the manifest is cached
//     (foreign:<proxy>/<image>@<digest>); a blob the remote does not serve
//     is fetched from a URL only when foreignLayers.allow fully matches it.
//   - Tags list: the remote's list (when it answers in time) merged with the
//     cached tags. Referrers: the cached ones.
//   - A cached blob also gets a holds:<proxy> marker (key: its digest), so a
//     group finds it under any image name.
//
// # Group
//
// Lookups walk the leaves (hosted and proxy members, depth first through
// member groups) in order: the hosted leaves are read together in one
// round trip (storage.BatchReader), a proxy leaf's remote is asked only
// after the leaves before it missed, and by digest every leaf's cache is
// tried before any remote. Tags merge (deduplicated, lexical, paged), and
// so do referrers.
// Push returns the writeMember (none: a *DeniedError naming the hosted
// members); a blob HEAD answers from any member, so a manifest PUT through
// the group links blobs a proxy member cached into the writeMember.
//
// # Search
//
// Set.Search matches image names of every repository from the catalog (no
// table scan), then each proxy's remote search index (Docker Hub's, or
// searchIndex), whose answers are cached for 10 minutes (search:<proxy>
// markers) and whose failure leaves the local results.
package repo
