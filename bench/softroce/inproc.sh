#!/bin/bash
# Runs inside the soft-RoCE VM for bench/qemu_inproc_bench.sh. $1 = rounds, $2 = the library.
# One round: perftest ib_write_bw and ib_read_bw (1 MiB), stock QEMU's own `rdma:`, QEMU multifd over plain
# tcp (no library), and QEMU multifd under `ramshift qemu-exec` (pages by RDMA READ) with 4 and
# 2 channels, all migrating the same paused guest whose RAM is the image in $IMG.
[ -n "${BASH_VERSION:-}" ] || exec bash "$0" "$@"
ROUNDS=${1:-3}; LIB=${2:?usage: inproc.sh ROUNDS LIBRARY}
. /opt/share/lib.sh
IMG=/opt/share/guest.img
echo "progress: $(ibv_devinfo -d rxe0 | grep -E 'active_mtu'), image $(du -h $IMG | cut -f1)"
CONFIGS=("plain 4" "lib 4" "lib 2")
declare -A T CPU RD
perf="" rperf="" qemu=""
for r in $(seq "$ROUNDS"); do
  v=$(perf_run 1048576); perf+="$v "
  echo "progress: round $r, ib_write_bw 1 MiB: $v MB/s"
  v=$(perf_run 1048576 ib_read_bw); rperf+="$v "
  echo "progress: round $r, ib_read_bw 1 MiB: $v MB/s"
  q=$(qemu_rdma_run); qemu+="$q "
  echo "progress: round $r, QEMU rdma: $q s"
  for cfg in "${CONFIGS[@]}"; do
    set -- $cfg
    t=$(inproc_run "$([ "$1" = lib ] && echo "$LIB" || echo plain)" "$2")
    T[$cfg]+="$t "; CPU[$cfg]+="$(cat /tmp/im.cpu 2>/dev/null || echo 0) "
    if [ "$1" = lib ]; then
      rd=$(dest_stat /tmp/imd.json rdma_bytes); RD[$cfg]+="${rd:-0} "
      echo "progress: destination: ${rd:-?} bytes by READ, $(dest_stat /tmp/imd.json plain_bytes) on the" \
        "sockets before the switch, registration $(grep -o '"registration_ms": [0-9.]*' /tmp/imd.json | grep -o '[0-9.]*$') ms"
    fi
    echo "progress: round $r, $cfg: $t s, destination CPU $(cat /tmp/im.cpu) s"
  done
done
med() { echo $1 | tr ' ' '\n' | median; }
PERF=$(med "$perf"); QEMU_S=$(med "$qemu"); PLAIN_CPU=$(med "${CPU[plain 4]}")
by=$((IMG_MIB * MIB))
echo
echo "| what | seconds for $IMG_MIB MiB (median) | MB/s | vs ib_write_bw ($PERF MB/s) | QEMU rdma: time over it | destination QEMU CPU s per GiB | vs plain multifd | runs (s) |"
echo "| --- | ---: | ---: | ---: | ---: | ---: | ---: | --- |"
echo "| ib_write_bw 1 MiB | | $PERF | 1.00x | | | | $perf|"
echo "| ib_read_bw 1 MiB (the library's operation) | | $(med "$rperf") | $(awk -v r="$(med "$rperf")" -v p="$PERF" 'BEGIN {printf "%.2fx", r / p}') | | | | $rperf|"
row() {  # LABEL SECONDS CPU_SECONDS RUNS
  awk -v l="$1" -v s="$2" -v c="$3" -v p="$PERF" -v q="$QEMU_S" -v pc="$PLAIN_CPU" -v by=$by -v runs="$4" 'BEGIN {
    gib = by / 1073741824
    printf "| %s | %.2f | %.1f | %.2fx | %s | %s | %s | %s|\n", l, s, by / s / 1e6, by / s / 1e6 / p,
      (q > 0 && s > 0) ? sprintf("%.2fx", q / s) : "", c == "" ? "" : sprintf("%.2f", c / gib),
      (c == "" || pc <= 0) ? "" : sprintf("%.2fx", c / pc), runs }'
}
row "QEMU 7.2 \`migrate rdma:\`" "$QEMU_S" "" "$qemu"
row "QEMU multifd 4 over tcp, no library" "$(med "${T[plain 4]}")" "$PLAIN_CPU" "${T[plain 4]}"
for ch in 4 2; do
  row "QEMU multifd $ch under qemu-exec ($(awk -v b="$(med "${RD[lib $ch]}")" -v t=$by 'BEGIN {printf "%.0f%%", 100 * b / t}') of the bytes by RDMA READ)" \
    "$(med "${T[lib $ch]}")" "$(med "${CPU[lib $ch]}")" "${T[lib $ch]}"
done
echo
echo "Per round, QEMU rdma: time over the library's (multifd 4): $(round_ratios qemu "$qemu" "${T[lib 4]}")"
echo "Per round, the library's (multifd 4) rate over ib_write_bw: $(round_ratios bw "$perf" "${T[lib 4]}")"
