# shellcheck shell=bash
# Teardown and verification: do_down deletes every Pod, stops every daemon (cert-manager's
# first), kills what the runtime left, unmounts, deletes the network namespace, the veth and the
# cgroups, restores the host as up recorded it (lib/host.sh), and verify_clean fails unless
# nothing of the node is left.
# Expects (harness.sh): STATE, LOGS, LAST_LOGS, CACHE_DIR, PIDS, CTRD_SOCK, CGROUP_ROOT, NETNS,
# NETNS_PATH, VETH_HOST, DAEMONS, CM_BIN, log, die; K8S_BIN, ETCD_BIN from select_lane
# (lib/lanes.sh); the functions of lib/daemons.sh, lib/host.sh and lib/cert-manager.sh.

# Processes left by the runtime: shims (found by our containerd's socket on their command
# line) and anything still in the kubelet's cgroups. Printed as PIDs.
runtime_leftovers() {
	local p h
	for p in /proc/[0-9]*; do
		if tr '\0' ' ' 2>/dev/null <"$p/cmdline" | grep -qF -- "$CTRD_SOCK"; then echo "${p#/proc/}"; fi
	done
	for h in $(cgroup_hierarchies); do
		[[ -d $h/$CGROUP_ROOT ]] && find "$h/$CGROUP_ROOT" -name cgroup.procs -exec cat {} + 2>/dev/null
	done
	true
}

delete_workloads() {
	# Controllers would recreate what we delete: stop them first.
	stop kube-controller-manager
	stop kube-scheduler
	if alive kubelet && api_ready; then
		log "deleting every Pod (the kubelet stops their containers)"
		kubectl delete pods --all-namespaces --all --grace-period=1 --wait=false >/dev/null 2>&1 || true
		local deadline=$((SECONDS + 90))
		while [[ -n $(kubectl get pods -A -o name 2>/dev/null) ]] && ((SECONDS < deadline)); do sleep 0.5; done
		[[ -z $(kubectl get pods -A -o name 2>/dev/null) ]] || log "some Pods were still there after 90 s; killing their processes"
		# The kubelet stops sandboxes (and tears down their network) once a Pod is gone; wait for
		# the runtime to have no running task left.
		deadline=$((SECONDS + 30))
		while ((SECONDS < deadline)); do
			[[ -z $(ctr --address "$CTRD_SOCK" -n k8s.io tasks ls -q 2>/dev/null) ]] && break
			sleep 0.5
		done
	fi
}

remove_runtime_state() {
	# Whatever the kubelet did not clean: kill and delete tasks through containerd.
	if alive containerd; then
		local t
		for t in $(ctr --address "$CTRD_SOCK" -n k8s.io tasks ls -q 2>/dev/null); do
			ctr --address "$CTRD_SOCK" -n k8s.io tasks kill -s SIGKILL "$t" >/dev/null 2>&1 || true
			ctr --address "$CTRD_SOCK" -n k8s.io tasks delete -f "$t" >/dev/null 2>&1 || true
		done
	fi
}

kill_leftovers() {
	local pids deadline=$((SECONDS + 30))
	while :; do
		pids=$(runtime_leftovers | sort -u | grep -v "^$$\$" || true)
		[[ -z $pids ]] && return 0
		((SECONDS < deadline)) || die "processes survive SIGKILL: $pids"
		log "killing leftover runtime processes: $(echo "$pids" | tr '\n' ' ')"
		# shellcheck disable=SC2086
		kill -KILL $pids 2>/dev/null || true
		sleep 0.2
	done
}

unmount_all() {
	local m deadline=$((SECONDS + 30))
	while :; do
		# Deepest first; /proc/self/mountinfo escapes spaces, none of our paths have any.
		m=$(awk -v s="$STATE" -v n="/run/netns/cni-" '{ if (index($5, s "/") == 1 || $5 == s || index($5, n) == 1) print $5 }' /proc/self/mountinfo | sort -r)
		[[ -z $m ]] && return 0
		if ((SECONDS >= deadline)); then
			die "mounts survive: $m"
		fi
		local x
		for x in $m; do umount "$x" 2>/dev/null || true; done
		sleep 0.1
	done
}

remove_cgroups() {
	local h d
	for h in $(cgroup_hierarchies); do
		[[ -d $h/$CGROUP_ROOT ]] || continue
		# Children before parents.
		find "$h/$CGROUP_ROOT" -depth -type d | while read -r d; do
			rmdir "$d" 2>/dev/null || true
		done
		[[ ! -d $h/$CGROUP_ROOT ]] || die "cgroup $h/$CGROUP_ROOT could not be removed"
	done
}

restore_host() {
	local line p
	if [[ -f $STATE/host/sysctl.saved ]]; then
		while IFS= read -r line; do
			local now
			now=$(sysctl -n "${line%%=*}")
			if [[ $now != "${line#*=}" ]]; then
				sysctl -q -w "$line" >/dev/null
				log "restored sysctl $line (the kubelet had set $now)"
			fi
		done <"$STATE/host/sysctl.saved"
	fi
	if [[ -f $STATE/host/paths.created ]]; then
		while IFS= read -r p; do
			[[ -n $p && -e $p ]] || continue
			if [[ $p == /run/netns ]]; then
				# Only when no other namespace lives there.
				if [[ -z $(ls -A "$p") ]]; then
					umount "$p" 2>/dev/null || true
					rmdir "$p"
				fi
			elif [[ $p == /run/mount ]]; then
				continue # last: every umount above may recreate it
			else
				rm -rf "$p"
			fi
		done <"$STATE/host/paths.created"
		if grep -qx /run/mount "$STATE/host/paths.created"; then rm -rf /run/mount; fi
	fi
}

