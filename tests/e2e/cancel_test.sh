#!/bin/bash
# Signals between real processes: SIGINT/SIGTERM cancel a migration cleanly on either end
# (the peer is told, a report says "cancelled", nothing is left behind, the source keeps its
# guest); a second signal exits at once and still leaves nothing behind.
source "$(dirname "$0")/lib.sh"

"$RAMSHIFT" make-image "$WORK/src.img" --size 256M --pattern random || exit 1
sum_before=$(md5sum < "$WORK/src.img")
no_output() { [ ! -e "$WORK/dst.img" ] && [ ! -e "$WORK/dst.img.partial" ]; }
# start_sender ARGS...: `ramshift send` to the running receiver in the background; sets TX.
start_sender() {
  local verbose=()
  [ "${1:-}" = -v ] && { verbose=(-v); shift; }
  "$RAMSHIFT" "${verbose[@]}" send --to "$RX_URI" "$@" >"$WORK/tx.out" 2>"$WORK/tx.err" &
  TX=$!; PIDS+=("$TX")
}
# wait_partial: until the receiver has started writing (the transfer is under way).
wait_partial() {
  for _ in $(seq 200); do [ -e "$WORK/dst.img.partial" ] && return 0; sleep 0.05; done
  return 1
}

# 1. SIGINT to send mid-transfer of an image.
rm -f "$WORK/dst.img"*
start_receiver --once --guest-out "$WORK/dst.img" || exit 1
start_sender --guest "file:$WORK/src.img" --max-bandwidth 64M --json "$WORK/tx.json"
wait_partial && sleep 0.5
kill -INT "$TX"
wait "$TX"; rc=$?
[ "$rc" = 1 ] && pass "send exits 1 after SIGINT" || { fail "send exit $rc"; cat "$WORK/tx.err"; }
grep -q '"status": "cancelled"' "$WORK/tx.json" && pass "send's report says cancelled" \
  || { fail "send's report"; cat "$WORK/tx.json"; }
wait "$RX_PID"; rc=$?
[ "$rc" = 1 ] && pass "receive exits 1 after the source cancelled" || fail "receive exit $rc"
grep -qi "source cancelled" "$WORK/rx.err" && pass "receive says the source cancelled" \
  || { fail "receive's message"; cat "$WORK/rx.err"; }
no_output && pass "no output or .partial file left" || fail "output left behind"
[ "$(md5sum < "$WORK/src.img")" = "$sum_before" ] && pass "source image unchanged" || fail "source image changed"

# 2. SIGTERM to receive mid-transfer.
start_receiver --once --guest-out "$WORK/dst.img" --json "$WORK/rx.json" || exit 1
start_sender --guest "file:$WORK/src.img" --max-bandwidth 64M
wait_partial && sleep 0.5
kill -TERM "$RX_PID"
wait "$RX_PID"; rc=$?
[ "$rc" = 1 ] && pass "receive exits 1 after SIGTERM" || { fail "receive exit $rc"; cat "$WORK/rx.err"; }
grep -q '"status": "cancelled"' "$WORK/rx.json" && pass "receive's report says cancelled" \
  || { fail "receive's report"; cat "$WORK/rx.json"; }
no_output && pass "no .partial left after SIGTERM" || fail "output left behind after SIGTERM"
wait "$TX"; rc=$?
[ "$rc" = 1 ] && pass "send exits 1 when the destination cancelled" || fail "send exit $rc"
grep -qi "destination cancelled" "$WORK/tx.err" && pass "send says the destination cancelled" \
  || { fail "send's message"; cat "$WORK/tx.err"; }
[ "$(md5sum < "$WORK/src.img")" = "$sum_before" ] && pass "source image unchanged" || fail "source image changed"

# 3. A double signal exits at once, on either end, and leaves nothing behind. The receiver
# gets both within microseconds of each other.
start_receiver --once --guest-out "$WORK/dst.img" || exit 1
start_sender --guest "file:$WORK/src.img" --max-bandwidth 64M
wait_partial && sleep 0.5
kill -TERM "$RX_PID"; kill -TERM "$RX_PID"
wait "$RX_PID"; rc=$?
[ "$rc" = 1 ] && pass "receive exits 1 after two signals" || fail "receive exit $rc after two signals"
no_output && pass "no .partial left after two signals" || fail "output left behind after two signals"
wait "$TX"; rc=$?
[ "$rc" = 1 ] && pass "send exits 1 when the receiver was killed twice" || fail "send exit $rc"

