#!/bin/bash
# Failures between real processes: the side that remains fails cleanly, says why, and
# nothing is corrupted or left behind.
source "$(dirname "$0")/lib.sh"

"$RAMSHIFT" make-image "$WORK/src.img" --size 256M --pattern random || exit 1
sum_before=$(md5sum < "$WORK/src.img")

# 1. Receiver killed mid-transfer: the sender exits 1 with a reason; the source is unchanged.
start_receiver --once --guest-out "$WORK/dst.img" || exit 1
expect_sender_fails_when_receiver_dies 1.5 --guest "file:$WORK/src.img" --max-bandwidth 64M
[ "$(md5sum < "$WORK/src.img")" = "$sum_before" ] && pass "source image unchanged" || fail "source image changed"

# 2. Sender killed mid-transfer: the receiver exits 1 and leaves no output file.
rm -f "$WORK/dst.img" "$WORK/dst.img.partial"
start_receiver --once --guest-out "$WORK/dst.img" || exit 1
"$RAMSHIFT" send --to "$RX_URI" --guest "file:$WORK/src.img" --max-bandwidth 64M >/dev/null 2>&1 &
TX=$!; PIDS+=("$TX")
sleep 1.5
[ -e "$WORK/dst.img.partial" ] && pass "receiver writes to a .partial file meanwhile" || fail "no .partial file during transfer"
kill -9 "$TX"
wait "$RX_PID"; rc=$?
[ "$rc" = 1 ] && pass "receiver exits 1 when the sender dies" || { fail "receiver exit $rc"; cat "$WORK/rx.err"; }
grep -qiE "source|closed|reset" "$WORK/rx.err" && pass "receiver says the source went away" || { fail "receiver message"; cat "$WORK/rx.err"; }
[ ! -e "$WORK/dst.img" ] && [ ! -e "$WORK/dst.img.partial" ] && pass "no output file left behind" \
  || fail "output file left behind after a failed migration"

# 3. Garbage on the receiver's port does not crash it; a real sender still succeeds after.
start_receiver --once || exit 1
port=${RX_URI##*:}
head -c 100000 /dev/urandom > "$WORK/junk"
python3 - "$port" "$WORK/junk" <<'PY'
import socket, sys
s = socket.create_connection(("127.0.0.1", int(sys.argv[1])))
s.sendall(open(sys.argv[2], "rb").read()); s.close()
PY
expect_exit 0 "a real sender succeeds after garbage hit the port" -- \
  "$RAMSHIFT" send --to "$RX_URI" --guest "file:$WORK/src.img" --codec none
wait "$RX_PID" && pass "receiver survived the garbage and completed" || fail "receiver failed after garbage"
finish
