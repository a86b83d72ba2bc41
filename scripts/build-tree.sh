#!/usr/bin/env bash
# Runs `make TARGET` of this checkout in the build tree: one copy of the checkout at a fixed path
# outside it (sync_tree, scripts/lib/sync-tree.sh), shared by every checkout of this machine. Cargo
# keys what it compiled by path and file time, so every clean clone at a new path (CI's) would
# otherwise compile every crate again, several times (clippy, the release builds, the tests, the
# e2e crate); in the build tree only what changed since the last run compiles again.
#
#   scripts/build-tree.sh TARGET [VAR=VALUE...]   what the Makefile's targets that compile call
#
# One make at a time runs in the tree (a lock; a second one waits and says so). Afterwards the
# release binaries are copied back into the checkout's target/<triple>/release/, where `make build`
# promises them. DEPUTY_IN_PLACE=1 runs make in the checkout itself instead (nothing shared).
# The tree is $DEPUTY_TREE_CACHE (default ~/.cache/k8s-deputy/tree): removing it costs one cold build.
set -euo pipefail

repo=$(cd "$(dirname "$0")/.." && pwd)
CACHE=${DEPUTY_TREE_CACHE:-$HOME/.cache/k8s-deputy/tree}
TREE=$CACHE/src

log() { printf '[build-tree %s] %s\n' "$(date +%T)" "$*" >&2; }

[[ $# -ge 1 ]] || {
	sed -n '2,13s/^# \{0,1\}//p' "$0" >&2
	exit 2
}
command -v flock >/dev/null || {
	echo "[build-tree] ERROR: flock is missing: apt-get install util-linux" >&2
	exit 1
}

# Under the lock for the whole make, released when make ends: flock -o keeps it from the
# processes make starts (a node's daemons outlive make e2e-test, the lock must not).
if [[ -z ${DEPUTY_TREE_LOCKED:-} ]]; then
	mkdir -p "$CACHE"
	if ! flock -n "$CACHE/lock" true; then
		log "another make runs in the build tree $TREE; waiting for it"
	fi
	DEPUTY_TREE_LOCKED=1 exec flock -o "$CACHE/lock" "$0" "$@"
fi
unset DEPUTY_TREE_LOCKED

# shellcheck source=lib/sync-tree.sh
. "$repo/scripts/lib/sync-tree.sh"
t0=$SECONDS
sync_tree "$repo" "$TREE"
log "make $* in the build tree $TREE (synced from $repo in $((SECONDS - t0)) s)"
stamp=$(mktemp)
rc=0
DEPUTY_TREE=$repo make --no-print-directory -C "$TREE" "$@" || rc=$?

# The binaries make build promises in the checkout: after a build or test that passed all of
# them (a no-op build leaves them as the last run made them), after anything else those it built.
for triple in x86_64-unknown-linux-gnu aarch64-unknown-linux-gnu; do
	for bin in deputy-agent deputy-webhook; do
		from=$TREE/target/$triple/release/$bin to=$repo/target/$triple/release/$bin
		[[ -f $from ]] || continue
		[[ ($rc == 0 && ($1 == build || $1 == test)) || $from -nt $stamp ]] || continue
		if ! cmp -s "$from" "$to"; then
			mkdir -p "${to%/*}"
			install -m 0755 "$from" "$to"
		fi
	done
done
rm -f "$stamp"
exit "$rc"
