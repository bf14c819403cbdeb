#!/bin/bash
# QEMU's own post-copy through the bridges (`qemu-migrate --via ... --postcopy-after`): a running
# TCG guest that keeps dirtying and checking its memory; a bandwidth cap keeps pre-copy from
# finishing in its first second, then QEMU switches: the guest runs on the destination and
# faults the pages it touches in over the return path, which the bridges carry back. Checks:
# QEMU completed, the report says when post-copy started, the destination runs, its heartbeat
# continues past the source's and its page check stays clean through a whole sweep. With
# --auto-converge and --postcopy-blocktime: the report says QEMU has auto-converge on at the
# source and postcopy-ram on at both ends (QEMU's own query-migrate-capabilities), and gives
# the destination's blocktime.
# Usage: postcopy_qemu_test.sh path/to/ramshift [backports]
# (Its own test, one migration from a fresh boot: tests/qemu/README.md says why.)
set -uo pipefail
RAMSHIFT=$(readlink -f "$1")
. "$(dirname "$0")/lib.sh"
qemu_test_begin qemu-postcopy "${2:-debian}"
qemu_build_guest
qemu_start vm0 "$GUEST_MB" "$DIRTY"
qemu_wait_beat vm0 2 240 || fail "the guest did not boot"
qemu_start vm1 "$GUEST_MB" "$DIRTY" -incoming defer
"$RAMSHIFT" qemu-migrate --src-qmp "$W/vm0.qmp" --dst-qmp "$W/vm1.qmp" --json "$W/vm1.json" --timeout 240 \
  --via tcp://127.0.0.1:0 --max-bandwidth 20M --postcopy-after 1 \
  --auto-converge --postcopy-blocktime 2> "$W/vm1.err" ||
  fail "qemu-migrate exit $?: $(tail -2 "$W/vm1.err")"
grep -q '"destination_status": "running"' "$W/vm1.json" || fail "the destination is not running"
grep -q '"postcopy_started_ms": [0-9]' "$W/vm1.json" || fail "post-copy never started: $(grep postcopy "$W/vm1.json")"
python3 - "$W/vm1.json" <<'PY' || fail "capabilities or blocktime not as asked: $(grep -A3 capabilities "$W/vm1.json")"
import json, sys
r = json.load(open(sys.argv[1]))
assert "auto-converge" in r["source_capabilities"], r["source_capabilities"]
assert "postcopy-ram" in r["source_capabilities"], r["source_capabilities"]
assert {"postcopy-ram", "postcopy-blocktime"} <= set(r["destination_capabilities"]), r["destination_capabilities"]
assert isinstance(r["postcopy_blocktime_ms"], int) and r["postcopy_blocktime_ms"] >= 0, r["postcopy_blocktime_ms"]
assert isinstance(r["throttle_pct_max"], int), r["throttle_pct_max"]
print(f"qemu-test: capabilities source {r['source_capabilities']}, destination "
      f"{r['destination_capabilities']}; blocktime {r['postcopy_blocktime_ms']} ms "
      f"(vCPUs {r['postcopy_vcpu_blocktime_ms']}), throttle up to {r['throttle_pct_max']}%", file=sys.stderr)
PY
last=$(qemu_beat vm0)
kill "$(cat "$W/vm0.pid")"
qemu_wait_beat vm1 $((last + 5)) 60 || fail "no heartbeat on the destination after $last"
qemu_check_clean vm1 || fail "the guest's memory differed after post-copy"
qlog "ok: post-copy through the bridges ($(grep -a -m1 -o '"total_ms": [0-9]*' "$W/vm1.json"), post-copy after $(grep -o '"postcopy_started_ms": [0-9]*' "$W/vm1.json" | grep -o '[0-9]*$') ms, downtime $(grep -a -m1 -o '"downtime_ms": [0-9]*' "$W/vm1.json" | grep -o '[0-9]*$') ms, heartbeat $last -> $(qemu_beat vm1))"
qlog "PASS"
