#!/usr/bin/env bash
# linux/arm64 builds on our amd64 machines, where rustup cannot fetch other targets: Debian
# trixie's Rust (rustc-web, with the aarch64 standard library libstd-rust-web-dev:arm64) and its
# aarch64 cross gcc (linker, and C for ring), in a trixie root that debootstrap installs once
# into a cache outside the repository. The build runs chrooted into it, in a mount namespace of
# its own (the repository, the cargo registry and the target cache are bind-mounted there, and
# vanish with it), offline, from the crates the host's cargo fetched. The sources are a copy
# (sync_tree, scripts/lib/sync-tree.sh) shared by every checkout, like the target cache.
#
#   scripts/cross.sh toolchain   install (or reuse) the trixie root; prints its path
#   scripts/cross.sh build       build deputy-agent and deputy-webhook (and the agent's
#                                examples) for aarch64-unknown-linux-gnu (static, release) into
#                                target/aarch64-unknown-linux-gnu/release/
#
# Needs root (debootstrap, chroot, mount namespaces) and, the first time, Debian's mirror.
set -euo pipefail

repo=$(cd "$(dirname "$0")/.." && pwd)
# shellcheck source=lib/sync-tree.sh
. "$repo/scripts/lib/sync-tree.sh"
CACHE=${DEPUTY_CROSS_CACHE:-$HOME/.cache/k8s-deputy/cross}
ROOT=$CACHE/trixie
MIRROR=${DEPUTY_DEBIAN_MIRROR:-http://deb.debian.org/debian}
TRIPLE=aarch64-unknown-linux-gnu
# What the root holds: changing this list (or the suite) rebuilds it.
PACKAGES=(rustc-web cargo-web libstd-rust-web-dev:arm64 gcc-aarch64-linux-gnu libc6-dev-arm64-cross ca-certificates)

log() { printf '[cross %s] %s\n' "$(date +%T)" "$*" >&2; }
die() {
	printf '[cross] ERROR: %s\n' "$*" >&2
	exit 1
}

need_host_tools() {
	[[ $(id -u) == 0 ]] || die "needs root (debootstrap, chroot and a mount namespace)"
	local tool missing=()
	for tool in debootstrap:debootstrap unshare:util-linux flock:util-linux chroot:coreutils; do
		command -v "${tool%%:*}" >/dev/null || missing+=("${tool#*:}")
	done
	[[ ${#missing[@]} -eq 0 ]] || die "missing host tools: apt-get install ${missing[*]}"
}

stamp() { printf '%s\n' trixie "${PACKAGES[@]}" | sha256sum | cut -d' ' -f1; }

cmd_toolchain() {
	need_host_tools
	if [[ -f $ROOT/.stamp && $(cat "$ROOT/.stamp") == "$(stamp)" ]]; then
		log "reusing the trixie root $ROOT"
		echo "$ROOT"
		return 0
	fi
	local t0=$SECONDS tmp=$ROOT.tmp
	log "installing a trixie root into $tmp (debootstrap from $MIRROR; cold this takes a few minutes)"
	rm -rf "$tmp" && mkdir -p "$CACHE"
	# In a mount namespace of its own: the /proc and /sys debootstrap mounts into the root go with it.
	unshare --mount --propagation private debootstrap --variant=minbase trixie "$tmp" "$MIRROR" >"$CACHE/debootstrap.log" 2>&1 ||
		die "debootstrap of trixie failed: see $CACHE/debootstrap.log"
	in_root "$tmp" sh -c "dpkg --add-architecture arm64 && apt-get update -qq &&
		DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends ${PACKAGES[*]}" \
		>"$CACHE/apt.log" 2>&1 ||
		die "installing ${PACKAGES[*]} into the trixie root failed: see $CACHE/apt.log (each of them is a trixie package: apt-get install <name> inside the root)"
	rm -rf "$ROOT" && mv "$tmp" "$ROOT"
	stamp >"$ROOT/.stamp"
	log "trixie root ready in $((SECONDS - t0)) s: $(in_root "$ROOT" rustc-web --version 2>/dev/null || in_root "$ROOT" rustc --version)"
	echo "$ROOT"
}

# in_root ROOT CMD...: CMD chrooted into ROOT, in a private mount namespace with /proc, /dev and
# the binds of $BINDS ("host:inside" pairs); nothing stays mounted after.
in_root() {
	local root=$1
	shift
	# shellcheck disable=SC2016 # expanded by the inner shell
	local script='set -e; root=$1; shift
		mount -t proc proc "$root/proc"
		mount --rbind /dev "$root/dev"
		cp /etc/resolv.conf "$root/etc/resolv.conf" 2>/dev/null || true
		for bind in ${BINDS:-}; do
			mkdir -p "$root/${bind#*:}"
			mount --bind "${bind%%:*}" "$root/${bind#*:}"
		done
		exec chroot "$root" "$@"'
	unshare --mount --propagation private sh -c "$script" in_root "$root" "$@"
}

# The trixie toolchain's commands: rustc-web installs them under a versioned name on some
# releases and as rustc/cargo on others.
toolchain_env() {
	# shellcheck disable=SC2016 # expanded inside the root
	echo 'for d in /usr/lib/rust-web/bin /usr/lib/rust-*/bin; do [ -d "$d" ] && PATH=$d:$PATH; done; export PATH'
}

cmd_build() {
	need_host_tools
	cmd_toolchain >/dev/null
	local t0=$SECONDS cargo_home=${CARGO_HOME:-$HOME/.cargo} work=$CACHE/shared-target src=$CACHE/src
	mkdir -p "$work"
	# One build at a time: the sources' copy and the target cache are shared.
	exec 9>"$CACHE/build.lock"
	flock 9
	sync_tree "$repo" "$src"
	# The crates, fetched by the host's cargo (the root builds offline).
	(cd "$repo" && cargo fetch --locked >/dev/null) || die "cargo fetch failed"
	log "building deputy-agent and deputy-webhook for $TRIPLE"
	# The registry's index and .crate files are shared; the sources are unpacked into a
	# directory of the root's own, so a host cargo unpacking the same crate at the same time
	# (make build runs both builds at once) never races with this one.
	mkdir -p "$CACHE/registry-src"
	BINDS="$src:/src $cargo_home/registry/index:/cargo/registry/index $cargo_home/registry/cache:/cargo/registry/cache $CACHE/registry-src:/cargo/registry/src $work:/target" in_root "$ROOT" sh -c "
		$(toolchain_env)
		cd /src && export CARGO_HOME=/cargo CARGO_TARGET_DIR=/target && unset MAKEFLAGS MFLAGS
		cargo build --offline --locked --release --target $TRIPLE -p deputy-agent --all-features --bins --examples &&
		cargo build --offline --locked --release --target $TRIPLE -p deputy-webhook" ||
		die "the $TRIPLE build failed (see above)"
	local out=$repo/target/$TRIPLE/release bin
	mkdir -p "$out"
	for bin in deputy-agent deputy-webhook; do
		install -m 0755 "$work/$TRIPLE/release/$bin" "$out/$bin"
	done
	# The agent's examples (the library app, ...), for the arm64 tests under qemu-user.
	mkdir -p "$out/examples"
	for bin in "$repo"/agent/examples/*.rs; do
		bin=${bin##*/}
		install -m 0755 "$work/$TRIPLE/release/examples/${bin%.rs}" "$out/examples/${bin%.rs}"
	done
	log "built in $((SECONDS - t0)) s: $(cd "$out" && stat -c '%n %s bytes' deputy-agent deputy-webhook | tr '\n' ' ')"
}

case ${1:-} in
toolchain) cmd_toolchain ;;
build) cmd_build ;;
*)
	sed -n '2,13s/^# \{0,1\}//p' "$0" >&2
	exit 2
	;;
esac
