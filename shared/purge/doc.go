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
// A Report names the task, whether it was a dry run, how many items the
// task considered, every item it deleted (or, dry, would delete) with its
// id, image, S3 keys and bytes, why the others were skipped (counts by
// reason), errors, and whether it stopped at its per-run bound (More: the
// next run continues). A dry run takes exactly the decisions of a real run
// on the same state; the two differ only when a writer races the real run,
// which then skips the item (reason "busy").
//
// # Tasks
//
// incomplete-uploads: upload sessions created more
// than purge.incompleteUploadsAfter (default 24h) ago and not written
// since then. For each it aborts the S3 multipart upload, deletes the
// staged chunk objects (storage.Blobs.Abort, which also lists what failed
// attempts left under the upload's key and prefix) and deletes the session
// item. At most MaxPerRun (default 1000) sessions are considered per run.
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
// records the last one in a checkpoint marker (group purge, key the
// task's name, expiring after 7 days; rewritten every 100 images, so a run
// killed at its deadline loses little); the next run continues after it,
// and the run that reaches the end of the catalog deletes it (More false).
// Dry runs start from the checkpoint and never move it. Two runs at once
// do the same images: the second one's deletes find the items gone
// ("gone") or fail their conditions; the end state is one run's.
package purge
