#!/usr/bin/env bash
# The same end-to-end suite on kind, for machines with a Docker engine (our CI machines have none:
# CI runs the local node, tests/e2e/harness.sh). Needs docker, kind and cargo on PATH.
#
#   tests/e2e/kind.sh up      create the kind cluster (node image kindest/node:$KIND_NODE_VERSION)
#   tests/e2e/kind.sh images  build the project's images with Docker (images/*.Dockerfile) and the
#                             suite's busybox and tool images, and load them into the cluster
#   tests/e2e/kind.sh test    up + images + cert-manager (its release manifest), deploy k8s-deputy
#                             (scripts/e2e-deploy.sh with DEPUTY_CLUSTER=kind), run the suite
#   tests/e2e/kind.sh down    delete the cluster
#
# In GitHub Actions: on ubuntu-latest (Docker is there), install kind (`go install
# sigs.k8s.io/kind@v0.30.0`) and run `tests/e2e/kind.sh test; rc=$?; tests/e2e/kind.sh down; exit $rc`.
set -euo pipefail
root=$(cd "$(dirname "$0")/../.." && pwd)
cd "$root"
CLUSTER=${KIND_CLUSTER:-k8s-deputy}
KIND_NODE_VERSION=${KIND_NODE_VERSION:-v1.34.0}
STATE=${KIND_STATE:-$HOME/.cache/k8s-deputy/kind}
export KUBECONFIG=$STATE/kubeconfig
log() { printf '[kind %s] %s\n' "$(date +%T)" "$*" >&2; }
need() { command -v "$1" >/dev/null || { echo "kind.sh: $1 is not on PATH ($2)" >&2; exit 2; }; }

cmd_up() {
	need docker "a Docker engine is required"
	need kind "go install sigs.k8s.io/kind@latest"
	mkdir -p "$STATE"
	if kind get clusters 2>/dev/null | grep -qx "$CLUSTER"; then
		kind export kubeconfig --name "$CLUSTER" --kubeconfig "$KUBECONFIG" >&2
	else
		log "creating kind cluster $CLUSTER ($KIND_NODE_VERSION)"
		kind create cluster --name "$CLUSTER" --image "kindest/node:$KIND_NODE_VERSION" \
			--kubeconfig "$KUBECONFIG" --wait 120s >&2
	fi
	# The suite runs `kubectl` from the kubeconfig's directory, as on the local node.
	ln -sf "$(command -v kubectl)" "$STATE/kubectl" 2>/dev/null || true
	echo "export KUBECONFIG=$KUBECONFIG"
}

cmd_images() {
	need docker "a Docker engine is required"
	log "building the static binaries"
	cargo build --release -p deputy-agent --all-features --bins --examples >&2
	cargo build --release -p deputy-webhook >&2
	(cd tests/e2e && cargo build --bin deputy-e2e-tool >&2)
	docker build -f images/agent.Dockerfile -t localhost/deputy-agent:e2e . >&2
	docker build -f images/webhook.Dockerfile -t localhost/deputy-webhook:e2e . >&2
	docker build -f images/demo.Dockerfile -t localhost/deputy-demo:e2e . >&2
	# The suite's own images: busybox with a numeric non-root user, and its tool binary.
	printf 'FROM busybox:1.36-musl\nUSER 65534\n' | docker build -t localhost/busybox:e2e - >&2
	tool=${CARGO_TARGET_DIR:-tests/e2e/target}/x86_64-unknown-linux-gnu/debug/deputy-e2e-tool
	printf 'FROM scratch\nCOPY deputy-e2e-tool /bin/deputy-e2e-tool\nUSER 65534\nENTRYPOINT ["/bin/deputy-e2e-tool"]\n' \
		| docker build -t localhost/deputy-e2e-tool:e2e -f - "$(dirname "$tool")" >&2
	for image in deputy-agent deputy-webhook deputy-demo busybox deputy-e2e-tool; do
		kind load docker-image --name "$CLUSTER" "localhost/$image:e2e" >&2
	done
}

# cert-manager for tests/cert_manager.rs: its release manifest (kind machines reach GitHub; ours
# build it from its Go module instead, harness.sh cert-manager up).
CERT_MANAGER_VERSION=${CERT_MANAGER_VERSION:-v1.21.2}
cmd_cert_manager() {
	log "installing cert-manager $CERT_MANAGER_VERSION"
	kubectl apply -f "https://github.com/cert-manager/cert-manager/releases/download/$CERT_MANAGER_VERSION/cert-manager.yaml" >&2
	kubectl -n cert-manager rollout status deployment/cert-manager deployment/cert-manager-cainjector \
		deployment/cert-manager-webhook --timeout=180s >&2
}

cmd_test() {
	cmd_up >/dev/null
	cmd_images
	cmd_cert_manager
	DEPUTY_CLUSTER=kind scripts/e2e-deploy.sh >/dev/null
	(cd tests/e2e && E2E_REQUIRED=1 cargo test --tests -- --test-threads=3)
}

cmd_down() {
	need kind "go install sigs.k8s.io/kind@latest"
	kind delete cluster --name "$CLUSTER" >&2
}

case ${1:-} in
up) cmd_up ;;
images) cmd_images ;;
test) cmd_test ;;
down) cmd_down ;;
*)
	sed -n '2,14s/^# \{0,1\}//p' "$0" >&2
	exit 2
	;;
esac
