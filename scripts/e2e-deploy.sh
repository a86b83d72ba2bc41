#!/usr/bin/env bash
# make e2e-deploy: builds k8s-deputy's images without Docker (the same contents as images/*.Dockerfile),
# imports them into the running local node (bringing one up if none runs), and deploys
# manifests/overlays/local (the webhook makes its own certificate, as overlays/self-signed). Afterwards:
#   kubectl label namespace NAME k8s-deputy.io/inject=enabled
# Prints `export KUBECONFIG=...` last.
# DEPUTY_CLUSTER=kind (tests/e2e/kind.sh): the cluster is the one $KUBECONFIG names and the images
# were built with Docker and loaded with `kind load`; only the deployment below runs.
set -euo pipefail
root=$(cd "$(dirname "$0")/.." && pwd)
cd "$root"
log() { printf '[deploy %s] %s\n' "$(date +%T)" "$*" >&2; }

cluster=${DEPUTY_CLUSTER:-local}
if [[ $cluster == kind ]]; then
	: "${KUBECONFIG:?DEPUTY_CLUSTER=kind needs KUBECONFIG (tests/e2e/kind.sh sets it)}"
	kubeconfig_line="export KUBECONFIG=$KUBECONFIG"
else
	kubeconfig_line=$(tests/e2e/harness.sh up | tail -n 1)
	eval "$kubeconfig_line"
fi
K=$(dirname "$KUBECONFIG")/kubectl

if [[ $cluster != kind ]]; then
	log "building the static release binaries"
	cargo build --release -p deputy-agent --all-features --bins --examples >&2
	cargo build --release -p deputy-webhook >&2
	bin=${CARGO_TARGET_DIR:-$root/target}/x86_64-unknown-linux-gnu/release
	# The agent and webhook images are multi-platform (an OCI image index: linux/amd64 and
	# linux/arm64, as a release pushes them); the node imports the index and runs its amd64
	# entry. DEPUTY_ARCHES=amd64 skips the arm64 cross build (a quicker loop by hand).
	arches=${DEPUTY_ARCHES:-amd64 arm64}
	arm_bin=$root/target/aarch64-unknown-linux-gnu/release
	if [[ $arches == *arm64* ]]; then
		log "building the linux/arm64 binaries (scripts/cross.sh; a no-op when up to date)"
		scripts/cross.sh build
	fi

	work=$(mktemp -d)
	trap 'rm -rf "$work"' EXIT
	mkdir -p "$work/agent" "$work/webhook" "$work/demo/bin" "$work/demo/app" "$work/demo/run" "$work/demo/var"
	# Like Debian-based images: /var/run is a symlink to /run (the e2e suite mounts the IPC directory
	# at /run and checks that the service-account token under /var/run/secrets stays readable).
	ln -s ../run "$work/demo/var/run"
	install -m 0755 "$bin/deputy-agent" "$work/agent/deputy-agent"
	install -m 0755 "$bin/deputy-webhook" "$work/webhook/deputy-webhook"
	agent_root=$work/agent webhook_root=$work/webhook
	if [[ $arches == *arm64* ]]; then
		mkdir -p "$work/agent-arm64" "$work/webhook-arm64"
		install -m 0755 "$arm_bin/deputy-agent" "$work/agent-arm64/deputy-agent"
		install -m 0755 "$arm_bin/deputy-webhook" "$work/webhook-arm64/deputy-webhook"
		agent_root=amd64=$work/agent,arm64=$work/agent-arm64
		webhook_root=amd64=$work/webhook,arm64=$work/webhook-arm64
	fi
	busybox=$(command -v busybox)
	install -m 0755 "$busybox" "$work/demo/bin/busybox"
	for applet in sh sleep echo cat ls kill true false date ps; do ln -s busybox "$work/demo/bin/$applet"; done
	install -m 0755 "$bin/examples/deputy-app" "$bin/examples/julia-like" "$bin/examples/http-app" images/demo/shell-app.sh "$work/demo/app/"

	tests/e2e/harness.sh image localhost/deputy-agent:e2e 65532 "$agent_root" '["/deputy-agent"]' >&2
	tests/e2e/harness.sh image localhost/deputy-webhook:e2e 65532 "$webhook_root" '["/deputy-webhook"]' >&2
	tests/e2e/harness.sh image localhost/deputy-demo:e2e 65532 "$work/demo" '["/app/deputy-app"]' >&2
else
	bin=${CARGO_TARGET_DIR:-$root/target}/x86_64-unknown-linux-gnu/release
fi

# The webhook makes, serves and rotates its own certificate (manifests/overlays/self-signed, which
# the local overlay builds on): nothing to make here. Idempotent, and gentle with a node in use:
# the webhook rolls only when its binary changed (the image keeps its tag, :e2e, so a new binary
# rolls the Pods through an annotation on the template; unchanged, nothing restarts).
# A node deployed before the webhook made its own certificate holds a kubernetes.io/tls Secret
# (a Secret's type cannot change) and a CA Secret nobody uses any more.
if [[ $("$K" -n deputy-system get secret deputy-webhook-tls -o jsonpath='{.type}' 2>/dev/null) == kubernetes.io/tls ]]; then
	log "replacing the serving-certificate Secret of an older deployment"
	"$K" -n deputy-system delete secret deputy-webhook-tls deputy-webhook-ca --ignore-not-found >&2
fi
log "deploying manifests/overlays/local"
"$K" apply -k manifests/overlays/local >&2
revision=$(sha256sum <"$bin/deputy-webhook" | cut -c1-16)
current=$("$K" -n deputy-system get deployment deputy-webhook \
	-o jsonpath='{.spec.template.metadata.annotations.k8s-deputy\.io/e2e-revision}')
if [[ $current != "$revision" ]]; then
	log "rolling the webhook (binary changed)"
	"$K" -n deputy-system patch deployment deputy-webhook --type=merge \
		-p "{\"spec\":{\"template\":{\"metadata\":{\"annotations\":{\"k8s-deputy.io/e2e-revision\":\"$revision\"}}}}}" >&2
fi
"$K" -n deputy-system rollout status deployment/deputy-webhook --timeout=120s >&2
# Rolled: the old Pods drain (preStop sleep, then SIGTERM) for a few seconds more; wait them out, so
# that whoever runs next sees only the replicas deployed here.
for ((i = 0; ; i++)); do
	pods=$("$K" -n deputy-system get pods -l app.kubernetes.io/name=deputy-webhook --no-headers 2>/dev/null | wc -l)
	replicas=$("$K" -n deputy-system get deployment deputy-webhook -o jsonpath='{.spec.replicas}')
	((pods <= replicas)) && break
	((i < 120)) || { log "old webhook Pods still terminating after 60 s"; exit 1; }
	sleep 0.5
done
# Ready replicas are not enough: the API server must reach them through the Service with the new
# caBundle. A Pod-level opt-in, created with a server-side dry run, must come back mutated.
log "waiting until a probe Pod (server-side dry run) comes back mutated"
for ((i = 0; ; i++)); do
	status=$("$K" -n default run deputy-probe --image=localhost/deputy-demo:e2e --image-pull-policy=Never \
		--labels=k8s-deputy.io/inject=true --restart=Never --dry-run=server \
		-o jsonpath='{.metadata.annotations.k8s-deputy\.io/status}' 2>/dev/null || true)
	[[ $status == injected:* ]] && break
	((i < 120)) || { log "a probe Pod is still not mutated after 60 s"; exit 1; }
	sleep 0.5
done
log "k8s-deputy is running; label a namespace with k8s-deputy.io/inject=enabled to try it"
echo "$kubeconfig_line"
