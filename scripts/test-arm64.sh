#!/usr/bin/env bash
# The linux/arm64 builds (`make build` puts them in target/aarch64-unknown-linux-gnu/release/)
# tested on this amd64 machine under qemu-user, called by path (no binfmt_misc needed):
#   1. the agent's whole integration suite against the arm64 agent and library app: the relay
#      against a K8sDeputy.jl-style server and a library app, `run` as PID 1 in a PID namespace
#      (reaping, forwarding, relaying, exit codes), `install`, the scratch-root test, the drain;
#   2. `deputy-webhook inject` over every manifest of the inject fixtures and every Pod of the
#      golden cases: stdout, stderr and exit status identical to the amd64 build's;
#   3. the webhook's process tests through the arm64 server: TLS admission round trips (HTTP/1.1
#      and HTTP/2), SIGTERM draining, and the command line.
# A missing build or emulator is an error, never a skip: `make test` proves the arm64 builds.
set -euo pipefail

repo=$(cd "$(dirname "$0")/.." && pwd)
ARM=$repo/target/aarch64-unknown-linux-gnu/release
AMD=$repo/target/x86_64-unknown-linux-gnu/release
CARGO=${CARGO:-cargo}

log() { printf '[test-arm64 %s] %s\n' "$(date +%T)" "$*" >&2; }
die() {
	printf '[test-arm64] ERROR: %s\n' "$*" >&2
	exit 1
}

QEMU=$(command -v qemu-aarch64-static) || die "qemu-aarch64-static is missing: apt-get install qemu-user-static (make deps does)"

# e_machine of an ELF file: 183 (0xb7) is AArch64, 62 (0x3e) x86-64.
elf_machine() { od -An -t u2 -j 18 -N 2 "$1" | tr -d ' '; }
for bin in "$ARM/deputy-agent" "$ARM/deputy-webhook" "$ARM/examples/deputy-app"; do
	[[ -x $bin ]] || die "$bin is missing: run make build (scripts/cross.sh build)"
	[[ $(elf_machine "$bin") == 183 ]] || die "$bin is not an AArch64 executable"
done
[[ -x $AMD/deputy-webhook ]] || die "$AMD/deputy-webhook is missing: run make build"
version=$("$QEMU" "$ARM/deputy-agent" --version) || die "the arm64 agent does not run under $QEMU"
log "under $QEMU: $version, $("$QEMU" "$ARM/deputy-webhook" --version)"

log "1/3 the agent's integration suite, arm64 binaries"
DEPUTY_AGENT_UNDER_TEST=$ARM DEPUTY_AGENT_RUNNER=$QEMU \
	"$CARGO" test --workspace --all-features --test integration

log "2/3 inject: the arm64 output against the amd64 output"
work=$(mktemp -d)
trap 'rm -rf "$work"' EXIT
# The golden cases' Pods (and their namespaces) as manifests inject reads.
python3 - "$repo/webhook/tests/fixtures/golden" "$work" <<'EOF'
import json, pathlib, sys
src, out = pathlib.Path(sys.argv[1]), pathlib.Path(sys.argv[2])
for case in sorted(src.glob("*.input.json")):
    data = json.loads(case.read_text())
    pod = dict(data["pod"], apiVersion="v1", kind="Pod")
    if data.get("namespace"):
        pod.setdefault("metadata", {}).setdefault("namespace", data["namespace"])
    (out / (case.name.removesuffix(".input.json") + ".golden.json")).write_text(json.dumps(pod))
EOF
# Bad input too: the errors must be the same.
printf 'apiVersion: v1\nkind: Pod\nmetadata: {name: x\n' >"$work/unclosed.bad.yaml"
printf 'kind: Pod\nspec: [1, 2\n' >"$work/flow.bad.yaml"
cases=0 differ=0
for manifest in "$repo"/webhook/tests/fixtures/inject/*.in.* "$work"/*.golden.json "$work"/*.bad.yaml; do
	name=${manifest##*/}
	for arch in amd64 arm64; do
		if [[ $arch == amd64 ]]; then run=("$AMD/deputy-webhook"); else run=("$QEMU" "$ARM/deputy-webhook"); fi
		rc=0
		env -u DEPUTY_WEBHOOK_CONFIG "${run[@]}" inject -f "$manifest" --agent-image ghcr.io/k8s-deputy/deputy-agent:0.1.0 \
			>"$work/$name.$arch.out" 2>"$work/$name.$arch.err" || rc=$?
		echo "$rc" >"$work/$name.$arch.rc"
	done
	cases=$((cases + 1))
	# The log lines' timestamps differ, nothing else may.
	sed -Ei 's/^[0-9]{4}-[0-9]{2}-[0-9]{2}T[0-9:.]+Z //' "$work/$name.amd64.err" "$work/$name.arm64.err"
	for part in out err rc; do
		if ! cmp -s "$work/$name.amd64.$part" "$work/$name.arm64.$part"; then
			differ=$((differ + 1))
			log "$name: the $part differs between amd64 and arm64:"
			diff -u "$work/$name.amd64.$part" "$work/$name.arm64.$part" >&2 || true
		fi
	done
done
injected=$(grep -l 'deputy-agent' "$work"/*.arm64.out | wc -l)
failed=$(grep -L '^0$' "$work"/*.arm64.rc | wc -l)
[[ $differ == 0 ]] || die "$differ outputs of $cases manifests differ between amd64 and arm64"
[[ $injected -gt 0 && $failed -ge 2 ]] || die "the comparison saw no injection or no refusal: it proves nothing"
log "inject: $cases manifests, identical on both ($injected with an injection, $failed refused)"

log "3/3 the webhook's process tests through the arm64 server"
DEPUTY_WEBHOOK_UNDER_TEST=$ARM/deputy-webhook DEPUTY_WEBHOOK_RUNNER=$QEMU \
	"$CARGO" test --workspace --all-features --test server --test cli
log "the arm64 builds pass"
