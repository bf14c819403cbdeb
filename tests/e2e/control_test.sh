#!/bin/bash
# --control unix:PATH between real processes: `status` during a live migration shows numbers
# that advance on both ends, `set-bandwidth` changes the rate measured on the wire, `cancel`
# ends it as cancelled on both sides (the source guest runs, no partial output), and the
# socket is removed at exit, refused while another process answers, replaced when stale.
source "$(dirname "$0")/lib.sh"

# A client in python (`ramshift status` itself is checked below, but a debug binary takes
# seconds to start on a busy host): `client.py SOCKET LINE [KEY]` sends LINE and prints the
# answer line, or with KEY that key of the answer's "return".
cat >"$WORK/client.py" <<'EOF'
import json, socket, sys
s = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
s.settimeout(5)
try:
    s.connect(sys.argv[1])
except OSError:
    sys.exit(1)
s.sendall(sys.argv[2].encode() + b"\n")
buf = b""
while b"\n" not in buf:
    chunk = s.recv(65536)
    if not chunk:
        break
    buf += chunk
line = buf.decode().split("\n")[0]
print(json.loads(line)["return"][sys.argv[3]] if len(sys.argv) > 3 else line)
EOF
raw() { python3 -S "$WORK/client.py" "$1" "$2"; }
# field SOCKET KEY: one key of `query`'s answer (empty when nothing answers).
field() { python3 -S "$WORK/client.py" "$1" '{"execute": "query"}' "$2" 2>/dev/null; }
# wire_rate SOCKET SECONDS: wire bytes per second of the migration's own clock (total_ms)
# between two queries SECONDS apart, in one process so a slow start costs nothing.
cat >"$WORK/rate.py" <<'EOF'
import json, socket, sys, time
def query():
    s = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    s.settimeout(5)
    s.connect(sys.argv[1])
    s.sendall(b'{"execute": "query"}\n')
    buf = b""
    while b"\n" not in buf:
        buf += s.recv(65536)
    r = json.loads(buf.decode().split("\n")[0])["return"]
    return r["wire_bytes"], r["total_ms"]
w1, t1 = query()
time.sleep(float(sys.argv[2]))
w2, t2 = query()
print(int((w2 - w1) / ((t2 - t1) / 1000)))
EOF
wire_rate() { python3 -S "$WORK/rate.py" "$1" "$2" 2>/dev/null || echo 0; }
TX_SOCK="$WORK/tx.sock"; RX_SOCK="$WORK/rx.sock"

# 1. A live migration watched, slowed and cancelled over the sockets. A downtime limit no
# round can meet keeps it in its rounds; round 0 of 512 MiB at 8 MiB/s lasts a minute
# (--codec none: the limit counts wire bytes, and these are the guest's then).
start_receiver --once --control "unix:$RX_SOCK" --json "$WORK/rx.json" || exit 1
"$RAMSHIFT" send --to "$RX_URI" --guest "synthetic:size=512M,dirty-rate=1M,pattern=mixed" \
  --codec none --max-bandwidth 8M --max-rounds 1000 --downtime-limit 1 --control "unix:$TX_SOCK" \
  --json "$WORK/tx.json" >"$WORK/tx.out" 2>"$WORK/tx.err" &
TX=$!; PIDS+=("$TX")
# Filling a 512 MiB guest takes seconds on a busy host before the socket appears.
for _ in $(seq 600); do [ "$(field "$TX_SOCK" status)" = active ] && break; sleep 0.1; done
[ "$(field "$TX_SOCK" status)" = active ] && pass "send's socket says active" \
  || { fail "send's status: $("$RAMSHIFT" status "$TX_SOCK" 2>&1)"; cat "$WORK/tx.err"; }
t1=$(field "$TX_SOCK" transferred_bytes); sleep 1; t2=$(field "$TX_SOCK" transferred_bytes)
[ -n "$t1" ] && [ -n "$t2" ] && [ "$t2" -gt "$t1" ] && pass "send's transferred advances ($t1 -> $t2)" \
  || fail "send's transferred did not advance ($t1 -> $t2)"