start_receiver --once --guest-out "$WORK/dst.img" || exit 1
start_sender --guest "file:$WORK/src.img" --max-bandwidth 64M
wait_partial && sleep 0.5
kill -INT "$TX"; kill -INT "$TX"
wait "$TX"; rc=$?
[ "$rc" = 1 ] && pass "send exits 1 after two signals" || fail "send exit $rc after two signals"
wait "$RX_PID"; rc=$?
[ "$rc" = 1 ] && pass "receive exits 1 after the sender's double signal" || fail "receive exit $rc"
no_output && pass "no output left after the sender's double signal" || fail "output left behind"
[ "$(md5sum < "$WORK/src.img")" = "$sum_before" ] && pass "source image unchanged" || fail "source image changed"

# 4. A live guest cancelled mid-round resumes on the source, and the report says so. A
# downtime limit no round can meet keeps it in its rounds; the signal comes as round 1 starts
# (the sender logs each round's decision with -v).
start_receiver --once || exit 1
start_sender -v --guest "synthetic:size=64M,dirty-rate=8M" --max-bandwidth 16M \
  --max-rounds 1000 --downtime-limit 1 --json "$WORK/live.json"
for _ in $(seq 400); do grep -q "round 0:" "$WORK/tx.err" && break; sleep 0.05; done
kill -INT "$TX"
wait "$TX"; rc=$?
[ "$rc" = 1 ] && pass "live send exits 1 after SIGINT" || { fail "live send exit $rc"; cat "$WORK/tx.err"; }
grep -q '"status": "cancelled"' "$WORK/live.json" && pass "live report says cancelled" \
  || { fail "live report"; cat "$WORK/live.json"; }
grep -qE '"source_guest": "(running|resumed)"' "$WORK/live.json" \
  && pass "the report says the guest runs on the source" || { fail "source_guest"; cat "$WORK/live.json"; }
grep -q '"rounds": [1-9]' "$WORK/live.json" && pass "cancelled after round 0" || fail "cancelled in round 0"
wait "$RX_PID"; rc=$?
[ "$rc" = 1 ] && pass "receive exits 1 after the live cancel" || fail "receive exit $rc"
grep -qi "source cancelled" "$WORK/rx.err" && pass "receive says the source cancelled (live)" \
  || { fail "receive's message (live)"; cat "$WORK/rx.err"; }

# 5. Signals that arrive inside the hand-off window are held until it resolves: the guest
# ends up running on exactly one host (here the destination, since COMMIT had come). A test
# hook holds the window open for 2 s at a named point (RAMSHIFT_TEST_HOLD_AT) so the real
# signals land inside it: on send after COMMIT, before HANDOFF; on receive after COMMIT,
# before HANDOFF arrives. Two signals each: the second one must not exit either.
for end in source destination; do
  [ "$end" = destination ] && export RAMSHIFT_TEST_HOLD_AT=destination-handoff:2
  start_receiver --once --json "$WORK/rx.json" --resume-seconds 1 || exit 1
  unset RAMSHIFT_TEST_HOLD_AT
  [ "$end" = source ] && export RAMSHIFT_TEST_HOLD_AT=source-handoff:2
  start_sender --guest "synthetic:size=32M,dirty-rate=4M" --json "$WORK/live.json"
  unset RAMSHIFT_TEST_HOLD_AT
  if [ "$end" = source ]; then log="$WORK/tx.err"; pid=$TX; sig=INT; else log="$WORK/rx.err"; pid=$RX_PID; sig=TERM; fi
  for _ in $(seq 400); do grep -q "holding at $end-handoff" "$log" && break; sleep 0.05; done
  grep -q "holding at $end-handoff" "$log" || fail "$end: never reached the hand-off hold"
  kill -$sig "$pid"; sleep 0.3; kill -$sig "$pid"
  wait "$TX"; tx=$?
  wait "$RX_PID"; rx=$?
  [ "$tx" = 0 ] && [ "$rx" = 0 ] && pass "SIG$sig x2 to the $end inside the hand-off: both complete (exit 0)" \
    || { fail "SIG$sig x2 in the $end's hand-off: send $tx, receive $rx"; tail -3 "$WORK/tx.err" "$WORK/rx.err"; }
  grep -q "hand-off is under way" "$log" && pass "the $end says it holds the second signal" \
    || { fail "the $end's message on the second signal"; tail -5 "$log"; }
  python3 - "$WORK/live.json" "$WORK/rx.json" <<'PY' && pass "the guest runs on the destination only, verified there ($end)" || fail "reports after the held signals ($end)"
import json, sys
tx, rx = (json.load(open(p)) for p in sys.argv[1:3])
assert tx["status"] == rx["status"] == "completed", (tx["status"], rx["status"])
assert tx.get("source_guest") in (None, "paused (handed over)"), tx.get("source_guest")
assert rx["resumed"]["verified"] is True, rx.get("resumed")
PY
  if [ "$end" = source ]; then
    grep -q "the signal came during the hand-off, which completed" "$WORK/tx.err" \
      && pass "send says the signal came during the hand-off, which completed" \
      || { fail "send's closing message"; tail -3 "$WORK/tx.err"; }
  fi
done
finish
