#!/usr/bin/env bash
# The real single-node Kubernetes for k8s-deputy's end-to-end tests (see tests/e2e/README.md).
#
#   harness.sh up       build or reuse the binaries, start the node, wait until it is Ready;
#                       the last line printed is `export KUBECONFIG=<path>`
#   harness.sh down     delete every Pod, stop everything `up` started, restore the host
#   harness.sh test     run the e2e suite against the running node (bringing one up if none runs),
#                       after deploying k8s-deputy onto it (scripts/e2e-deploy.sh, idempotent)
#   harness.sh status   say whether a node runs
#   harness.sh build    only build or reuse the binaries and images
#   harness.sh target-dir
#                       print the suite's cargo target directory (one per checkout)
#   harness.sh image NAME USER ROOTFS_DIR ENTRYPOINT_JSON [CMD_JSON]
#                       write an OCI image from a directory and import it into the running node
#   harness.sh cert-manager up|down
#                       build or reuse cert-manager, apply its CRDs and run its controller and
#                       cainjector on the running node (`test` does this); down stops them and
#                       deletes the CRDs (`down` of the node stops them too)
#
# The node lives in its own network namespace joined to the host by a veth pair; every
# address comes from 198.18.0.0/15 (RFC 2544, reserved for network tests). The daemons run in
# the host's mount namespace (nsenter --net only), so tests can read hostPath files.
set -euo pipefail

E2E_DIR=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)

CACHE_DIR=${E2E_CACHE_DIR:-$HOME/.cache/k8s-deputy}
# cert-manager: the version its wrapper module requires (tests/e2e/cert-manager/go.mod).
CM_VERSION=$(awk '$1 == "github.com/cert-manager/cert-manager" {print $2}' "$E2E_DIR/cert-manager/go.mod")
CM_BIN=$CACHE_DIR/cert-manager-$CM_VERSION
IMG_CACHE=$CACHE_DIR/images
STATE=${E2E_STATE_DIR:-/var/lib/k8s-deputy-e2e}
LAST_LOGS=$CACHE_DIR/last-run-logs
# The suite's cargo target directory is a cache too, one per checkout path: a fresh clone at a
# path seen before (as CI's) then compiles only this crate, not its dependencies. Not one shared
# by all checkouts: cargo judges freshness by file times and its test binaries do not depend on
# the checkout's path, so one checkout would run test binaries compiled from another's sources.
# The 3 most recently used are kept (use_e2e_target). (The project's own build, which
# scripts/e2e-deploy.sh runs, keeps the caller's.)
E2E_TARGETS=$CACHE_DIR/e2e-target
CALLER_CARGO_TARGET_DIR=${CARGO_TARGET_DIR:-}
export CARGO_TARGET_DIR=${CARGO_TARGET_DIR:-$E2E_TARGETS/$(printf '%s' "$E2E_DIR" | sha256sum | cut -c1-16)}

# Network: a /30 between host and node, the Pod bridge, and the Service range.
NETNS=k8s-deputy-e2e
NETNS_PATH=/run/netns/$NETNS
VETH_HOST=dpe2e-host
VETH_NODE=dpe2e-node
HOST_IP=198.18.0.1
NODE_IP=198.18.0.2
POD_BRIDGE=dpe2e-br
POD_CIDR=198.18.128.0/24
POD_GW=198.18.128.1
SVC_CIDR=198.19.0.0/24
KUBE_SVC_IP=198.19.0.1
NODE_NAME=e2e-node
CGROUP_ROOT=k8s-deputy-e2e

# Host sysctls that the kubelet rewrites (setupKernelTunables); saved at up, restored at down.
KUBELET_SYSCTLS=(vm.overcommit_memory vm.panic_on_oom kernel.panic kernel.panic_on_oops
	kernel.keys.root_maxkeys kernel.keys.root_maxbytes)
# Host paths outside $STATE that the daemons create; removed at down when up created them.
# (/var/lib/kubelet: the device-plugin socket ignores --root-dir; /run/mount: libmount's utab,
# made by the first mount or umount; /run/netns: ip netns, a mount point of its own; /run/nri:
# containerd 2's NRI socket directory.)
HOST_PATHS=(/var/log/containers /var/lib/cni /var/lib/kubelet /run/containerd /opt/containerd /run/netns /run/mount /run/nri)
APT_PACKAGES=(busybox-static iptables conntrack jq curl openssl iproute2 util-linux gcc libc6-dev binutils)
# What a lane's runtime needs from Debian: its packages, or what building runc takes.
APT_RUNTIME_DEBIAN=(containerd runc containernetworking-plugins)
APT_RUNTIME_BUILD=(libseccomp-dev pkg-config)

