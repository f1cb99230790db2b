// Package purge is Airlock's scheduled cleanup: named tasks, each run for
// real or as a dry run that reports exactly what a real run would delete.
//
// # Running
//
// The same Purger runs from three places: the purge Lambda function
// (functions/purge) on an EventBridge schedule (template.yaml, parameter
// PurgeSchedule, default rate(1 hour); an event {"task": "<name>",
// "dryRun": true} invoked by hand runs one task), the admin API (POST
// /airlock/api/purge?task=<name>&dryRun=true|false, admin role when
// authentication is on; the JSON Report is the answer), and localdev (a
// timer, -purge-every, default 1h, 0 = off). Every run logs its Report as
// JSON.
//
// # Reports
//
// A Report names the task, whether it was a dry run, its pass, how many
// items the task considered, how many it deleted (or, dry, would delete)
// with their bytes and counts by kind, why the others were skipped (counts
// by reason), errors, and whether it stopped at its per-run bound (More:
// the next run continues the pass). It lists the first ReportSample (100)
// deleted items with their id, image, S3 keys and bytes ("listed": "100 of
// 2345"), so the log line and the admin API's answer stay small however
// much a run deletes; every item goes, as JSON lines gzip-compressed, to
// the object purge/reports/<pass>/<task>-<run>.jsonl.gz in the blob bucket
// (Report.List; none when nothing went; template.yaml expires them after
// 30 days). A dry run takes exactly the decisions of a real run on the
// same state; the two differ only when a writer races the real run, which
// then skips the item (reason "busy").
//
// A pass is the runs that continue each other from one checkpoint, from
// the first to the one that reports More false; a dry pass (its name
// starts with "dry-") has its checkpoint of its own (the task's name with
// "-dry" after it), so dry runs are bounded and resumable exactly like
// real ones and never continue, move or end a real pass. A dry pass run
// to its end lists what the real pass that follows deletes.
// incomplete-uploads' real runs read and write their checkpoint only when
// a run cannot do everything (below): its ordinary run is a pass.
//
// # Tasks
//
// incomplete-uploads: upload sessions created more
// than purge.incompleteUploadsAfter (default 24h) ago and not written
// since then. For each it aborts the S3 multipart upload, deletes the
// staged chunk objects (storage.Blobs.Abort, which also lists what failed
// attempts left under the upload's key and prefix) and deletes the session
// item.
//
// Bounded and resumable: a run deletes (dry: would delete; real: tries to,
// a claim lost to a writer included) at most MaxPerRun (default 1000)
// sessions and examines at most 10 × MaxPerRun: a kept session (below)
// costs only its share of a listing page, so a run walks past many of them
// and its bounds keep it well within the Lambda's deadline. It lists in
// pages of what it may still take plus one (the ordinary run: one
// ListUploads of MaxPerRun+1) and continues after the last session's
// cursor (storage.ListedUpload.Cursor) within the run. When it stops on a
// bound it records that cursor in its checkpoint marker (incomplete-uploads,
// incomplete-uploads-dry for a dry pass; {"pass","last"}) and the next run
// continues after it; the run that reaches the end of the listing clears
// the checkpoint it read, and the next run starts a new pass from the first
// session. Without it, kept sessions at the front of the listing (leased,
// written recently, parked fills: enough of them) would stall every run.
//
// A dry run reads its checkpoint first. A real run lists from the first
// session (what it deleted is not listed again) and reads its checkpoint
// only when that first page is full, so the ordinary run (one page) reads
// and writes no marker; with a checkpoint it lists again after it. A real
// run that stops on a bound with nothing left behind it (every session it
// considered deleted or gone) writes no checkpoint either: the next
// listing, from the first or from the checkpoint it continued, starts
// where it stopped anyway. When the listing shrinks to one page while a
// checkpoint exists, the ordinary runs that follow do not read it (each
// walks every session); the next run whose first page is full continues
// after it, so the sessions before it, examined by those runs, wait for
// the pass after (the checkpoint also expires 7 days after its last
// write). A delay, never a wrong delete. Consecutive dry
// runs list every session once, and what they list together is what real
// runs then delete. A checkpoint whose cursor the store rejects
// (storage.ErrBadCursor) starts a new pass, reported as an error.
//
// Enumeration: sessions are one partition each (UPLOAD#<id>), so they are
// listed through the optional storage.UploadLister. Package dynamo keeps an
// index entry per session in a partition per creation day (UPLOADS#<day>,
// written by CreateUpload in parallel with the session) and queries the
// days of the last storage.UploadListDays up to the cut-off; entries whose
// session is gone are deleted as they are met, so each costs one read and
// one delete once, and no function needs dynamodb:Scan
// (shared/storage/dynamo/upload_index.go has the costs). A Scan was the
// alternative: it reads the whole table (tags, manifests, links, blobs) on
// every run to find a handful of sessions, and would have put dynamodb:Scan
// in the policy of every function using package dynamo.
//
// Never deleted:
//   - a session written (created, leased or committed: the store's
//     Updated) within the threshold, whatever its age ("active");
//   - a session whose lease is held and not expired ("leased");
//   - a parked proxy fill: its pending marker (group "fills", value a
//     repo.FillJob naming the session) exists; the proxy's scheduled retry
//     owns it and removes it when the fill ends ("parked-fill").
//
// Race safety: before touching S3, a real run claims the session with the
// same conditional write a writer uses (AcquireUpload at the offset it
// read, under a lease of its own): it succeeds only if the offset has not
// moved and no other lease is live, and from then on every writer's
// acquire or optimistic commit fails (a PATCH answers 416 with the
// committed range, as for any two writers). If the claim fails, or the
// session it returns differs from the one listed (a commit moved its
// expiry, parts or staged objects in between), the session is released
// and skipped ("busy"). An expired session cannot be claimed (and cannot
// be written any more: every write but a live lease holder's commit needs
// an unexpired session), so it is removed when its lease is not live. A
// session that vanished between listing and claim was completed or
// cancelled: nothing is touched ("gone"); Abort never removes a completed
// blob anyway (a completed multipart upload is an object, not an upload).
//
// # Catalog tasks: retention, untagged-manifests, proxy-evict
//
// Each runs only on the repositories configured for it (a repository's
// purge: section; nothing is deleted by default) and walks their images in
// catalog order (Metadata.ListImages from "<repo>/", so other
// repositories' images are never read), one storage.Collector.ListImage
// per image (its tags, manifests without bodies, with their write, touch
// and pull times), decides, and deletes with the conditional calls. A dry
// run takes the same decisions and writes nothing.
//
// retention (hosted, purge.retention): each rule {tags: full-match RE2,
// keepNewest: K, olderThan: D, includeLatest} would delete a matching tag
// that is not among its K newest (by the tag's last write; equal times:
// the greater name is newer) and, with olderThan, was last written more
// than D ago. A tag is deleted when at least one rule matches it and every
// matching rule would delete it (a tag any rule keeps stays); "latest" is
// matched only by rules with includeLatest. The delete is DeleteTagIf on
// the digest the listing read: a tag pushed again meanwhile points
// elsewhere, the delete fails and the tag stays ("busy"). Only tags go:
// their manifests become untagged and are untagged-manifests' business.
// RunAll runs retention before untagged-manifests, so one run does both.
//
// untagged-manifests (hosted, purge.untaggedAfter = U): a manifest is kept
// when a tag points at it, when it was written or touched within U (an
// index PUT touches the manifests it references; a push rewrites), when a
// kept index lists it (children, transitively), or when its subject is
// kept (referrers: a signature or SBOM of a kept image is kept, and so is
// a signature of that signature, transitively). A referrer whose subject
// is not kept goes with it; a kept referrer never keeps its subject. Every
// other manifest is deleted with DeleteManifestIf(cut = now - U): a writer
// that rewrote or touched it after the listing makes the delete fail and
// the manifest stays. Deletes run parents first (an index before its
// children, a subject before its referrers), so no stored index ever lists
// a missing child, and when a delete fails (a racing writer: "busy"; an
// error) everything it would keep is kept too. A new index PUT racing the
// purge either touches the child first (the child's delete fails) or finds
// it gone and fails with MANIFEST_BLOB_UNKNOWN: nothing dangles. Manifest
// bodies stored in S3 and the blobs' links are left to blob-gc (no kept
// manifest references them any more).
//
// proxy-evict (proxy, purge.evictAfter = E): the same rules with "pulled,
// cached or re-cached within E" in place of "tagged or young" (tags do not
// keep a cached manifest; DeleteManifestIf removes them with it), so the
// children of an index pulled within E stay. A proxy records a pull
// (Collector.MarkPulled) when it serves a cached manifest whose last
// recorded pull, or its caching, is more than a day old: at most one write
// per manifest per day. DeleteManifestIf's condition is on writes, not
// pulls: a pull racing the eviction is served, and the next pull caches
// the manifest again (a cache miss, never a broken pull: the blobs' links
// stay until blob-gc's grace period has passed). When nothing of an image
// is cached any more, its foreign-layer markers (foreign:<proxy>, key
// <image>@<digest>, listed once per run) are deleted; a fill caching the
// image again stores its manifest before writing its markers, so after
// the deletes the image is listed again and, if a manifest appeared, the
// markers are written back. The proxy's other markers are not
// eviction's: neg: (not found upstream, negativeCacheTTL) and mfill (a
// manifest fill's lease, seconds) expire by themselves and say nothing
// about what is cached; holds: is blob-gc's.
//
// Bounded and resumable: a run handles at most MaxPerRun images and
// records the pass and the last image in a checkpoint marker (group purge,
// key the task's name, "-dry" after it for a dry pass; value
// {"pass","last"}; expiring after 7 days; rewritten every 100 images, so a
// run killed at its deadline loses little); the next run continues after
// it, and the run that reaches the end of the catalog deletes it (More
// false). Dry runs do the same with their own checkpoint. Two runs at once
// do the same images: the second one's deletes find the items gone
// ("gone") or fail their conditions; the end state is one run's.
//
// # Blob garbage collection: blob-gc
//
// blob-gc runs last (RunAll's order) and deletes what no kept manifest
// references once it has been left alone for purge.blobGrace (default 24h,
// at least 1h; the "cut" is the pass's start T0 minus the grace):
//
//   - links (B#<digest> in an image) that no manifest of their image
//     references: abandoned pushes (links, no manifest), links of deleted
//     or evicted manifests, mounts never used;
//   - blob records (BLOB#<digest>) that no remaining link names, then their
//     S3 objects (one DeleteObjects per 1,000);
//   - holds:<proxy> markers of blobs the proxy no longer links;
//   - reconciliation, S3 to records: objects under blobs/, manifests/ and
//     uploads/ that no record, link or manifest names and that are older
//     than the cut (a crash between a push's writes, a record deleted
//     before its object was), unless an upload still owns them (below).
//     The other way, a record whose object the bucket lacks is reported as
//     an error (its bytes are lost; the record is left for an operator).
//
// A pass reads the whole table once with a strongly consistent, paged Scan
// (storage.Collector.Scan; dynamodb:Scan is granted to the purge function
// only): links, manifests' blob lists, records, sessions and markers; no
// per-image queries, so abandoned pushes, which have no catalog entry, are
// found too. Then it deletes links, records and objects in that order, and
// lists the bucket (ListObjectsV2 pages of 1,000).
//
// # Race safety without transactions
//
// Every item the GC deletes carries a touch time (storage.Collector, by
// the writer's clock): a manifest PUT touches each link it references
// (TouchLink, a conditional UpdateItem instead of the read it made
// before: no extra call) and each child manifest (TouchManifest); LinkBlob
// touches the blob's record before it writes the link (and fails with
// ErrNotFound when the record is gone); PutBlob touches an existing
// record. The GC deletes a link or record only with the condition "not
// touched since the cut" (DeleteLinkIf, DeleteBlobIf). The argument, for
// grace > the longest request + storage.FreshFor:
//
//   - An item touched after the cut survives: its delete fails, the GC
//     counts it "busy" and keeps what it protects (a busy link keeps its
//     record).
//   - An item last touched before the cut was touched by a request that
//     finished before T0 (grace > longest request). Whatever that request
//     wrote (the manifest referencing the link, the link naming the record)
//     existed before T0 and is seen by the scan unless deleted since.
//   - A writer that starts after the GC read an item and references it
//     touches it first: either before the GC's delete (the delete fails)
//     or after it (the touch fails with ErrNotFound and the request fails
//     cleanly: a manifest PUT answers MANIFEST_BLOB_UNKNOWN, a mount falls
//     back to an upload, an upload finish stores its own bytes, a proxy
//     fills again). Nothing ever points at a deleted item.
//   - A record is deleted before its object, and objects are written once
//     at keys no later write reuses (storage.NewBlobKey, an upload's own
//     key): a new upload of the same bytes after the record's delete makes a
//     new record with a new object, never one the GC is about to delete.
//
// Mounts, group pushes and proxy fills all link through LinkBlob, uploads
// record through PutBlob, so the same argument covers them. LinkBlob skips
// the record's touch for a blob touched less than storage.FreshFor (2s)
// before: the blob PutBlob has just returned, or a link a manifest PUT has
// just touched, which no pass can delete before it sees the new link.
//
// The reconciliation's objects carry no touch time; their S3 modification
// time stands in for it. An object at a new key is referenced within the
// request that wrote it, so one older than the cut that nothing in the
// scan names is an orphan. A multipart upload's object is older than its
// reference (S3 dates it from the upload's start), so an object under
// blobs/uploads/<id> is also kept while any of its owners exists, read in
// the order ownership is handed on, each owner created before the previous
// one goes: the upload session (UPLOAD#<id>), a pending direct-upload
// verification (the direct-verify markers, one Query), the record whose
// writer first leaves a repo.UploadedGroup marker naming the digest (kept
// 7 days). A staged chunk under uploads/<id>/ is kept while its session
// exists.
//
// A proxy cache evicted by proxy-evict leaves its links unreferenced; the
// next passes collect them and the blobs only they held. A client still
// downloading such a layer gets a 404 from S3 on a later redirect at worst;
// its retry goes through the proxy, which fills the blob again.
//
// # Bounded, resumable passes
//
// A pass is cut into runs: each run stops after MaxPerRun units (100
// scanned items, one candidate, or 100 listed objects are a unit) or 90s
// before its context's deadline (the Lambda's 15 minutes), saves its state
// (what the scan saw and where each phase stands, gzip JSON Lines at
// purge/blob-gc/<pass>, written and read a line at a time) and a
// checkpoint marker (MARK#purge blob-gc) naming it, and reports More. The next run continues from there; a pass
// older than two days starts over. A lease marker (blob-gc-lease, 16
// minutes) makes concurrent runs skip ("locked") instead of working twice;
// every delete is conditional and idempotent anyway. A dry pass is cut the
// same way, under its own lease, checkpoint and state (blob-gc-dry-lease,
// blob-gc-dry, purge/blob-gc-dry/<pass>), and deletes nothing; run to its
// end, it reports the items the following real pass deletes (the same
// order and decisions). A pass made in one run saves no state at all.
//
// Memory: the pass state (gcState: maps keyed by digests, image names and
// object keys) is held in memory whole, so the function's memory bounds
// the registry a pass can hold. make bench (part 9: 81,000 items examined,
// i.e. scanned items plus listed objects) measures it at about 360 bytes
// per item live, a peak of about 660 bytes of heap per item for a pass in
// one run, and about 720 bytes per item for a run that loads and saves the
// state (the decoded maps with GOGC's headroom, the compressed state and
// one line of its text at a time): about 1.4 million items per GB of the
// function's memory. The purge function's memory is the template
// parameter PurgeMemorySize (default 3008 MB, a pass over about 4 million
// items; Lambda's 10240 MB about 13 million); beyond that the state would
// have to leave memory.
//
// # Metrics
//
// Besides the JSON report in the log, each run prints one CloudWatch
// embedded-metric-format line (Deps.Metrics; the purge function's stdout):
// namespace Airlock/Purge, dimensions Task and DryRun, metrics Deleted
// (Report.Count), BytesFreed, Considered, Errors, More; no PutMetricData
// call.
package purge
