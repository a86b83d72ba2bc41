# shellcheck shell=bash
# The variables it sets are read by harness.sh and lib/build.sh.
# shellcheck disable=SC2034
# The lanes: each a Kubernetes version with the etcd, containerd, runc and CNI plugins it runs
# on, every one built from its official Go module (modules/<component>-<version>/, cached under
# $CACHE_DIR by version). `E2E_LANE` names one; `up`, `test`, `demo` and `e2e-deploy` use
# `newest` when it is unset. A node records its lane ($STATE/lane), so `down` and `test` act on
# the node that runs whatever E2E_LANE says.
#
#   newest   the newest Kubernetes release, with the etcd line it recommends (kubeadm's
#            DefaultEtcdVersion) and containerd's long-term 2.3 line
#   oldest   the README's minimum Kubernetes, with the containerd line its release supports
#   debian12 Kubernetes 1.34 on Debian 12's containerd 1.6, runc and CNI plugins: the stack
#            before the lanes, kept for comparison by hand (CI does not run it)
LANES=(newest oldest debian12)
DEFAULT_LANE=newest

# select_lane NAME: sets LANE and the versions of its components; an unknown name exits 2.
select_lane() {
	local lane=${1:-$DEFAULT_LANE}
	case $lane in
	newest)
		K8S_VERSION=v1.37.2 ETCD_VERSION=v3.7.3
		CONTAINERD_VERSION=v2.3.7 RUNC_VERSION=v1.5.3 CNI_VERSION=v1.10.0
		;;
	oldest)
		K8S_VERSION=v1.30.14 ETCD_VERSION=v3.6.4
		CONTAINERD_VERSION=v1.7.35 RUNC_VERSION=v1.5.3 CNI_VERSION=v1.10.0
		;;
	debian12)
		K8S_VERSION=v1.34.4 ETCD_VERSION=v3.6.4
		CONTAINERD_VERSION=debian RUNC_VERSION=debian CNI_VERSION=debian
		;;
	*)
		printf '[e2e] ERROR: unknown lane %q (E2E_LANE); the lanes are: %s\n' "$lane" "${LANES[*]}" >&2
		exit 2
		;;
	esac
	LANE=$lane
	K8S_MINOR=$(cut -d. -f2 <<<"$K8S_VERSION")
	K8S_BIN=$CACHE_DIR/k8s-$K8S_VERSION
	ETCD_BIN=$CACHE_DIR/etcd-$ETCD_VERSION
	if [[ $CONTAINERD_VERSION == debian ]]; then
		CTRD_BIN=/usr/bin RUNC=/usr/sbin/runc CNI_BIN=/usr/lib/cni
	else
		CTRD_BIN=$CACHE_DIR/containerd-$CONTAINERD_VERSION
		RUNC=$CACHE_DIR/runc-$RUNC_VERSION/runc
		CNI_BIN=$CACHE_DIR/cni-$CNI_VERSION
	fi
	export E2E_LANE=$LANE E2E_K8S_VERSION=$K8S_VERSION
}

# lane_summary: one line naming the lane's versions.
lane_summary() {
	echo "lane $LANE: Kubernetes $K8S_VERSION, etcd $ETCD_VERSION, containerd $CONTAINERD_VERSION, runc $RUNC_VERSION, CNI plugins $CNI_VERSION"
}