PKI=$STATE/pki
LOGS=$STATE/logs
PIDS=$STATE/pids
CTRD=$STATE/containerd
CTRD_SOCK=$CTRD/containerd.sock
# Start order; down stops them in reverse.
DAEMONS=(etcd kube-apiserver containerd kube-controller-manager kube-scheduler kubelet kube-proxy)
# Started on demand (harness.sh cert-manager up, and test); stopped first by down.
CM_DAEMONS=(cert-manager-controller cert-manager-cainjector)

log() { printf '[e2e %s] %s\n' "$(date +%H:%M:%S)" "$*" >&2; }
die() {
	printf '[e2e] ERROR: %s\n' "$*" >&2
	exit 1
}

# shellcheck source=lib/lanes.sh
source "$E2E_DIR/lib/lanes.sh"
# shellcheck source=lib/build.sh
source "$E2E_DIR/lib/build.sh"

# The lane: the one a running node records, else E2E_LANE, else the default. A node of another
# lane than E2E_LANE asks for is an error for up and test (bring it down first).
RUNNING_LANE=
[[ -f $STATE/lane ]] && RUNNING_LANE=$(cat "$STATE/lane")
select_lane "${E2E_LANE:-${RUNNING_LANE:-}}"
if [[ -n $RUNNING_LANE && $RUNNING_LANE != "$LANE" ]]; then
	case ${1:-} in
	up | test)
		die "a node of lane $RUNNING_LANE runs, but E2E_LANE=$LANE; run 'harness.sh down' first"
		;;
	*) select_lane "$RUNNING_LANE" ;;
	esac
fi

# ---------------------------------------------------------------- prerequisites

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
	for c in iptables nsenter setsid ip jq curl openssl gcc; do
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

# ---------------------------------------------------------------- images

# build_images: the pause and busybox images as OCI tarballs, cached by content.
build_images() {
	mkdir -p "$IMG_CACHE"
	local work
	work=$(mktemp -d)
	# pause: one static binary.
	mkdir -p "$work/pause"
	gcc -static -Os -s -o "$work/pause/pause" "$E2E_DIR/lib/pause.c" || die "gcc -static of lib/pause.c failed"
	make_image "$work/pause" pause localhost/pause:e2e 65535 '["/pause"]'
	# busybox: the static busybox and one link per applet, a world-writable /tmp, and
	# passwd/group files so `id` and `whoami` resolve.
	local bb=$work/busybox
	mkdir -p "$bb/bin" "$bb/etc" "$bb/tmp" "$bb/proc" "$bb/sys" "$bb/dev"
	chmod 1777 "$bb/tmp"
	cp /bin/busybox "$bb/bin/busybox"
	local a
	for a in $(/bin/busybox --list); do [[ $a == busybox ]] || ln -sf busybox "$bb/bin/$a"; done
	printf 'root:x:0:0:root:/root:/bin/sh\nnobody:x:65534:65534:nobody:/nonexistent:/bin/sh\n' >"$bb/etc/passwd"
	printf 'root:x:0:\nnogroup:x:65534:\n' >"$bb/etc/group"
	make_image "$bb" busybox localhost/busybox:e2e 65534 null '["/bin/sh"]'
	rm -rf "$work"
}

# make_image ROOTFS FILE NAME USER ENTRYPOINT [CMD]: writes $IMG_CACHE/FILE.tar when its inputs changed.
make_image() {
	local rootfs=$1 file=$2 name=$3 user=$4 ep=$5 cmd=${6:-null} key
	key=$({
		tar --sort=name --owner=0 --group=0 --numeric-owner --mtime=@0 -C "$rootfs" -cf - . | sha256sum
		cat "$E2E_DIR/lib/oci-image.sh"
		echo "$name $user $ep $cmd"
	} | sha256sum | cut -d' ' -f1)
	if [[ -f $IMG_CACHE/$file.tar && -f $IMG_CACHE/$file.key && $(cat "$IMG_CACHE/$file.key") == "$key" ]]; then
		return 0
	fi
	"$E2E_DIR/lib/oci-image.sh" "$IMG_CACHE/$file.tar" "$name" "$user" "$rootfs" "$ep" "$cmd" >/dev/null
	echo "$key" >"$IMG_CACHE/$file.key"
	log "wrote image $name to $IMG_CACHE/$file.tar"
}

