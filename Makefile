# The handful of commands the README names. Target names are a contract: other tooling calls them.
SHELL := /bin/bash
CARGO ?= cargo
TARGET_DIR := target/x86_64-unknown-linux-gnu
# The e2e suite's cargo target lives outside the repo, one per checkout (tests/e2e/harness.sh
# says why and where).
E2E_TARGET ?= $(shell tests/e2e/harness.sh target-dir)

.PHONY: all build test lint deps bench bench-agent bench-webhook demo e2e-up e2e-down e2e-test e2e-deploy e2e-lanes

all: build

## deps: install what the tests and benchmarks need from Debian (idempotent; no-op when present)
deps:
	@scripts/install-deps.sh

## build: the static release binaries
build:
	$(CARGO) build --release -p deputy-agent
	@ls -l $(TARGET_DIR)/release/deputy-agent

## lint: formatting and clippy, as CI checks them (the e2e crate is its own workspace), and
## shellcheck (Debian's package, installed by make deps) on every shell script
lint: deps
	shellcheck -x -P SCRIPTDIR $$(git ls-files '*.sh' 2>/dev/null || find . -name '*.sh' -not -path './target/*')
	$(CARGO) fmt --all -- --check
	$(CARGO) clippy --workspace --all-targets --all-features -- -D warnings
	cd tests/e2e && $(CARGO) fmt --all -- --check
	cd tests/e2e && CARGO_TARGET_DIR=$(E2E_TARGET) $(CARGO) clippy --all-targets -- -D warnings

## test: every test of the project (what CI runs through .ci/run): lint, the agent's, the
## webhook's and the YAML crate's tests, then the end-to-end suite on real local Kubernetes
## nodes: the whole suite on the newest lane, the core suite on the oldest, each node torn
## down (and the host verified restored) before the next starts, also on failure
test: deps lint
	$(CARGO) build --release -p deputy-agent
	$(CARGO) test --workspace --all-features
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

## e2e-*: the real single-node Kubernetes harness (tests/e2e); E2E_LANE=newest (default),
## oldest or debian12 picks the lane, E2E_SUITE=core the smaller suite
e2e-up:
	@tests/e2e/harness.sh up

e2e-down:
	@tests/e2e/harness.sh down

e2e-test:
	@tests/e2e/harness.sh test

## e2e-deploy: build and import the images, deploy k8s-deputy onto the running local node
e2e-deploy:
	@scripts/e2e-deploy.sh
