#!/usr/bin/env bash
# make e2e-deploy: builds k8s-deputy's images without Docker (the same contents as images/*.Dockerfile),
# imports them into the running local node (bringing one up if none runs), and deploys
# manifests/overlays/local with a serving certificate made here. Afterwards:
#   kubectl label namespace NAME k8s-deputy.io/inject=enabled
# Prints `export KUBECONFIG=...` last.
# DEPUTY_CLUSTER=kind (tests/e2e/kind.sh): the cluster is the one $KUBECONFIG names and the images
# were built with Docker and loaded with `kind load`; only the deployment below runs.
set -euo pipefail
root=$(cd "$(dirname "$0")/.." && pwd)
cd "$root"
log() { printf '[deploy %s] %s\n' "$(date +%T)" "$*" >&2; }

command -v openssl >/dev/null || { log "installing openssl"; apt-get update -qq >/dev/null; apt-get install -y -qq openssl >/dev/null; }
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
	cargo build --release -p deputy-agent --all-features --examples >&2
	cargo build --release -p deputy-webhook >&2
	bin=${CARGO_TARGET_DIR:-$root/target}/x86_64-unknown-linux-gnu/release

	work=$(mktemp -d)
	trap 'rm -rf "$work"' EXIT
	mkdir -p "$work/agent" "$work/webhook" "$work/demo/bin" "$work/demo/app" "$work/demo/run" "$work/demo/var"
	# Like Debian-based images: /var/run is a symlink to /run (the e2e suite mounts the IPC directory
	# at /run and checks that the service-account token under /var/run/secrets stays readable).
	ln -s ../run "$work/demo/var/run"
	install -m 0755 "$bin/deputy-agent" "$work/agent/deputy-agent"
	install -m 0755 "$bin/deputy-webhook" "$work/webhook/deputy-webhook"
	busybox=$(command -v busybox)
	install -m 0755 "$busybox" "$work/demo/bin/busybox"
	for applet in sh sleep echo cat ls kill true false date ps; do ln -s busybox "$work/demo/bin/$applet"; done
	install -m 0755 "$bin/examples/deputy-app" "$bin/examples/julia-like" images/demo/shell-app.sh "$work/demo/app/"

	tests/e2e/harness.sh image localhost/deputy-agent:e2e 65532 "$work/agent" '["/deputy-agent"]' >&2
	tests/e2e/harness.sh image localhost/deputy-webhook:e2e 65532 "$work/webhook" '["/deputy-webhook"]' >&2
	tests/e2e/harness.sh image localhost/deputy-demo:e2e 65532 "$work/demo" '["/app/deputy-app"]' >&2
else
	bin=${CARGO_TARGET_DIR:-$root/target}/x86_64-unknown-linux-gnu/release
	work=$(mktemp -d)
	trap 'rm -rf "$work"' EXIT
fi

# Idempotent, and gentle with a node in use: the serving certificate is kept while it is valid
# for another week and signed by the CA in the caBundle, and the webhook rolls only when its
# binary or its certificate changed (so Pods created meanwhile by others are not admitted unmutated).
tls=$work/tls
mkdir -p "$tls"
"$K" apply -f manifests/base/namespace.yaml >&2
"$K" -n deputy-system get secret deputy-webhook-tls -o jsonpath='{.data.tls\.crt}' 2>/dev/null |
	base64 -d >"$tls/old.crt" 2>/dev/null || true
"$K" get mutatingwebhookconfiguration deputy-webhook \
	-o jsonpath='{.webhooks[0].clientConfig.caBundle}{"\n"}{.webhooks[1].clientConfig.caBundle}{"\n"}' 2>/dev/null >"$tls/bundles" || true
# The CA (certificate and key) is kept in the Secret deputy-webhook-ca, so that the e2e suite can
# sign a new serving certificate with the same CA (tests/deputy_ops.rs rotates it under load).
"$K" -n deputy-system get secret deputy-webhook-ca -o jsonpath='{.data.tls\.crt}' 2>/dev/null |
	base64 -d >"$tls/kept-ca.crt" 2>/dev/null || true
