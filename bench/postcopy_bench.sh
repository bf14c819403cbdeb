#!/bin/bash
# Post-copy and hybrid against pre-copy on a 1 Gbit/s shaped veth between two network
# namespaces (created here, removed on exit): a synthetic guest of SIZE (512M) dirtying RATE
# (250M) bytes/s with THREADS (2) threads, pattern mixed, faster than the link carries it.
# For each mode in MODES (precopy, precopy --auto-converge, hybrid, postcopy) RUNS (1) runs,
# alternating modes so all see the same host. A run that completes must verify on the
# destination (the guest's own check after it ran there); pre-copy without auto-converge is
# expected to fail ("not converging") and is listed with the time it took to give up.
# LOGS=DIR keeps each run's logs there (both ends at -v: where the downtime went).
#   [EXTRA="--codec none"] [LOGS=DIR] bench/postcopy_bench.sh [RAMSHIFT_BINARY]
set -euo pipefail
BIN=${1:-build/release/cli/ramshift}
SIZE=${SIZE:-512M}; RATE=${RATE:-250M}; THREADS=${THREADS:-2}; RUNS=${RUNS:-1}
LINK=${LINK:-1gbit}; EXTRA=${EXTRA:-}  # more send options for every run, e.g. "--codec none"
MODES=${MODES:-"precopy precopy+ac hybrid postcopy"}
LOGS=${LOGS:-}; VERB=-q; [ -n "$LOGS" ] && { mkdir -p "$LOGS"; VERB=-v; }
RUN=0
source "$(dirname "$0")/../scripts/lib/netns.sh"
A=rspcA$$; B=rspcB$$; W=$(mktemp -d)
cleanup() { netns_link_down "$A" "$B"; rm -rf "$W"; }
trap cleanup EXIT
netns_link_up "$A" "$B" 10.81.0 "$LINK"

# One migration in mode $1; prints one table row.
run_once() {
  local mode=${1%+ac} extra=""
  [ "$1" != "$mode" ] && extra="--auto-converge"
  rm -f "$W/rx.out" "$W/rx.json" "$W/tx.json"
  RUN=$((RUN + 1))
  ip netns exec "$B" "$BIN" $VERB receive --listen tcp://10.81.0.2:7000 --once --json "$W/rx.json" \
    --resume-seconds 1 > "$W/rx.out" 2> "$W/rx.err" &
  local rx=$!
  for _ in $(seq 100); do grep -q listening "$W/rx.out" 2>/dev/null && break; sleep 0.05; done
  # shellcheck disable=SC2086
  ip netns exec "$A" "$BIN" $VERB send --to tcp://10.81.0.2:7000 --mode "$mode" $extra $EXTRA \
    --guest "synthetic:size=$SIZE,dirty-rate=$RATE,threads=$THREADS,pattern=mixed" \
    --json "$W/tx.json" 2> "$W/tx.err" || true
  wait "$rx" || true
  if [ -n "$LOGS" ]; then
    cp "$W/tx.err" "$LOGS/$RUN-$1.tx.log"; cp "$W/rx.err" "$LOGS/$RUN-$1.rx.log"
  fi
  python3 - "$1" "$W/tx.json" "$W/rx.json" <<'PY'
import json, sys
mode, t = sys.argv[1], json.load(open(sys.argv[2]))
try:
    r = json.load(open(sys.argv[3]))
except Exception:
    r = {}
ok = t["status"] == "completed"
if ok:
    assert r["resumed"]["verified"], "destination did not verify"
pc = r.get("postcopy") or {}
lat = pc.get("fault_latency_us", {})
blocked = max((b["max_ms"] for b in pc.get("blocked_ms", [])), default=0)
# The most any one guest thread spent blocked on faults in all, of the post-copy phase's length
# (QEMU's per-vCPU postcopy-blocktime is the same measure).
blocked_total = max((b["total_ms"] for b in pc.get("blocked_ms", [])), default=0)
blocked_total = f"{blocked_total:.0f}/{pc['postcopy_ms']:.0f}" if pc else "-"
down = t["downtime_ms"]
rd = t.get("rounds_detail") or []
dirty = f"{rd[0]['dirty_rate_bytes_per_s'] / 1e6:.0f}" if rd else "-"  # measured in round 0
disc = pc.get("discard") or {}
disc = f"{disc['rounds']}/{disc['pages']}" if disc.get("rounds") else "-"
print(f"| {mode} | {t['status']} | {t['total_ms']/1000:.2f} | "
      f"{'%.1f' % down if down is not None else '-'} | {t['rounds']} | "
      f"{t.get('throttle_pct', 0)} | {pc.get('faults', '-')} | "
      f"{'%.0f/%.0f' % (lat['p50'], lat['p99']) if lat else '-'} | "
      f"{'%.1f' % blocked if pc else '-'} | {dirty} | {disc} | {blocked_total} | "
      f"{(t['error'] or '')[:60]} |")
PY
}

echo "guest $SIZE dirtying $RATE/s with $THREADS threads; link $LINK; send options '$EXTRA'; $(date -u +%FT%TZ) at $(git -C "$(dirname "$0")" rev-parse --short HEAD); load $(cut -d' ' -f1-3 /proc/loadavg)"
echo "| mode | status | total s | downtime ms | rounds | throttle % | faults | fault µs p50/p99 | longest block ms | dirtied MB/s (round 0) | discards/pages dropped early | blocked ms, most of a thread / post-copy ms | error |"
echo "| --- | --- | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: | --- |"
for _ in $(seq "$RUNS"); do
  for m in $MODES; do run_once "$m"; done
done
echo "load at the end: $(cut -d' ' -f1-3 /proc/loadavg)"
