# shellcheck shell=bash
# sync_tree REPO DIR: REPO's source files (tracked, and untracked but not ignored) copied into
# DIR, a copy at a fixed path that builds run in (scripts/build-tree.sh, scripts/cross.sh). One
# copy serves every checkout, so cargo's freshness must not come from the checkout's file times (a
# clean clone's are all new): a file whose content or mode changed is copied with the time of now,
# one that did not keeps its copy's time, so cargo rebuilds exactly what changed, and nothing
# else, whichever checkout ran last. Files the checkout no longer has are removed, except what
# its .gitignore ignores (the copy's own build output) and any directory named target.
sync_tree() {
	local repo=$1 dir=$2 listed present file mode
	mkdir -p "$dir"
	listed=$(mktemp)
	present=$(mktemp)
	(cd "$repo" && { git ls-files --cached --others --exclude-standard 2>/dev/null ||
		find . -name target -prune -o -name .git -prune -o -type f -print | sed 's|^\./||'; }) |
		grep -v '^target/' | sort -u >"$listed"
	while IFS= read -r file; do
		# Deleted in the worktree but still in the index: the copy loses it too (below).
		[[ -f $repo/$file ]] || continue
		printf '%s\n' "$file" >>"$present"
		if ! cmp -s "$repo/$file" "$dir/$file"; then
			mkdir -p "$(dirname "$dir/$file")"
			rm -f "$dir/$file"
			cp "$repo/$file" "$dir/$file"
		elif mode=$(stat -c %a "$repo/$file") && [[ $mode != "$(stat -c %a "$dir/$file")" ]]; then
			chmod "$mode" "$dir/$file"
		fi
	done <"$listed"
	# What the copy has and the checkout no longer does, unless it is build output.
	local extra
	extra=$(mktemp)
	(cd "$dir" && find . -name target -prune -o -type f -print | sed 's|^\./||' | sort) |
		comm -23 - "$present" >"$extra"
	if [[ -s $extra ]] && git -C "$repo" rev-parse --git-dir >/dev/null 2>&1; then
		# Keep what the checkout's .gitignore ignores (fuzz corpora, build output).
		local kept
		kept=$(mktemp)
		git -C "$repo" check-ignore --no-index --stdin <"$extra" >"$kept" || true
		comm -23 "$extra" <(sort "$kept") >"$extra.rm"
		mv "$extra.rm" "$extra"
		rm -f "$kept"
	fi
	while IFS= read -r file; do
		rm -f "$dir/$file"
	done <"$extra"
	rm -f "$listed" "$present" "$extra"
}
