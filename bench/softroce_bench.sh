#!/bin/bash
# RDMA figures in the soft-RoCE VM, all from one boot of it (so they share one device and
# one machine state): perftest ib_write_bw (64 KiB, 1 MiB), ramshift send/receive of a
# 128 MiB mixed image (1/4 zero, 1/4 random, 1/2 text) over rdma:// (codec none at 1/2/4
# queues, zero, auto; none also into memory), stock QEMU's own `rdma:` migration of a paused
# 128 MiB guest whose RAM is that same image, and that guest through the ramshift bridge over
# rdma://. Everything but `ramshift bench` and `tune` is measured in rounds, one run of each
# per round, so the VM's drift within a boot hits all of them alike; the goals' ratios are
# printed both from the medians and round by round.
#   bench/softroce_bench.sh [RAMSHIFT_BINARY]      (RUNS=3: medians of that many runs;
#                                                  RXE_VM_MTU=9000: jumbo frames, RoCE MTU 4096)
# Prints a markdown table; docs/benchmarks/README.md keeps the last one.
set -euo pipefail
HERE=$(cd "$(dirname "$0")" && pwd)
RS=${1:-build/release/cli/ramshift}
QEMU=/usr/bin/qemu-system-x86_64
[ -x "$QEMU" ] || { apt-get install -y -q --no-install-recommends qemu-system-x86 >/dev/null; }
QDIRS=()
for d in /usr/share/qemu /usr/share/seabios /usr/lib/ipxe /usr/lib/x86_64-linux-gnu/qemu "$QEMU"; do
  [ -e "$d" ] && QDIRS+=(-d "$d")
done
# About 6 minutes per round of runs in a slow boot, plus the measurements before them.
export RXE_VM_TIMEOUT=${RXE_VM_TIMEOUT:-$((900 + ${RUNS:-3} * 420))}
exec bash "$HERE/../tests/softroce/rxe_vm.sh" -m 3072 -b "$RS" -b bash -b "$QEMU" "${QDIRS[@]}" \
  -f "$HERE/softroce/lib.sh" \
  "$HERE/softroce/inside.sh" "${RUNS:-3}"
