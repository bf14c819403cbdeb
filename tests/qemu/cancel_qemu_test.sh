#!/bin/bash
# Cancelling a real QEMU migration, with stock QEMU and a running TCG guest that checks its
# memory:
#   1 qemu-migrate --control: `status` shows QEMU's figures advancing, `cancel` sends
#     migrate_cancel; 2 SIGINT to qemu-migrate does the same;
#   3 `cancel` on the source bridge's control socket; 4 SIGTERM to the destination bridge.
# Each time: the command exits 1 with "status": "cancelled" in its report, the source VM is
# running (query-status, in qemu-migrate's report) and its heartbeat goes on with its memory
# intact, and the destination QEMU, whose incoming migration broke, has exited (QEMU's own
# behaviour). Usage: cancel_qemu_test.sh path/to/ramshift
set -uo pipefail
RAMSHIFT=$(readlink -f "$1")
. "$(dirname "$0")/lib.sh"
qemu_test_begin qemu-cancel
# field SOCKET KEY: one key of `ramshift status --json -`.
field() {
  "$RAMSHIFT" status --json - "$1" 2>/dev/null |
    python3 -c 'import json,sys; print(json.load(sys.stdin)[sys.argv[1]])' "$2" 2>/dev/null
}
wait_active() {  # SOCKET: until its migration is active (60 s)
  for _ in $(seq 600); do [ "$(field "$1" status)" = active ] && return 0; sleep 0.1; done
  return 1
}

qemu_build_guest
qemu_start vm0 "$GUEST_MB" "$DIRTY"
qemu_wait_beat vm0 2 240 || fail "the guest did not boot"
N=0

# after_cancel LABEL NEXT: the source guest runs on, intact; the destination QEMU has gone.
after_cancel() {
  local label=$1 next=$2 b i
  b=$(qemu_beat vm0)
  qemu_wait_beat vm0 $((b + 3)) 60 || fail "$label: the source guest stopped"
  qemu_check_clean vm0 || fail "$label: the source guest's memory changed"
  for i in $(seq 100); do kill -0 "$(cat "$W/$next.pid")" 2>/dev/null || break; sleep 0.1; done
  kill -0 "$(cat "$W/$next.pid")" 2>/dev/null && fail "$label: the destination QEMU still runs"
  qlog "ok: $label (source heartbeat $b -> $(qemu_beat vm0); destination QEMU exited: $(tail -1 "$W/$next.qemu.out"))"
}

# 1 and 2: qemu-migrate with in-process bridges, cancelled over its socket, then by SIGINT.
for how in socket sigint; do
  N=$((N + 1)); next=vm$N
  qemu_start "$next" "$GUEST_MB" "$DIRTY" -incoming defer
  "$RAMSHIFT" qemu-migrate --src-qmp "$W/vm0.qmp" --dst-qmp "$W/$next.qmp" --json "$W/$next.json" \
    --via tcp://127.0.0.1:0 --max-bandwidth 6M --timeout 240 --control "unix:$W/mig.sock" \
    2> "$W/$next.err" &
  mig=$!; PIDS+=($mig)
  wait_active "$W/mig.sock" || fail "qemu-migrate ($how): never active: $(cat "$W/$next.err")"
  a=$(field "$W/mig.sock" transferred_bytes); sleep 1.5; b=$(field "$W/mig.sock" transferred_bytes)
  [ "$b" -gt "$a" ] || fail "qemu-migrate ($how): transferred did not advance ($a -> $b)"
  qlog "ok: qemu-migrate status: $("$RAMSHIFT" status "$W/mig.sock" | cut -c1-100)"
  if [ $how = socket ]; then "$RAMSHIFT" cancel "$W/mig.sock" || fail "cancel refused"
  else kill -INT $mig; fi
  wait $mig; rc=$?
  [ $rc = 1 ] || fail "qemu-migrate ($how): exit $rc, expected 1: $(tail -3 "$W/$next.err")"
  grep -q '"status": "cancelled"' "$W/$next.json" || fail "qemu-migrate ($how): report not cancelled"
  grep -q '"source_status": "running"' "$W/$next.json" || fail "qemu-migrate ($how): the source VM is not running"
  grep -q "migrate_cancel" "$W/$next.err" || fail "qemu-migrate ($how): did not say it sent migrate_cancel"
  [ ! -e "$W/mig.sock" ] || fail "qemu-migrate ($how): control socket left behind"
  after_cancel "qemu-migrate cancelled by $how" "$next"