r1=$(field "$RX_SOCK" transferred_bytes); sleep 0.5; r2=$(field "$RX_SOCK" transferred_bytes)
[ "$(field "$RX_SOCK" status)" = active ] && [ -n "$r1" ] && [ "$r2" -gt "$r1" ] \
  && pass "receive's socket says active, transferred advances ($r1 -> $r2)" \
  || fail "receive's status: $("$RAMSHIFT" status "$RX_SOCK" 2>&1)"
before=$(wire_rate "$TX_SOCK" 1.5)
"$RAMSHIFT" set-bandwidth "$TX_SOCK" 1M && pass "set-bandwidth accepted" || fail "set-bandwidth refused"
[ "$(field "$TX_SOCK" bandwidth_limit_bytes_per_s)" = 1048576 ] && pass "query shows the new limit" \
  || fail "limit after set-bandwidth: $(field "$TX_SOCK" bandwidth_limit_bytes_per_s)"
sleep 0.5  # a batch already waiting for tokens goes at the old rate
after=$(wire_rate "$TX_SOCK" 2)
echo "wire rate before ${before} B/s, after set-bandwidth 1M ${after} B/s"
[ "$(field "$TX_SOCK" round)" = 0 ] || echo "note: round 0 ended while measuring"
python3 -c "import sys; sys.exit(0 if $after < $before / 2 and $after < 1.75 * 1048576 else 1)" \
  && pass "set-bandwidth 1M lowered the measured rate (${before} -> ${after} B/s)" \
  || fail "rate after set-bandwidth: ${before} -> ${after} B/s"
grep -q '"error"' <<<"$(raw "$TX_SOCK" '{"execute": "set-bandwidth", "arguments": {"bytes-per-second": -1}}')" \
  && pass "a negative bandwidth is refused" || fail "negative bandwidth accepted"
grep -q '"error"' <<<"$(raw "$RX_SOCK" '{"execute": "set-bandwidth", "arguments": {"bytes-per-second": 1}}')" \
  && pass "the destination refuses set-bandwidth (it sends nothing to limit)" || fail "receive took set-bandwidth"
"$RAMSHIFT" status "$TX_SOCK" >"$WORK/status.txt" 2>&1 && grep -q "source: active, round" "$WORK/status.txt" \
  && pass "status prints a readable line: $(cut -c1-90 "$WORK/status.txt")" || { fail "status line"; cat "$WORK/status.txt"; }
"$RAMSHIFT" status --json - "unix:$RX_SOCK" | grep -q '"role":"destination"' \
  && pass "status --json (unix:PATH) prints the object" || fail "status --json"
"$RAMSHIFT" start-postcopy "$TX_SOCK" 2>"$WORK/err"; rc=$?
[ "$rc" = 2 ] && grep -q -- "--mode hybrid" "$WORK/err" \
  && pass "a precopy send refuses start-postcopy and says why: $(cut -c1-80 "$WORK/err")" \
  || { fail "start-postcopy on a precopy send: exit $rc"; cat "$WORK/err"; }
"$RAMSHIFT" start-postcopy "$RX_SOCK" 2>"$WORK/err"; rc=$?
[ "$rc" = 2 ] && grep -q "source" "$WORK/err" && pass "the destination refuses start-postcopy (the source starts it)" \
  || { fail "start-postcopy on receive: exit $rc"; cat "$WORK/err"; }
[ "$(field "$TX_SOCK" status)" = active ] && pass "the refused start-postcopy changed nothing (still active)" \
  || fail "status after a refused start-postcopy: $(field "$TX_SOCK" status)"
"$RAMSHIFT" cancel "$TX_SOCK" && pass "cancel accepted" || fail "cancel refused"
wait "$TX"; rc=$?
[ "$rc" = 1 ] && pass "send exits 1 after cancel" || { fail "send exit $rc"; cat "$WORK/tx.err"; }
grep -q '"status": "cancelled"' "$WORK/tx.json" && pass "send's report says cancelled" \
  || { fail "send's report"; cat "$WORK/tx.json"; }
