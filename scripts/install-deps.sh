#!/usr/bin/env bash
# Installs the Debian packages the agent's tests and benchmarks use, only when missing.
# - netcat-openbsd: the K8sDeputy.jl shim's client (`nc -U`), the benchmark's peer and the README's
#   shell example.
# - util-linux: unshare and setpriv for the PID-namespace and mount-namespace tests.
# - openssl: the e2e harness writes the node's PKI with it.
# - shellcheck: `make lint` checks every shell script with it.
# - debootstrap: scripts/cross.sh installs the trixie root of the arm64 cross build with it.
# - qemu-user-static: runs the arm64 binaries in `make test` (scripts/test-arm64.sh), called
#   by path (no binfmt_misc registration needed).
# - python3 is on the machine already (the README's Python example is tested with it).
set -euo pipefail
need=()
command -v nc >/dev/null 2>&1 && nc -h 2>&1 | grep -q -- '-U' || need+=(netcat-openbsd)
command -v unshare >/dev/null 2>&1 || need+=(util-linux)
command -v setpriv >/dev/null 2>&1 || need+=(util-linux)
command -v openssl >/dev/null 2>&1 || need+=(openssl)
command -v shellcheck >/dev/null 2>&1 || need+=(shellcheck)
command -v debootstrap >/dev/null 2>&1 || need+=(debootstrap)
command -v qemu-aarch64-static >/dev/null 2>&1 || need+=(qemu-user-static)
if [ ${#need[@]} -eq 0 ]; then
  exit 0
fi
if [ "$(id -u)" -ne 0 ]; then
  echo "install-deps: missing ${need[*]}; run as root or install them: apt-get install ${need[*]}" >&2
  exit 1
fi
echo "install-deps: installing ${need[*]}" >&2
export DEBIAN_FRONTEND=noninteractive
apt-get update -qq >/dev/null
apt-get install -y -qq --no-install-recommends "${need[@]}" >/dev/null