done

# 3 and 4: bridge processes, the source's cancelled over its socket, the destination's by
# SIGTERM; qemu-migrate drives QEMU through them.
for how in source-socket dest-sigterm; do
  N=$((N + 1)); next=vm$N
  qemu_start "$next" "$GUEST_MB" "$DIRTY" -incoming defer
  "$RAMSHIFT" qemu-bridge dest --listen tcp://127.0.0.1:0 --qemu "unix:$W/$next.in" \
    --json "$W/$next.dbr.json" > "$W/$next.dbr.out" 2> "$W/$next.dbr.err" &
  DPID=$!; PIDS+=($DPID)
  for _ in $(seq 100); do grep -q listening "$W/$next.dbr.out" && break; sleep 0.1; done
  duri=$(awk '/listening on/ {print $3}' "$W/$next.dbr.out")
  "$RAMSHIFT" qemu-bridge source --listen "unix:$W/$next.sb" --to "$duri" --control "unix:$W/sb.sock" \
    --json "$W/$next.sbr.json" > "$W/$next.sbr.out" 2> "$W/$next.sbr.err" &
  SPID=$!; PIDS+=($SPID)
  for _ in $(seq 100); do grep -q listening "$W/$next.sbr.out" && break; sleep 0.1; done
  "$RAMSHIFT" qemu-migrate --src-qmp "$W/vm0.qmp" --dst-qmp "$W/$next.qmp" --json "$W/$next.json" \
    --src-uri "unix:$W/$next.sb" --dst-uri "unix:$W/$next.in" --max-bandwidth 6M --timeout 240 \
    2> "$W/$next.err" &
  mig=$!; PIDS+=($mig)
  wait_active "$W/sb.sock" || fail "bridge ($how): never active"
  for _ in $(seq 100); do [ "$(field "$W/sb.sock" transferred_bytes)" -gt 1000000 ] 2>/dev/null && break; sleep 0.1; done
  qlog "ok: source bridge status: $("$RAMSHIFT" status "$W/sb.sock" | cut -c1-100)"
  if [ $how = source-socket ]; then "$RAMSHIFT" cancel "$W/sb.sock" || fail "cancel refused"
  else kill -TERM $DPID; fi
  wait $SPID; src=$?
  wait $DPID; dst=$?
  wait $mig; rc=$?
  [ $src = 1 ] && [ $dst = 1 ] || fail "bridge ($how): exits source $src, destination $dst, expected 1 and 1"
  grep -q '"status": "cancelled"' "$W/$next.sbr.json" || fail "bridge ($how): source bridge report not cancelled"
  grep -q '"status": "cancelled"' "$W/$next.dbr.json" || fail "bridge ($how): destination bridge report not cancelled"
  grep -qi "cancelled" "$W/$next.sbr.err" && grep -qi "cancelled" "$W/$next.dbr.err" ||
    fail "bridge ($how): both bridges must say cancelled"
  [ $rc = 1 ] || fail "bridge ($how): qemu-migrate exit $rc, expected 1"
  grep -q '"source_status": "running"' "$W/$next.json" || fail "bridge ($how): the source VM is not running"
  [ ! -e "$W/sb.sock" ] || fail "bridge ($how): control socket left behind"
  after_cancel "bridge cancelled ($how)" "$next"
done
qlog "PASS"
