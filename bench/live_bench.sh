#!/bin/bash
# Live migration benchmark across a 1 Gbit/s shaped veth between two network namespaces
# (created here, removed on exit): a running synthetic guest, SIZE (1G) dirtying RATE (20M)
# bytes/s with the mixed pattern — the configuration of the QEMU figures in the live-engine
# issue. Prints medians of RUNS (3) runs per codec.
#   bench/live_bench.sh [RAMSHIFT_BINARY]
set -euo pipefail
RS=${1:-build/release/cli/ramshift}
SIZE=${SIZE:-1G}; RATE=${RATE:-20M}; RUNS=${RUNS:-3}; CODECS=${CODECS:-"auto none"}
source "$(dirname "$0")/../scripts/lib/netns.sh"
A=rslbA$$; B=rslbB$$; W=$(mktemp -d)
cleanup() { netns_link_down "$A" "$B"; rm -rf "$W"; }
trap cleanup EXIT
netns_link_up "$A" "$B" 10.79.0 1gbit
median() { sort -g | awk '{a[NR]=$1} END {print (NR%2 ? a[(NR+1)/2] : (a[NR/2]+a[NR/2+1])/2)}'; }
echo "| codec | total s (median) | downtime ms (median) | rounds | runs: total s / downtime ms |"
echo "| --- | ---: | ---: | ---: | --- |"
for codec in $CODECS; do
  totals=(); downs=(); rounds=(); runs=""
  for _ in $(seq "$RUNS"); do
    ip netns exec "$B" "$RS" -q receive --listen tcp://10.79.0.2:7000 --once --json "$W/rx.json" \
      --resume-seconds 1 > "$W/rx.out" &
    rx=$!
    for _ in $(seq 100); do grep -q listening "$W/rx.out" 2>/dev/null && break; sleep 0.05; done
    ip netns exec "$A" "$RS" -q send --to tcp://10.79.0.2:7000 --codec "$codec" \
      --guest "synthetic:size=$SIZE,dirty-rate=$RATE,pattern=mixed" --json "$W/tx.json"
    wait "$rx"
    read -r t d r < <(python3 -c "import json; t=json.load(open('$W/tx.json')); r=json.load(open('$W/rx.json')); assert r['resumed']['verified']; print(t['total_ms']/1000, t['downtime_ms'], t['rounds'])")
    totals+=("$t"); downs+=("$d"); rounds+=("$r"); runs+="$(printf '%.2f/%.0f ' "$t" "$d")"
  done
  printf '| %s | %.2f | %.1f | %s | %s|\n' "$codec" "$(printf '%s\n' "${totals[@]}" | median)" \
    "$(printf '%s\n' "${downs[@]}" | median)" "$(printf '%s\n' "${rounds[@]}" | median)" "$runs"
done