import_image() {
	"$CTRD_BIN/ctr" --address "$CTRD_SOCK" -n k8s.io images import --platform linux/amd64 --snapshotter overlayfs "$1" >>"$LOGS/ctr-import.log" 2>&1 ||
		die "ctr images import $1 failed (see $LOGS/ctr-import.log)"
}

# ---------------------------------------------------------------- host state

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

# ---------------------------------------------------------------- network

setup_network() {
	# Refuse to shadow anything the host already routes in our ranges.
	if ip -4 addr show | grep -qE 'inet 198\.1[89]\.'; then
		die "the host already has an address in 198.18.0.0/15; is another node up? (try: make e2e-down)"
	fi
	ip netns add "$NETNS"
	ip link add "$VETH_HOST" type veth peer name "$VETH_NODE"
	ip link set "$VETH_NODE" netns "$NETNS"
	ip addr add "$HOST_IP/30" dev "$VETH_HOST"
	ip link set "$VETH_HOST" up
	in_node ip link set lo up
	in_node ip addr add "$NODE_IP/30" dev "$VETH_NODE"
	in_node ip link set "$VETH_NODE" up
	# No default route: nothing in the node can reach beyond it. Service IPs need a route for
	# the node's own processes (the API server calls webhooks through their ClusterIP); kube-proxy
	# DNATs them before they leave, and the host answers no ARP for them.
	in_node ip route add "$SVC_CIDR" dev "$VETH_NODE"
}

in_node() { nsenter --net="$NETNS_PATH" -- "$@"; }

# ---------------------------------------------------------------- PKI and configs

# cert NAME CN O [SAN]: a key and a certificate signed by the cluster CA.
cert() {
	local name=$1 cn=$2 o=$3 san=${4:-} subj="/CN=$2"
	[[ -n $o ]] && subj="/O=$o/CN=$cn"
	openssl req -new -newkey rsa:2048 -nodes -keyout "$PKI/$name.key" -subj "$subj" -out "$PKI/$name.csr" 2>/dev/null
	{
		echo "basicConstraints=CA:FALSE"
		echo "keyUsage=critical,digitalSignature,keyEncipherment"
		if [[ -n $san ]]; then
			echo "extendedKeyUsage=serverAuth,clientAuth"
			echo "subjectAltName=$san"
		else
			echo "extendedKeyUsage=clientAuth"
		fi
	} >"$PKI/$name.ext"
	openssl x509 -req -in "$PKI/$name.csr" -CA "$PKI/ca.crt" -CAkey "$PKI/ca.key" -CAcreateserial \
		-days 30 -sha256 -extfile "$PKI/$name.ext" -out "$PKI/$name.crt" 2>/dev/null
	rm -f "$PKI/$name.csr" "$PKI/$name.ext"
}

# kubeconfig FILE CERT: a kubeconfig for the API server with the client certificate CERT.
kubeconfig() {
	local file=$1 c=$2
	cat >"$file" <<EOF
apiVersion: v1
kind: Config
clusters:
- name: e2e
  cluster:
    server: https://$NODE_IP:6443
    certificate-authority-data: $(base64 -w0 "$PKI/ca.crt")
users:
- name: $c
  user:
    client-certificate-data: $(base64 -w0 "$PKI/$c.crt")
    client-key-data: $(base64 -w0 "$PKI/$c.key")
contexts:
- name: e2e
  context: {cluster: e2e, user: $c}
current-context: e2e
EOF
	chmod 600 "$file"
}

