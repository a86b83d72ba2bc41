# shellcheck shell=bash
# Host checks and packages: ensure_prereqs says exactly what the node lacks on this host (root,
# Go, Debian packages, commands, static glibc, cgroup v1) and installs the missing Debian packages
# when it can (root and apt), starting none of their services.
# Expects (harness.sh): APT_PACKAGES, APT_RUNTIME_DEBIAN, APT_RUNTIME_BUILD, log, die; and from
# select_lane (lib/lanes.sh): K8S_VERSION, CONTAINERD_VERSION, RUNC_VERSION.

# Says exactly what is missing; installs the Debian packages when it can (root + apt).
ensure_prereqs() {
	[[ $(id -u) == 0 ]] || die "the e2e node needs root (it creates a network namespace, cgroups and mounts); missing: root"
	command -v go >/dev/null || die "missing: Go (>= 1.26) on PATH, needed to build Kubernetes $K8S_VERSION and cert-manager from their modules"
	local need=() p pkgs=("${APT_PACKAGES[@]}")
	if [[ $CONTAINERD_VERSION == debian ]]; then pkgs+=("${APT_RUNTIME_DEBIAN[@]}"); else pkgs+=("${APT_RUNTIME_BUILD[@]}"); fi
	for p in "${pkgs[@]}"; do
		dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q "install ok installed" || need+=("$p")
	done
	if [[ ${#need[@]} -gt 0 ]]; then
		command -v apt-get >/dev/null || die "missing Debian packages: ${need[*]} (and no apt-get to install them)"
		log "installing Debian packages: ${need[*]} (their services are not started)"
		# policy-rc.d returning 101 forbids maintainer scripts to start services, so nothing runs
		# that this harness did not start itself.
		local policy=/usr/sbin/policy-rc.d created_policy=
		if [[ ! -e $policy ]]; then
			printf '#!/bin/sh\nexit 101\n' >"$policy" && chmod 755 "$policy" && created_policy=1
		fi
		local rc=0
		{ apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends "${need[@]}"; } >&2 || rc=$?
		[[ -n $created_policy ]] && rm -f "$policy"
		[[ $rc == 0 ]] || die "apt-get install ${need[*]} failed"
	fi
	local c
	for c in iptables nsenter setsid ip jq curl openssl gcc envsubst; do
		command -v "$c" >/dev/null || die "missing: $c"
	done
	if [[ $CONTAINERD_VERSION == debian ]]; then
		for c in containerd containerd-shim-runc-v2 ctr runc; do
			command -v "$c" >/dev/null || die "missing: $c (Debian containerd, runc)"
		done
		[[ -x /usr/lib/cni/bridge && -x /usr/lib/cni/host-local && -x /usr/lib/cni/loopback ]] ||
			die "missing: CNI plugins in /usr/lib/cni (Debian containernetworking-plugins)"
	else
		pkg-config --exists libseccomp || die "missing: libseccomp's pkg-config file (Debian libseccomp-dev), needed to build runc $RUNC_VERSION"
	fi
	[[ -x /bin/busybox ]] || die "missing: /bin/busybox (Debian busybox-static)"
	[[ -f /usr/lib/x86_64-linux-gnu/libc.a ]] || die "missing: static glibc (Debian libc6-dev) to build the pause binary"
	[[ $(stat -fc %T /sys/fs/cgroup) == tmpfs ]] ||
		die "this harness drives the kubelet on cgroup v1; /sys/fs/cgroup is $(stat -fc %T /sys/fs/cgroup)"
}
