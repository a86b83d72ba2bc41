# shellcheck shell=bash
# cert-manager: its controller and cainjector as host processes in the node's network namespace
# (built by build_cert_manager, lib/build.sh), its CRDs applied, and stopping them.
# Expects (harness.sh): STATE, PKI, LOGS, CM_BIN, CM_VERSION, CM_DAEMONS, log, die; is_up, alive,
# start, stop, wait_for, kubectl (lib/daemons.sh); cert, kubeconfig (lib/pki.sh).

# cert_manager_up: builds or reuses cert-manager, applies its CRDs and starts its controller and
# cainjector as host processes in the node's network namespace (as the Kubernetes daemons run).
# Idempotent; a failure stops what it started.
cert_manager_up() {
	if ! { [[ -d $STATE ]] && is_up; }; then die "no node runs (make e2e-up first)"; fi
	build_cert_manager
	if alive cert-manager-controller && alive cert-manager-cainjector; then
		log "cert-manager $CM_VERSION already runs"
		return 0
	fi
	local t0=$SECONDS
	# shellcheck disable=SC2154 # rc is assigned in the trap itself
	trap 'rc=$?; trap - EXIT INT TERM; if [[ $rc != 0 ]]; then log "cert-manager up failed (exit $rc); stopping it"; cert_manager_stop; fi; exit $rc' EXIT
	trap 'exit 130' INT TERM
	cert_manager_stop
	kubectl apply --server-side --force-conflicts -f "$CM_BIN/crds.yaml" >/dev/null ||
		die "applying cert-manager's CRDs failed"
	kubectl wait --for=condition=Established --timeout=60s -f "$CM_BIN/crds.yaml" >/dev/null ||
		die "cert-manager's CRDs were not established within 60 s"
	# A test daemon, so a client certificate of the harness CA in system:masters (cluster
	# admin) stands in for upstream's ServiceAccounts and ClusterRoles.
	[[ -f $PKI/cert-manager.crt ]] || cert cert-manager cert-manager system:masters
	kubeconfig "$STATE/cert-manager.kubeconfig" cert-manager
	# Logs are appended to: only lines after this start count as signs of readiness.
	local c=$LOGS/cert-manager-controller.log i=$LOGS/cert-manager-cainjector.log nc ni
	nc=$(wc -l 2>/dev/null <"$c" || echo 0) ni=$(wc -l 2>/dev/null <"$i" || echo 0)
	start cert-manager-controller "$CM_BIN/cert-manager-e2e" controller --kubeconfig "$STATE/cert-manager.kubeconfig" --v=2
	start cert-manager-cainjector "$CM_BIN/cert-manager-e2e" cainjector --kubeconfig "$STATE/cert-manager.kubeconfig" --v=2
	wait_for "cert-manager's controller to list Certificates" 60 cert-manager-controller \
		log_since "$c" "$nc" 'Caches populated" type="\*v1.Certificate"'
	wait_for "cert-manager's cainjector to start its workers" 60 cert-manager-cainjector \
		log_since "$i" "$ni" '"Starting workers" controller="mutatingwebhookconfiguration"'
	trap - EXIT INT TERM
	log "cert-manager $CM_VERSION runs ($((SECONDS - t0)) s after the binary was ready); logs in $LOGS/cert-manager-*.log"
}

# log_since FILE LINES PATTERN: PATTERN (grep) occurs in FILE after its first LINES lines.
log_since() { tail -n +"$(($2 + 1))" "$1" | grep -q "$3"; }

# cert_manager_stop: stops the daemons by their recorded PIDs.
cert_manager_stop() {
	local d
	for d in "${CM_DAEMONS[@]}"; do stop "$d"; done
}
