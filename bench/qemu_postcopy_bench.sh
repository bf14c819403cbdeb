#!/bin/bash
# Issue 23's peers: stock QEMU's own pre-copy with auto-converge and its own post-copy, beside
# ramshift's `send --mode hybrid`, for a guest dirtying faster than a 1 Gbit/s link carries,
# alternating run by run (A B C A B C ...) so all three see the same host
# (docs/benchmarks/README.md, "QEMU's pre-copy with auto-converge and post-copy, same link").
#   A  QEMU pre-copy, `qemu-migrate --auto-converge`: QEMU's defaults otherwise (downtime-limit
#      300 ms, throttle 20% +10% per stalled iteration; --tune-switchover false), single channel
#   B  QEMU post-copy, `qemu-migrate --postcopy-after POSTCOPY_AFTER (2) --postcopy-blocktime`
#   C  ramshift hybrid: bench/postcopy_bench.sh MODES=hybrid, its synthetic guest asked to
#      dirty at the median rate the QEMU guest reached in the runs so far
# QEMU is Debian backports' 10.0 (tests/lib/debian_backports_qemu.sh; 7.2 under TCG corrupts a
# fast-dirtying guest now and then, tests/qemu/README.md), straight over tcp between two
# network namespaces joined by a LINK (1gbit) tbf veth, max-bandwidth lifted (qemu-migrate's
# default). Each QEMU run boots a fresh guest (tests/qemu/guest/init.c, GUEST_MB 512 MiB asked
# to dirty DIRTY 250 MB/s) in the first namespace, measures the rate it reaches (its own count
# of pages written over RATE_S (10) s of host time), migrates it, then checks it on the
# destination: its heartbeat continues 5 beats past the source's last (BEAT_WAIT, 180 s) and
# its page check saw no bad page. RUNS (3) alternations; medians; LOGS=DIR keeps the reports.
#   [RUNS=3] [LOGS=DIR] bench/qemu_postcopy_bench.sh [RAMSHIFT]
set -uo pipefail
RAMSHIFT=$(readlink -f "${1:-build/release/cli/ramshift}")
GUEST_MB=${GUEST_MB:-512}; DIRTY=${DIRTY:-250}; RUNS=${RUNS:-3}; LINK=${LINK:-1gbit}
POSTCOPY_AFTER=${POSTCOPY_AFTER:-2}; RATE_S=${RATE_S:-10}; BEAT_WAIT=${BEAT_WAIT:-180}
TIMEOUT=${TIMEOUT:-600}; LOGS=${LOGS:-}
HERE=$(cd "$(dirname "$0")" && pwd)
. "$HERE/../scripts/lib/netns.sh"
. "$HERE/../tests/lib/debian_backports_qemu.sh"
backports_qemu || exit $?
QEMU_BIN=$QEMU_NEWER_BIN
W=$(mktemp -d /tmp/ramshift-qemu-postcopy-bench.XXXXXX)
NSA=rsqpA$$ NSB=rsqpB$$
cleanup() { netns_link_down "$NSA" "$NSB"; qemu_stop_all; rm -rf "$W"; }
trap cleanup EXIT
. "$HERE/../tests/qemu/lib.sh"
qemu_need_tools; qemu_build_guest
[ -n "$LOGS" ] && mkdir -p "$LOGS"
netns_link_up "$NSA" "$NSB" 10.82.0 "$LINK" || { echo "cannot create namespaces" >&2; exit 77; }
. "$(dirname "${BASH_SOURCE[0]}")/stats.sh"  # median
load() { cut -d' ' -f1 /proc/loadavg; }
N=0

