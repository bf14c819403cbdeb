#!/bin/bash
# `ramshift bench` next to iperf3, on loopback and across a shaped veth between two network
# namespaces this script creates and removes. Each row is the median of RUNS runs of the same
# configuration; iperf3 runs between them, in the same run. Prints a markdown table.
#   bench/tools_bench.sh [RAMSHIFT_BINARY]     env: RUNS (3), SECONDS_PER (5), LINK_RATE (1gbit)
set -euo pipefail
RS=${1:-build/release/cli/ramshift}
RUNS=${RUNS:-3}; SECS=${SECONDS_PER:-5}; LINK_RATE=${LINK_RATE:-1gbit}
W=$(mktemp -d /tmp/ramshift-tools-bench-XXXXXX)
NSA=rstoolsA$$; NSB=rstoolsB$$
source "$(dirname "$0")/../scripts/lib/netns.sh"
cleanup() {
  pkill -f "iperf3 -s -p 5398" 2>/dev/null || true
  [ -n "${BS_PID:-}" ] && kill "$BS_PID" 2>/dev/null || true
  netns_link_down "$NSA" "$NSB"
  rm -rf "$W"
}
trap cleanup EXIT
. "$(dirname "${BASH_SOURCE[0]}")/stats.sh"  # median

start_server() {  # NS HOST -> BS_URI
  local ns=(); [ -n "$1" ] && ns=(ip netns exec "$1")
  [ -n "${BS_PID:-}" ] && kill "$BS_PID" 2>/dev/null && wait "$BS_PID" 2>/dev/null || true
  "${ns[@]}" "$RS" -q bench --server --listen "tcp://$2:0" > "$W/bs.out" &
  BS_PID=$!
  for _ in $(seq 100); do grep -q listening "$W/bs.out" 2>/dev/null && break; sleep 0.05; done
  BS_URI=$(sed -n 's/^listening on //p' "$W/bs.out")
}
bench_one() {  # NS KEY ARGS... -> prints the JSON value KEY of the one result
  local ns=(); [ -n "$1" ] && ns=(ip netns exec "$1"); local key=$2; shift 2
  "${ns[@]}" "$RS" -q bench --to "$BS_URI" --seconds "$SECS" --json "$W/b.json" "$@"
  python3 -c "import json,sys; print(json.load(open(sys.argv[1]))['results'][0][sys.argv[2]])" "$W/b.json" "$key"
}
iperf_gbit() {  # NS_SERVER NS_CLIENT HOST STREAMS -> Gbit/s
  local s=() c=()
  [ -n "$1" ] && s=(ip netns exec "$1")
  [ -n "$2" ] && c=(ip netns exec "$2")
  "${s[@]}" iperf3 -s -p 5398 -1 >/dev/null 2>&1 &
  sleep 0.3
  "${c[@]}" iperf3 -c "$3" -p 5398 -t "$SECS" -P "$4" -J |
    python3 -c "import json,sys; print(json.load(sys.stdin)['end']['sum_received']['bits_per_second']/1e9)"
  wait
}
rows=()
measure() {  # LABEL UNIT CMD...
  local label=$1 unit=$2; shift 2
  local vals=()
  for _ in $(seq "$RUNS"); do vals+=("$("$@")"); done
  local med; med=$(printf '%s\n' "${vals[@]}" | median)
  rows+=("| $label | $(printf '%.2f' "$med") $unit | $(printf '%.2f ' "${vals[@]}")|")
  echo "$label: median $med $unit (runs: ${vals[*]})" >&2
}

echo "== loopback" >&2
start_server "" 127.0.0.1
measure "iperf3, 1 stream, loopback (the peer)" Gbit/s iperf_gbit "" "" 127.0.0.1 1
measure "iperf3, 4 streams, loopback" Gbit/s iperf_gbit "" "" 127.0.0.1 4
measure "bench, 1 queue, 1M messages, codec none" Gbit/s bench_one "" gbit_per_s --queues 1 --batch-size 1M --codec none
measure "bench, 4 queues, 1M messages, codec none" Gbit/s bench_one "" gbit_per_s --queues 4 --batch-size 1M --codec none
measure "bench, 1 queue, 1M, codec none: sender CPU" s/GB bench_one "" sender_cpu_s_per_gb --queues 1 --batch-size 1M --codec none
measure "bench, 1 queue, 1M, codec none: p99 batch latency" ms bench_one "" latency_p99_ms --queues 1 --batch-size 1M --codec none

echo "== $LINK_RATE shaped veth between two namespaces" >&2
netns_link_up "$NSA" "$NSB" 10.78.0 "$LINK_RATE"
start_server "$NSB" 10.78.0.2
measure "iperf3, 1 stream, across the link (the limit)" Gbit/s iperf_gbit "$NSB" "$NSA" 10.78.0.2 1
measure "bench across the link, 2 queues, 256K, codec none" Gbit/s bench_one "$NSA" gbit_per_s --queues 2 --codec none
measure "bench across the link, 2 queues, 256K, codec auto, mixed: guest memory" "GB/s" bench_one "$NSA" gbytes_per_s --queues 2 --codec auto
measure "bench across the link, 2 queues, 256K, codec zstd, mixed: guest memory" "GB/s" bench_one "$NSA" gbytes_per_s --queues 2 --codec zstd

{
  echo "| what | median | runs |"
  echo "| --- | ---: | --- |"
  printf '%s\n' "${rows[@]}"
} | tee "${OUT:-/dev/null}"
