#!/bin/bash
# Live migration between two real processes over tcp on loopback: a running synthetic guest
# moves, resumes on the destination and verifies; `ramshift demo` does the same end to end;
# a receiver killed mid-migration leaves the sender failing cleanly (exit 1).
source "$(dirname "$0")/lib.sh"

for pattern in mixed delta; do
  start_receiver --once --json "$WORK/rx.json" --resume-seconds 1 || exit 1
  expect_exit 0 "live migration of a 128 MiB $pattern guest dirtying 20 MB/s" -- \
    "$RAMSHIFT" send --to "$RX_URI" --guest "synthetic:size=128M,dirty-rate=20M,pattern=$pattern" \
    --json "$WORK/tx.json"
  wait "$RX_PID" && pass "receiver exit 0 ($pattern)" || { fail "receiver ($pattern)"; cat "$WORK/rx.err"; }
  python3 - "$WORK/tx.json" "$WORK/rx.json" <<'PY' && pass "reports: downtime measured, guest ran and verified on the destination ($pattern)" || fail "reports ($pattern)"
import json, sys
tx, rx = (json.load(open(p)) for p in sys.argv[1:3])
assert tx["status"] == rx["status"] == "completed", (tx["error"], rx["error"])
assert tx["downtime_ms"] is not None and tx["downtime_ms"] > 0, tx["downtime_ms"]
assert tx["rounds"] >= 2 and len(tx["rounds_detail"]) == tx["rounds"], tx["rounds_detail"]
assert rx["resumed"]["verified"] is True and rx["resumed"]["writes"] > 0, rx.get("resumed")
PY
done

# A dirty tracker that loses every 5th page (test knob): --verify full finds the lost writes,
# resends them and says how many; the guest's own check (its generation table) then passes on
# the destination. (The byte-for-byte comparison of both memories is in the unit live tests,
# where both ends share a process.)
start_receiver --once --json "$WORK/rx.json" --resume-seconds 1 || exit 1
expect_exit 0 "--verify full repairs the pages a faulty dirty tracker lost" -- \
  env RAMSHIFT_TEST_DROP_DIRTY_EVERY=5 "$RAMSHIFT" send --to "$RX_URI" --verify full \
  --guest "synthetic:size=128M,dirty-rate=20M,pattern=mixed" --json "$WORK/tx.json"
wait "$RX_PID" && pass "receiver exit 0 (verify full)" || { fail "receiver (verify full)"; cat "$WORK/rx.err"; }
python3 - "$WORK/tx.json" "$WORK/rx.json" <<'PY' && pass "reports: verify full counted the repairs, the guest verified there" || fail "reports (verify full)"
import json, sys
tx, rx = (json.load(open(p)) for p in sys.argv[1:3])
assert tx["status"] == rx["status"] == "completed", (tx["error"], rx["error"])
v = tx["verify"]
assert v["mode"] == "full" and v["mismatches_repaired"] > 0, v
assert v["pages_checked"] >= 2 * (128 << 20) // 4096, v
assert rx["verify"]["mismatches_repaired"] == v["mismatches_repaired"], rx["verify"]
assert rx["resumed"]["verified"] is True, rx.get("resumed")
PY
expect_exit 2 "--verify with an unknown mode is a usage error" -- \
  "$RAMSHIFT" send --to tcp://127.0.0.1:1 --verify sometimes --guest synthetic:size=1M

expect_exit 0 "ramshift demo (256 MiB live guest, two processes)" -- \
  "$RAMSHIFT" demo --guest synthetic:size=256M,dirty-rate=20M,pattern=mixed
expect_stderr "every page verified" "demo reports the guest verified on the destination"

start_receiver --once || exit 1
expect_sender_fails_when_receiver_dies 2 --guest synthetic:size=256M,dirty-rate=20M --bandwidth-limit 32M
finish