# The last heartbeat of NAME as "beat gensum" (gensum: pages the guest has written since boot).
beat_gensum() { tr -d '\r' < "$W/$1.log" | grep -a -o 'heartbeat [0-9]* gensum [0-9]*' | tail -1 | cut -d' ' -f2,4; }
# Waits for NAME's next heartbeat; prints "gensum host_seconds" as it arrived (polled every 50 ms).
next_beat() {
  local b0 b g
  read -r b0 _ < <(beat_gensum "$1")
  for _ in $(seq 600); do
    read -r b g < <(beat_gensum "$1")
    [ "$b" != "$b0" ] && { echo "$g $(date +%s.%N)"; return 0; }
    sleep 0.05
  done
  return 1
}
# guest_rate NAME: MB/s of pages NAME wrote over RATE_S s of host time (4 KiB a page).
guest_rate() {
  local g0 t0 g1 t1
  read -r g0 t0 < <(next_beat "$1") || return 1
  sleep "$RATE_S"
  read -r g1 t1 < <(next_beat "$1") || return 1
  awk -v a="$g0" -v b="$g1" -v s="$t0" -v e="$t1" 'BEGIN {printf "%.0f", (b - a) * 4096 / (e - s) / 1e6}'
}

# qemu_run MODE: one QEMU migration (precopy+ac | postcopy) of a fresh guest; appends a row
# "mode status total_s downtime_ms guest_MBps qemu_dirty_MBps throttle blocktime alive clean load".
qemu_run() {
  local mode=$1 src dst args=() rate alive=no clean=no last ld
  qemu_stop_all
  N=$((N + 1)); src=vm$N; N=$((N + 1)); dst=vm$N
  QEMU_WRAP="ip netns exec $NSA" qemu_start "$src" "$GUEST_MB" "$DIRTY"
  if ! qemu_wait_beat "$src" 3 600 || ! rate=$(guest_rate "$src"); then
    echo "$mode boot-failed - - - - - - no no $(load)" >> "$W/rows"; return
  fi
  echo "$rate" >> "$W/rates"
  QEMU_WRAP="ip netns exec $NSB" qemu_start "$dst" "$GUEST_MB" 0 -incoming defer
  for _ in $(seq 100); do [ -S "$W/$dst.qmp" ] && break; sleep 0.1; done
  case $mode in
    precopy+ac) args=(--auto-converge) ;;
    postcopy) args=(--postcopy-after "$POSTCOPY_AFTER" --postcopy-blocktime) ;;
  esac
  ld=$(load)
  "$RAMSHIFT" -q qemu-migrate --src-qmp "$W/$src.qmp" --dst-qmp "$W/$dst.qmp" \
    --dst-uri tcp:10.82.0.2:4444 --tune-switchover false --timeout "$TIMEOUT" \
    --json "$W/$dst.json" --trace "$W/$dst.trace" "${args[@]}" 2> "$W/$dst.err"
  last=$(qemu_beat "$src")
  kill "$(cat "$W/$src.pid")" 2>/dev/null
  if qemu_wait_beat "$dst" $((last + 5)) "$BEAT_WAIT" > /dev/null 2>&1; then
    alive=yes
    qemu_check_clean "$dst" 2> /dev/null && clean=yes
  fi
  [ -n "$LOGS" ] && cp "$W/$dst.json" "$W/$dst.trace" "$W/$dst.err" "$W/$src.log" "$W/$dst.log" "$LOGS/" 2>/dev/null
  python3 - "$mode" "$W/$dst.json" "$W/$dst.trace" "$rate" "$alive" "$clean" "$ld" >> "$W/rows" <<'PY'
import json, sys
mode, jf, tf, rate, alive, clean, ld = sys.argv[1:]
try:
    r = json.load(open(jf))
except Exception:
    r = {"status": "no-report", "qemu": {}}
q = r.get("qemu", {})
# QEMU's own dirty rate: its first measure (the iteration after the bulk pass, unthrottled).
dirty = "-"
try:
    lines = open(tf).readlines()
except OSError:
    lines = []
for line in lines:
    s = json.loads(line)["ram"]
    if s["dirty-pages-rate"] > 0:
        dirty = f"{s['dirty-pages-rate'] * s['page-size'] / 1e6:.0f}"
        break
ok = r["status"] == "completed"
bt = r.get("postcopy_blocktime_ms")
print(mode, r["status"], f"{q['total_ms'] / 1000:.2f}" if ok else "-",
      q["downtime_ms"] if ok else "-", rate, dirty, r.get("throttle_pct_max", "-"),
      bt if bt is not None else "-", alive, clean, ld)
