#!/bin/bash
# Live migration benchmark across a 1 Gbit/s shaped veth between two network namespaces
# (created here, removed on exit): a running synthetic guest, SIZE (1G) dirtying RATE (20M)
# bytes/s with the mixed pattern, every other option at its default — the scenario of the
# live-engine and downtime issues. RUNS (3) runs per codec and binary; with two binaries the
# runs alternate (A, B, A, B...) so both see the same host, and a last line gives B/A.
# Every run must verify on the destination, or the script stops.
#   bench/live_bench.sh [RAMSHIFT_BINARY [SECOND_BINARY]]
#   e.g. RUNS=10 CODECS=auto nice bench/live_bench.sh /tmp/ramshift-old build/release/cli/ramshift
set -euo pipefail
BINS=("${@:-build/release/cli/ramshift}")
SIZE=${SIZE:-1G}; RATE=${RATE:-20M}; RUNS=${RUNS:-3}; CODECS=${CODECS:-"auto none"}
LINK=${LINK:-1gbit}; EXTRA=${EXTRA:-}
source "$(dirname "$0")/../scripts/lib/netns.sh"
A=rslbA$$; B=rslbB$$; W=$(mktemp -d)
cleanup() { netns_link_down "$A" "$B"; rm -rf "$W"; }
trap cleanup EXIT
netns_link_up "$A" "$B" 10.79.0 "$LINK"
. "$(dirname "${BASH_SOURCE[0]}")/stats.sh"  # median
largest() { sort -g | tail -1; }

# One migration with binary $1 and codec $2; prints "total_s downtime_ms rounds parts", parts
# being downtime_detail's last pages/device state/verify/hand-off in ms ("-" before it existed).
run_once() {
  ip netns exec "$B" "$1" -q receive --listen tcp://10.79.0.2:7000 --once --json "$W/rx.json" \
    --resume-seconds 1 > "$W/rx.out" &
  local rx=$!
  for _ in $(seq 100); do grep -q listening "$W/rx.out" 2>/dev/null && break; sleep 0.05; done
  # shellcheck disable=SC2086  # EXTRA holds several options
  ip netns exec "$A" "$1" -q send --to tcp://10.79.0.2:7000 --codec "$2" $EXTRA \
    --guest "synthetic:size=$SIZE,dirty-rate=$RATE,pattern=mixed" --json "$W/tx.json"
  wait "$rx"
  python3 -c "import json; t=json.load(open('$W/tx.json')); r=json.load(open('$W/rx.json'))
assert r['resumed']['verified'], 'destination did not verify'
d=t.get('downtime_detail')
parts='/'.join('%.1f' % d[k] for k in ('last_pages_ms','device_state_ms','verify_ms','handoff_ms')) if d else '-'
parts+=' (%d aborted)' % d['aborted_switchovers'] if d and d.get('aborted_switchovers') else ''
print(t['total_ms']/1000, t['downtime_ms'], t['rounds'], parts)"
}

echo "| binary | codec | total s (median) | downtime ms (median) | downtime ms (worst) | rounds | verified | runs: total s / downtime ms |"
echo "| --- | --- | ---: | ---: | ---: | ---: | ---: | --- |"
PARTS=$W/parts
for codec in $CODECS; do
  declare -A totals=() downs=() rounds=() runs=()
  for _ in $(seq "$RUNS"); do
    for i in "${!BINS[@]}"; do
      out=$(run_once "${BINS[$i]}" "$codec")  # a failed or unverified run stops the script
      read -r t d r p <<< "$out"
      echo "${BINS[$i]} $codec $p" >> "$PARTS"
      totals[$i]+="$t "; downs[$i]+="$d "; rounds[$i]+="$r "
      runs[$i]+="$(printf '%.2f/%.0f ' "$t" "$d")"
    done
  done
  for i in "${!BINS[@]}"; do
    med_t[i]=$(tr ' ' '\n' <<< "${totals[$i]}" | grep . | median)
    med_d[i]=$(tr ' ' '\n' <<< "${downs[$i]}" | grep . | median)
    printf '| %s | %s | %.2f | %.1f | %.1f | %s | %s/%s | %s|\n' "${BINS[$i]}" "$codec" "${med_t[$i]}" \
      "${med_d[$i]}" "$(tr ' ' '\n' <<< "${downs[$i]}" | grep . | largest)" \
      "$(tr ' ' '\n' <<< "${rounds[$i]}" | grep . | median)" "$RUNS" "$RUNS" "${runs[$i]}"
  done
  if [ "${#BINS[@]}" = 2 ]; then
    printf '| second / first | %s | %.2fx | %.2fx | | | | |\n' "$codec" \
      "$(echo "${med_t[1]} / ${med_t[0]}" | bc -l)" "$(echo "${med_d[1]} / ${med_d[0]}" | bc -l)"
  fi
  unset totals downs rounds runs
done
echo; echo "downtime_detail per run (last pages/device state/verify/hand-off ms):"
awk '{k = $1 " " $2; a[k] = a[k] " " $3} END {for (k in a) print k ":" a[k]}' "$PARTS"
