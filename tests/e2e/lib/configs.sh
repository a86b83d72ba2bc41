# shellcheck shell=bash
# Daemon configuration: the files the daemons read, rendered from templates/ (lib/render.sh):
# the CNI conflist, containerd's config.toml (format 2 or 3), the kubelet's and kube-proxy's
# configurations, and the Pods' resolv.conf.
# Expects (harness.sh): STATE, CTRD, CTRD_SOCK, PKI, NODE_IP, NODE_NAME, POD_BRIDGE, POD_CIDR,
# POD_GW, CGROUP_ROOT; from select_lane (lib/lanes.sh): K8S_MINOR, CONTAINERD_VERSION, RUNC,
# CNI_BIN; render (lib/render.sh).

# write_containerd_config: the lane's containerd configuration on stdout: format version 2 for
# containerd 1.x (templates/containerd-format2.toml.tmpl), version 3 (the CRI plugin split in
# images and runtime; templates/containerd-format3.toml.tmpl) for 2.x.
write_containerd_config() {
	# This VM gives root no CAP_SYS_RESOURCE, so nothing may lower oom_score_adj below its own;
	# restrict_oom_score_adj clamps the kubelet's negative scores (sandboxes ask for -998)
	# instead of failing. Pods get the cgroupfs driver: there is no systemd.
	local format=2
	if [[ $CONTAINERD_VERSION != debian && $CONTAINERD_VERSION != v1.* ]]; then
		# In version 3 the sandbox image and the snapshotter are image settings, and NRI is off.
		format=3
	fi
	render "containerd-format$format.toml.tmpl" CTRD CTRD_SOCK RUNC CNI_BIN STATE
}

# kubelet_cgroup_v1_option: on a cgroup v1 host, the KubeletConfiguration line that lets a
# kubelet of 1.35 or later start (failCgroupV1 defaults to true there; the field exists since
# 1.31); nothing on a cgroup v2 host.
kubelet_cgroup_v1_option() {
	if [[ $(stat -fc %T /sys/fs/cgroup) != cgroup2fs ]] && ((K8S_MINOR >= 31)); then
		echo "failCgroupV1: false"
	fi
}

# node_port_addresses: where kube-proxy opens NodePorts: the node's primary IPs, which kube-proxy
# of 1.30 cannot name (`primary` fails its validation: "must be a valid CIDR"), so there the
# node's address as a CIDR.
node_port_addresses() {
	if ((K8S_MINOR >= 31)); then echo primary; else echo "$NODE_IP/32"; fi
}

write_configs() {
	mkdir -p "$STATE/cni/net.d" "$STATE/etc"
	render cni.conflist.tmpl POD_BRIDGE POD_CIDR POD_GW STATE >"$STATE/cni/net.d/10-e2e.conflist"
	write_containerd_config >"$STATE/etc/containerd.toml"
	# Pods get a resolver that answers nothing (no DNS runs on the node) instead of the host's.
	echo "nameserver 127.0.0.1" >"$STATE/etc/resolv.conf"
	render kubelet.yaml.tmpl CTRD_SOCK CGROUP_ROOT PKI STATE NODE_IP \
		KUBELET_CGROUP_V1_OPTION="$(kubelet_cgroup_v1_option)" >"$STATE/etc/kubelet.yaml"
	render kube-proxy.yaml.tmpl STATE NODE_NAME POD_CIDR \
		NODE_PORT_ADDRESSES="$(node_port_addresses)" >"$STATE/etc/kube-proxy.yaml"
}
