# The handful of commands the README names. Target names are a contract: other tooling calls them.
SHELL := /bin/bash
CARGO ?= cargo
# The e2e suite's cargo target lives outside the repo, one per checkout (tests/e2e/harness.sh
# says why and where).
E2E_TARGET ?= $(shell tests/e2e/harness.sh target-dir)

.PHONY: all build build-x86_64 build-aarch64 test-arm64 test lint deps bench bench-agent bench-webhook demo e2e-up e2e-down e2e-test e2e-deploy e2e-lanes

all: build

## deps: install what the tests and benchmarks need from Debian (idempotent; no-op when present)
deps:
	@scripts/install-deps.sh

## build-x86_64: the amd64 build (the same commands as scripts/e2e-deploy.sh, so neither
## invalidates the other's)
build-x86_64:
	$(CARGO) build --release -p deputy-agent --all-features --bins --examples
	$(CARGO) build --release -p deputy-webhook

## build-aarch64: the arm64 cross build in a Debian trixie root (scripts/cross.sh)
build-aarch64:
	@scripts/cross.sh build

# The targets that compile run in the build tree, one copy of the checkout at a fixed path that
# every checkout shares (scripts/build-tree.sh), so a clean clone at a new path (CI's) compiles
# only what changed since the last run instead of every crate; DEPUTY_IN_PLACE=1 runs them here.
IN_TREE := build test test-arm64 lint demo e2e-test e2e-deploy e2e-lanes bench bench-agent bench-webhook
ifeq ($(DEPUTY_TREE)$(filter 1,$(DEPUTY_IN_PLACE)),)
$(IN_TREE):
	@scripts/build-tree.sh $@
else

## build: the static release binaries of deputy-agent and deputy-webhook for linux/amd64 and
## linux/arm64, in target/x86_64-unknown-linux-gnu/release/ and
## target/aarch64-unknown-linux-gnu/release/ (a contract); the two builds run at once
build: deps
	@$(MAKE) --no-print-directory -j2 build-x86_64 build-aarch64
	@ls -l target/*-unknown-linux-gnu/release/deputy-agent target/*-unknown-linux-gnu/release/deputy-webhook

## test-arm64: the arm64 builds under qemu-user (scripts/test-arm64.sh; needs make build)
test-arm64: deps
	@scripts/test-arm64.sh

## lint: formatting and clippy, as CI checks them (the e2e crate is its own workspace),
## shellcheck (Debian's package, installed by make deps) on every shell script, and actionlint
## (built from its Go module, tests/e2e/modules/actionlint-*) on the GitHub workflows, their
## run: scripts through shellcheck
lint: deps
	shellcheck -x -P SCRIPTDIR $$(git ls-files '*.sh' 2>/dev/null || find . -name '*.sh' -not -path './target/*')
	"$$(tests/e2e/harness.sh tool actionlint)" -no-color .github/workflows/*.yml
	$(CARGO) fmt --all -- --check
	$(CARGO) clippy --workspace --all-targets --all-features -- -D warnings
	cd tests/e2e && $(CARGO) fmt --all -- --check
	cd tests/e2e && CARGO_TARGET_DIR=$(E2E_TARGET) $(CARGO) clippy --all-targets -- -D warnings

## test: every test of the project (what CI runs through .ci/run): lint, the build tree's copy
## (scripts/tests/sync-tree.sh), both architectures' builds, the agent's, the webhook's and the
## YAML crate's tests, the arm64 builds under qemu-user, then the end-to-end suite on real local
## Kubernetes nodes: the whole suite on the newest lane, the core suite on the oldest, each node
## torn down (and the host verified restored) before the next starts, also on failure
test: deps lint
	@scripts/tests/sync-tree.sh
	@$(MAKE) --no-print-directory build
	$(CARGO) test --workspace --all-features
	@scripts/test-arm64.sh
	$(MAKE) e2e-lanes

## e2e-lanes: the e2e suite on every lane CI proves (tests/e2e/lib/lanes.sh)
e2e-lanes:
	@rc=0; \
	E2E_LANE=newest $(MAKE) e2e-test || rc=1; E2E_LANE=newest $(MAKE) e2e-down || rc=1; \
	E2E_LANE=oldest E2E_SUITE=core $(MAKE) e2e-test || rc=1; E2E_LANE=oldest $(MAKE) e2e-down || rc=1; \
	exit $$rc

## bench-agent: preStop relay latency, floors, the K8sDeputy.jl nc shim, `run` RSS, binary size
bench-agent: deps
	$(CARGO) build --release -p deputy-agent
	$(CARGO) bench -p deputy-agent --all-features --bench relay

## bench-webhook: the mutation engine per Pod size, then HTTPS load against the same-stack floor
bench-webhook:
	$(CARGO) bench -p deputy-webhook --bench engine
	$(CARGO) bench -p deputy-webhook --bench https

bench: bench-agent bench-webhook

## demo: the whole story on a real local cluster: deploy, inject, delete, graceful in ~1 s
demo: deps
	@scripts/demo.sh

## e2e-test: the suite on a local node (tests/e2e/harness.sh test; E2E_LANE, E2E_SUITE)
e2e-test:
	@tests/e2e/harness.sh test

## e2e-deploy: build and import the images, deploy k8s-deputy onto the running local node
e2e-deploy:
	@scripts/e2e-deploy.sh
endif

## e2e-*: the real single-node Kubernetes harness (tests/e2e); E2E_LANE=newest (default),
## oldest or debian12 picks the lane, E2E_SUITE=core the smaller suite
e2e-up:
	@tests/e2e/harness.sh up

e2e-down:
	@tests/e2e/harness.sh down

