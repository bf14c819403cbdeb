#!/bin/bash
# The daemon bits the systemd units rely on (packaging/systemd/): readiness reaches
# NOTIFY_SOCKET (READY=1 with a STATUS= line) once `receive` listens, and under journald
# (JOURNAL_STREAM naming stderr) log lines carry their syslog priority.
source "$(dirname "$0")/lib.sh"

if ! "$RAMSHIFT" --help >/dev/null 2>&1; then echo "no binary"; exit 1; fi
NOTIFY="$WORK/notify.sock"
# A datagram socket standing in for systemd's: prints every message it gets.
python3 - "$NOTIFY" >"$WORK/notify.log" <<'PY' &
import socket, sys
s = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)
s.bind(sys.argv[1])
s.settimeout(20)
try:
    while True:
        msg = s.recv(4096).decode()
        print(msg.replace("\n", " | "), flush=True)
except socket.timeout:
    pass
PY
LISTENER=$!; PIDS+=("$LISTENER")
for _ in $(seq 100); do [ -S "$NOTIFY" ] && break; sleep 0.05; done
NOTIFY_SOCKET="$NOTIFY" "$RAMSHIFT" receive --listen tcp://127.0.0.1:0 --once --accept-timeout 30 \
  >"$WORK/rx.out" 2>"$WORK/rx.err" &
RX=$!; PIDS+=("$RX")
for _ in $(seq 200); do grep -q "READY=1" "$WORK/notify.log" && break; sleep 0.05; done
grep -q "READY=1 | STATUS=listening on tcp://127.0.0.1:" "$WORK/notify.log" \
  && pass "receive notifies READY=1 with its address: $(head -1 "$WORK/notify.log")" \
  || { fail "no readiness: $(cat "$WORK/notify.log")"; cat "$WORK/rx.err"; }
uri=$(sed -n 's/^listening on //p' "$WORK/rx.out")
"$RAMSHIFT" make-image "$WORK/g.img" --size 8M --pattern mixed || exit 1
"$RAMSHIFT" send --to "$uri" --guest "file:$WORK/g.img" 2>"$WORK/tx.err" || fail "send failed"
wait "$RX"; rc=$?
[ "$rc" = 0 ] && pass "receive completed" || fail "receive exit $rc"
grep -q "STATUS=migrating from" "$WORK/notify.log" && grep -q "STATUS=listening on .*completed" "$WORK/notify.log" \
  && pass "STATUS follows the migration (migrating, then the last outcome)" \
  || { fail "status messages"; cat "$WORK/notify.log"; }

# Journald: stderr is the stream JOURNAL_STREAM names (here a file: its device and inode).
touch "$WORK/journal"
js=$(stat -c '%d:%i' "$WORK/journal")
JOURNAL_STREAM=$js "$RAMSHIFT" send --to tcp://127.0.0.1:1 --guest "file:$WORK/missing.img" \
  2>>"$WORK/journal"
grep -q '^<3>ramshift: error: ' "$WORK/journal" && pass "under journald an error line starts <3>" \
  || { fail "journal line"; cat "$WORK/journal"; }
"$RAMSHIFT" send --to tcp://127.0.0.1:1 --guest "file:$WORK/missing.img" 2>"$WORK/plain"
grep -q '^ramshift: error: ' "$WORK/plain" && pass "elsewhere the line is plain" || fail "plain line"
finish