PY
}

# hybrid_run: ramshift's hybrid on its synthetic guest at the QEMU guest's median rate so far,
# the way bench/postcopy_bench.sh runs it (its own namespaces and link).
hybrid_run() {
  local rate ld out
  rate=$(median - < "$W/rates")
  [ "$rate" = - ] && rate=$DIRTY
  ld=$(load)
  out=$(MODES=hybrid RUNS=1 SIZE="${GUEST_MB}M" RATE="${rate}M" LINK="$LINK" \
        LOGS="${LOGS:+$LOGS/hybrid-$N}" bash "$HERE/postcopy_bench.sh" "$RAMSHIFT" 2>&1)
  N=$((N + 1))
  [ -n "$LOGS" ] && echo "$out" > "$LOGS/hybrid-$N.out"
  # postcopy_bench's row: | hybrid | status | total s | downtime ms | rounds | throttle % |
  #   faults | fault µs | longest block ms | dirtied MB/s (round 0) | discards |
  #   blocked ms, most of a thread / post-copy ms | error |
  echo "$out" | awk -F' *\\| *' -v rate="$rate" -v ld="$ld" '$2 == "hybrid" {
    ok = $3 == "completed"
    print "hybrid", $3, ok ? $4 : "-", ok ? $5 : "-", rate, $11, $7, ok ? $13 : "-", ok ? "verified" : "no", ok ? "verified" : "no", ld
    found = 1 } END { if (!found) print "hybrid no-row - - " rate " - - - no no " ld }' >> "$W/rows"
}

echo "QEMU: $("$QEMU_BIN" --version | head -1); ramshift $(git -C "$HERE" rev-parse --short HEAD); $(date -u +%FT%TZ); load $(cut -d' ' -f1-3 /proc/loadavg)"
echo "guest ${GUEST_MB} MiB asked to dirty ${DIRTY} MB/s; link $LINK; QEMU post-copy after ${POSTCOPY_AFTER} s"
: > "$W/rows"; : > "$W/rates"
for _ in $(seq "$RUNS"); do
  qemu_run precopy+ac; qemu_run postcopy; qemu_stop_all; hybrid_run
  tail -3 "$W/rows" >&2  # progress
done
echo
echo "| run | mode | status | total s | downtime ms | guest dirtied MB/s (QEMU guest: before; hybrid: asked) | QEMU's dirty rate MB/s / synthetic's round 0 | throttle % max | blocktime ms (hybrid: most of a thread / post-copy ms) | alive after | clean after | load |"
echo "| ---: | --- | --- | ---: | ---: | ---: | ---: | ---: | ---: | --- | --- | ---: |"
awk '{printf "| %d | %s |", NR, $1; for (i = 2; i <= NF; i++) printf " %s |", $i; print ""}' "$W/rows"
echo
echo "medians of completed runs:"
for m in precopy+ac postcopy hybrid; do
  awk -v m="$m" '$1 == m && $2 == "completed"' "$W/rows" > "$W/m"
  printf '%s: %s of %s completed, %s alive and clean; total %s s, downtime %s ms, guest rate %s MB/s, blocktime %s ms\n' \
    "$m" "$(wc -l < "$W/m")" "$(awk -v m="$m" '$1 == m' "$W/rows" | wc -l)" \
    "$(awk -v m="$m" '$1 == m && $9 != "no" && $10 != "no"' "$W/rows" | wc -l)" \
    "$(cut -d' ' -f3 "$W/m" | median -)" "$(cut -d' ' -f4 "$W/m" | median -)" \
    "$(awk -v m="$m" '$1 == m {print $5}' "$W/rows" | median -)" "$(cut -d' ' -f8 "$W/m" | grep -v '^-$' | median -)"
done
echo "load at the end: $(cut -d' ' -f1-3 /proc/loadavg); $(date -u +%FT%TZ)"
exit 0
