# shellcheck shell=bash
# Builds (or reuses) the lane's binaries from Go modules: Kubernetes, etcd, containerd, runc and
# the CNI plugins, each from its wrapper module modules/<component>-<version>/, into
# $CACHE_DIR/<component>-<version>/. A build goes to a .tmp directory first, so a failed one
# leaves the previous cache usable. Sourced by harness.sh after select_lane (lib/lanes.sh).

# The stamp names everything that changes the output: a different go.sum, version or flag
# set gives a different stamp, and so a rebuild.
build_stamp() {
	local mod_dir=$1
	shift
	{ cat "$mod_dir/go.mod" "$mod_dir/go.sum"; go version; printf '%s\n' "$@"; } | sha256sum | cut -d' ' -f1
}

k8s_ldflags() {
	local v=$K8S_VERSION minor
	minor=$(echo "$v" | cut -d. -f2)
	local f="-s -w"
	for pkg in k8s.io/component-base/version k8s.io/client-go/pkg/version; do
		f+=" -X $pkg.gitVersion=$v -X $pkg.gitMajor=1 -X $pkg.gitMinor=$minor"
		f+=" -X $pkg.gitTreeState=clean -X $pkg.buildDate=1970-01-01T00:00:00Z"
	done
	echo "$f"
}

K8S_CMDS=(kube-apiserver kube-controller-manager kube-scheduler kube-proxy kubelet kubectl)

# build_k8s: one `go build` of all six commands into $K8S_BIN.
build_k8s() {
	local mod="$E2E_DIR/modules/k8s-$K8S_VERSION" ldf stamp
	ldf=$(k8s_ldflags)
	stamp=$(build_stamp "$mod" "$ldf" "${K8S_CMDS[@]}")
	if [[ -f $K8S_BIN/.stamp && $(cat "$K8S_BIN/.stamp") == "$stamp" ]]; then
		log "reusing Kubernetes $K8S_VERSION binaries in $K8S_BIN"
		return 0
	fi
	log "building Kubernetes $K8S_VERSION (${K8S_CMDS[*]}) into $K8S_BIN; cold (empty Go caches) this takes about 5 min on 2 cores"
	local t0=$SECONDS pkgs=() c
	for c in "${K8S_CMDS[@]}"; do pkgs+=("k8s.io/kubernetes/cmd/$c"); done
	mkdir -p "$K8S_BIN.tmp"
	(cd "$mod" && GOTOOLCHAIN=local GOFLAGS="${GOFLAGS:-} -buildvcs=false" CGO_ENABLED=0 nice -n 10 \
		go build -trimpath -tags=selinux,notest,grpcnotrace -ldflags "$ldf" -o "$K8S_BIN.tmp/" "${pkgs[@]}") ||
		die "go build of Kubernetes $K8S_VERSION failed (see above); the previous cache, if any, is left as it was"
	rm -rf "$K8S_BIN" && mv "$K8S_BIN.tmp" "$K8S_BIN"
	echo "$stamp" >"$K8S_BIN/.stamp"
	log "built Kubernetes in $((SECONDS - t0)) s"
}

# build_etcd: etcd server from its own wrapper module.
build_etcd() {
	local mod="$E2E_DIR/modules/etcd-$ETCD_VERSION" stamp
	stamp=$(build_stamp "$mod" "-s -w")
	if [[ -f $ETCD_BIN/.stamp && $(cat "$ETCD_BIN/.stamp") == "$stamp" ]]; then
		log "reusing etcd $ETCD_VERSION in $ETCD_BIN"
		return 0
	fi
	log "building etcd $ETCD_VERSION into $ETCD_BIN"
	local t0=$SECONDS
	mkdir -p "$ETCD_BIN.tmp"
	(cd "$mod" && GOTOOLCHAIN=local GOFLAGS="${GOFLAGS:-} -buildvcs=false" CGO_ENABLED=0 nice -n 10 \
		go build -trimpath -ldflags "-s -w" -o "$ETCD_BIN.tmp/etcd" go.etcd.io/etcd/server/v3) ||
		die "go build of etcd $ETCD_VERSION failed (see above); the previous cache, if any, is left as it was"
	rm -rf "$ETCD_BIN" && mv "$ETCD_BIN.tmp" "$ETCD_BIN"
	echo "$stamp" >"$ETCD_BIN/.stamp"
	log "built etcd in $((SECONDS - t0)) s"
}

