#!/usr/bin/env bash
# make demo: the whole story on a real local Kubernetes node. Brings the node up, deploys
# k8s-deputy (make e2e-deploy), labels a namespace, starts three apps that cannot handle SIGTERM
# well on their own, deletes them, and shows that each shut down through its own callback a few
# seconds later (after the drain) instead of waiting out its grace period; then the same shell app without k8s-deputy for
# contrast. Tears the node down at the end unless KEEP=1.
# DEPUTY_CLUSTER=kind: the same on a kind cluster (needs docker and kind; tests/e2e/kind.sh).
set -euo pipefail
root=$(cd "$(dirname "$0")/.." && pwd)
cd "$root"
say() { printf '\n\033[1m== %s\033[0m\n' "$*"; }

cluster=${DEPUTY_CLUSTER:-local}
[[ $cluster == local || $cluster == kind ]] || { echo "demo: DEPUTY_CLUSTER must be local or kind, not $cluster" >&2; exit 2; }
# Only the cluster this script brings up, never one an inherited KUBECONFIG names.
unset KUBECONFIG
cleanup() {
	if [[ -n ${KUBECONFIG:-} ]]; then
		"$(dirname "$KUBECONFIG")/kubectl" delete namespace deputy-demo deputy-demo-plain \
			--ignore-not-found --wait=false >/dev/null 2>&1 || true
	fi
	if [[ ${KEEP:-0} != 1 ]]; then
		say "tearing the cluster down (KEEP=1 keeps it)"
		if [[ $cluster == kind ]]; then tests/e2e/kind.sh down; else tests/e2e/harness.sh down; fi
	else
		say "the cluster stays up: export KUBECONFIG=${KUBECONFIG:-}"
	fi
}
trap cleanup EXIT
case $cluster in
local)
	say "bringing up the local node and deploying k8s-deputy (make e2e-deploy)"
	eval "$(scripts/e2e-deploy.sh | tail -n 1)"
	;;
kind)
	say "bringing up a kind cluster, building and loading the images, deploying k8s-deputy"
	eval "$(tests/e2e/kind.sh up | tail -n 1)"
	tests/e2e/kind.sh images
	DEPUTY_CLUSTER=kind scripts/e2e-deploy.sh >/dev/null
	;;
esac
K=$(dirname "$KUBECONFIG")/kubectl

say "a namespace that opts in, enforcing the restricted Pod Security Standard"
"$K" create namespace deputy-demo --dry-run=client -o yaml | "$K" apply -f - >/dev/null
"$K" label namespace deputy-demo --overwrite k8s-deputy.io/inject=enabled pod-security.kubernetes.io/enforce=restricted
"$K" create namespace deputy-demo-plain --dry-run=client -o yaml | "$K" apply -f - >/dev/null

pod() { # name namespace grace annotations-json command-json args-json [run-emptydir]
	local run_mount="" run_volume=""
	if [[ ${7:-} == run-emptydir ]]; then
		# What K8sDeputy.jl's users add by hand for a read-only root: a writable /run.
		run_mount="volumeMounts: [{name: run, mountPath: /run}]"
		run_volume="volumes: [{name: run, emptyDir: {medium: Memory}}]"
	fi
	cat <<YAML
apiVersion: v1
kind: Pod
metadata: {name: $1, namespace: $2, annotations: $4}
spec:
  terminationGracePeriodSeconds: $3
  securityContext: {runAsNonRoot: true, seccompProfile: {type: RuntimeDefault}}
  containers:
    - name: app
      image: localhost/deputy-demo:e2e
      imagePullPolicy: Never
      command: $5
      args: $6
      securityContext: {allowPrivilegeEscalation: false, readOnlyRootFilesystem: true, capabilities: {drop: ["ALL"]}}
      $run_mount
  $run_volume
YAML
}
{
	pod rust-app deputy-demo 30 '{}' '["/app/deputy-app"]' '["--handler-sleep", "500ms"]'
	echo ---
	pod shell-app deputy-demo 30 '{"k8s-deputy.io/entrypoint": "wrap"}' '["/app/shell-app.sh"]' '[]'
	echo ---
	pod julia-app deputy-demo 30 '{"k8s-deputy.io/entrypoint": "wrap"}' '["/app/julia-like"]' '[]'
	echo ---
	# For contrast, without k8s-deputy: the K8sDeputy.jl-protocol app as PID 1 (SIGTERM's default
	# action does nothing to a PID 1), and the shell app under `sh -c "...; ..."` (the shell is PID 1
	# and forwards nothing). Both wait out their grace period and are SIGKILLed; no callback runs.
	pod julia-app-without-deputy deputy-demo-plain 10 '{}' '["/app/julia-like"]' '[]' run-emptydir
	echo ---
	pod shell-app-under-sh-c deputy-demo-plain 10 '{}' '["/bin/sh", "-c", "/app/shell-app.sh; echo done"]' '[]'
} | "$K" apply -f -
"$K" -n deputy-demo wait --for=condition=Ready pod --all --timeout=120s >/dev/null
"$K" -n deputy-demo-plain wait --for=condition=Ready pod --all --timeout=120s >/dev/null

