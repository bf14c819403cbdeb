#!/bin/bash
# Two real processes over tcp on loopback move a 256 MiB image; the copy is bit-identical.
source "$(dirname "$0")/lib.sh"

"$RAMSHIFT" make-image "$WORK/src.img" --size 256M --pattern mixed || exit 1
for codec in auto none xbzrle+zstd; do
  rm -f "$WORK/dst.img"
  start_receiver --once --guest-out "$WORK/dst.img" --json "$WORK/rx.json" || exit 1
  expect_exit 0 "send 256 MiB over tcp, 4 queues, codec $codec" -- \
    "$RAMSHIFT" send --to "$RX_URI" --guest "file:$WORK/src.img" --queues 4 --codec "$codec" --json "$WORK/tx.json"
  wait "$RX_PID"; rx=$?
  [ "$rx" = 0 ] && pass "receiver exit 0 ($codec)" || { fail "receiver exit $rx ($codec)"; cat "$WORK/rx.err"; }
  cmp -s "$WORK/src.img" "$WORK/dst.img" && pass "received image is bit-identical ($codec)" \
    || fail "received image differs ($codec)"
  python3 - "$WORK/tx.json" "$WORK/rx.json" "$codec" <<'PY' && pass "JSON reports agree ($codec)" || fail "JSON reports ($codec)"
import json, sys
tx, rx = (json.load(open(p)) for p in sys.argv[1:3])
keys = ["status", "verified", "total_ms", "setup_ms", "downtime_ms", "rounds", "guest_bytes", "wire_bytes",
        "throughput_mbps", "pages", "queues", "transport", "codec", "error"]
for r in (tx, rx):
    missing = [k for k in keys if k not in r]
    assert not missing, missing
    assert r["status"] == "completed" and r["verified"] is True and r["error"] is None, r
    assert r["guest_bytes"] == 256 << 20 and r["queues"] == 4 and r["transport"] == "tcp"
assert tx["codec"] == rx["codec"] == sys.argv[3]
# Both ends count the same pages; the zero pages of a one-round image are not sent at all.
assert tx["pages"] == {**rx["pages"], "zero_unsent": tx["pages"]["zero_unsent"]}, (tx["pages"], rx["pages"])
assert "zero_unsent" not in rx["pages"], rx["pages"]
if sys.argv[3] != "none":
    assert tx["pages"]["zero_unsent"] > 0 and tx["wire_bytes"] < tx["guest_bytes"], tx
PY
done

# An image written to while it is sent (its first 4 MiB rewritten once they have gone):
# --verify transfer accepts the mix of old and new pages; --verify full finds the chunks that
# differ, resends them and the copy equals the file as it is at the end, byte for byte.
"$RAMSHIFT" make-image "$WORK/live.img" --size 64M --pattern mixed || exit 1
for mode in transfer full; do
  rm -f "$WORK/dst.img"
  start_receiver --once --guest-out "$WORK/dst.img" || exit 1
  "$RAMSHIFT" send --to "$RX_URI" --guest "file:$WORK/live.img" --verify "$mode" \
    --max-bandwidth 24M --json "$WORK/tx.json" >"$WORK/tx.out" 2>"$WORK/tx.err" &
  tx=$!; PIDS+=("$tx")
  for _ in $(seq 200); do [ -e "$WORK/dst.img.partial" ] && break; sleep 0.05; done
  sleep 1  # ~24 MiB sent: the first 4 MiB are gone
  dd if=/dev/urandom of="$WORK/live.img" bs=1M count=4 conv=notrunc status=none
  wait "$tx"; rc=$?
  wait "$RX_PID"; rx=$?
  [ "$rc" = 0 ] && [ "$rx" = 0 ] && pass "image changed during send, --verify $mode: both ends exit 0" \
    || { fail "image changed during send, --verify $mode: send $rc, receive $rx"; tail -3 "$WORK/tx.err" "$WORK/rx.err"; }
  if [ "$mode" = full ]; then
    cmp -s "$WORK/live.img" "$WORK/dst.img" && pass "--verify full: the copy equals the changed image" \
      || fail "--verify full: the copy differs from the changed image"
    grep -qE '"mismatches_repaired": [1-9]' "$WORK/tx.json" && pass "--verify full: the repaired pages are counted" \
      || { fail "--verify full: no repairs counted"; cat "$WORK/tx.json"; }
  else
    cmp -s "$WORK/live.img" "$WORK/dst.img" && fail "--verify transfer: the copy has the late writes" \
      || pass "--verify transfer: the copy lacks the writes made after their pages went (documented)"
  fi
done
finish
