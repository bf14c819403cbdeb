#!/bin/bash
# The in-process QEMU library against its peers, in one boot of the soft-RoCE VM: perftest's
# ib_write_bw and ib_read_bw (1 MiB), stock QEMU 7.2's own `rdma:`, QEMU multifd over plain
# tcp, and QEMU multifd under `ramshift qemu-exec` (pages by RDMA READ, 4 and 2 channels), each
# migrating a paused guest whose 128 MiB of RAM is an image of this machine's real files
# (bench/corpus.sh real-files), in rounds (one run of each per round), with the destination
# QEMU's CPU time.
#   bench/qemu_inproc_bench.sh [RAMSHIFT_BINARY]    (ROUNDS=3)
# Prints a markdown table; docs/benchmarks/README.md keeps the last one.
set -euo pipefail
HERE=$(cd "$(dirname "$0")" && pwd)
RS=$(readlink -f "${1:-build/release/cli/ramshift}")
LIB=$(readlink -f "$(dirname "$RS")/../lib/libramshift_qemu.so")
QEMU=/usr/bin/qemu-system-x86_64
[ -x "$QEMU" ] || apt-get install -y -q --no-install-recommends qemu-system-x86 >/dev/null
CACHE=${RAMSHIFT_CACHE:-$HOME/.cache/ramshift}
mkdir -p "$CACHE"
IMG=$CACHE/real-files-128M.img
RAMSHIFT=$RS bash "$HERE/corpus.sh" real-files "$IMG" 128M >&2
T=$(mktemp -d /tmp/inproc-bench.XXXXXX)
trap 'rm -rf "$T"' EXIT
ln -s "$IMG" "$T/guest.img"
QDIRS=()
for d in /usr/share/qemu /usr/share/seabios /usr/lib/ipxe /usr/lib/x86_64-linux-gnu/qemu "$QEMU"; do
  [ -e "$d" ] && QDIRS+=(-d "$d")
done
export RXE_VM_TIMEOUT=${RXE_VM_TIMEOUT:-$((600 + ${ROUNDS:-3} * 400))}
bash "$HERE/../tests/softroce/rxe_vm.sh" -m 3072 -b "$RS" -b bash -b ib_read_bw -b "$QEMU" "${QDIRS[@]}" \
  -d "$(dirname "$LIB")" -f "$HERE/softroce/lib.sh" -f "$T/guest.img" \
  "$HERE/softroce/inproc.sh" "${ROUNDS:-3}" "$LIB"