say "what the webhook added to rust-app (stored by the API server)"
"$K" -n deputy-demo get pod rust-app -o jsonpath='status annotation: {.metadata.annotations.k8s-deputy\.io/status}{"\n"}init container: {.spec.initContainers[0].name} ({.spec.initContainers[0].image}){"\n"}preStop: {.spec.containers[0].lifecycle.preStop.exec.command}{"\n"}mounts: {.spec.containers[0].volumeMounts[*].mountPath}{"\n"}'
"$K" -n deputy-demo get pod shell-app -o jsonpath='shell-app command (wrap): {.spec.containers[0].command}{"\n"}'

results=()
# ms since the delete was issued, for a log line's RFC 3339 timestamp (node and host share a clock).
since() { awk -v a="$1" -v b="$(date -d "$2" +%s.%N)" 'BEGIN { printf "%+6.0f ms", (b - a) * 1000 }'; }

# The timeline of one deletion, from the container's timestamped log: the relay asks (the preStop
# runs), the app's own shutdown code runs, the app exits, the Pod is gone.
timeline() { # start end log
	local ts line
	printf '      %s  delete issued\n' "$(since "$1" "@$1")"
	while read -r ts line; do
		case $line in
		*"deputy-agent terminate: asking"*) printf '      %s  preStop: relay asks the app to terminate\n' "$(since "$1" "$ts")" ;;
		*"shutdown handler started"* | *"got SIGTERM"* | *"callback ran"*) printf '      %s  the app'"'"'s shutdown code runs: %s\n' "$(since "$1" "$ts")" "$line" ;;
		*"reported its app exited"* | *"clean exit"*) printf '      %s  app exited: %s\n' "$(since "$1" "$ts")" "$line" ;;
		esac
	done <"$3"
	printf '      %s  Pod gone\n' "$(since "$1" "@$2")"
}

delete_and_time() { # namespace pod
	local log start end
	log=$(mktemp)
	"$K" -n "$1" logs -f --timestamps "$2" -c app >"$log" 2>&1 &
	local follower=$!
	start=$(date +%s.%N)
	"$K" -n "$1" delete pod "$2" --wait=true >/dev/null
	end=$(date +%s.%N)
	wait "$follower" 2>/dev/null || true
	local secs failed
	secs=$(awk -v a="$start" -v b="$end" 'BEGIN { printf "%.1f", b - a }')
	failed=$("$K" -n "$1" get events --field-selector "involvedObject.name=$2,reason=FailedPreStopHook" -o name 2>/dev/null | wc -l)
	say "deleted $1/$2 in ${secs} s (FailedPreStopHook events: $failed)"
	echo "    timeline:"
	timeline "$start" "$end" "$log"
	echo "    log:"
	cut -d' ' -f2- "$log" | sed 's/^/      /'
	rm -f "$log"
	results+=("$(printf '| %-43s | %6s s | %s |' "$1/$2" "$secs" "$failed")")
}
delete_and_time deputy-demo rust-app
delete_and_time deputy-demo shell-app
delete_and_time deputy-demo julia-app
delete_and_time deputy-demo-plain julia-app-without-deputy
delete_and_time deputy-demo-plain shell-app-under-sh-c

say "summary (grace periods: 30 s with k8s-deputy, 10 s without)"
printf '| %-43s | deletion | FailedPreStopHook |\n' Pod
echo "|---------------------------------------------|---------:|-------------------|"
printf '%s\n' "${results[@]}"
