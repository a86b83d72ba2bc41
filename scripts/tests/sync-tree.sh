#!/usr/bin/env bash
# The build tree's copy (scripts/lib/sync-tree.sh) keeps cargo's freshness right: a throwaway git
# checkout synced into a throwaway tree, then changed the ways a checkout changes. `make test`
# runs it first.
set -euo pipefail

here=$(cd "$(dirname "$0")" && pwd)
# shellcheck source=../lib/sync-tree.sh
. "$here/../lib/sync-tree.sh"

work=$(mktemp -d)
trap 'rm -rf "$work"' EXIT
repo=$work/checkout tree=$work/tree
failures=0
check() {
	local what=$1
	shift
	if "$@"; then
		printf 'ok   %s\n' "$what"
	else
		printf 'FAIL %s\n' "$what" >&2
		failures=$((failures + 1))
	fi
}
mtime() { stat -c %Y "$1"; }

mkdir -p "$repo/src" "$repo/scripts"
git -C "$repo" init -q
printf '/target\n/fuzz/corpus\n' >"$repo/.gitignore"
echo 'fn main() {}' >"$repo/src/main.rs"
echo 'pub fn lib() {}' >"$repo/src/lib.rs"
printf '#!/bin/sh\n' >"$repo/scripts/run.sh"
echo old >"$repo/src/gone.rs"
git -C "$repo" add -A
echo untracked >"$repo/src/new.rs"
mkdir -p "$repo/target/debug" && echo binary >"$repo/target/debug/app"

sync_tree "$repo" "$tree"
check "tracked and untracked files are copied" cmp -s "$repo/src/new.rs" "$tree/src/new.rs"
check "the checkout's target/ is not" test ! -e "$tree/target/debug/app"

# The copy's own build output, and files as a build leaves them.
mkdir -p "$tree/target/debug" "$tree/fuzz/corpus"
echo built >"$tree/target/debug/app"
echo seed >"$tree/fuzz/corpus/seed"
touch -d '2020-01-01' "$tree/src/main.rs" "$tree/src/lib.rs" "$tree/scripts/run.sh"
before=$(mtime "$tree/src/main.rs")

# A clean clone: the same content, every file time new.
touch "$repo/src/main.rs" "$repo/src/lib.rs"
echo 'pub fn lib() { changed() }' >"$repo/src/lib.rs"
chmod +x "$repo/scripts/run.sh"
rm "$repo/src/gone.rs"
echo stray >"$tree/src/stray.rs"
sync_tree "$repo" "$tree"
check "an unchanged file keeps its copy's time, however new the checkout's" test "$(mtime "$tree/src/main.rs")" = "$before"
check "a changed file is copied" cmp -s "$repo/src/lib.rs" "$tree/src/lib.rs"
check "with a time newer than any build before" test "$(mtime "$tree/src/lib.rs")" -gt "$before"
check "a changed mode is copied" test -x "$tree/scripts/run.sh"
check "a file the checkout deleted is removed" test ! -e "$tree/src/gone.rs"
check "a file the checkout never had is removed" test ! -e "$tree/src/stray.rs"
check "the tree's target/ is kept" test -f "$tree/target/debug/app"
check "what .gitignore ignores is kept" test -f "$tree/fuzz/corpus/seed"

[[ $failures == 0 ]] || {
	echo "sync-tree: $failures checks failed" >&2
	exit 1
}
echo "sync-tree: all checks passed"