write_pki() {
	mkdir -p "$PKI"
	openssl req -x509 -new -newkey rsa:2048 -nodes -keyout "$PKI/ca.key" -days 30 -sha256 \
		-subj "/CN=k8s-deputy-e2e-ca" -addext "basicConstraints=critical,CA:TRUE" \
		-addext "keyUsage=critical,keyCertSign,cRLSign,digitalSignature" -out "$PKI/ca.crt" 2>/dev/null
	cert apiserver kube-apiserver "" "IP:$NODE_IP,IP:$KUBE_SVC_IP,IP:127.0.0.1,DNS:localhost,DNS:kubernetes,DNS:kubernetes.default,DNS:kubernetes.default.svc,DNS:kubernetes.default.svc.cluster.local"
	cert kubelet-serving "system:node:$NODE_NAME" system:nodes "IP:$NODE_IP,DNS:$NODE_NAME"
	cert admin kubernetes-admin system:masters
	cert apiserver-kubelet-client kube-apiserver-kubelet-client system:masters
	cert kubelet "system:node:$NODE_NAME" system:nodes
	cert kube-controller-manager system:kube-controller-manager ""
	cert kube-scheduler system:kube-scheduler ""
	cert kube-proxy system:kube-proxy ""
	openssl genrsa -out "$PKI/sa.key" 2048 2>/dev/null
	openssl rsa -in "$PKI/sa.key" -pubout -out "$PKI/sa.pub" 2>/dev/null
	kubeconfig "$STATE/kubeconfig" admin
	local c
	for c in kubelet kube-controller-manager kube-scheduler kube-proxy; do kubeconfig "$STATE/$c.kubeconfig" "$c"; done
}

# write_containerd_config: the lane's containerd configuration on stdout: format version 2 for
# containerd 1.x, version 3 (the CRI plugin split in images and runtime) for 2.x.
write_containerd_config() {
	# This VM gives root no CAP_SYS_RESOURCE, so nothing may lower oom_score_adj below its own;
	# restrict_oom_score_adj clamps the kubelet's negative scores (sandboxes ask for -998)
	# instead of failing. Pods get the cgroupfs driver: there is no systemd.
	local rt='"io.containerd.grpc.v1.cri"' img='' version=2
	local cni_dirs="bin_dir = \"$CNI_BIN\"" sandbox='sandbox_image = "localhost/pause:e2e"'
	local snapshotter='snapshotter = "overlayfs"'
	if [[ $CONTAINERD_VERSION != debian && $CONTAINERD_VERSION != v1.* ]]; then
		# In version 3 the sandbox image and the snapshotter are image settings (below).
		version=3 rt="'io.containerd.cri.v1.runtime'" img="'io.containerd.cri.v1.images'"
		cni_dirs="bin_dirs = [\"$CNI_BIN\"]" sandbox='' snapshotter=''
	fi
	cat <<EOF
version = $version
root = "$CTRD/root"
state = "$CTRD/state"
disabled_plugins = ["io.containerd.snapshotter.v1.btrfs", "io.containerd.snapshotter.v1.zfs", "io.containerd.snapshotter.v1.devmapper", "io.containerd.snapshotter.v1.aufs"]
[grpc]
  address = "$CTRD_SOCK"
[ttrpc]
  address = "$CTRD_SOCK.ttrpc"
[plugins."io.containerd.internal.v1.opt"]
  path = "$CTRD/opt"
[plugins.$rt]
  $sandbox
  tolerate_missing_hugetlb_controller = true
  restrict_oom_score_adj = true
  disable_apparmor = true
  [plugins.$rt.containerd]
    default_runtime_name = "runc"
    $snapshotter
    [plugins.$rt.containerd.runtimes.runc]
      runtime_type = "io.containerd.runc.v2"
      [plugins.$rt.containerd.runtimes.runc.options]
        SystemdCgroup = false
        BinaryName = "$RUNC"
        Root = "$CTRD/runc"
  [plugins.$rt.cni]
    $cni_dirs
    conf_dir = "$STATE/cni/net.d"
EOF
	[[ -z $img ]] || cat <<EOF
[plugins.'io.containerd.nri.v1.nri']
  disable = true
[plugins.$img]
  snapshotter = "overlayfs"
  [plugins.$img.pinned_images]
    sandbox = "localhost/pause:e2e"
EOF
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
	cat >"$STATE/cni/net.d/10-e2e.conflist" <<EOF
{
  "cniVersion": "0.4.0",
  "name": "e2e",
  "plugins": [
    {
      "type": "bridge",
      "bridge": "$POD_BRIDGE",
      "isGateway": true,
      "isDefaultGateway": true,
      "ipMasq": false,
      "hairpinMode": true,
      "ipam": {
        "type": "host-local",
        "ranges": [[{"subnet": "$POD_CIDR", "gateway": "$POD_GW"}]],
        "dataDir": "$STATE/cni/ipam"
      }
    }
  ]
}
EOF
	write_containerd_config >"$STATE/etc/containerd.toml"
	# Pods get a resolver that answers nothing (no DNS runs on the node) instead of the host's.
	echo "nameserver 127.0.0.1" >"$STATE/etc/resolv.conf"
	cat >"$STATE/etc/kubelet.yaml" <<EOF
apiVersion: kubelet.config.k8s.io/v1beta1
kind: KubeletConfiguration
containerRuntimeEndpoint: unix://$CTRD_SOCK
imageServiceEndpoint: unix://$CTRD_SOCK
cgroupDriver: cgroupfs
cgroupRoot: /$CGROUP_ROOT
cgroupsPerQOS: true
failSwapOn: false
$(kubelet_cgroup_v1_option)
address: $NODE_IP
port: 10250
readOnlyPort: 0
healthzBindAddress: 127.0.0.1
healthzPort: 10248
tlsCertFile: $PKI/kubelet-serving.crt
tlsPrivateKeyFile: $PKI/kubelet-serving.key
authentication:
  anonymous: {enabled: false}
  webhook: {enabled: true}
  x509: {clientCAFile: $PKI/ca.crt}
authorization: {mode: Webhook}
clusterDomain: cluster.local
resolvConf: $STATE/etc/resolv.conf
podLogsDir: $STATE/pod-logs
volumePluginDir: $STATE/kubelet-plugins
imageGCHighThresholdPercent: 100
imageGCLowThresholdPercent: 99
evictionHard: {nodefs.available: "0%", nodefs.inodesFree: "0%", imagefs.available: "0%"}
protectKernelDefaults: false
serializeImagePulls: false
rotateCertificates: false
EOF
	cat >"$STATE/etc/kube-proxy.yaml" <<EOF
apiVersion: kubeproxy.config.k8s.io/v1alpha1
kind: KubeProxyConfiguration
clientConnection: {kubeconfig: $STATE/kube-proxy.kubeconfig}
hostnameOverride: $NODE_NAME
mode: iptables
clusterCIDR: $POD_CIDR
nodePortAddresses: [$(node_port_addresses)]
healthzBindAddress: 127.0.0.1:10256
metricsBindAddress: 127.0.0.1:10249
# Zero leaves the conntrack sysctls alone: some are global, and the host keeps its own.
conntrack: {maxPerCore: 0, min: 0, tcpEstablishedTimeout: 0s, tcpCloseWaitTimeout: 0s}
EOF
}