# build_go NAME VERSION DIR CGO TAGS PKG...: builds the packages of wrapper module
# modules/NAME-VERSION/ into DIR (one binary per package, named after it), unless DIR's stamp
# says they are built from the same inputs. CGO is 0 or 1; TAGS is a comma-separated list.
build_go() {
	local name=$1 version=$2 out=$3 cgo=$4 tags=$5
	shift 5
	local mod="$E2E_DIR/modules/$name-$version" stamp
	[[ -f $mod/go.mod ]] || die "no wrapper module $mod for $name $version"
	stamp=$(build_stamp "$mod" "cgo=$cgo" "tags=$tags" "$@")
	if [[ -f $out/.stamp && $(cat "$out/.stamp") == "$stamp" ]]; then
		log "reusing $name $version in $out"
		return 0
	fi
	log "building $name $version into $out"
	local t0=$SECONDS
	rm -rf "$out.tmp" && mkdir -p "$out.tmp"
	(cd "$mod" && GOTOOLCHAIN=local GOFLAGS="${GOFLAGS:-} -buildvcs=false" CGO_ENABLED=$cgo nice -n 10 \
		go build -trimpath -tags="$tags" -ldflags "-s -w" -o "$out.tmp/" "$@") ||
		die "go build of $name $version failed (see above); the previous cache, if any, is left as it was"
	rm -rf "$out" && mv "$out.tmp" "$out"
	echo "$stamp" >"$out/.stamp"
	log "built $name $version in $((SECONDS - t0)) s"
}

# build_runtime: containerd (with its runc shim and ctr), runc and the CNI plugins of the lane;
# nothing for a lane on Debian's packages.
build_runtime() {
	[[ $CONTAINERD_VERSION == debian ]] && return 0
	local ctrd=github.com/containerd/containerd
	[[ $CONTAINERD_VERSION == v1.* ]] || ctrd+=/v2
	# No btrfs or devmapper snapshotter (they need cgo and are disabled in the config anyway).
	build_go containerd "$CONTAINERD_VERSION" "$CTRD_BIN" 0 no_btrfs,no_devmapper \
		"$ctrd/cmd/containerd" "$ctrd/cmd/containerd-shim-runc-v2" "$ctrd/cmd/ctr"
	# runc needs cgo (its nsenter is C) and libseccomp for seccomp profiles.
	build_go runc "$RUNC_VERSION" "${RUNC%/runc}" 1 seccomp github.com/opencontainers/runc
	local cni=github.com/containernetworking/plugins/plugins
	build_go cni "$CNI_VERSION" "$CNI_BIN" 0 "" \
		"$cni/main/bridge" "$cni/ipam/host-local" "$cni/main/loopback" "$cni/meta/portmap"
}

# build_cert_manager: cert-manager's control loops (one binary, wrapper module cert-manager/) and
# its CRDs (deploy/crds of the same module version, concatenated in name order) into $CM_BIN.
build_cert_manager() {
	local mod="$E2E_DIR/cert-manager" stamp
	stamp=$(build_stamp "$mod" "-s -w" "$(cat "$mod/main.go")")
	if [[ -f $CM_BIN/.stamp && $(cat "$CM_BIN/.stamp") == "$stamp" ]]; then
		log "reusing cert-manager $CM_VERSION in $CM_BIN"
		return 0
	fi
	log "building cert-manager $CM_VERSION (controller, cainjector) into $CM_BIN; cold (empty Go caches) this takes about 2 min on 2 cores"
	local t0=$SECONDS dir f
	rm -rf "$CM_BIN.tmp" && mkdir -p "$CM_BIN.tmp"
	(cd "$mod" && GOTOOLCHAIN=local GOFLAGS="${GOFLAGS:-} -buildvcs=false" CGO_ENABLED=0 nice -n 10 \
		go build -trimpath -ldflags "-s -w" -o "$CM_BIN.tmp/cert-manager-e2e" .) ||
		die "go build of cert-manager failed (see above)"
	dir=$(cd "$mod" && GOTOOLCHAIN=local go list -m -f '{{.Dir}}' github.com/cert-manager/cert-manager) ||
		die "cannot find the cert-manager module's directory"
	for f in $(find "$dir/deploy/crds" -maxdepth 1 -name '*.yaml' -printf '%f\n' | LC_ALL=C sort); do
		printf -- '---\n# from github.com/cert-manager/cert-manager@%s/deploy/crds/%s\n' "$CM_VERSION" "$f"
		grep -v '^---$' "$dir/deploy/crds/$f"
	done >"$CM_BIN.tmp/crds.yaml"
	! grep -q '{{' "$CM_BIN.tmp/crds.yaml" || die "the CRDs in $dir/deploy/crds hold template lines"
	rm -rf "$CM_BIN" && mv "$CM_BIN.tmp" "$CM_BIN"
	echo "$stamp" >"$CM_BIN/.stamp"
	log "built cert-manager in $((SECONDS - t0)) s"
}
