#!/bin/bash
# Real QEMU through the bridge across a 1 Gbit/s link: two network namespaces joined by a
# veth shaped with tc tbf (created here, removed on exit). The bridges run one in each
# namespace; the QEMUs talk to them over unix sockets. A running guest migrates single-
# channel, then (its destination now the source) multifd with 2 channels, then multifd 2 with the
# bridges over dpdk:// on a second veth; each time the destination runs on, its memory checks
# clean. It runs Debian backports' QEMU (10.0): Debian's 7.2 under TCG corrupts a dirtying guest's
# memory now and then on its own (tests/qemu/README.md), and this test migrates one guest three
# times in a row; 7.2 through the bridge is qemu.bridge's. Usage: bridge_netns_test.sh path/to/ramshift
set -uo pipefail
RAMSHIFT=$(readlink -f "$1")
HERE=$(cd "$(dirname "$0")" && pwd)
. "$HERE/lib.sh"
GUEST_MB=${GUEST_MB:-128}
qemu_netns_test_begin qemu-netns backports q 10.78.0 1gbit
qemu_build_guest
qemu_start vm0 "$GUEST_MB" 6
qemu_wait_beat vm0 2 240 || fail "the guest did not boot"
# Step 3's bridges talk dpdk:// (DPDK's af_packet PMD) over a second veth pair that carries no
# kernel address (DPDK owns it), when this ramshift has DPDK.
DPDK_A=rsqd$$a DPDK_B=rsqd$$b
STEPS="1:0:tcp 2:2:tcp"
if ! "$RAMSHIFT" receive --listen dpdk://10.77.0.2:7000 --once --accept-timeout 0.1 2>&1 |
    grep -q "not found at configure\|RAMSHIFT_DPDK=OFF" &&
  ip link add "$DPDK_A" type veth peer name "$DPDK_B" 2>/dev/null; then
  ip link set "$DPDK_A" netns "$NSA"; ip link set "$DPDK_B" netns "$NSB"
  ip -n "$NSA" link set "$DPDK_A" up; ip -n "$NSB" link set "$DPDK_B" up
  STEPS+=" 3:2:dpdk"
else
  qlog "no dpdk:// in this ramshift: the bridges over dpdk are not tried"
fi
eal() { echo "--no-huge --no-pci -m 256 --file-prefix=rsqd$$$1 --vdev=net_af_packet0,iface=$2,qdisc_bypass=0"; }
CUR=vm0
for step in $STEPS; do
  IFS=: read -r n channels transport <<< "$step"
  next=vm$n
  qemu_start "$next" "$GUEST_MB" 6 -incoming defer
  if [ "$transport" = dpdk ]; then
    DEST_WRAP="ip netns exec $NSB" SRC_WRAP="ip netns exec $NSA" DEST_ARGS="--dpdk-eal '$(eal b "$DPDK_B")'" \
      SRC_ARGS="--queues $((channels + 1)) --dpdk-local-ip 10.77.0.1 --dpdk-eal '$(eal a "$DPDK_A")'" \
      qemu_start_bridges "$next" dpdk://10.77.0.2:7200 || fail "dpdk bridges did not start"
  else
    DEST_WRAP="ip netns exec $NSB" SRC_WRAP="ip netns exec $NSA" SRC_ARGS="--queues $((channels + 1))" \
      qemu_start_bridges "$next" tcp://10.78.0.2:0 || fail "bridges did not start"
  fi
  "$RAMSHIFT" qemu-migrate --src-qmp "$W/$CUR.qmp" --dst-qmp "$W/$next.qmp" --json "$W/$next.json" \
    --src-uri "unix:$W/$next.sb" --dst-uri "unix:$W/$next.in" --multifd-channels "$channels" \
    --timeout 240 2> "$W/$next.err" || fail "multifd $channels: qemu-migrate failed"
  wait "$SPID" || fail "source bridge exit $?"
  wait "$DPID" || fail "destination bridge exit $?"
  last=$(qemu_beat "$CUR")
  kill "$(cat "$W/$CUR.pid")"
  qemu_wait_beat "$next" $((last + 3)) 60 || fail "no heartbeat on the destination"
  qemu_check_clean "$next" || fail "memory differed"
  qlog "ok: $channels multifd channel(s), bridges over $transport$([ "$transport" = tcp ] && echo " (the 1 Gbit/s link)"): $(grep -a -m1 -o '"total_ms": [0-9]*' "$W/$next.json") ms, $(grep -a -m1 -o '"downtime_ms": [0-9]*' "$W/$next.json")"
  CUR=$next
done
qlog "PASS"
