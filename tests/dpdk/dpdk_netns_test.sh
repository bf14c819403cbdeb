#!/bin/bash
# dpdk:// end to end between two network namespaces joined by a veth, each end driven by
# DPDK's net_af_packet PMD (no hugepages, no PCI): a file image sent and received
# byte-identical, with no faults and with the receive path's test knob injecting loss,
# reordering and duplication (RAMSHIFT_DPDK_TEST_FAULTS), each end's --json report carrying
# the link's counters (retransmitted_frames, dropped_frames, pacing_rate, the bytes sent by
# reference and copied: raw pages leave by reference, zero copy); then the sender
# killed mid-transfer must end the receiver with a clear error; `doctor --transport dpdk`
# judges the EAL arguments; `tune` finds settings over dpdk and its profile drives a real send.
# Namespaces, veth and processes go on exit.
#   dpdk_netns_test.sh RAMSHIFT [CASE...]
#   CASE: clean loss1 loss5 reorder kill doctor tune (default all)
set -uo pipefail
RAMSHIFT=${1:?usage: $0 PATH_TO_RAMSHIFT [CASE...]}
shift
CASES=${*:-clean loss1 loss5 reorder kill doctor tune}
if [ "$(id -u)" != 0 ] || ! command -v ip >/dev/null; then echo "SKIP: needs root and iproute2"; exit 77; fi
if "$RAMSHIFT" receive --listen dpdk://10.78.0.2:7000 --once --accept-timeout 0.1 2>&1 |
   grep -q "not found at configure\|RAMSHIFT_DPDK=OFF"; then
  echo "SKIP: this ramshift was built without DPDK"; exit 77
fi
A=rsdpA$$; B=rsdpB$$; IA=rsdp$$a; IB=rsdp$$b; W=$(mktemp -d)
cleanup() {
  for ns in "$A" "$B"; do
    ip netns pids "$ns" 2>/dev/null | xargs -r kill -9 2>/dev/null
    ip netns del "$ns" 2>/dev/null
  done
  rm -rf "$W"
}
trap cleanup EXIT
# The veth ends carry no kernel address: DPDK owns them (the kernel would answer ARP and
# send ICMP port-unreachable for our UDP otherwise).
ip netns add "$A" && ip netns add "$B" && ip link add "$IA" type veth peer name "$IB" ||
  { echo "SKIP: cannot create network namespaces"; exit 77; }
ip link set "$IA" netns "$A"; ip link set "$IB" netns "$B"
ip -n "$A" link set "$IA" up; ip -n "$B" link set "$IB" up
eal() { echo "--no-huge --no-pci -m 256 --file-prefix=rsdp$$$1 --vdev=net_af_packet0,iface=$2,qdisc_bypass=0"; }

