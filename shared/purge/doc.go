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
// incomplete-uploads (the only task so far): upload sessions created more
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
// Not yet (issue 9, later slices): untagged manifests, retention, proxy
// cache eviction, blob garbage collection with the touch-and-sweep race
// safety, per-repository settings, checkpoints and CloudWatch embedded
// metrics.
package purge
