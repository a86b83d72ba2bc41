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
#   harness.sh tool helm|actionlint
#                       build or reuse that Go tool (from its wrapper module modules/<name>-<version>/)
#                       and print the path of its binary
#   harness.sh restart DAEMON [DOWN_SECONDS]
#                       stop one daemon of the running node (kube-apiserver, kubelet, ...), keep it
#                       down that long, start it again and wait until it serves (the fault tests)
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
# shellcheck disable=SC2034 # read by templates/cni.conflist.tmpl (render)
POD_BRIDGE=dpe2e-br
# shellcheck disable=SC2034 # read by templates/cni.conflist.tmpl and kube-proxy.yaml.tmpl
POD_CIDR=198.18.128.0/24
# shellcheck disable=SC2034 # read by templates/cni.conflist.tmpl
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
APT_PACKAGES=(busybox-static iptables conntrack jq curl openssl iproute2 util-linux gcc libc6-dev binutils gettext-base)
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

# The harness's parts, one job each (tests/e2e/README.md, "Files"): lane and build first, then
# what up does in order, then down, cert-manager and the suite. They hold functions only.
# shellcheck source=lib/lanes.sh
source "$E2E_DIR/lib/lanes.sh"
# shellcheck source=lib/build.sh
source "$E2E_DIR/lib/build.sh"
# shellcheck source=lib/prereqs.sh
source "$E2E_DIR/lib/prereqs.sh"
# shellcheck source=lib/images.sh
source "$E2E_DIR/lib/images.sh"
# shellcheck source=lib/host.sh
source "$E2E_DIR/lib/host.sh"
# shellcheck source=lib/network.sh
source "$E2E_DIR/lib/network.sh"
# shellcheck source=lib/render.sh
source "$E2E_DIR/lib/render.sh"
# shellcheck source=lib/pki.sh
source "$E2E_DIR/lib/pki.sh"
# shellcheck source=lib/configs.sh
source "$E2E_DIR/lib/configs.sh"
# shellcheck source=lib/daemons.sh
source "$E2E_DIR/lib/daemons.sh"
# shellcheck source=lib/down.sh
source "$E2E_DIR/lib/down.sh"
# shellcheck source=lib/cert-manager.sh
source "$E2E_DIR/lib/cert-manager.sh"
# shellcheck source=lib/suite.sh
source "$E2E_DIR/lib/suite.sh"

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

# ---------------------------------------------------------------- commands

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

# cmd_image NAME USER ROOTFS ENTRYPOINT [CMD]: the project's own images, for Pods with
# imagePullPolicy: Never.
cmd_image() {
	[[ $# -ge 4 ]] || die "usage: harness.sh image NAME USER ROOTFS_DIR ENTRYPOINT_JSON [CMD_JSON]"
	if ! { [[ -d $STATE ]] && is_up; }; then die "no node runs (make e2e-up first)"; fi
	local file
	file=$(tr -c 'A-Za-z0-9.\n-' '_' <<<"$1")
	make_image "$3" "$file" "$1" "$2" "$4" "${5:-null}"
	import_image "$IMG_CACHE/$file.tar"
	# The image containerd now holds lists every platform written (a multi-platform image is
	# imported whole; the node unpacks and runs its own, amd64).
	local listed arch
	listed=$("$CTRD_BIN/ctr" --address "$CTRD_SOCK" -n k8s.io images ls "name==$1" | sed -n 2p)
	for arch in $(tr ',' '\n' <<<"$3" | sed -n 's/=.*//p'); do
		[[ $listed == *"linux/$arch"* ]] || die "containerd lists $1 without linux/$arch: $listed"
	done
	log "imported $1 into the node: $(grep -o 'linux/[^ ]*' <<<"$listed")"
}

# cmd_restart DAEMON [DOWN_SECONDS]: one daemon restarted under the running node.
cmd_restart() {
	[[ $(id -u) == 0 ]] || die "restart needs root (the daemons run as root)"
	if ! { [[ -d $STATE ]] && is_up; }; then die "no node runs (make e2e-up first)"; fi
	lock
	restart_daemon "$@"
}

# cmd_tool NAME: the Go tools the chart tests and make lint run, built like the lane's binaries.
cmd_tool() {
	local name=${1:-} pkg mod version
	case $name in
	helm) pkg=helm.sh/helm/v4/cmd/helm ;;
	actionlint) pkg=github.com/rhysd/actionlint/cmd/actionlint ;;
	*) die "usage: harness.sh tool helm|actionlint" ;;
	esac
	mod=$(find "$E2E_DIR/modules" -maxdepth 1 -type d -name "$name-v*" | sort | tail -1)
	[[ -n $mod ]] || die "no wrapper module modules/$name-<version>/"
	version=${mod##*/"$name"-}
	build_go "$name" "$version" "$CACHE_DIR/$name-$version" 0 "" "$pkg" >&2
	echo "$CACHE_DIR/$name-$version/$name"
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
	tool)
		shift
		cmd_tool "$@"
		;;
	image)
		shift
		cmd_image "$@"
		;;
	restart)
		shift
		cmd_restart "$@"
		;;
	*)
		sed -n '2,24s/^# \{0,1\}//p' "$0" >&2
		exit 2
		;;
	esac
}

main "$@"
