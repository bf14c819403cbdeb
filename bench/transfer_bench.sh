#!/bin/bash
# Transfer benchmark: `ramshift send`/`receive` of an image next to iperf3, on loopback and
# across a 1 Gbit/s shaped veth between two network namespaces this script creates and
# removes. Prints a markdown table of medians (and writes it to $OUT if set).
#   bench/transfer_bench.sh [RAMSHIFT_BINARY]      env: SIZE (1G), RUNS (3), LINK_RATE (1gbit)
set -euo pipefail
RS=${1:-build/release/cli/ramshift}
SIZE=${SIZE:-1G}; RUNS=${RUNS:-3}; LINK_RATE=${LINK_RATE:-1gbit}
W=$(mktemp -d /tmp/ramshift-bench-XXXXXX)
NSA=rsbenchA$$; NSB=rsbenchB$$
source "$(dirname "$0")/../scripts/lib/netns.sh"
cleanup() {
  pkill -f "iperf3 -s -p 5399" 2>/dev/null || true
  netns_link_down "$NSA" "$NSB"
  rm -rf "$W"
}
trap cleanup EXIT

. "$(dirname "${BASH_SOURCE[0]}")/stats.sh"  # median
gbps_of() { python3 -c "import json,sys; r=json.load(open(sys.argv[1])); assert r['status']=='completed', r; print(r['guest_bytes']/r['total_ms']/1e6)" "$1"; }

# run_ramshift NS_RX NS_TX HOST CODEC PATTERN -> prints GB/s of guest memory (source's view)
run_ramshift() {
  local nsrx=$1 nstx=$2 host=$3 codec=$4 img=$W/$5.img
  local rx=() tx=()
  [ -n "$nsrx" ] && rx=(ip netns exec "$nsrx")
  [ -n "$nstx" ] && tx=(ip netns exec "$nstx")
  "${rx[@]}" "$RS" -q receive --listen "tcp://$host:0" --once > "$W/rx.out" &
  local pid=$!
  for _ in $(seq 100); do grep -q listening "$W/rx.out" 2>/dev/null && break; sleep 0.05; done
  local uri; uri=$(sed -n 's/^listening on //p' "$W/rx.out")
  "${tx[@]}" "$RS" -q send --to "$uri" --guest "file:$img" --codec "$codec" --json "$W/tx.json"
  wait "$pid"
  gbps_of "$W/tx.json"
}

iperf_gbps() {  # NS_SERVER NS_CLIENT HOST -> GB/s
  local s=() c=()
  [ -n "$1" ] && s=(ip netns exec "$1")
  [ -n "$2" ] && c=(ip netns exec "$2")
  "${s[@]}" iperf3 -s -p 5399 -1 >/dev/null 2>&1 &
  sleep 0.3
  "${c[@]}" iperf3 -c "$3" -p 5399 -t 5 -J | python3 -c "import json,sys; print(json.load(sys.stdin)['end']['sum_received']['bits_per_second']/8e9)"
  wait
}

for p in random mixed text; do "$RS" make-image "$W/$p.img" --size "$SIZE" --pattern "$p"; done

rows=()
measure() {  # LABEL CMD... -> row with the median of RUNS runs
  local label=$1; shift
  local vals=()
  for _ in $(seq "$RUNS"); do vals+=("$("$@")"); done
  local med; med=$(printf '%s\n' "${vals[@]}" | median)
  rows+=("| $label | $(printf '%.3f' "$med") | $(printf '%.3f ' "${vals[@]}")|")
  echo "$label: median $med GB/s (runs: ${vals[*]})" >&2
}

echo "== loopback" >&2
measure "iperf3, tcp loopback (the peer)" iperf_gbps "" "" 127.0.0.1
measure "ramshift send, loopback, random content, codec none" run_ramshift "" "" 127.0.0.1 none random
measure "ramshift send, loopback, random content, codec auto" run_ramshift "" "" 127.0.0.1 auto random
measure "ramshift send, loopback, mixed content, codec auto" run_ramshift "" "" 127.0.0.1 auto mixed

echo "== $LINK_RATE shaped veth between two namespaces" >&2
netns_link_up "$NSA" "$NSB" 10.77.0 "$LINK_RATE"
measure "iperf3 across the $LINK_RATE link (the limit)" iperf_gbps "$NSB" "$NSA" 10.77.0.2
measure "ramshift send across the link, text content, codec none" run_ramshift "$NSB" "$NSA" 10.77.0.2 none text
measure "ramshift send across the link, text content, codec auto" run_ramshift "$NSB" "$NSA" 10.77.0.2 auto text
measure "ramshift send across the link, mixed content, codec none" run_ramshift "$NSB" "$NSA" 10.77.0.2 none mixed
measure "ramshift send across the link, mixed content, codec auto" run_ramshift "$NSB" "$NSA" 10.77.0.2 auto mixed

{
  echo "| what | median GB/s of guest memory | runs |"
  echo "| --- | ---: | --- |"
  printf '%s\n' "${rows[@]}"
} | tee "${OUT:-/dev/null}"
