#!/usr/bin/env bash
# Writes an OCI image layout tarball from a directory, with no registry and no daemon:
#   oci-image.sh OUT.tar NAME USER ROOTFS ENTRYPOINT_JSON [CMD_JSON]   (null omits either)
# e.g. oci-image.sh busybox.tar localhost/busybox:e2e 65534 ./rootfs '["/bin/sh"]'
# ROOTFS is a directory (a linux/amd64 image) or, for a multi-platform image, a list of
# ARCH=DIR (amd64=./x86,arm64=./arm): then the image is an OCI image index with one manifest
# per linux/ARCH, as `docker buildx build --platform` pushes it.
# Each manifest has one uncompressed layer (so its digest is also its diff_id) and a config
# with a numeric User; index.json's annotation names the image for `ctr images import`.
# The output is reproducible: same files in, same digests out.
set -euo pipefail

if [[ $# -lt 5 ]]; then
	echo "usage: $0 OUT.tar NAME USER ROOTFS_DIR|ARCH=DIR,... ENTRYPOINT_JSON [CMD_JSON]" >&2
	exit 2
fi
out=$1 name=$2 user=$3 rootfs=$4 entrypoint=$5 cmd=${6:-null}
[[ $user =~ ^[0-9]+(:[0-9]+)?$ ]] || { echo "$0: USER must be numeric (uid or uid:gid), got '$user'" >&2; exit 2; }
platforms=()
if [[ $rootfs == *=* ]]; then
	IFS=, read -r -a platforms <<<"$rootfs"
else
	platforms=("amd64=$rootfs")
fi
for p in "${platforms[@]}"; do
	[[ $p =~ ^(amd64|arm64)=. ]] || { echo "$0: ROOTFS entry '$p' is not amd64=DIR or arm64=DIR" >&2; exit 2; }
	[[ -d ${p#*=} ]] || { echo "$0: ROOTFS_DIR ${p#*=} is not a directory" >&2; exit 2; }
done
command -v jq >/dev/null || { echo "$0: jq is missing (apt-get install jq)" >&2; exit 2; }

work=$(mktemp -d)
trap 'rm -rf "$work"' EXIT
blobs=$work/blobs/sha256
mkdir -p "$blobs"

# put FILE: moves FILE into blobs/ under its digest and prints "digest size".
put() {
	local d s
	d=$(sha256sum "$1" | cut -d' ' -f1)
	s=$(stat -c %s "$1")
	mv "$1" "$blobs/$d"
	echo "sha256:$d $s"
}

# image_manifest ARCH DIR: writes the layer, config and manifest blobs of linux/ARCH and prints
# "digest size" of the manifest.
image_manifest() {
	local arch=$1 dir=$2 layer_digest layer_size config_digest config_size
	tar --sort=name --owner=0 --group=0 --numeric-owner --mtime=@0 --format=posix \
		--pax-option=exthdr.name=%d/PaxHeaders/%f,delete=atime,delete=ctime \
		-C "$dir" -cf "$work/layer" .
	read -r layer_digest layer_size < <(put "$work/layer")
	jq -n --arg arch "$arch" --arg user "$user" --argjson ep "$entrypoint" --argjson cmd "$cmd" --arg diff "$layer_digest" '{
		architecture: $arch, os: "linux"} + (if $arch == "arm64" then {variant: "v8"} else {} end) + {
		created: "1970-01-01T00:00:00Z",
		config: ({User: $user, Env: ["PATH=/bin:/usr/bin:/sbin:/usr/sbin"], WorkingDir: "/"}
			+ (if $ep == null then {} else {Entrypoint: $ep} end)
			+ (if $cmd == null then {} else {Cmd: $cmd} end)),
		rootfs: {type: "layers", diff_ids: [$diff]},
		history: [{created: "1970-01-01T00:00:00Z", created_by: "tests/e2e/lib/oci-image.sh"}]
	}' >"$work/config"
	read -r config_digest config_size < <(put "$work/config")
	jq -n --arg cd "$config_digest" --argjson cs "$config_size" --arg ld "$layer_digest" --argjson ls "$layer_size" '{
		schemaVersion: 2, mediaType: "application/vnd.oci.image.manifest.v1+json",
		config: {mediaType: "application/vnd.oci.image.config.v1+json", digest: $cd, size: $cs},
		layers: [{mediaType: "application/vnd.oci.image.layer.v1.tar", digest: $ld, size: $ls}]
	}' >"$work/manifest"
	put "$work/manifest"
}

# The per-platform manifests, as descriptors.
descriptors=$work/descriptors
for p in "${platforms[@]}"; do
	read -r digest size < <(image_manifest "${p%%=*}" "${p#*=}")
	jq -n --arg d "$digest" --argjson s "$size" --arg arch "${p%%=*}" '{
		mediaType: "application/vnd.oci.image.manifest.v1+json", digest: $d, size: $s,
		platform: ({architecture: $arch, os: "linux"} + (if $arch == "arm64" then {variant: "v8"} else {} end))}' >>"$descriptors"
done
# shellcheck disable=SC2016 # jq variables, spliced into the jq programs below
names='{"io.containerd.image.name": $name, "org.opencontainers.image.ref.name": $name}'
if [[ ${#platforms[@]} -eq 1 ]]; then
	# One platform: index.json names its manifest (what `ctr images import` has always read).
	jq -s --arg name "$name" "{schemaVersion: 2, mediaType: \"application/vnd.oci.image.index.v1+json\",
		manifests: [.[0] + {annotations: $names}]}" "$descriptors" >"$work/index.json"
	image_digest=$(jq -r '.manifests[0].digest' "$work/index.json")
else
	# Several: the image is an image index blob listing them, and index.json names that index.
	jq -s '{schemaVersion: 2, mediaType: "application/vnd.oci.image.index.v1+json", manifests: .}' \
		"$descriptors" >"$work/image-index"
	read -r image_digest index_size < <(put "$work/image-index")
	jq -n --arg d "$image_digest" --argjson s "$index_size" --arg name "$name" "{schemaVersion: 2,
		mediaType: \"application/vnd.oci.image.index.v1+json\",
		manifests: [{mediaType: \"application/vnd.oci.image.index.v1+json\", digest: \$d, size: \$s,
			annotations: $names}]}" >"$work/index.json"
fi
echo '{"imageLayoutVersion":"1.0.0"}' >"$work/oci-layout"

tar --sort=name --owner=0 --group=0 --numeric-owner --mtime=@0 -C "$work" -cf "$out.tmp" oci-layout index.json blobs
mv "$out.tmp" "$out"
echo "$name $image_digest"
