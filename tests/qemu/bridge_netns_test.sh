#!/bin/bash
# Real QEMU through the bridge across a 1 Gbit/s link: two network namespaces joined by a
# veth shaped with tc tbf (created here, removed on exit). The bridges run one in each
# namespace; the QEMUs talk to them over unix sockets. A running guest migrates single-
# channel, then (its destination now the source) multifd with 2 channels; each time the
# destination runs on, its memory checks clean. Usage: bridge_netns_test.sh path/to/ramshift
set -uo pipefail
RAMSHIFT=$(readlink -f "$1")
[ "$(id -u)" = 0 ] || { echo "netns test needs root" >&2; exit 77; }
HERE=$(cd "$(dirname "$0")" && pwd)
. "$HERE/../../scripts/lib/netns.sh"
NSA=rsqa$$ NSB=rsqb$$
. "$HERE/lib.sh"
qemu_test_on_exit() { netns_link_down "$NSA" "$NSB"; }
GUEST_MB=${GUEST_MB:-128}
qemu_test_begin qemu-netns
netns_link_up "$NSA" "$NSB" 10.78.0 1gbit || { qlog "cannot create namespaces"; exit 77; }
qemu_build_guest
qemu_start vm0 "$GUEST_MB" 6
qemu_wait_beat vm0 2 240 || fail "the guest did not boot"
CUR=vm0
for step in "1:0" "2:2"; do
  n=${step%%:*} channels=${step#*:}
  next=vm$n
  qemu_start "$next" "$GUEST_MB" 6 -incoming defer
  DEST_WRAP="ip netns exec $NSB" SRC_WRAP="ip netns exec $NSA" SRC_ARGS="--queues $((channels + 1))" \
    qemu_start_bridges "$next" tcp://10.78.0.2:0 || fail "bridges did not start"
  "$RAMSHIFT" qemu-migrate --src-qmp "$W/$CUR.qmp" --dst-qmp "$W/$next.qmp" --json "$W/$next.json" \
    --src-uri "unix:$W/$next.sb" --dst-uri "unix:$W/$next.in" --multifd-channels "$channels" \
    --timeout 240 2> "$W/$next.err" || fail "multifd $channels: qemu-migrate failed"
  wait "$SPID" || fail "source bridge exit $?"
  wait "$DPID" || fail "destination bridge exit $?"
  last=$(qemu_beat "$CUR")
  kill "$(cat "$W/$CUR.pid")"
  qemu_wait_beat "$next" $((last + 3)) 60 || fail "no heartbeat on the destination"
  qemu_check_clean "$next" || fail "memory differed"
  qlog "ok: $channels multifd channel(s) over the 1 Gbit/s link: $(grep -a -m1 -o '"total_ms": [0-9]*' "$W/$next.json") ms, $(grep -a -m1 -o '"downtime_ms": [0-9]*' "$W/$next.json")"
  CUR=$next
done
qlog "PASS"
