#!/bin/bash
# Runs inside the soft-RoCE VM for bench/softroce_bench.sh. $1 = runs per configuration.
[ -n "${BASH_VERSION:-}" ] || exec bash "$0" "$@"
RUNS=${1:-3}
. /opt/share/lib.sh
bench_image

echo "progress: $(ibv_devinfo -d rxe0 | grep -E 'active_mtu')"
# ramshift bench: the same device's throughput through ramshift's pipeline and transport
# (no guest, no set-up on the clock: the figure to put beside ib_write_bw), then a short
# tune within a 40 s budget.
ramshift bench --server --listen rdma://$A:7100 >/tmp/bs.out 2>&1 &
BS=$!
for _ in $(seq 200); do grep -q listening /tmp/bs.out 2>/dev/null && break; sleep 0.05; done
declare -A BENCH
for q in 1 2; do
  runs=""
  for _ in $(seq "$RUNS"); do
    ramshift -q bench --to rdma://$A:7100 --queues $q --batch-size 1M --codec none --seconds 3 \
      --working-set 64M --json /tmp/b.json >/dev/null 2>/tmp/b.err || cat /tmp/b.err >&2
    runs+="$(grep -o '"gbytes_per_s": *[0-9.e+-]*' /tmp/b.json | head -1 | awk '{printf "%.1f", $2 * 1000}') "
  done
  BENCH[$q]="$(echo $runs | tr ' ' '\n' | median)|$runs"
  echo "progress: ramshift bench rdma $q queue(s): $runs MB/s"
done
ramshift tune --to rdma://$A:7100 --budget 40 --profile-out /tmp/tuned.json >/tmp/tune.out 2>&1 ||
  cat /tmp/tune.out >&2
kill $BS 2>/dev/null; wait $BS 2>/dev/null

# Everything compared below alternates run by run, one round after another: perftest's
# ib_write_bw, stock QEMU 7.2's own `rdma:` migration of a paused guest whose RAM is the image,
# ramshift send/receive of the image (rs_run: receiver verified; a file copy also compared),
# and that guest through the ramshift bridge. This VM drifts within a boot (a run can take
# half again as long as the same run minutes later); measured one after another, the peers
# share each round's state, and each goal's ratio is also taken round by round (the median of
# the per-round ratios beside the ratio of the medians).
#
# "2 zero" (zero pages skipped, nothing compressed) is what auto amounts to when compressing
# does not pay: the line to read auto against. A third field is --batch-pages (0 = the
# transport's choice: 256 pages = 1 MiB over rdma://); a fourth, "mem", receives into memory
# instead of a tmpfs file: like ib_write_bw, which writes into memory it registered, and like
# a migrated guest's RAM, without the double zeroing a tmpfs page costs on being pinned in
# this VM (docs/benchmarks/README.md, the soft-RoCE caveats). QEMU's destination writes a
# tmpfs file, so the QEMU comparison reads the file rows.
CONFIGS=("1 none" "2 none" "4 none" "2 zero" "2 auto" "2 none 0 mem")
declare -A RUNS_OF PERF_RUNS BR_RUNS
qruns=""
for r in $(seq "$RUNS"); do
  for size in 65536 1048576; do
    v=$(perf_run $size)
    PERF_RUNS[$size]+="$v "
    echo "progress: round $r, ib_write_bw $size: $v MB/s"
  done
  q=$(qemu_rdma_run)
  qruns+="$q "
  echo "progress: round $r, qemu rdma: $q s"
  for cfg in "${CONFIGS[@]}"; do
    set -- $cfg
    t=$(rs_run "$1" "$2" "${3:-0}" "${4:-file}")
    RUNS_OF[$cfg]+="$t "
    echo "progress: round $r, $cfg: $t s"
  done
  for ch in 0 2; do
    t=$(bridge_run ramshift $ch)
    BR_RUNS[$ch]+="$t "
    echo "progress: round $r, bridge multifd $ch: $t s"
  done
done
declare -A RS BR PERF
for cfg in "${CONFIGS[@]}"; do
  runs=${RUNS_OF[$cfg]}
  RS[$cfg]="$(echo $runs | tr ' ' '\n' | median)|$runs"
  echo "progress: ramshift $cfg: $runs s"
done
for ch in 0 2; do BR[$ch]="$(echo ${BR_RUNS[$ch]} | tr ' ' '\n' | median)|${BR_RUNS[$ch]}"; done
for size in 65536 1048576; do PERF[$size]=$(echo ${PERF_RUNS[$size]} | tr ' ' '\n' | median); done
QEMU_S=$(echo $qruns | tr ' ' '\n' | median)

