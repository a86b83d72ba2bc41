# shellcheck shell=bash
# Host state and cgroups: what the first `up` records about the host (the sysctls the kubelet
# rewrites, the network namespaces and host paths that exist, a snapshot of mounts, links,
# cgroups and directories) for `down` to restore and verify (lib/down.sh), and the kubelet's
# cgroupRoot in every cgroup hierarchy.
# Expects (harness.sh): STATE, KUBELET_SYSCTLS, HOST_PATHS, CGROUP_ROOT.

# The first run of up records what the host looked like; down puts it back.
record_host_state() {
	mkdir -p "$STATE/host"
	local s p
	if [[ ! -f $STATE/host/sysctl.saved ]]; then
		for s in "${KUBELET_SYSCTLS[@]}"; do
			echo "$s=$(sysctl -n "$s")"
		done >"$STATE/host/sysctl.saved.tmp"
		mv "$STATE/host/sysctl.saved.tmp" "$STATE/host/sysctl.saved"
	fi
	if [[ ! -f $STATE/host/netns.before ]]; then
		ls -A /run/netns 2>/dev/null >"$STATE/host/netns.before" || true
	fi
	if [[ ! -f $STATE/host/paths.created ]]; then
		for p in "${HOST_PATHS[@]}"; do
			[[ -e $p ]] || echo "$p"
		done >"$STATE/host/paths.created"
	fi
	[[ -f $STATE/host/snapshot ]] || host_snapshot >"$STATE/host/snapshot"
}

# host_snapshot: what down must leave as up found it, one item a line: mount points, network
# links, network namespaces, top-level cgroups, and the entries of the directories that
# daemons like to create things in.
host_snapshot() {
	local h d
	awk '{print "mount " $5}' /proc/self/mountinfo
	ip -o link show | awk -F': ' '{sub(/@.*/, "", $2); print "link " $2}'
	[[ -d /run/netns ]] && find /run/netns -mindepth 1 -maxdepth 1 -printf 'netns %f\n'
	for h in $(cgroup_hierarchies); do
		find "$h" -mindepth 1 -maxdepth 1 -type d | sed 's/^/cgroup /'
	done
	for d in /run /var/lib /var/log /opt /etc/cni /etc/containerd /etc/kubernetes; do
		[[ -d $d ]] && find "$d" -mindepth 1 -maxdepth 1 | sed 's/^/path /'
	done
	true
}

cgroup_hierarchies() { awk '$3 == "cgroup" || $3 == "cgroup2" {print $2}' /proc/mounts; }

# The kubelet's cgroupRoot, created in every hierarchy the way kind does (cpuset needs its
# cpus and mems copied from the parent before any task can join).
setup_cgroups() {
	local h
	for h in $(cgroup_hierarchies); do
		mkdir -p "$h/$CGROUP_ROOT"
		if [[ -f $h/cpuset.cpus ]]; then
			cat "$h/cpuset.cpus" >"$h/$CGROUP_ROOT/cpuset.cpus"
			cat "$h/cpuset.mems" >"$h/$CGROUP_ROOT/cpuset.mems"
		fi
	done
}
