#!/bin/bash
# ctest softroce.inproc: boots the soft-RoCE VM (rxe_vm.sh) with Debian's QEMU, the newer QEMU
# from bookworm-backports when it can be had (tests/lib/debian_backports_qemu.sh), ramshift, the
# in-process library and the kernel-less test guest (tests/qemu/guest/bare.c), and runs
# inproc_suite.sh (INPROC_ONLY=security: only inproc_security.sh's cases).
#   inproc_run.sh PATH_TO_RAMSHIFT [PATH_TO_LIBRAMSHIFT_QEMU]
set -uo pipefail
HERE=$(cd "$(dirname "$0")" && pwd)
RAMSHIFT=$(readlink -f "${1:?usage: inproc_run.sh RAMSHIFT [LIBRARY]}")
LIB=$(readlink -f "${2:-$(dirname "$RAMSHIFT")/../lib/libramshift_qemu.so}")
[ -f "$LIB" ] || { echo "inproc: no $LIB" >&2; exit 2; }
QEMU=/usr/bin/qemu-system-x86_64
[ -x "$QEMU" ] || { echo "inproc: needs $QEMU (qemu-system-x86)" >&2; exit 77; }
T=$(mktemp -d /tmp/inproc-run.XXXXXX)
trap 'rm -rf "$T"' EXIT
. "$HERE/../qemu/guest/build.sh"
build_bare_guest "$T/bare.elf" || exit 2
# The test credentials for inproc_security.sh (make_pki.sh, the openssl CLI), the destination's
# certificate naming the address the source dials; the folder's name in /opt/share/inproc_pki.
SERVER_SAN=IP:10.9.0.2 bash "$HERE/../security/make_pki.sh" "$T/pki" >"$T/make_pki.log" 2>&1 ||
  { echo "make_pki.sh failed:"; cat "$T/make_pki.log"; }
echo "$T/pki" >"$T/inproc_pki"
echo "${INPROC_ONLY:-}" >"$T/inproc_only"
PROBE=$(dirname "$RAMSHIFT")/../rdma/rdma_pull_probe
EXTRA=(-d "$T/pki" -f "$T/inproc_pki" -f "$T/inproc_only" -f "$HERE/inproc_security.sh")
[ -x "$PROBE" ] && EXTRA+=(-b "$(readlink -f "$PROBE")")
# INPROC_BASE_LIB=NAME=PATH[:NAME=PATH...]: other builds' libraries, for inproc_security.sh's
# registration figures (the same migrations with each of them and with LIB, alternated).
if [ -n "${INPROC_BASE_LIB:-}" ]; then
  mkdir -p "$T/base"; : >"$T/inproc_base"
  IFS=: read -r -a bases <<<"$INPROC_BASE_LIB"
  for b in "${bases[@]}"; do
    mkdir -p "$T/base/${b%%=*}" && cp "$(readlink -f "${b#*=}")" "$T/base/${b%%=*}/" &&
      echo "${b%%=*} $T/base/${b%%=*}/$(basename "${b#*=}")" >>"$T/inproc_base"
  done
  EXTRA+=(-d "$T/base" -f "$T/inproc_base")
fi
. "$HERE/qemu_in_vm.sh"
softroce_qemu_args "$QEMU"
softroce_newer_qemu "$T" || echo "inproc: no newer QEMU from backports; Debian's QEMU only" >&2
RXE_VM_TIMEOUT=${RXE_VM_TIMEOUT:-1500} bash "$HERE/rxe_vm.sh" -m 2048 -b "$RAMSHIFT" -b bash \
  "${QARGS[@]}" "${EXTRA[@]}" -d "$(dirname "$LIB")" -f "$T/bare.elf" \
  "$HERE/inproc_suite.sh" "$LIB" /opt/share/bare.elf "${NEWER[@]}"