# A 64 MiB image with real, uneven content (not all zero pages).
IMG=$W/guest.img
python3 - "$IMG" <<'PY'
import os, sys, random
random.seed(7)
with open(sys.argv[1], "wb") as f:
    for i in range(64 * 256):  # 4 KiB pages
        kind = i % 4
        if kind == 0: f.write(bytes(4096))
        elif kind == 1: f.write(os.urandom(4096))
        else: f.write((b"ramshift page %8d " % i) * (4096 // 24) + bytes(4096 - 24 * (4096 // 24)))
PY

run_case() {  # NAME FAULTS
  local name=$1 faults=$2 out=$W/$1.img
  RAMSHIFT_DPDK_TEST_FAULTS=$faults ip netns exec "$B" "$RAMSHIFT" -q receive \
    --listen dpdk://10.78.0.2:7000 --dpdk-eal "$(eal b"$name" "$IB")" --once \
    --accept-timeout 30 --resume-seconds 0 --guest-out "$out" --json "$W/$name.rx.json" \
    >"$W/$name.rx.out" 2>"$W/$name.rx.err" &
  local rx=$!
  sleep 1
  local t0=$(date +%s.%N)
  RAMSHIFT_DPDK_TEST_FAULTS=$faults timeout 120 ip netns exec "$A" "$RAMSHIFT" -q send \
    --to dpdk://10.78.0.2:7000 --dpdk-local-ip 10.78.0.1 --dpdk-eal "$(eal a"$name" "$IA")" \
    --guest "file:$IMG" --json "$W/$name.tx.json" >"$W/$name.tx.out" 2>"$W/$name.tx.err"
  local tx=$? t1=$(date +%s.%N)
  timeout 60 tail --pid=$rx -f /dev/null; wait $rx; local rc=$?
  if [ "$tx" != 0 ] || [ "$rc" != 0 ] || ! cmp -s "$IMG" "$out"; then
    echo "FAIL: $name (sender exit $tx, receiver exit $rc)"
    tail -5 "$W/$name.tx.err" "$W/$name.rx.err"
    return 1
  fi
  # What a user reads in the reports: the source resent frames and the destination threw
  # some away (the knob's losses and the duplicates they cause) when faults were injected;
  # the source's pacing rate is always there.
  local counters
  if ! counters=$(python3 - "$W/$name.tx.json" "$W/$name.rx.json" "$faults" <<'PY'
import json, sys
tx, rx = (json.load(open(p)) for p in sys.argv[1:3])
faulty = sys.argv[3] != ""
for side, j in (("source", tx), ("destination", rx)):
    for k in ("retransmitted_frames", "dropped_frames", "pacing_rate"):
        assert k in j, f"{side} report lacks {k}"
assert tx["pacing_rate"] > 0, "source pacing_rate is 0"
if faulty:
    assert tx["retransmitted_frames"] > 0, "no retransmission under injected faults"
    assert rx["dropped_frames"] > 0, "the destination dropped nothing under injected faults"
# Zero copy: raw pages leave by reference to the image's memory (at least its 16 MiB of random
# pages, which no codec shrinks), and the destination copied each byte it received once, or
# twice where a frame waited behind a hole.
assert tx["sent_referenced_bytes"] >= 16 << 20, f'only {tx["sent_referenced_bytes"]} bytes by reference'
assert rx["received_bytes"] >= 16 << 20, f'the destination received {rx["received_bytes"]} bytes'
assert rx["received_bytes"] <= rx["received_copied_bytes"] <= 2 * rx["received_bytes"]
print(f'source retransmitted {tx["retransmitted_frames"]}, dropped {tx["dropped_frames"]}, '
      f'pacing {tx["pacing_rate"] / 1e6:.0f} MB/s, {tx["sent_referenced_bytes"] / 2**20:.1f} MiB by '
      f'reference, {tx["sent_copied_bytes"] / 2**20:.1f} MiB copied; destination dropped '
      f'{rx["dropped_frames"]}, copied {rx["received_copied_bytes"] / rx["received_bytes"]:.2f}x '
      f'of {rx["received_bytes"] / 2**20:.1f} MiB')
PY
  ); then
    echo "FAIL: $name: the reports' link counters"; return 1
  fi
  printf 'PASS: %-8s 64 MiB byte-identical in %.2f s (faults: %s; %s)\n' "$name" \
    "$(echo "$t1 - $t0" | bc)" "${faults:-none}" "$counters"
}

doctor_case() {  # doctor --transport dpdk reads the EAL arguments: good ones pass, bad ones fail
  local j=$W/doctor.json
  ip netns exec "$A" "$RAMSHIFT" doctor --transport dpdk --dpdk-eal "$(eal doc "$IA")" \
    --json "$j" >/dev/null 2>&1
  python3 - "$j" <<'PY' || { echo "FAIL: doctor with a good vdev"; return 1; }
import json, sys
c = {x["id"]: x for x in json.load(open(sys.argv[1]))["checks"]}
assert c["dpdk.hugepages"]["verdict"] == "ok", c["dpdk.hugepages"]  # --no-huge
assert c["dpdk.iommu"]["verdict"] == "skip", c["dpdk.iommu"]        # --no-pci
assert c["dpdk.device"]["verdict"] == "ok", c["dpdk.device"]
assert c["dpdk.pmd"]["verdict"] == "ok" and "net_af_packet" in c["dpdk.pmd"]["detail"], c["dpdk.pmd"]
PY
  ip netns exec "$A" "$RAMSHIFT" doctor --transport dpdk --json "$j" \
    --dpdk-eal "--no-pci --vdev=net_bogus0 --vdev=net_af_packet1,iface=nosuch0" >/dev/null 2>&1
  local rc=$?
  python3 - "$j" "$rc" <<'PY' || { echo "FAIL: doctor with bad EAL arguments"; return 1; }
import json, sys
c = {x["id"]: x for x in json.load(open(sys.argv[1]))["checks"]}
assert sys.argv[2] == "1", "doctor passed"
for k in ("dpdk.device", "dpdk.pmd"):
    assert c[k]["verdict"] == "fail" and c[k]["fix"], c[k]
assert "nosuch0" in c["dpdk.device"]["detail"] and "net_bogus" in c["dpdk.pmd"]["detail"]
PY
  echo "PASS: doctor   good EAL arguments pass; a missing interface and an unknown PMD fail with fixes"
}

# tune over dpdk against a bench server, then its profile drives a real send: byte-identical.
tune_case() {
  ip netns exec "$B" "$RAMSHIFT" bench --server --listen dpdk://10.78.0.2:7100 \
    --dpdk-eal "$(eal btune "$IB")" >"$W/tune.srv.out" 2>"$W/tune.srv.err" &
  local srv=$!
  sleep 1
  timeout 120 ip netns exec "$A" "$RAMSHIFT" tune --to dpdk://10.78.0.2:7100 --dpdk-local-ip 10.78.0.1 \
    --dpdk-eal "$(eal atune "$IA")" --seconds 0.5 --repeats 1 --budget 30 \
    --profile-out "$W/tune.profile" >"$W/tune.out" 2>"$W/tune.err"
  local rc=$?
  kill $srv 2>/dev/null; wait $srv 2>/dev/null
  if [ "$rc" != 0 ] || [ ! -s "$W/tune.profile" ]; then
    echo "FAIL: tune over dpdk: exit $rc"; grep -v "^EAL\|^TELEMETRY" "$W/tune.err" | tail -5; return 1
  fi
  local trials
  trials=$(grep -o -m1 '^[0-9]* trials' "$W/tune.out") ||
    { echo "FAIL: tune over dpdk printed no trials"; cat "$W/tune.out"; return 1; }
  ip netns exec "$B" "$RAMSHIFT" -q receive --listen dpdk://10.78.0.2:7000 \
    --dpdk-eal "$(eal bprof "$IB")" --once --accept-timeout 30 --resume-seconds 0 \
    --guest-out "$W/tune.img" >"$W/tune.rx.out" 2>"$W/tune.rx.err" &
  local rx=$!
  sleep 1
  timeout 120 ip netns exec "$A" "$RAMSHIFT" -q send --to dpdk://10.78.0.2:7000 --dpdk-local-ip 10.78.0.1 \
    --dpdk-eal "$(eal aprof "$IA")" --profile "$W/tune.profile" --guest "file:$IMG" \
    >"$W/tune.tx.out" 2>"$W/tune.tx.err"
  local tx=$?
  timeout 60 tail --pid=$rx -f /dev/null; wait $rx; local rxrc=$?
  if [ "$tx" != 0 ] || [ "$rxrc" != 0 ] || ! cmp -s "$IMG" "$W/tune.img"; then
    echo "FAIL: tune: send with the profile (exit $tx, receiver $rxrc)"; tail -3 "$W/tune.tx.err"; return 1
  fi
  echo "PASS: tune     $trials over dpdk; its profile ($(python3 -c "import json,sys; p=json.load(open(sys.argv[1])); print({k: v for k, v in p.items() if k != 'measured'})" "$W/tune.profile" | cut -c1-90)) sent 64 MiB byte-identical"
}

kill_case() {
  RAMSHIFT_DPDK_TEST_FAULTS=loss=0.05 ip netns exec "$B" "$RAMSHIFT" receive \
    --listen dpdk://10.78.0.2:7000 --dpdk-eal "$(eal bkill "$IB")" --once --accept-timeout 30 \
    --guest-out "$W/kill.img" >"$W/kill.rx.out" 2>"$W/kill.rx.err" &
  local rx=$!
  sleep 1
  RAMSHIFT_DPDK_TEST_FAULTS=loss=0.05 ip netns exec "$A" "$RAMSHIFT" -q send \
    --to dpdk://10.78.0.2:7000 --dpdk-local-ip 10.78.0.1 --dpdk-eal "$(eal akill "$IA")" \
    --guest "file:$IMG" --max-bandwidth 8M >"$W/kill.tx.out" 2>"$W/kill.tx.err" &
  local tx=$!
  # The cap keeps the transfer going well past the kill, however fast the host is.
  sleep 2.5
  kill -9 $tx; wait $tx 2>/dev/null
  local t0=$SECONDS
  # The receiver must give up by itself within its peer timeout (10 s) plus slack.
  if ! timeout 30 tail --pid=$rx -f /dev/null; then echo "FAIL: kill: receiver still running"; return 1; fi
  wait $rx; local rc=$?
  if [ "$rc" = 0 ] || ! grep -qi "dpdk: nothing heard\|disconnected\|closed" "$W/kill.rx.err" ||
     [ -e "$W/kill.img" ]; then
    echo "FAIL: kill: receiver exit $rc"; grep -v "^EAL\|^TELEMETRY" "$W/kill.rx.err"; return 1
  fi
  echo "PASS: kill     receiver ended in $((SECONDS - t0)) s, exit $rc: $(grep -i dpdk "$W/kill.rx.err" | tail -1)"
}

failed=0
for c in $CASES; do
  case $c in
    clean) run_case clean "" || failed=1 ;;
    loss1) run_case loss1 "loss=0.01,seed=3" || failed=1 ;;
    loss5) run_case loss5 "loss=0.05,seed=5" || failed=1 ;;
    reorder) run_case reorder "reorder=0.05,duplicate=0.03,seed=9" || failed=1 ;;
    kill) kill_case || failed=1 ;;
    doctor) doctor_case || failed=1 ;;
    tune) tune_case || failed=1 ;;
    *) echo "unknown case $c"; failed=1 ;;
  esac
done
exit $failed