# ---------------------------------------------------------------- cgroups

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

# ---------------------------------------------------------------- daemons

# start NAME CMD...: runs CMD in the node's network namespace in its own session, logging to
# $LOGS/NAME.log; it inherits none of our stdin, stdout or stderr.
start() {
	local name=$1
	shift
	# A background job of a shell without job control is no process-group leader, so setsid
	# does not fork and $! is the daemon's PID.
	setsid nsenter --net="$NETNS_PATH" -- "$@" </dev/null >>"$LOGS/$name.log" 2>&1 9>&- &
	echo $! >"$PIDS/$name.pid"
	log "started $name (pid $!, log $LOGS/$name.log)"
}

# running PID: the process exists and has not exited (a zombie has: it waits only for its
# parent, here whatever adopted it, to reap it).
running() {
	local state
	state=$(awk '{print $3}' "/proc/$1/stat" 2>/dev/null) || return 1
	[[ -n $state && $state != Z ]]
}

alive() { [[ -f $PIDS/$1.pid ]] && running "$(cat "$PIDS/$1.pid")"; }

# wait_for WHAT SECONDS DAEMON CMD...: polls CMD until it succeeds, DAEMON dies, or the deadline.
wait_for() {
	local what=$1 secs=$2 daemon=$3
	shift 3
	local deadline=$((SECONDS + secs))
	until "$@" >/dev/null 2>&1; do
		if [[ -n $daemon ]] && ! alive "$daemon"; then
			tail -n 30 "$LOGS/$daemon.log" >&2 || true
			die "$daemon exited while waiting for $what (log: $LOGS/$daemon.log)"
		fi
		((SECONDS < deadline)) || {
			[[ -n $daemon ]] && tail -n 30 "$LOGS/$daemon.log" >&2
			die "timed out after ${secs}s waiting for $what"
		}
		sleep 0.5
	done
}

kubectl() { "$STATE/kubectl" --kubeconfig "$STATE/kubeconfig" "$@"; }

