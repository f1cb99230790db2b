// Package e2e holds Airlock's end-to-end tests: the OCI distribution-spec
// conformance suite, real registry clients (crane, regctl, oras, skopeo) and
// the real Docker daemon, all run against the localdev binary backed by the
// local DynamoDB and S3 emulators.
//
// The tests are behind the build tag "e2e" because they build binaries, start
// emulators and daemons and move hundreds of MiB; run them with
//
//	go test -tags e2e -count=1 -v -timeout 20m ./tests/e2e/
//
// Tools are pinned in tools.go (this package) and installed into <root>/bin
// when missing.
package e2e
