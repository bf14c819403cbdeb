#!/bin/bash
[ -n "${BASH_VERSION:-}" ] || exec bash "$0" "$@"
# Runs inside the soft-RoCE VM: what memory windows cost rdma:// throughput. In rounds
# (default 5), one run each in turn: `ib_write_bw` at 1 MiB, then send/receive of the 128 MiB
# mixed bench image over 2 queues with --codec none into a file, with memory windows (the
# default: guest memory and receive rings opened by windows bound per queue pair) and with
# `--rdma-memory-windows false` on the receiver (region keys). Prints each round, then the
# medians and the same-round ratios. From the host:
#   tests/softroce/rxe_vm.sh -m 2048 -b build/release/cli/ramshift -b bash \
#     -f bench/softroce/lib.sh bench/softroce/windows_ab.sh [ROUNDS]
. /opt/share/lib.sh
bench_image
declare -A T
for r in $(seq "${1:-5}"); do
  bw=$(perf_run $MIB)
  w=$(rs_run 2 none)
  placed_w=$(grep -o '"placed": *[0-9]*' /tmp/tx.json | head -1 | grep -o '[0-9]*$')
  r_keys=$(RS_RX_FLAGS="--rdma-memory-windows false" rs_run 2 none)
  placed_r=$(grep -o '"placed": *[0-9]*' /tmp/tx.json | head -1 | grep -o '[0-9]*$')
  echo "round $r: ib_write_bw ${bw} MB/s; windows ${w} s (${placed_w:-0} pages by WRITE); region keys ${r_keys} s (${placed_r:-0} pages)"
  T[bw]+="$bw "; T[windows]+="$w "; T[region]+="$r_keys "
done
for k in bw windows region; do echo "$k: ${T[$k]}(median $(echo ${T[$k]} | tr ' ' '\n' | median))"; done
echo "windows vs ib_write_bw per round: $(round_ratios bw "${T[windows]}" "${T[bw]}")"
echo "region keys vs ib_write_bw per round: $(round_ratios bw "${T[region]}" "${T[bw]}")"
echo "windows / region keys time per round: $(round_ratios qemu "${T[windows]}" "${T[region]}")"
