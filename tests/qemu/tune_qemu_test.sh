#!/bin/bash
# qemu-migrate's switch-over tuning against real QEMU across a link: two network namespaces
# joined by a `tc tbf` veth (LINK, default 1gbit), the source QEMU in one, the destination in
# the other, QEMU migrating straight over tcp between them, qemu-migrate driving both over QMP
# with `--tune-switchover true` (its default). A running guest dirtying DIRTY (20) MB/s of GUEST_MB (256) MiB
# migrates once. Checks: QEMU completed, the destination runs on with its heartbeat past the
# source's and its page check clean, and the report shows the tuning: with a QEMU that has
# avail-switchover-bandwidth (>= 8.2; `backports` = 10.0) it was set to a measured rate within
# the link's reach; downtime-limit started at the floor (5 ms, or FLOOR), the report gives the
# link's rate and QEMU's dirty rate beside it, and the limit never passed the ceiling.
# TRACE=FILE keeps the query-migrate trace (tests/unit/qemu/traces/ came from here);
# TUNE=off (--tune-switchover false) and TIMEOUT=S for recording a stalling trace (the test then only records);
# FLOOR=MS: --tune-floor-ms MS (the floor given instead of the default 5 ms);
# COMPETE="AFTER SECONDS": an iperf3 flow shares the link for SECONDS from AFTER s into the
# migration (a link whose bandwidth changes under QEMU; needs iperf3).
# Usage: tune_qemu_test.sh path/to/ramshift [debian|backports]
set -uo pipefail
QEMU_TEST_ARGS=("$@")
RAMSHIFT=$(readlink -f "$1")
HERE=$(cd "$(dirname "$0")" && pwd)
. "$HERE/lib.sh"
GUEST_MB=${GUEST_MB:-256} DIRTY=${DIRTY:-20}
qemu_netns_test_begin qemu-tune "${2:-debian}" t 10.79.0 "${LINK:-1gbit}"
qemu_build_guest
QEMU_WRAP="ip netns exec $NSA" qemu_start vm0 "$GUEST_MB" "$DIRTY"
qemu_wait_beat vm0 2 240 || fail "the guest did not boot"
QEMU_WRAP="ip netns exec $NSB" qemu_start vm1 "$GUEST_MB" "$DIRTY" -incoming defer
if [ -n "${COMPETE:-}" ]; then
  command -v iperf3 > /dev/null || { qlog "COMPETE needs iperf3"; exit 77; }
  ip netns exec "$NSB" iperf3 -s -1 -p 5301 > "$W/iperf-s.log" 2>&1 &
  PIDS+=($!)
  ( sleep "${COMPETE% *}"; ip netns exec "$NSA" iperf3 -c 10.79.0.2 -p 5301 -t "${COMPETE#* }" ) \
    > "$W/iperf-c.log" 2>&1 &
  PIDS+=($!)
fi
"$RAMSHIFT" qemu-migrate --src-qmp "$W/vm0.qmp" --dst-qmp "$W/vm1.qmp" --json "$W/vm1.json" \
  --dst-uri tcp:10.79.0.2:4444 --tune-switchover "$([ "${TUNE:-on}" = off ] && echo false || echo true)" --timeout "${TIMEOUT:-90}" \
  ${TRACE:+--trace "$TRACE"} ${FLOOR:+--tune-floor-ms "$FLOOR"} 2> "$W/vm1.err"
rc=$?
[ -n "${TRACE:-}" ] && qlog "trace: $(wc -l < "$TRACE") snapshots in $TRACE"
if [ "${TUNE:-on}" = off ]; then qlog "recorded (exit $rc): $(tail -1 "$W/vm1.err")"; exit 0; fi
[ $rc = 0 ] || fail "qemu-migrate exit $rc: $(tail -2 "$W/vm1.err")"
grep -q '"destination_status": "running"' "$W/vm1.json" || fail "the destination is not running"
last=$(qemu_beat vm0)
kill "$(cat "$W/vm0.pid")"
qemu_wait_beat vm1 $((last + 2)) 60 || qemu_broke_or_fail "no heartbeat on the destination after $last"
qemu_check_clean vm1 || qemu_broke_or_fail "the guest's memory differed"
python3 - "$W/vm1.json" "${2:-debian}" "${LINK:-1gbit}" "$DIRTY" "${FLOOR:-}" <<'PY' || fail "the report's tuning is not what was asked"
import json, sys
r = json.load(open(sys.argv[1]))
t = r["tuning"]
assert t, "no tuning in the report"
steps = [s["downtime_limit_ms"] for s in t["downtime_limit_steps"]]
assert steps == sorted(steps) and steps[0] <= t["floor_ms"] <= max(steps) <= t["ceiling_ms"], (steps, t)
link = {"10gbit": 1.25e9, "1gbit": 125e6, "100mbit": 12.5e6}[sys.argv[3]]
# The floor: 5 ms (a switch-over's fixed part) or as given; beside it, the rates at the last
# iteration (none if QEMU switched over at the end of the bulk pass).
if sys.argv[5]:
    assert t["floor_source"] == "given" and t["floor_ms"] == float(sys.argv[5]), t
else:
    assert t["floor_source"] == "fixed" and t["floor_ms"] == 5, t
assert steps[0] == t["floor_ms"], (steps, t)
if t["floor_link_rate"] is not None:
    assert 0.3 * link < t["floor_link_rate"] < 1.1 * link, t
    assert t["floor_dirty_rate"] is not None and t["floor_dirty_rate"] >= 0, t
if sys.argv[2] == "backports":
    assert t["switchover_bandwidth_supported"], "QEMU 10 has avail-switchover-bandwidth"
    bw = t["switchover_bandwidth"]
    assert bw and 0.3 * link < bw < 1.1 * link, f"switch-over bandwidth {bw} for a {link:.0f} B/s link"
else:
    assert not t["switchover_bandwidth_supported"] and t["switchover_bandwidth"] is None, t
print(f"qemu-test: downtime {r['qemu']['downtime_ms']} ms, total {r['qemu']['total_ms']} ms, "
      f"downtime-limit steps {steps}, floor {t['floor_ms']} ms (link {t['floor_link_rate']}, "
      f"dirtied {t['floor_dirty_rate']} B/s), switch-over bandwidth {t['switchover_bandwidth']}",
      file=sys.stderr)
PY
qlog "PASS"