api_ready() {
	curl -sf --max-time 5 --cacert "$PKI/ca.crt" --cert "$PKI/admin.crt" --key "$PKI/admin.key" \
		"https://$NODE_IP:6443/readyz" | grep -qx ok
}

node_ready() {
	[[ $(kubectl get node "$NODE_NAME" -o jsonpath='{.status.conditions[?(@.type=="Ready")].status}') == True ]]
}

node_settled() {
	# Ready, the not-ready taint lifted by the node lifecycle controller, and the service
	# account controller has made the default ServiceAccount, so Pods can be created.
	node_ready &&
		[[ -z $(kubectl get node "$NODE_NAME" -o jsonpath='{.spec.taints}') ]] &&
		kubectl -n default get serviceaccount default &&
		kubectl -n default get configmap kube-root-ca.crt
}

start_all() {
	local k=$K8S_BIN
	mkdir -p "$LOGS" "$PIDS" "$STATE/etcd"
	start etcd "$ETCD_BIN/etcd" --name e2e --data-dir "$STATE/etcd" \
		--listen-client-urls http://127.0.0.1:2379 --advertise-client-urls http://127.0.0.1:2379 \
		--listen-peer-urls http://127.0.0.1:2380 --initial-advertise-peer-urls http://127.0.0.1:2380 \
		--initial-cluster e2e=http://127.0.0.1:2380 --listen-metrics-urls http://127.0.0.1:2381 \
		--unsafe-no-fsync --log-level warn
	wait_for "etcd /health" 60 etcd in_node curl -sf --max-time 2 http://127.0.0.1:2379/health

	start kube-apiserver "$k/kube-apiserver" \
		--etcd-servers=http://127.0.0.1:2379 \
		--bind-address=0.0.0.0 --advertise-address="$NODE_IP" --secure-port=6443 \
		--tls-cert-file="$PKI/apiserver.crt" --tls-private-key-file="$PKI/apiserver.key" \
		--client-ca-file="$PKI/ca.crt" \
		--kubelet-client-certificate="$PKI/apiserver-kubelet-client.crt" \
		--kubelet-client-key="$PKI/apiserver-kubelet-client.key" \
		--kubelet-certificate-authority="$PKI/ca.crt" \
		--kubelet-preferred-address-types=InternalIP \
		--service-account-issuer=https://kubernetes.default.svc.cluster.local \
		--service-account-key-file="$PKI/sa.pub" --service-account-signing-key-file="$PKI/sa.key" \
		--service-cluster-ip-range="$SVC_CIDR" \
		--authorization-mode=Node,RBAC \
		--enable-admission-plugins=NodeRestriction \
		--allow-privileged=true --profiling=false --v=1
	wait_for "kube-apiserver /readyz" 120 kube-apiserver api_ready

	mkdir -p "$CTRD"
	# containerd finds its shim on PATH: the lane's own first.
	start containerd env PATH="$CTRD_BIN:$PATH" "$CTRD_BIN/containerd" --config "$STATE/etc/containerd.toml"
	wait_for "containerd" 60 containerd "$CTRD_BIN/ctr" --address "$CTRD_SOCK" version
	import_image "$IMG_CACHE/pause.tar"
	import_image "$IMG_CACHE/busybox.tar"

	start kube-controller-manager "$k/kube-controller-manager" \
		--kubeconfig="$STATE/kube-controller-manager.kubeconfig" \
		--authentication-kubeconfig="$STATE/kube-controller-manager.kubeconfig" \
		--authorization-kubeconfig="$STATE/kube-controller-manager.kubeconfig" \
		--bind-address=127.0.0.1 --leader-elect=false --use-service-account-credentials=true \
		--service-account-private-key-file="$PKI/sa.key" --root-ca-file="$PKI/ca.crt" \
		--cluster-signing-cert-file="$PKI/ca.crt" --cluster-signing-key-file="$PKI/ca.key" \
		--service-cluster-ip-range="$SVC_CIDR" --profiling=false --v=1
	start kube-scheduler "$k/kube-scheduler" \
		--kubeconfig="$STATE/kube-scheduler.kubeconfig" \
		--authentication-kubeconfig="$STATE/kube-scheduler.kubeconfig" \
		--authorization-kubeconfig="$STATE/kube-scheduler.kubeconfig" \
		--bind-address=127.0.0.1 --leader-elect=false --profiling=false --v=1

	mkdir -p "$STATE/kubelet" "$STATE/pod-logs" "$STATE/kubelet-plugins"
	start kubelet "$k/kubelet" --config="$STATE/etc/kubelet.yaml" \
		--kubeconfig="$STATE/kubelet.kubeconfig" --root-dir="$STATE/kubelet" \
		--hostname-override="$NODE_NAME" --node-ip="$NODE_IP" --v=1
	start kube-proxy "$k/kube-proxy" --config="$STATE/etc/kube-proxy.yaml" --v=1

	wait_for "kubelet /healthz" 120 kubelet in_node curl -sf --max-time 2 http://127.0.0.1:10248/healthz
	wait_for "node $NODE_NAME Ready" 180 kubelet node_ready
	wait_for "node $NODE_NAME untainted with a default ServiceAccount" 120 kube-controller-manager node_settled
	wait_for "kube-proxy /healthz" 60 kube-proxy in_node curl -sf --max-time 2 http://127.0.0.1:10256/healthz
}

