// Package bench is Airlock's benchmark (`make bench`, never part of `make test`).
//
// It is its own Go module (tests/bench/go.mod, replacing the main module with
// ../..) so that the benchmark-only dependency on the SDK's multipart uploader
// (feature/s3/manager, "the limit") stays out of the main module's go.mod.
//
// Run it with
//
//	cd tests/bench && go test -mod=mod -tags bench -run TestBench -v -timeout 30m .
//
// It measures, on one versitygw and one dynalite started from localdev/harness:
//  1. AWS calls per registry operation (shared/awscount), with the registry
//     in-process; the test FAILS when a call-count target is exceeded;
//  2. push and pull of the same random image (go-containerregistry's remote
//     package, in-process client) against the CNCF distribution registry and
//     Airlock (a separate process), with the throughput ratio;
//  3. the limit: the same bytes put with the SDK's multipart uploader and got
//     with GetObject, both hashing, against Airlock's streamed push and pull;
//     and a chunked push (256 KiB PATCHes with Content-Range) against both
//     registries;
//  4. the peak RSS (VmHWM) of the Airlock process during each push;
//  5. proxy repositories (pull-through caches, proxy_test.go): distribution
//     in proxy mode (filesystem storage) against localdev's proxy "hub" on
//     one go-containerregistry in-memory upstream behind a counting reverse
//     proxy per consumer: cold and warm pull times, upstream requests per
//     pull (also after metadataMaxAge, proxy "hub1s"), AWS calls of a proxy
//     pull next to a hosted one (in-process, awscount), 20 concurrent cold
//     pulls, and peak RSS during a fill of a 50 MiB and a 200 MiB layer;
//  6. authentication (auth_test.go): the AWS calls auth adds to a pull of a
//     5-layer image (in-process, awscount, plus the DynamoDB items each call
//     addresses), split into the token request (password, API token,
//     anonymous, a failed and a following login, a re-read of the signing
//     keys, 10 concurrent logins of one user) and the registry requests
//     with the token held (target: none added; like part 1 the test FAILS
//     when a call-count target is missed), next to the same pull with auth
//     off on the same table and bucket; the token endpoint's p50/p95 for a
//     password login (bcrypt at ident's default cost), an API-token login
//     and the first login of a fresh instance, bcrypt alone, and
//     token.Service.Verify per request (a Go benchmark loop);
//  7. front doors (frontdoor_test.go): a docker-style pull of a 5-layer
//     image with auth on (GET /v2/ 401, a password token, HEAD manifest by
//     tag, GET by digest, config and layers each a 307 followed to S3),
//     in-process: requests per pull, DynamoDB calls and the request units
//     dynalite reports as consumed (ReturnConsumedCapacity, billed at
//     DynamoDB's per-request minimum), the client's presigned S3 GETs and
//     the handler's time per request (in process; Lambda's differs); then
//     calls per pull and the cost per million pulls behind the API Gateway
//     HTTP API and a Lambda function URL from us-east-1 list prices, with
//     the measured duration and with a 20 ms floor per request (figures
//     only, nothing asserted on time or money);
//  8. the airlock CLI (cli_test.go): 3 × 200 MiB from an OCI layout pushed
//     by bin/airlock over direct-to-S3 parts to an Airlock with the front
//     door's body limit (4,706,379 bytes), against the SDK's multipart
//     uploader putting the same bytes to S3 (the limit; target ≤ 1.2×) and
//     regctl's chunked push (4 MiB chunks) through the same limit; the
//     registry's digest verification per GiB (the completion request of a
//     direct upload: complete, read back, hash); the CLI's peak RSS
//     (VmHWM) with the default parallelism and with --jobs 1 --parts 2,
//     next to its bound jobs × parts × part size.
//  9. the purge (purge_test.go): blob-gc over a registry of 10,000
//     manifests (20% then deleted) and about 50,000 links on dynalite +
//     versitygw: a dry run, the full pass in one run and in runs of the
//     default bound (time, DynamoDB and S3 calls per 1,000 items examined
//     and per 1,000 collected; asserted: the dry run writes nothing and
//     every variant deletes the same number of items), the memory of
//     the pass (runtime.ReadMemStats sampled during the runs: the pass
//     state's live size and the peak heap in use of each variant, in
//     bytes per item examined and items per GB), and the race-safety
//     writes of a manifest PUT (asserted: one conditional UpdateItem per
//     reference, as many calls as the reads they replace).
//
// AIRLOCK_BENCH_ONLY=proxy (a comma list of calls, compare, proxy, auth, frontdoor, cli, purge) runs only
// those parts; AIRLOCK_BENCH_QUICK=1 shrinks the proxy part's layers. Both
// are for development: the report's figures come from a full run.
//
// Times are reported, never asserted. The table is printed and written to
// .localdev/bench/ under the repository root.
package bench
