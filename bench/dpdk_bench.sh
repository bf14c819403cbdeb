#!/bin/bash
# dpdk:// against tcp:// on the same 1 Gbit/s link: two network namespaces joined by a veth
# shaped with `tc tbf` (scripts/lib/netns.sh), a real-files image (bench/corpus.sh), the same
# codec and queues. The kernel owns .1/.2 (tcp); DPDK's net_af_packet (qdisc_bypass=0, so the
# tbf shapes it) owns .11/.12 on the same interfaces. Then both with 1% loss: dpdk through its
# test knob (RAMSHIFT_DPDK_TEST_FAULTS, both ends' receive paths), tcp through iptables'
# statistic match (both ends' INPUT). Runs alternate; each is checked byte-identical.
#   bench/dpdk_bench.sh [RAMSHIFT]   env: SIZE (512M) RUNS (3) CODEC (none) QUEUES (2)
#                                         VARIANTS ("tcp 0,dpdk 0,tcp 1,dpdk 1": transport, loss;
#                                         "dpdk-base 0" runs dpdk:// with the binary BASE names;
#                                         "dpdk-copy 0" with RAMSHIFT_DPDK_TEST_NO_WRITES=1, raw
#                                         pages copied inside the batches, not sent by reference)
#                                         CORPUS (/var/tmp/ramshift-corpus/real-files-SIZE.img)
set -euo pipefail
RS=${1:-build/release/cli/ramshift}
SIZE=${SIZE:-512M}; RUNS=${RUNS:-3}; CODEC=${CODEC:-none}; QUEUES=${QUEUES:-2}
CORPUS=${CORPUS:-/var/tmp/ramshift-corpus/real-files-$SIZE.img}
here=$(cd "$(dirname "$0")" && pwd)
source "$here/../scripts/lib/netns.sh"
A=rsdbA$$; B=rsdbB$$; IA=${A:0:11}a; IB=${B:0:11}b; W=$(mktemp -d /tmp/ramshift-dpdk-XXXXXX)
cleanup() { netns_link_down "$A" "$B"; rm -rf "$W"; }
trap cleanup EXIT
"$here/corpus.sh" real-files "$CORPUS" "$SIZE"
netns_link_up "$A" "$B" 10.77.9 1gbit
eal() { echo "--no-huge --no-pci -m 512 --file-prefix=rsdb$$$1 --vdev=net_af_packet0,iface=$2,qdisc_bypass=0"; }
loss() {  # on|off: 1% of every packet into either namespace dropped by the kernel (tcp only)
  local op=-D; [ "$1" = on ] && op=-A
  for ns in "$A" "$B"; do
    ip netns exec "$ns" iptables "$op" INPUT -p tcp -m statistic --mode random --probability 0.01 -j DROP
  done
}

run() {  # TRANSPORT LOSSY(0|1) -> "seconds retransmitted dropped pacing_MBps"
  local t=$1 lossy=$2 rxurl txurl rxx=() txx=() faults="" RS=$RS nowrites=
  # "dpdk-base": dpdk:// with the binary BASE names (an A/B against an earlier commit).
  [ "$t" = dpdk-base ] && { RS=${BASE:?BASE=binary for dpdk-base}; t=dpdk; }
  # "dpdk-copy": dpdk:// without one-sided writes (zero copy against copying).
  [ "$t" = dpdk-copy ] && { nowrites=1; t=dpdk; }
  rm -f "$W/out.img"
  if [ "$t" = tcp ]; then
    rxurl=tcp://10.77.9.2:7000; txurl=$rxurl
  else
    rxurl=dpdk://10.77.9.12:7000; txurl=$rxurl
    rxx=(--dpdk-eal "$(eal rx "$IB")"); txx=(--dpdk-eal "$(eal tx "$IA")" --dpdk-local-ip 10.77.9.11)
    [ "$lossy" = 1 ] && faults=loss=0.01,seed=$RANDOM
  fi
  [ "$t" = tcp ] && [ "$lossy" = 1 ] && loss on
  RAMSHIFT_DPDK_TEST_NO_WRITES=$nowrites RAMSHIFT_DPDK_TEST_FAULTS=$faults ip netns exec "$B" "$RS" -q receive --listen "$rxurl" --once \
    --accept-timeout 30 --guest-out "$W/out.img" "${rxx[@]}" >"$W/rx.log" 2>&1 &
  local rx=$!
  sleep 1
  RAMSHIFT_DPDK_TEST_NO_WRITES=$nowrites RAMSHIFT_DPDK_TEST_FAULTS=$faults ip netns exec "$A" "$RS" -q send --to "$txurl" \
    --guest "file:$CORPUS" --codec "$CODEC" --queues "$QUEUES" --json "$W/tx.json" "${txx[@]}" \
    >"$W/tx.log" 2>&1 || { cat "$W/tx.log" "$W/rx.log" >&2; exit 1; }
  wait "$rx"
  [ "$t" = tcp ] && [ "$lossy" = 1 ] && loss off
  cmp -s "$CORPUS" "$W/out.img" || { echo "not byte-identical: $t lossy=$lossy" >&2; exit 1; }
  python3 - "$W/tx.json" <<'PY'
import json, sys
r = json.load(open(sys.argv[1]))
assert r["status"] == "completed", r
print(r["total_ms"] / 1000, r.get("retransmitted_frames", "-"), r.get("dropped_frames", "-"),
      "%.0f" % (r["pacing_rate"] / 1e6) if "pacing_rate" in r else "-")
PY
}

declare -A results
IFS=, read -ra variants <<<"${VARIANTS:-tcp 0,dpdk 0,tcp 1,dpdk 1}"
for i in $(seq "$RUNS"); do
  for v in "${variants[@]}"; do
    r=$(run $v); results["$v"]+="$r;"
    echo "run $i $v: $r (load $(cut -d' ' -f1 /proc/loadavg))" >&2
  done
done
echo "| transport | loss | median s | runs (s) | retransmitted / dropped / pacing MB/s (median run) |"
echo "| --- | --- | --- | --- | --- |"
for v in "${variants[@]}"; do
  python3 - "$v" "${results[$v]}" <<'PY'
import sys
name, runs = sys.argv[1].split(), [r.split() for r in sys.argv[2].strip(";").split(";")]
runs.sort(key=lambda r: float(r[0]))
med = runs[len(runs) // 2]
print(f"| {name[0]} | {'1%' if name[1] == '1' else 'none'} | {float(med[0]):.2f} | "
      f"{', '.join('%.2f' % float(r[0]) for r in runs)} | {med[1]} / {med[2]} / {med[3]} |")
PY
done