grep -qE '"source_guest": "(running|resumed)"' "$WORK/tx.json" \
  && pass "the source guest runs on the source" || fail "source_guest after cancel"
grep -qi "control socket" "$WORK/tx.err" && pass "send says why (the control socket)" \
  || { fail "send's message"; cat "$WORK/tx.err"; }
wait "$RX_PID"; rc=$?
[ "$rc" = 1 ] && pass "receive exits 1 after the source's cancel" || fail "receive exit $rc"
grep -q '"status": "cancelled"' "$WORK/rx.json" && pass "receive's report says cancelled" \
  || { fail "receive's report"; cat "$WORK/rx.json"; }
[ ! -e "$TX_SOCK" ] && [ ! -e "$RX_SOCK" ] && pass "both sockets removed at exit" || fail "a socket was left"
"$RAMSHIFT" status "$TX_SOCK" >/dev/null 2>"$WORK/err"; rc=$?
[ "$rc" != 0 ] && grep -q "no migration answers" "$WORK/err" && pass "status on a gone socket says so (exit $rc)" \
  || { fail "status on a gone socket: exit $rc"; cat "$WORK/err"; }

# 2. The destination cancelled over its socket mid-image: partial output removed, the
# source told, the image untouched.
"$RAMSHIFT" make-image "$WORK/src.img" --size 128M --pattern random || exit 1
sum_before=$(md5sum <"$WORK/src.img")
start_receiver --once --guest-out "$WORK/dst.img" --control "unix:$RX_SOCK" --json "$WORK/rx.json" || exit 1
"$RAMSHIFT" send --to "$RX_URI" --guest "file:$WORK/src.img" --max-bandwidth 16M \
  >"$WORK/tx.out" 2>"$WORK/tx.err" &
TX=$!; PIDS+=("$TX")
for _ in $(seq 200); do [ -e "$WORK/dst.img.partial" ] && break; sleep 0.05; done
sleep 0.5
"$RAMSHIFT" cancel "unix:$RX_SOCK" || fail "cancel (receive) refused"
wait "$RX_PID"; rc=$?
[ "$rc" = 1 ] && pass "receive exits 1 after cancel" || { fail "receive exit $rc"; cat "$WORK/rx.err"; }
grep -q '"status": "cancelled"' "$WORK/rx.json" && pass "receive's report says cancelled" || fail "receive's report"
[ ! -e "$WORK/dst.img" ] && [ ! -e "$WORK/dst.img.partial" ] && pass "no output or .partial left" || fail "output left"
wait "$TX"; rc=$?
[ "$rc" = 1 ] && grep -qi "destination cancelled" "$WORK/tx.err" \
  && pass "send exits 1 and says the destination cancelled" || { fail "send exit $rc"; cat "$WORK/tx.err"; }
[ "$(md5sum <"$WORK/src.img")" = "$sum_before" ] && pass "source image unchanged" || fail "source image changed"

# 2b. start-postcopy: a hybrid send whose own rule would not go post-copy after its first
# round (--postcopy-after 10000; round 0 of 64 MiB at 8 MiB/s lasts 8 s) is asked to during
# that round: it goes post-copy when the round ends, and both ends complete and verify.
start_receiver --once --control "unix:$RX_SOCK" --json "$WORK/rx.json" || exit 1
"$RAMSHIFT" send --to "$RX_URI" --guest "synthetic:size=64M,dirty-rate=1M,pattern=mixed" \
  --codec none --max-bandwidth 8M --max-rounds 1000 --downtime-limit 1 --mode hybrid \
  --postcopy-after 10000 --control "unix:$TX_SOCK" --json "$WORK/tx.json" >"$WORK/tx.out" 2>"$WORK/tx.err" &
