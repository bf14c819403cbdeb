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
start_sender --guest "file:$WORK/src.img" --bandwidth-limit 64M --json "$WORK/tx.json"
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
start_sender --guest "file:$WORK/src.img" --bandwidth-limit 64M
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
start_sender --guest "file:$WORK/src.img" --bandwidth-limit 64M
wait_partial && sleep 0.5
kill -TERM "$RX_PID"; kill -TERM "$RX_PID"
wait "$RX_PID"; rc=$?
[ "$rc" = 1 ] && pass "receive exits 1 after two signals" || fail "receive exit $rc after two signals"
no_output && pass "no .partial left after two signals" || fail "output left behind after two signals"
wait "$TX"; rc=$?
[ "$rc" = 1 ] && pass "send exits 1 when the receiver was killed twice" || fail "send exit $rc"

start_receiver --once --guest-out "$WORK/dst.img" || exit 1
start_sender --guest "file:$WORK/src.img" --bandwidth-limit 64M
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
start_sender -v --guest "synthetic:size=64M,dirty-rate=8M" --bandwidth-limit 16M \
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
finish
