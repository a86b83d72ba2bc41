# shellcheck shell=bash
# Images: the node's pause and busybox images and the suite's tool image as OCI tarballs under
# $IMG_CACHE, each rebuilt only when its content changes (lib/oci-image.sh writes them), and their
# import into the node's containerd.
# Expects (harness.sh): E2E_DIR, IMG_CACHE, LOGS, CTRD_SOCK, CARGO_TARGET_DIR, log, die; and
# CTRD_BIN from select_lane (lib/lanes.sh).

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

# make_image ROOTFS FILE NAME USER ENTRYPOINT [CMD]: writes $IMG_CACHE/FILE.tar when its inputs
# changed. ROOTFS is a directory or ARCH=DIR,... (a multi-platform image, lib/oci-image.sh).
make_image() {
	local rootfs=$1 file=$2 name=$3 user=$4 ep=$5 cmd=${6:-null} key dirs dir
	IFS=, read -r -a dirs <<<"$rootfs"
	key=$({
		for dir in "${dirs[@]}"; do
			[[ $dir != *=* ]] || echo "${dir%%=*}"
			tar --sort=name --owner=0 --group=0 --numeric-owner --mtime=@0 -C "${dir#*=}" -cf - . | sha256sum
		done
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