TX=$!; PIDS+=("$TX")
for _ in $(seq 600); do [ "$(field "$TX_SOCK" status)" = active ] && break; sleep 0.1; done
r0=$(field "$TX_SOCK" round)
"$RAMSHIFT" start-postcopy "unix:$TX_SOCK" && pass "start-postcopy accepted in round $r0" \
  || { fail "start-postcopy refused"; cat "$WORK/tx.err"; }
"$RAMSHIFT" start-postcopy "$TX_SOCK" && pass "a second start-postcopy before the switch is taken too" \
  || fail "second start-postcopy refused"
wait "$TX"; rc=$?
[ "$rc" = 0 ] && pass "the hybrid send completes after start-postcopy" || { fail "send exit $rc"; cat "$WORK/tx.err"; }
wait "$RX_PID"; rc=$?
[ "$rc" = 0 ] && grep -q '"verified": true' "$WORK/rx.json" && pass "receive completes and verifies" \
  || { fail "receive exit $rc"; cat "$WORK/rx.err"; }
grep -q '"mode": "postcopy"' "$WORK/rx.json" && grep -q '"postcopy_ms"' "$WORK/tx.json" \
  && pass "both reports show the post-copy phase" || fail "no post-copy in the reports"
rounds=$(python3 -c 'import json,sys; print(json.load(open(sys.argv[1]))["rounds"])' "$WORK/tx.json")
[ "$rounds" = $((r0 + 1)) ] && pass "post-copy began when round $r0 ended (rounds: $rounds)" \
  || fail "post-copy after $rounds pre-copy rounds, asked in round $r0"
grep -q "post-copy requested over the control socket" "$WORK/tx.err" && pass "send logs the request" \
  || { fail "send did not log the request"; tail -5 "$WORK/tx.err"; }

# 3. Socket hygiene and bad input.
start_receiver --control "unix:$RX_SOCK" || exit 1
FIRST=$RX_PID
[ "$(field "$RX_SOCK" status)" = none ] && pass "an idle receiver says none" || fail "idle status"
grep -q "GenericError" <<<"$(raw "$RX_SOCK" 'this is not json')" && pass "garbage is answered with an error" \
  || fail "garbage answer"
grep -q "unknown command" <<<"$(raw "$RX_SOCK" '{"execute": "reboot"}')" && pass "an unknown command is refused" \
  || fail "unknown command answer"
raw "$RX_SOCK" '{"execute": "metrics"}' | python3 -c 'import json,sys; t=json.load(sys.stdin)["return"]["text"]; sys.exit(0 if "ramshift_migration_status{role=\"destination\",status=\"none\"} 1" in t and "# TYPE ramshift_migration_wire_bytes gauge" in t else 1)' \
  && pass "metrics: Prometheus text with the status" || fail "metrics text"
python3 -c 'import socket,sys; s=socket.socket(socket.AF_UNIX); s.connect(sys.argv[1]); s.sendall(b"x"*200000)' "$RX_SOCK" 2>/dev/null
kill -0 "$FIRST" && [ "$(field "$RX_SOCK" status)" = none ] && pass "a 200 KB line leaves the server answering" \
  || fail "server after a long line"
"$RAMSHIFT" receive --listen tcp://127.0.0.1:0 --control "unix:$RX_SOCK" >/dev/null 2>"$WORK/err"; rc=$?
[ "$rc" = 2 ] && grep -q "in use" "$WORK/err" && pass "a second receiver refuses the live socket (exit 2)" \
  || { fail "second receiver: exit $rc"; cat "$WORK/err"; }
kill -9 "$FIRST"; wait "$FIRST" 2>/dev/null
[ -S "$RX_SOCK" ] && pass "kill -9 leaves a stale socket" || fail "no stale socket to test"
start_receiver --control "unix:$RX_SOCK" || exit 1
[ "$(field "$RX_SOCK" status)" = none ] && pass "a new receiver replaces the stale socket" || fail "stale socket not replaced"
kill -TERM "$RX_PID"; wait "$RX_PID"
[ ! -e "$RX_SOCK" ] && pass "SIGTERM removes the socket" || fail "socket left after SIGTERM"
finish
