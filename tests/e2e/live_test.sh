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

expect_exit 0 "ramshift demo (256 MiB live guest, two processes)" -- \
  "$RAMSHIFT" demo --guest synthetic:size=256M,dirty-rate=20M,pattern=mixed
expect_stderr "every page verified" "demo reports the guest verified on the destination"

start_receiver --once || exit 1
expect_sender_fails_when_receiver_dies 2 --guest synthetic:size=256M,dirty-rate=20M --bandwidth-limit 32M
finish
