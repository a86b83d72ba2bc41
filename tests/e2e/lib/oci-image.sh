#!/usr/bin/env bash
# Writes an OCI image layout tarball from a directory, with no registry and no daemon:
#   oci-image.sh OUT.tar NAME USER ROOTFS_DIR ENTRYPOINT_JSON [CMD_JSON]   (null omits either)
# e.g. oci-image.sh busybox.tar localhost/busybox:e2e 65534 ./rootfs '["/bin/sh"]'
# One uncompressed layer (so its digest is also its diff_id), a config with a numeric User,
# and an index.json whose annotation names the image for `ctr images import`.
# The output is reproducible: same files in, same digests out.
set -euo pipefail

if [[ $# -lt 5 ]]; then
	echo "usage: $0 OUT.tar NAME USER ROOTFS_DIR ENTRYPOINT_JSON [CMD_JSON]" >&2
	exit 2
fi
out=$1 name=$2 user=$3 rootfs=$4 entrypoint=$5 cmd=${6:-null}
[[ $user =~ ^[0-9]+(:[0-9]+)?$ ]] || { echo "$0: USER must be numeric (uid or uid:gid), got '$user'" >&2; exit 2; }
[[ -d $rootfs ]] || { echo "$0: ROOTFS_DIR $rootfs is not a directory" >&2; exit 2; }
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

tar --sort=name --owner=0 --group=0 --numeric-owner --mtime=@0 --format=posix \
	--pax-option=exthdr.name=%d/PaxHeaders/%f,delete=atime,delete=ctime \
	-C "$rootfs" -cf "$work/layer" .
read -r layer_digest layer_size < <(put "$work/layer")

jq -n --arg user "$user" --argjson ep "$entrypoint" --argjson cmd "$cmd" --arg diff "$layer_digest" '{
	architecture: "amd64", os: "linux", created: "1970-01-01T00:00:00Z",
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
read -r manifest_digest manifest_size < <(put "$work/manifest")

jq -n --arg md "$manifest_digest" --argjson ms "$manifest_size" --arg name "$name" '{
	schemaVersion: 2, mediaType: "application/vnd.oci.image.index.v1+json",
	manifests: [{mediaType: "application/vnd.oci.image.manifest.v1+json", digest: $md, size: $ms,
		platform: {architecture: "amd64", os: "linux"},
		annotations: {"io.containerd.image.name": $name, "org.opencontainers.image.ref.name": $name}}]
}' >"$work/index.json"
echo '{"imageLayoutVersion":"1.0.0"}' >"$work/oci-layout"

tar --sort=name --owner=0 --group=0 --numeric-owner --mtime=@0 -C "$work" -cf "$out.tmp" oci-layout index.json blobs
mv "$out.tmp" "$out"
echo "$name $manifest_digest"