# our_processes: PIDs of anything the node started that still runs: its daemons (binaries
# from our caches, or containerd with our config), shims serving our containerd, and every
# process in the kubelet's cgroups.
our_processes() {
	local p exe cmd
	for p in /proc/[0-9]*; do
		exe=$(readlink "$p/exe" 2>/dev/null) || continue
		cmd=$(tr '\0' ' ' 2>/dev/null <"$p/cmdline") || continue
		if [[ $exe == "$K8S_BIN/"* || $exe == "$ETCD_BIN/"* || $exe == "$CM_BIN/"* || $cmd == *"$STATE/"* ]] ||
			grep -q ":/$CGROUP_ROOT/" "$p/cgroup" 2>/dev/null; then
			echo "${p#/proc/} $cmd"
		fi
	done
}

# verify_clean: fails unless down left no process, mount, cgroup, namespace, veth, sysctl or
# host path of the node. SYSCTLS and CREATED are what up recorded.
verify_clean() {
	local sysctls=$1 created=$2 snapshot=$3 problems=() h line p
	[[ -e $NETNS_PATH ]] && problems+=("network namespace $NETNS")
	ip link show "$VETH_HOST" >/dev/null 2>&1 && problems+=("veth $VETH_HOST")
	line=$(awk -v s="$STATE" '{ if (index($5, s) == 1 || index($5, "/run/netns/cni-") == 1 || index($5, "/var/lib/kubelet") == 1) print $5 }' /proc/self/mountinfo)
	[[ -n $line ]] && problems+=("mounts: $line")
	for h in $(cgroup_hierarchies); do
		[[ -d $h/$CGROUP_ROOT ]] && problems+=("cgroup $h/$CGROUP_ROOT")
	done
	line=$(our_processes)
	[[ -n $line ]] && problems+=("processes: $line")
	while IFS= read -r line; do
		[[ -z $line ]] && continue
		[[ $(sysctl -n "${line%%=*}") == "${line#*=}" ]] || problems+=("sysctl ${line%%=*}=$(sysctl -n "${line%%=*}"), was ${line#*=}")
	done <<<"$sysctls"
	while IFS= read -r p; do
		[[ -n $p && -e $p ]] && problems+=("path $p (created by up)")
	done <<<"$created"
	[[ -n $(find "$STATE" -mindepth 1 -maxdepth 1 ! -name host 2>/dev/null) ]] && problems+=("files in $STATE")
	if [[ -n $snapshot ]]; then
		# Anything new since up (the state directory itself aside) is a leftover.
		line=$(comm -13 <(sort -u <<<"$snapshot") <(host_snapshot | grep -vxF "path $STATE" | sort -u))
		[[ -n $line ]] && problems+=("new since up: $(tr '\n' ';' <<<"$line")")
	fi
	if [[ ${#problems[@]} -gt 0 ]]; then
		printf '[e2e] down left behind: %s\n' "${problems[@]}" >&2
		die "the host is not restored"
	fi
	log "verified: no process, mount, cgroup, network namespace, veth, changed sysctl or created path is left"
}

do_down() {
	local t0=$SECONDS sysctls="" created="" snapshot=""
	[[ -f $STATE/host/sysctl.saved ]] && sysctls=$(cat "$STATE/host/sysctl.saved")
	[[ -f $STATE/host/paths.created ]] && created=$(cat "$STATE/host/paths.created")
	[[ -f $STATE/host/snapshot ]] && snapshot=$(cat "$STATE/host/snapshot")
	if [[ -d $STATE ]]; then
		cert_manager_stop
		[[ -x $STATE/kubectl && -f $STATE/kubeconfig ]] && delete_workloads
		remove_runtime_state
		local i
		for ((i = ${#DAEMONS[@]} - 1; i >= 0; i--)); do stop "${DAEMONS[i]}"; done
	fi
	kill_leftovers
	unmount_all
	# Pod network namespaces the runtime had no chance to remove (when it died first).
	local f
	if [[ -f $STATE/host/netns.before ]]; then
		for f in /run/netns/cni-*; do
			[[ -e $f ]] && ! grep -qxF "${f##*/}" "$STATE/host/netns.before" && rm -f "$f"
		done
	fi
	if [[ -e $NETNS_PATH ]]; then
		ip netns del "$NETNS"
		log "deleted network namespace $NETNS"
	fi
	if ip link show "$VETH_HOST" >/dev/null 2>&1; then ip link del "$VETH_HOST"; fi
	remove_cgroups
	if [[ -d $STATE ]]; then
		restore_host
		if [[ -d $LOGS ]]; then
			rm -rf "$LAST_LOGS" && mkdir -p "$CACHE_DIR" && cp -r "$LOGS" "$LAST_LOGS"
		fi
		# Keep up's records of the host until the host is verified, so a failed down can be rerun.
		find "$STATE" -mindepth 1 -maxdepth 1 ! -name host -exec rm -rf {} +
	fi
	verify_clean "$sysctls" "$created" "$snapshot"
	rm -rf "$STATE"
	log "down: host restored in $((SECONDS - t0)) s (logs of the last run: $LAST_LOGS)"
}
