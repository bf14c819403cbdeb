#!/bin/bash
# QEMU's post-copy recovery through the bridges when the link between them is cut: two network
# namespaces joined by a veth shaped to 100 Mbit/s (so post-copy lasts several seconds), the
# bridges one in each (started with --recover and a 2 s peer timeout), a running guest that
# keeps dirtying and checking its memory. Once the guest runs on the destination (post-copy),
# the veth is set down for CUT_S seconds (6) and up again. Checks: both bridges saw their
# session fail and a second one complete (verified); qemu-migrate saw the source paused and
# recovered it (migrate-recover, migrate resume=true) without help; QEMU completed, the
# destination runs on, its heartbeat continues past the source's and its page check stays clean.
# PREEMPT=1 adds QEMU's postcopy-preempt (a second channel; QEMU >= 8.0, so with backports).
# Usage: [PREEMPT=1] postcopy_recover_test.sh path/to/ramshift [backports]
set -uo pipefail
RAMSHIFT=$(readlink -f "$1")
HERE=$(cd "$(dirname "$0")" && pwd)
. "$HERE/lib.sh"
CUT_S=${CUT_S:-6}
qemu_netns_test_begin qemu-pcrecover "${2:-debian}" p 10.79.0 100mbit
VETH=${NSA:0:11}a  # netns_link_up's name for NSA's end
qemu_build_guest
qemu_start vm0 "$GUEST_MB" "$DIRTY"
qemu_wait_beat vm0 2 240 || fail "the guest did not boot"
qemu_start vm1 "$GUEST_MB" "$DIRTY" -incoming defer
DEST_WRAP="ip netns exec $NSB" SRC_WRAP="ip netns exec $NSA" \
  DEST_ARGS="--recover --recover-wait 60 --peer-timeout 2 --json $W/dbr.json" \
  SRC_ARGS="--recover --recover-wait 60 --peer-timeout 2 --queues 2 --json $W/sbr.json" \
  qemu_start_bridges vm1 tcp://10.79.0.2:0 || fail "bridges did not start"
T0=$(date +%s%N)
"$RAMSHIFT" -v qemu-migrate --src-qmp "$W/vm0.qmp" --dst-qmp "$W/vm1.qmp" --json "$W/vm1.json" \
  --src-uri "unix:$W/vm1.sb" --dst-uri "unix:$W/vm1.in" --max-bandwidth 20M --postcopy-after 1 \
  ${PREEMPT:+--postcopy-preempt} \
  --trace "$W/trace.jsonl" --timeout 120 2> "$W/migrate.err" &
MPID=$!
# qemu-migrate says when it switched to post-copy; a second later the guest runs on the
# destination and its pages are still on their way (about 10 s of them at 100 Mbit/s).
for i in $(seq 600); do grep -q "post-copy started" "$W/migrate.err" && break; sleep 0.2; done
grep -q "post-copy started" "$W/migrate.err" || fail "post-copy never started: $(tail -2 "$W/migrate.err")"
sleep 1
grep -q '"status": *"completed"' "$W/trace.jsonl" && fail "the migration completed before the cut: nothing to recover"
qlog "cutting the link for ${CUT_S}s (destination heartbeat: $(qemu_beat vm1))"
CUT_MS=$((($(date +%s%N) - T0) / 1000000))
ip -n "$NSA" link set "$VETH" down
sleep "$CUT_S"
ip -n "$NSA" link set "$VETH" up
UP_MS=$((($(date +%s%N) - T0) / 1000000))
qlog "link restored"
wait "$MPID" || fail "qemu-migrate exit $?: $(tail -3 "$W/migrate.err")"
wait "$SPID" || fail "source bridge exit $?"
wait "$DPID" || fail "destination bridge exit $?"
grep -q '"destination_status": "running"' "$W/vm1.json" || fail "the destination is not running"
grep -q '"postcopy-paused"' "$W/trace.jsonl" || fail "the source QEMU never reported postcopy-paused"
grep -q '"recovered_at_ms": [0-9]' "$W/vm1.json" ||
  fail "no recovery in the report: $(grep -A6 postcopy_recoveries "$W/vm1.json")"
for b in sbr dbr; do
  grep -q '"verified": true' "$W/$b.json" || fail "$b: last session not verified"
  grep -A1 '"failed_sessions": \[$' "$W/$b.json" | tail -1 | grep -q '^ *"' ||
    fail "$b: no failed session before the one that completed"
done
[ -z "${PREEMPT:-}" ] || grep -q '"id": 1,' "$W/sbr.json" ||
  fail "no preempt channel in the recovered session: $(grep -c '"kind"' "$W/sbr.json") channel(s)"
last=$(qemu_beat vm0)
kill "$(cat "$W/vm0.pid")"
qemu_wait_beat vm1 $((last + 5)) 60 || fail "no heartbeat on the destination after $last"
qemu_check_clean vm1 || fail "the guest's memory differed after the recovery"
statuses=$(grep -o '"status": *"[a-z-]*"' "$W/trace.jsonl" | cut -d'"' -f4 | uniq | tr '\n' ' ')
qlog "ok: post-copy recovered across a ${CUT_S}s link cut (down ${CUT_MS} ms, up ${UP_MS} ms, by the shell's clock from just before qemu-migrate started; source QEMU: $statuses; $(grep -o '"paused_at_ms": [0-9.]*' "$W/vm1.json"), $(grep -o '"recovered_at_ms": [0-9.]*' "$W/vm1.json"), $(grep -o '"attempts": [0-9]*' "$W/vm1.json"); $(grep -c '"kind"' "$W/sbr.json") channel(s) after it; heartbeat $last -> $(qemu_beat vm1))"
grep -h "recovery not yet\|post-copy paused at" "$W/migrate.err" | sed 's/^/  /' >&2  # the refusals met on the way
qlog "PASS"