best=$(printf '%s\n' "${PERF[@]}" | sort -g | tail -1)
vs_qemu() {  # seconds -> QEMU's time over it, e.g. "1.41x faster" or "0.94x (slower)"
  awk -v s="$1" -v q="$QEMU_S" 'BEGIN {if (s > 0 && q > 0) printf "%.2fx %s", q / s, (q >= s ? "faster" : "(slower)")}'
}
mbps() { awk -v s="$1" -v b=$((IMG_MIB * MIB)) 'BEGIN {if (s > 0) printf "%.1f", b / s / 1e6; else print "-"}'; }
echo
echo "| what | seconds for 128 MiB (median) | MB/s | vs ib_write_bw best ($best MB/s) | vs QEMU rdma: time | runs |"
echo "| --- | ---: | ---: | ---: | ---: | --- |"
echo "| ib_write_bw 64 KiB | | ${PERF[65536]} | | | ${PERF_RUNS[65536]}|"
echo "| ib_write_bw 1 MiB | | ${PERF[1048576]} | | | ${PERF_RUNS[1048576]}|"
echo "| QEMU 7.2 \`migrate rdma:\` (paused guest) | $QEMU_S | $(mbps "$QEMU_S") | $(awk -v s="$QEMU_S" -v b="$best" -v by=$((IMG_MIB * MIB)) 'BEGIN {if (s > 0) printf "%.2fx", by / s / 1e6 / b}') | 1.00x | $qruns |"
for cfg in "${CONFIGS[@]}"; do
  s=${RS[$cfg]%%|*}; runs=${RS[$cfg]#*|}
  set -- $cfg
  label="ramshift rdma:// --queues $1 --codec $2"
  [ "${3:-0}" != 0 ] && label+=" --batch-pages $3"
  qcol=$(vs_qemu "$s")
  [ "${4:-file}" = mem ] && label+=", into memory (digest-verified, no file)" && qcol="(QEMU writes a file)"
  echo "| $label | $s | $(mbps "$s") | $(awk -v s="$s" -v b="$best" -v by=$((IMG_MIB * MIB)) 'BEGIN {if (s > 0) printf "%.2fx", by / s / 1e6 / b}') | $qcol | $runs|"
done
for q in 1 2; do
  v=${BENCH[$q]%%|*}; runs=${BENCH[$q]#*|}
  echo "| ramshift bench rdma:// --queues $q --batch-size 1M --codec none (data phase only) | | $v | $(awk -v v="$v" -v b="$best" 'BEGIN {if (v > 0) printf "%.2fx", v / b}') | | $runs|"
done
for ch in 0 2; do
  s=${BR[$ch]%%|*}; runs=${BR[$ch]#*|}
  echo "| QEMU through the ramshift bridge over rdma://, multifd $ch, --codec auto | $s | $(mbps "$s") | $(awk -v s="$s" -v b="$best" -v by=$((IMG_MIB * MIB)) 'BEGIN {if (s > 0) printf "%.2fx", by / s / 1e6 / b}') | $(vs_qemu "$s") | $runs|"
done
# The goals round by round: each run against the peer measured in the same round.
BEST_RUNS=$(awk -v a="${PERF_RUNS[65536]}" -v b="${PERF_RUNS[1048576]}" 'BEGIN {
  n = split(a, x, " "); split(b, y, " "); for (i = 1; i <= n; i++) printf "%s ", (x[i] > y[i] ? x[i] : y[i]) }')
echo
echo "Per round (ratio of each run to its round's peer; median of the rounds):"
echo "- ib_write_bw best per round: ${BEST_RUNS}MB/s"
echo "- \`--queues 2 --codec none\` into a file, over ib_write_bw: $(round_ratios bw "$BEST_RUNS" "${RUNS_OF[2 none]}")"
echo "- \`--queues 2 --codec none\` into memory, over ib_write_bw: $(round_ratios bw "$BEST_RUNS" "${RUNS_OF[2 none 0 mem]}")"
echo "- QEMU's time over \`--queues 2 --codec zero\`'s: $(round_ratios qemu "$qruns" "${RUNS_OF[2 zero]}")"
echo "- QEMU's time over \`--queues 2 --codec auto\`'s: $(round_ratios qemu "$qruns" "${RUNS_OF[2 auto]}")"
echo
echo "ramshift tune --budget 40 over rdma:// (top of its table):"
grep -A6 "trials; the best" /tmp/tune.out | head -8