# ---------------------------------------------------------------- commands

is_up() {
	local d
	for d in "${DAEMONS[@]}"; do alive "$d" || return 1; done
	api_ready && node_ready
}

# One harness at a time: up and down take an exclusive lock (fd 9, closed in daemons).
lock() {
	mkdir -p "$CACHE_DIR"
	exec 9>"$CACHE_DIR/harness.lock"
	flock 9
}

# Marks this checkout's target directory used, and removes what older layouts and the least
# recently used checkouts left (only under $E2E_TARGETS, only when it is our default).
use_e2e_target() {
	[[ -z $CALLER_CARGO_TARGET_DIR ]] || return 0
	mkdir -p "$CARGO_TARGET_DIR"
	touch "$CARGO_TARGET_DIR"
	local old
	# The layout before one directory per checkout: a target directory at the top.
	for old in "$E2E_TARGETS/debug" "$E2E_TARGETS/x86_64-unknown-linux-gnu" "$E2E_TARGETS/CACHEDIR.TAG" "$E2E_TARGETS/.rustc_info.json"; do
		if [[ -e $old ]]; then
			rm -rf "$old"
			log "removed $old (the shared e2e target directory of an older layout)"
		fi
	done
	while read -r old; do
		rm -rf "$old"
		log "removed $old (the e2e target directory of a checkout not used recently)"
	done < <(find "$E2E_TARGETS" -mindepth 1 -maxdepth 1 -type d -regextype egrep -regex '.*/[0-9a-f]{16}' \
		-printf '%T@ %p\n' | sort -rn | tail -n +4 | cut -d' ' -f2-)
}

# build_lane: every binary of the lane and the node's images, built or reused.
build_lane() {
	log "$(lane_summary)"
	build_k8s
	build_etcd
	build_runtime
	build_images
}

cmd_build() {
	ensure_prereqs
	build_lane
}

cmd_up() {
	ensure_prereqs
	lock
	if [[ -d $STATE ]] && is_up; then
		log "the node is already up (state in $STATE)"
		echo "export KUBECONFIG=$STATE/kubeconfig"
		return 0
	fi
	if [[ -e $STATE || -e $NETNS_PATH ]] || ip link show "$VETH_HOST" >/dev/null 2>&1; then
		log "leftovers of an earlier node found; cleaning up first"
		do_down
	fi
	mkdir -p "$CACHE_DIR"
	build_lane
	local t0=$SECONDS
	mkdir -p "$STATE"
	echo "$LANE" >"$STATE/lane"
	# From here on, a failure or an interrupt undoes everything up did.
	trap 'rc=$?; trap - EXIT INT TERM; if [[ $rc != 0 ]]; then log "up failed (exit $rc); restoring the host"; do_down || true; fi; exit $rc' EXIT
	trap 'exit 130' INT TERM
	record_host_state
	cp "$K8S_BIN/kubectl" "$STATE/kubectl"
	setup_network
	setup_cgroups
	write_pki
	write_configs
	start_all
	trap - EXIT INT TERM
	log "node $NODE_NAME is Ready ($((SECONDS - t0)) s after the binaries were ready); logs in $LOGS"
	log "kubectl: $STATE/kubectl (same version as the node)"
	echo "export KUBECONFIG=$STATE/kubeconfig"
}

