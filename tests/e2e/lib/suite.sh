# shellcheck shell=bash
# The suite: cmd_test (`harness.sh test`) brings a node up if none runs, deploys k8s-deputy onto
# it, starts cert-manager for the full suite, and runs the suite's test binaries against it.
# Expects (harness.sh): E2E_DIR, STATE, LOGS, CALLER_CARGO_TARGET_DIR, log, die, lock, cmd_up,
# ensure_prereqs (lib/prereqs.sh), is_up (lib/daemons.sh), test_images (lib/images.sh),
# cert_manager_up (lib/cert-manager.sh), lane_summary (lib/lanes.sh); E2E_SUITE from the caller.

cmd_test() {
	local kc missing
	# Where the node cannot run (no root, no Go, no packages) the suite skips loudly, naming what
	# is missing; under CI or E2E_REQUIRED that is a failure instead.
	if ! { [[ -d $STATE ]] && is_up; } && ! missing=$( (ensure_prereqs) 2>&1); then
		if [[ -n ${CI:-} || -n ${E2E_REQUIRED:-} ]]; then
			printf '%s\n' "$missing" >&2
			die "the e2e node cannot run here (CI or E2E_REQUIRED is set, so this is a failure)"
		fi
		printf '%s\n' "$missing" >&2
		log "SKIPPING the e2e suite: the node cannot run on this machine (see above)"
		command -v cargo >/dev/null || die "missing: cargo, so not even the skipping tests can run"
		(cd "$E2E_DIR" && env -u KUBECONFIG cargo test --test node --test manifests --test cert_manager --test deputy --test deputy_ops --test faults --test drain --test chart)
		return 0
	fi
	[[ -z ${missing:-} ]] || printf '%s\n' "$missing" >&2
	if [[ -d $STATE ]] && is_up; then
		kc=$STATE/kubeconfig
	else
		log "no node runs; bringing one up"
		kc=$(cmd_up | tail -n1 | sed -n 's/^export KUBECONFIG=//p')
		[[ -n $kc ]] || die "up did not print a KUBECONFIG"
	fi
	test_images
	deploy_deputy
	local suite=${E2E_SUITE:-full}
	case $suite in
	full | core) ;;
	*) printf '[e2e] ERROR: unknown E2E_SUITE %q; the suites are: full core\n' "$suite" >&2 && exit 2 ;;
	esac
	if [[ $suite == full ]]; then
		local t_cm=$SECONDS
		# In a subshell: the lock is released after, and a failure stops what it started.
		(
			lock
			cert_manager_up
		)
		log "cert-manager ready for tests/cert_manager.rs in $((SECONDS - t_cm)) s (build or reuse, CRDs, start)"
	fi
	log "running the $suite e2e suite on $(lane_summary) against $kc"
	# tests/node.rs proves the node; tests/manifests.rs and tests/cert_manager.rs the manifests
	# (the cert-manager overlay with cert-manager running); tests/deputy.rs proves k8s-deputy on
	# it; tests/deputy_ops/ its operation (skips, reinvocation, outage, certificate rotation,
	# rolling update, benchmark); tests/drain.rs the drain (no request lost); tests/chart.rs the Helm chart. All run, whatever the first says. The tests record what they
	# measure as JSON lines in $figures (src/figures.rs), summarised from there at the end.
	local figures=$LOGS/e2e-figures.jsonl rc=0
	: >"$figures"
	export E2E_FIGURES=$figures
	# The core suite (what every lane must prove): the node, every kustomization, k8s-deputy's
	# scenarios (injection, graceful deletion of the three kinds of app, the PID-1 negative
	# control, a restricted namespace) and fail-open with the webhook down.
	local ops_filter=()
	[[ $suite == core ]] && ops_filter=(outage::)
	suite_run node -- --test-threads=3
	suite_run manifests --
	[[ $suite == core ]] || suite_run cert_manager --
	# tests/chart.rs: the Helm chart with real Helm (lint, schema, same objects as the overlays,
	# and a release installed, tested, upgraded under Pod creation and uninstalled).
	if [[ $suite == full ]]; then
		E2E_HELM=$(cmd_tool helm) || die "cannot build helm (see above)"
		export E2E_HELM
		suite_run chart --
	fi
	suite_run deputy -- --test-threads=5
	# The tests that take the webhook down or rotate its certificate lock out the others themselves.
	suite_run deputy_ops -- --test-threads=4 "${ops_filter[@]}"
	# tests/faults/: termination under faults (crashing and deaf apps, restarted containers with a
	# reused PID, a kubelet restart mid-relay, 30 evictions, 50 deletions at once); the tests
	# that restart the kubelet or fill the node lock out the others themselves.
	[[ $suite == core ]] || suite_run faults -- --test-threads=4
	# tests/drain.rs: requests lost while Pods behind a Service are replaced or deleted, per way
	# of terminating (its cases take turns: they share the load and the CPU).
	[[ $suite == core ]] || suite_run drain --
	log "figures measured by the suite, in the order they were recorded (from $figures):"
	jq -r '.topic as $t | .text | split("\n")[] | "\($t): \(.)"' "$figures" >&2 ||
		log "cannot read the figures in $figures (one JSON object per line)"
	return "$rc"
}

# suite_run TEST [CARGO_ARGS] -- [TEST_ARGS]: one test binary of the suite against the node;
# a failure is recorded in cmd_test's rc and the others still run.
suite_run() {
	local t=$1
	shift
	(cd "$E2E_DIR" && KUBECONFIG=$kc E2E_REQUIRED=1 cargo test --test "$t" "$@" --show-output) || rc=$?
}

# deploy_deputy: builds and imports k8s-deputy's images and deploys manifests/overlays/local
# (idempotent: re-running converges, rolls the webhook and waits until a dry-run Pod is mutated).
deploy_deputy() {
	log "deploying k8s-deputy (scripts/e2e-deploy.sh)"
	local deploy=$E2E_DIR/../../scripts/e2e-deploy.sh
	if [[ -n $CALLER_CARGO_TARGET_DIR ]]; then
		CARGO_TARGET_DIR=$CALLER_CARGO_TARGET_DIR "$deploy" >/dev/null
	else
		env -u CARGO_TARGET_DIR "$deploy" >/dev/null
	fi
}
