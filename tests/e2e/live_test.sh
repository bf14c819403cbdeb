#!/bin/bash
# Live migration between two real processes over tcp on loopback: a running synthetic guest
# moves, resumes on the destination and verifies; `ramshift demo` does the same end to end;
# a receiver killed mid-migration leaves the sender failing cleanly (exit 1). Each end dumps
# the guest's memory (the paused source's as handed over, the destination's once verified)
# and the test compares the two files byte for byte, whatever the programs say.
source "$(dirname "$0")/lib.sh"

# same_memory WHAT: the two dumps exist, have the guest's size and are byte-identical.
same_memory() {
  local size=$1 what=$2
  if [ "$(stat -c %s "$WORK/tx.dump" 2>/dev/null)" = "$size" ] && cmp -s "$WORK/tx.dump" "$WORK/rx.dump"; then
    pass "$what: the destination's memory equals the paused source's, byte for byte"
  else
    fail "$what: the dumps differ or are missing"; ls -l "$WORK"/*.dump; cmp "$WORK/tx.dump" "$WORK/rx.dump" | head -1
  fi
  rm -f "$WORK/tx.dump" "$WORK/rx.dump"
}

# check_downtime_detail MODE WHAT: the sender's downtime_detail names every part, none
# negative, and they add up to its downtime_ms (within 0.5 ms + 1%); with --verify full the
# hashing's share is named inside verify_ms; the receiver says how long its resume took, a
# part of the hand-off; the control socket's final snapshot would show the same object.
check_downtime_detail() {
  python3 - "$WORK/tx.json" "$WORK/rx.json" "$1" "${3:-}" <<'PY' && pass "downtime_detail: parts add up to downtime_ms ($2)" || fail "downtime_detail ($2)"
import json, sys
tx, rx = (json.load(open(p)) for p in sys.argv[1:3])
d, down = tx["downtime_detail"], tx["downtime_ms"]
parts = ["last_pages_ms", "device_state_ms", "verify_ms", "handoff_ms"]
assert all(d[k] >= 0 for k in parts + ["predicted_ms", "verify_full_ms"]), d
assert d["predicted_ms"] > 0, d
total = sum(d[k] for k in parts)
assert abs(total - down) <= 0.5 + 0.01 * down, (total, down, d)
assert (d["verify_full_ms"] > 0) == (sys.argv[3] == "full"), d
assert d["verify_full_ms"] <= d["verify_ms"], d
r = rx["downtime_detail"]["resume_ms"]
assert 0 <= r <= d["handoff_ms"], (r, d)
assert d["device_state_bytes"] > (128 << 20) // 4096 * 4, d  # a u32 per page, and its spec
if len(sys.argv) > 4 and sys.argv[4] == "zstd":
    assert d["device_state_wire_bytes"] * 4 < d["device_state_bytes"], d
print(f"downtime {down:.1f} ms = " + " + ".join(f"{k} {d[k]:.1f}" for k in parts) + f"; predicted {d['predicted_ms']:.1f}; resume {r:.2f}")
PY
}

for pattern in mixed delta; do
  # The delta run on a link held to 64 MB/s: slower than compressing the device state, so it
  # travels as DEVICE_STATE_ZSTD, and the guest must still run and verify there.
  extra=(); [ "$pattern" = delta ] && extra=(--max-bandwidth 64M)
  start_receiver --once --json "$WORK/rx.json" --resume-seconds 1 --dump-guest "$WORK/rx.dump" || exit 1
  expect_exit 0 "live migration of a 128 MiB $pattern guest dirtying 20 MB/s" -- \
    "$RAMSHIFT" send --to "$RX_URI" --guest "synthetic:size=128M,dirty-rate=20M,pattern=$pattern" \
    --json "$WORK/tx.json" --dump-guest "$WORK/tx.dump" "${extra[@]}"
  wait "$RX_PID" && pass "receiver exit 0 ($pattern)" || { fail "receiver ($pattern)"; cat "$WORK/rx.err"; }
  same_memory $((128 << 20)) "$pattern guest"
  python3 - "$WORK/tx.json" "$WORK/rx.json" <<'PY' && pass "reports: downtime measured, guest ran and verified on the destination ($pattern)" || fail "reports ($pattern)"
import json, sys
tx, rx = (json.load(open(p)) for p in sys.argv[1:3])
assert tx["status"] == rx["status"] == "completed", (tx["error"], rx["error"])
assert tx["downtime_ms"] is not None and tx["downtime_ms"] > 0, tx["downtime_ms"]
assert tx["rounds"] >= 2 and len(tx["rounds_detail"]) == tx["rounds"], tx["rounds_detail"]
assert rx["resumed"]["verified"] is True and rx["resumed"]["writes"] > 0, rx.get("resumed")
PY
  check_downtime_detail transfer "$pattern" "${extra[*]:+zstd}"
done

# A dirty tracker that loses every 5th page (test knob): --verify full finds the lost writes,
# resends them and says how many; the guest's own check (its generation table) then passes on
# the destination. (The byte-for-byte comparison of both memories is in the unit live tests,
# where both ends share a process.)
start_receiver --once --json "$WORK/rx.json" --resume-seconds 1 --dump-guest "$WORK/rx.dump" || exit 1
expect_exit 0 "--verify full repairs the pages a faulty dirty tracker lost" -- \
  env RAMSHIFT_TEST_DROP_DIRTY_EVERY=5 "$RAMSHIFT" send --to "$RX_URI" --verify full \
  --guest "synthetic:size=128M,dirty-rate=20M,pattern=mixed" --json "$WORK/tx.json" \
  --dump-guest "$WORK/tx.dump"
wait "$RX_PID" && pass "receiver exit 0 (verify full)" || { fail "receiver (verify full)"; cat "$WORK/rx.err"; }
same_memory $((128 << 20)) "verify full over a tracker that loses pages"
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
check_downtime_detail full "verify full"
# The same faulty tracker with the default --verify transfer, documented: the sender reports
# a verified migration, yet the two memories differ; the guest's own check on the
# destination (its generation table) is what catches the lost writes, and fails the receiver.
start_receiver --once --json "$WORK/rx.json" --resume-seconds 1 --dump-guest "$WORK/rx.dump" || exit 1
expect_exit 0 "--verify transfer does not see pages a faulty dirty tracker lost" -- \
  env RAMSHIFT_TEST_DROP_DIRTY_EVERY=5 "$RAMSHIFT" send --to "$RX_URI" \
  --guest "synthetic:size=128M,dirty-rate=20M,pattern=mixed" --dump-guest "$WORK/tx.dump"
wait "$RX_PID"; rc=$?
[ "$rc" = 1 ] && grep -qE "older write|is zero but generation" "$WORK/rx.err" \
  && pass "verify transfer: the guest's own check on the destination finds the lost writes" \
  || { fail "verify transfer: receiver exit $rc"; tail -3 "$WORK/rx.err"; }
if cmp -s "$WORK/tx.dump" "$WORK/rx.dump"; then fail "verify transfer: the dumps are equal after lost pages"
else pass "verify transfer: the dumps differ (the limit --verify full removes)"; fi
rm -f "$WORK/tx.dump" "$WORK/rx.dump"

# The switch-over guard: a final round whose pages run late (queue 0 held 3 s, test knob)
# must not become downtime. The source resumes its guest before the limit, the round ends
# live, pre-copy goes on and the next switch-over lands under the limit: the guest verified.
GUARDED=(--guest "synthetic:size=128M,dirty-rate=20M,pattern=mixed" --downtime-limit 1000)
start_receiver --once --json "$WORK/rx.json" --resume-seconds 1 --dump-guest "$WORK/rx.dump" || exit 1
expect_exit 0 "a switch-over whose last pages run late is aborted, and the next one completes" -- \
  env RAMSHIFT_TEST_HOLD_AT=source-paused-round:3:1 "$RAMSHIFT" send --to "$RX_URI" "${GUARDED[@]}" \
  --json "$WORK/tx.json" --dump-guest "$WORK/tx.dump"
expect_stderr "switch-over aborted" "the sender says it resumed the guest and why"
wait "$RX_PID" && pass "receiver exit 0 (switch-over aborted once)" || { fail "receiver (guard)"; cat "$WORK/rx.err"; }
same_memory $((128 << 20)) "after an aborted switch-over"
python3 - "$WORK/tx.json" <<'PY' && pass "guard: downtime and the aborted pause both under --downtime-limit 1000" || fail "guard report"
import json, sys
tx = json.load(open(sys.argv[1]))
d = tx["downtime_detail"]
assert tx["status"] == "completed" and tx["verified"], tx["error"]
assert d["aborted_switchovers"] == 1, d
assert 0 < d["longest_aborted_pause_ms"] <= 1000, d
assert tx["downtime_ms"] <= 1000, (tx["downtime_ms"], d)
print(f"aborted pause {d['longest_aborted_pause_ms']:.1f} ms, downtime {tx['downtime_ms']:.1f} ms")
PY
# Late every time: the source gives up, the guest running here, and both ends say why. Either
# after the third abort, or earlier when the policy, timing the aborted rounds, no longer
# predicts a switch-over that fits (their 2 s count as fixed cost): both are the limit kept.
start_receiver --once --json "$WORK/rx.json" || exit 1
expect_exit 1 "a switch-over late every time fails the migration, the guest kept running" -- \
  env RAMSHIFT_TEST_HOLD_AT=source-paused-round:2 "$RAMSHIFT" send --to "$RX_URI" "${GUARDED[@]}" \
  --json "$WORK/tx.json"
expect_stderr "run past --downtime-limit 1000 ms 3 times|not converging.*predicted [0-9]+ ms at worst" \
  "the sender says why it stopped: the aborts, or the switch-over no longer fitting"
[ "$(grep -c "switch-over aborted" "$WORK/err")" -ge 2 ] && pass "the guest was resumed under the limit each time" \
  || fail "fewer than two aborted switch-overs"
wait "$RX_PID"; rc=$?
[ "$rc" = 1 ] && grep -q "downtime-limit" "$WORK/rx.err" && pass "receiver exit 1 with the source's reason" \
  || { fail "receiver after three aborts: exit $rc"; tail -3 "$WORK/rx.err"; }
python3 - "$WORK/tx.json" <<'PY' && pass "guard: the source guest is reported running" || fail "guard failure report"
import json, sys
tx = json.load(open(sys.argv[1]))
assert tx["status"] == "failed" and tx["source_guest"] == "running", (tx["status"], tx.get("source_guest"))
PY

# The guard's second stage: the pages were placed in time but the destination's verdict on
# the digest runs late (its check held 3 s once, test knob, on the receiver). The source
# resumes its guest before the limit and sends SWITCHOVER_ABORT; the destination drops the
# copy it had verified and committed (its --guest-out back to .partial), and the next
# switch-over completes: both ends count the abort, the memories are equal.
OUT="$WORK/guest.out"
export RAMSHIFT_TEST_HOLD_AT=destination-check:3:1
start_receiver --once --json "$WORK/rx.json" --resume-seconds 1 --dump-guest "$WORK/rx.dump" \
  --guest-out "$OUT" || exit 1
unset RAMSHIFT_TEST_HOLD_AT
expect_exit 0 "a switch-over whose verdict runs late is aborted, and the next one completes" -- \
  "$RAMSHIFT" send --to "$RX_URI" "${GUARDED[@]}" --json "$WORK/tx.json" --dump-guest "$WORK/tx.dump"
expect_stderr "switch-over aborted: the destination's COMMIT had not come" \
  "the sender says it resumed the guest while the destination was still checking"
wait "$RX_PID" && pass "receiver exit 0 (its committed copy dropped once)" || { fail "receiver (late verdict)"; cat "$WORK/rx.err"; }
grep -q "the source aborted its switch-over" "$WORK/rx.err" && pass "the receiver says it dropped its copy" \
  || fail "the receiver does not say it dropped its copy"
same_memory $((128 << 20)) "after a switch-over aborted for its verdict"
[ "$(stat -c %s "$OUT" 2>/dev/null)" = $((128 << 20)) ] && [ ! -e "$OUT.partial" ] \
  && pass "--guest-out in place once, after the switch-over that completed" || { fail "--guest-out after the abort"; ls -l "$WORK"; }
rm -f "$OUT"
python3 - "$WORK/tx.json" "$WORK/rx.json" <<'PY' && pass "late verdict: the aborted pause and the downtime under --downtime-limit 1000, counted on both ends" || fail "late verdict report"
import json, sys
tx, rx = (json.load(open(p)) for p in sys.argv[1:3])
d = tx["downtime_detail"]
assert tx["status"] == "completed" and tx["verified"], tx["error"]
assert d["aborted_switchovers"] == 1, d
assert 0 < d["longest_aborted_pause_ms"] <= 1000, d
assert tx["downtime_ms"] <= 1000, tx["downtime_ms"]
assert rx["downtime_detail"]["aborted_switchovers"] == 1, rx["downtime_detail"]
print(f"aborted pause {d['longest_aborted_pause_ms']:.1f} ms, downtime {tx['downtime_ms']:.1f} ms")
PY
# Late every time: three aborts, the guest running here, and nothing left at --guest-out.
export RAMSHIFT_TEST_HOLD_AT=destination-check:2
start_receiver --once --json "$WORK/rx.json" --guest-out "$OUT" || exit 1
unset RAMSHIFT_TEST_HOLD_AT
expect_exit 1 "a verdict late every time fails the migration, the guest kept running" -- \
  "$RAMSHIFT" send --to "$RX_URI" "${GUARDED[@]}" --json "$WORK/tx.json"
expect_stderr "run past --downtime-limit 1000 ms 3 times|not converging.*predicted [0-9]+ ms at worst" \
  "the sender says why it stopped"
wait "$RX_PID"; rc=$?
[ "$rc" = 1 ] && grep -q "downtime-limit" "$WORK/rx.err" && pass "receiver exit 1 with the source's reason" \
  || { fail "receiver after late verdicts: exit $rc"; tail -3 "$WORK/rx.err"; }
[ ! -e "$OUT" ] && [ ! -e "$OUT.partial" ] && pass "no --guest-out file left, complete or partial" \
  || { fail "an output file was left after the failed migration"; ls -l "$WORK"; }
python3 - "$WORK/tx.json" <<'PY' && pass "late verdicts: the source guest is reported running" || fail "late verdicts failure report"
import json, sys
tx = json.load(open(sys.argv[1]))
assert tx["status"] == "failed" and tx["source_guest"] == "running", (tx["status"], tx.get("source_guest"))
PY

expect_exit 2 "--verify with an unknown mode is a usage error" -- \
  "$RAMSHIFT" send --to tcp://127.0.0.1:1 --verify sometimes --guest synthetic:size=1M

expect_exit 0 "ramshift demo (256 MiB live guest, two processes)" -- \
  "$RAMSHIFT" demo --guest synthetic:size=256M,dirty-rate=20M,pattern=mixed
expect_stderr "every page verified" "demo reports the guest verified on the destination"

start_receiver --once || exit 1
expect_sender_fails_when_receiver_dies 2 --guest synthetic:size=256M,dirty-rate=20M --max-bandwidth 32M
finish