# stop NAME: SIGTERM, then SIGKILL after a deadline; returns once the process is gone.
stop() {
	local name=$1 pid
	[[ -f $PIDS/$name.pid ]] || return 0
	pid=$(cat "$PIDS/$name.pid")
	if running "$pid"; then
		kill -TERM "$pid" 2>/dev/null || true
		local deadline=$((SECONDS + 20))
		while running "$pid" && ((SECONDS < deadline)); do sleep 0.1; done
		if running "$pid"; then
			log "$name (pid $pid) ignored SIGTERM for 20 s; sending SIGKILL"
			kill -KILL "$pid" 2>/dev/null || true
		fi
		while running "$pid"; do sleep 0.1; done
		log "stopped $name (pid $pid)"
	fi
	rm -f "$PIDS/$name.pid"
}

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

cmd_down() {
	[[ $(id -u) == 0 ]] || die "down needs root"
	lock
	do_down
}

cmd_status() {
	if [[ -d $STATE ]] && is_up; then
		echo "up: export KUBECONFIG=$STATE/kubeconfig"
	else
		echo "down"
		return 1
	fi
}

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
		(cd "$E2E_DIR" && env -u KUBECONFIG cargo test --test node --test manifests --test cert_manager --test deputy --test deputy_ops)
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
	# rolling update, benchmark). All run, whatever the first says. The tests record what they
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
	suite_run deputy -- --test-threads=5
	# The tests that take the webhook down or rotate its certificate lock out the others themselves.
	suite_run deputy_ops -- --test-threads=4 "${ops_filter[@]}"
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

# ---------------------------------------------------------------- cert-manager

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

cmd_cert_manager() {
	[[ $(id -u) == 0 ]] || die "cert-manager needs root (it runs in the node's network namespace)"
	case ${1:-} in
	up)
		lock
		cert_manager_up
		;;
	down)
		lock
		cert_manager_stop
		if [[ -d $STATE ]] && is_up && [[ -f $CM_BIN/crds.yaml ]]; then
			# Deleting the CRDs deletes every cert-manager object left on the node.
			kubectl delete --ignore-not-found --timeout=60s -f "$CM_BIN/crds.yaml" >/dev/null ||
				die "deleting cert-manager's CRDs failed"
			log "deleted cert-manager's CRDs"
		fi
		;;
	*) die "usage: harness.sh cert-manager up|down" ;;
	esac
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

# test_images: the suite's own tool image (webhook server, socket binder) from its static binary.
test_images() {
	log "building the e2e tool binary"
	(cd "$E2E_DIR" && cargo build --bin deputy-e2e-tool) >&2
	local work bin=$CARGO_TARGET_DIR/x86_64-unknown-linux-gnu/debug/deputy-e2e-tool
	work=$(mktemp -d)
	mkdir -p "$work/bin" "$work/tmp"
	chmod 1777 "$work/tmp"
	strip -o "$work/bin/deputy-e2e-tool" "$bin"
	make_image "$work" e2e-tool localhost/deputy-e2e-tool:e2e 65534 '["/bin/deputy-e2e-tool"]'
	rm -rf "$work"
	import_image "$IMG_CACHE/e2e-tool.tar"
}

# cmd_image NAME USER ROOTFS ENTRYPOINT [CMD]: the project's own images, for Pods with
# imagePullPolicy: Never.
cmd_image() {
	[[ $# -ge 4 ]] || die "usage: harness.sh image NAME USER ROOTFS_DIR ENTRYPOINT_JSON [CMD_JSON]"
	if ! { [[ -d $STATE ]] && is_up; }; then die "no node runs (make e2e-up first)"; fi
	local file
	file=$(tr -c 'A-Za-z0-9.\n-' '_' <<<"$1")
	make_image "$3" "$file" "$1" "$2" "$4" "${5:-null}"
	import_image "$IMG_CACHE/$file.tar"
	log "imported $1 into the node"
}

main() {
	case ${1:-} in
	up | test | build) use_e2e_target ;;
	esac
	case ${1:-} in
	up) cmd_up ;;
	down) cmd_down ;;
	test) cmd_test ;;
	status) cmd_status ;;
	build) cmd_build ;;
	target-dir) echo "$CARGO_TARGET_DIR" ;;
	cert-manager)
		shift
		cmd_cert_manager "$@"
		;;
	deps) ensure_prereqs ;;
	image)
		shift
		cmd_image "$@"
		;;
	*)
		sed -n '2,18s/^# \{0,1\}//p' "$0" >&2
		exit 2
		;;
	esac
}

main "$@"
