#!/bin/bash
# Runs inside the soft-RoCE VM for bench/softroce_bench.sh. $1 = runs per configuration.
[ -n "${BASH_VERSION:-}" ] || exec bash "$0" "$@"
RUNS=${1:-3}
. /opt/share/lib.sh
bench_image

echo "progress: $(ibv_devinfo -d rxe0 | grep -E 'active_mtu')"
# perftest: the device's own RDMA WRITE bandwidth (MB/sec in perftest is 2^20 bytes/s).
declare -A PERF
for size in 65536 1048576; do
  iters=$((size == 65536 ? 400 : 60))
  line=""
  for attempt in 1 2 3; do  # the client may knock before the server listens (TCG is slow)
    timeout 120 ib_write_bw -d rxe0 -R -s $size -n $iters -F >/tmp/perf-srv.log 2>&1 &
    srv=$!
    sleep 4
    line=$(timeout 120 ib_write_bw -d rxe1 -R -s $size -n $iters -F $A 2>/tmp/perf-cli.log |
           awk -v s=$size '$1==s {print $4}')
    kill $srv 2>/dev/null; wait $srv 2>/dev/null
    [ -n "$line" ] && break
    echo "progress: ib_write_bw attempt $attempt failed: $(tail -2 /tmp/perf-cli.log)"
  done
  PERF[$size]=$(awk -v v="${line:-0}" 'BEGIN {printf "%.1f", v * 1.048576}')  # MB/s (10^6)
  echo "progress: ib_write_bw $size: ${PERF[$size]} MB/s"
done

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
    ramshift -q bench --to rdma://$A:7100 --queues $q --message-size 1M --codec none --seconds 3 \
      --working-set 64M --json /tmp/b.json >/dev/null 2>/tmp/b.err || cat /tmp/b.err >&2
    runs+="$(grep -o '"gbytes_per_s": *[0-9.e+-]*' /tmp/b.json | head -1 | awk '{printf "%.1f", $2 * 1000}') "
  done
  BENCH[$q]="$(echo $runs | tr ' ' '\n' | median)|$runs"
  echo "progress: ramshift bench rdma $q queue(s): $runs MB/s"
done
ramshift tune --to rdma://$A:7100 --budget 40 --profile-out /tmp/tuned.json >/tmp/tune.out 2>&1 ||
  cat /tmp/tune.out >&2
kill $BS 2>/dev/null; wait $BS 2>/dev/null

# ramshift: seconds for the whole image (rs_run: receiver verified; a file copy also compared).
declare -A RS
# "2 zero" (zero pages skipped, nothing compressed) is what auto amounts to when compressing
# does not pay: the line to read auto against. A third field is --batch-pages (0 = the
# transport's choice: 256 pages = 1 MiB over rdma://); a fourth, "mem", receives into memory
# instead of a tmpfs file: like ib_write_bw, which writes into memory it registered, and like
# a migrated guest's RAM, without the double zeroing a tmpfs page costs on being pinned in
# this VM (see "Where the VM's CPU goes"). QEMU's destination below writes a tmpfs file, so
# the QEMU comparison reads the file rows. The configurations alternate run by run, so that
# this VM's drift within a boot hits all alike.
CONFIGS=("1 none" "2 none" "4 none" "2 zero" "2 auto" "2 none 0 mem")
declare -A RUNS_OF
for r in $(seq "$RUNS"); do
  for cfg in "${CONFIGS[@]}"; do
    set -- $cfg
    t=$(rs_run "$1" "$2" "${3:-0}" "${4:-file}")
    RUNS_OF[$cfg]+="$t "
    echo "progress: ramshift round $r, $cfg: $t s"
  done
done
for cfg in "${CONFIGS[@]}"; do
  runs=${RUNS_OF[$cfg]}
  RS[$cfg]="$(echo $runs | tr ' ' '\n' | median)|$runs"
  echo "progress: ramshift $cfg: $runs s"
done

# Stock QEMU 7.2 `rdma:` migration of a paused guest whose RAM is the same image.
qruns=""
for _ in $(seq "$RUNS"); do qruns+="$(qemu_rdma_run) "; echo "progress: qemu rdma: $qruns s"; done
QEMU_S=$(echo $qruns | tr ' ' '\n' | median)

# The same paused guest through the ramshift QEMU bridge over rdma://.
declare -A BR
for ch in 0 2; do
  runs=""
  for _ in $(seq "$RUNS"); do runs+="$(bridge_run ramshift $ch) "; done
  BR[$ch]="$(echo $runs | tr ' ' '\n' | median)|$runs"
  echo "progress: bridge rdma:// multifd $ch: $runs s"
done

best=$(printf '%s\n' "${PERF[@]}" | sort -g | tail -1)
vs_qemu() {  # seconds -> QEMU's time over it, e.g. "1.41x faster" or "0.94x (slower)"
  awk -v s="$1" -v q="$QEMU_S" 'BEGIN {if (s > 0 && q > 0) printf "%.2fx %s", q / s, (q >= s ? "faster" : "(slower)")}'
}
mbps() { awk -v s="$1" -v b=$((128 * MIB)) 'BEGIN {if (s > 0) printf "%.1f", b / s / 1e6; else print "-"}'; }
echo
echo "| what | seconds for 128 MiB (median) | MB/s | vs ib_write_bw best ($best MB/s) | vs QEMU rdma: time | runs |"
echo "| --- | ---: | ---: | ---: | ---: | --- |"
echo "| ib_write_bw 64 KiB | | ${PERF[65536]} | | | |"
echo "| ib_write_bw 1 MiB | | ${PERF[1048576]} | | | |"
echo "| QEMU 7.2 \`migrate rdma:\` (paused guest) | $QEMU_S | $(mbps "$QEMU_S") | $(awk -v s="$QEMU_S" -v b="$best" -v by=$((128 * MIB)) 'BEGIN {if (s > 0) printf "%.2fx", by / s / 1e6 / b}') | 1.00x | $qruns |"
for cfg in "${CONFIGS[@]}"; do
  s=${RS[$cfg]%%|*}; runs=${RS[$cfg]#*|}
  set -- $cfg
  label="ramshift rdma:// --queues $1 --codec $2"
  [ "${3:-0}" != 0 ] && label+=" --batch-pages $3"
  qcol=$(vs_qemu "$s")
  [ "${4:-file}" = mem ] && label+=", into memory (digest-verified, no file)" && qcol="(QEMU writes a file)"
  echo "| $label | $s | $(mbps "$s") | $(awk -v s="$s" -v b="$best" -v by=$((128 * MIB)) 'BEGIN {if (s > 0) printf "%.2fx", by / s / 1e6 / b}') | $qcol | $runs|"
done
for q in 1 2; do
  v=${BENCH[$q]%%|*}; runs=${BENCH[$q]#*|}
  echo "| ramshift bench rdma:// --queues $q --message-size 1M --codec none (data phase only) | | $v | $(awk -v v="$v" -v b="$best" 'BEGIN {if (v > 0) printf "%.2fx", v / b}') | | $runs|"
done
for ch in 0 2; do
  s=${BR[$ch]%%|*}; runs=${BR[$ch]#*|}
  echo "| QEMU through the ramshift bridge over rdma://, multifd $ch, --codec auto | $s | $(mbps "$s") | $(awk -v s="$s" -v b="$best" -v by=$((128 * MIB)) 'BEGIN {if (s > 0) printf "%.2fx", by / s / 1e6 / b}') | $(vs_qemu "$s") | $runs|"
done
echo
echo "ramshift tune --budget 40 over rdma:// (top of its table):"
grep -A6 "trials; the best" /tmp/tune.out | head -8