first_bundle=$(head -n 1 "$tls/bundles")
if [[ -s $tls/old.crt && -n $first_bundle ]] && [[ $(sort -u "$tls/bundles" | wc -l) == 1 ]] &&
	base64 -d <<<"$first_bundle" >"$tls/old-ca.crt" 2>/dev/null &&
	cmp -s "$tls/old-ca.crt" "$tls/kept-ca.crt" &&
	openssl verify -CAfile "$tls/old-ca.crt" "$tls/old.crt" >/dev/null 2>&1 &&
	openssl x509 -in "$tls/old.crt" -noout -checkend $((7 * 24 * 3600)) >/dev/null; then
	log "keeping the serving certificate (valid, signed by the caBundle's CA, which deputy-webhook-ca holds)"
	cp "$tls/old.crt" "$tls/tls.crt"
	cp "$tls/old-ca.crt" "$tls/ca.crt"
	fresh_cert=false
else
	log "making a CA and the serving certificate for deputy-webhook.deputy-system.svc"
	openssl req -x509 -newkey ec -pkeyopt ec_paramgen_curve:P-256 -nodes -days 30 \
		-subj "/CN=k8s-deputy e2e CA" -keyout "$tls/ca.key" -out "$tls/ca.crt" 2>/dev/null
	openssl req -newkey ec -pkeyopt ec_paramgen_curve:P-256 -nodes -subj "/CN=deputy-webhook" \
		-keyout "$tls/tls.key" -out "$tls/tls.csr" 2>/dev/null
	printf 'subjectAltName=DNS:deputy-webhook.deputy-system.svc,DNS:deputy-webhook.deputy-system.svc.cluster.local\n' >"$tls/san"
	openssl x509 -req -in "$tls/tls.csr" -CA "$tls/ca.crt" -CAkey "$tls/ca.key" -CAcreateserial \
		-days 30 -extfile "$tls/san" -out "$tls/tls.crt" 2>/dev/null
	"$K" -n deputy-system create secret tls deputy-webhook-ca --cert="$tls/ca.crt" --key="$tls/ca.key" \
		--dry-run=client -o yaml | "$K" apply -f - >&2
	"$K" -n deputy-system create secret tls deputy-webhook-tls --cert="$tls/tls.crt" --key="$tls/tls.key" \
		--dry-run=client -o yaml | "$K" apply -f - >&2
	fresh_cert=true
fi

log "deploying manifests/overlays/local"
"$K" apply -k manifests/overlays/local >&2
if $fresh_cert; then
	ca=$(base64 -w0 <"$tls/ca.crt")
	"$K" patch mutatingwebhookconfiguration deputy-webhook --type=json -p "[
		{\"op\":\"add\",\"path\":\"/webhooks/0/clientConfig/caBundle\",\"value\":\"$ca\"},
		{\"op\":\"add\",\"path\":\"/webhooks/1/clientConfig/caBundle\",\"value\":\"$ca\"}]" >&2
fi
# The image keeps its tag (:e2e), so a new binary or CA rolls the Pods through an annotation on
# the template: unchanged, nothing restarts. A new serving certificate from the same CA needs no
# roll: the webhook reloads the Secret it has mounted (kubelet refreshes it within about a minute)
# and the caBundle trusts both the old and the new one meanwhile.
revision=$(cat "$work/webhook/deputy-webhook" "$tls/ca.crt" | sha256sum | cut -c1-16)
current=$("$K" -n deputy-system get deployment deputy-webhook \
	-o jsonpath='{.spec.template.metadata.annotations.k8s-deputy\.io/e2e-revision}')
if [[ $current != "$revision" ]]; then
	log "rolling the webhook (binary or CA changed)"
	"$K" -n deputy-system patch deployment deputy-webhook --type=merge \
		-p "{\"spec\":{\"template\":{\"metadata\":{\"annotations\":{\"k8s-deputy.io/e2e-revision\":\"$revision\"}}}}}" >&2
fi
"$K" -n deputy-system rollout status deployment/deputy-webhook --timeout=120s >&2
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
