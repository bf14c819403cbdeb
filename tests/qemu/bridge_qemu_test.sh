#!/bin/bash
# Real QEMU through the bridge: a running TCG guest that keeps dirtying its memory and
# checking it migrates again and again, each destination becoming the next source —
#   1 single channel over tcp          2 multifd, 2 channels        3 multifd, 4 channels
#   4 exec: (stdio) bridges            5 the destination bridge killed mid-migration
#   6 the destination QEMU killed mid-migration (after garbage hit the destination bridge)
#   7 a source bridge pointed at something that is not a bridge
#   (Debian's QEMU only) multifd 2 through bridge processes whose link is TLS 1.3 (X.509)
# After each success the destination is `running`, its heartbeat continues past the
# source's, and the guest never saw a page differ; after each failure the source VM keeps
# running and its heartbeat goes on. Usage: bridge_qemu_test.sh path/to/ramshift [backports]
# With `backports` the QEMUs are the newer stock QEMU from Debian's bookworm-backports (10.0;
# fetched once, not installed): its multifd packets (9.0+ layout: zero pages listed by
# offset, cleared SYNC packets) must be re-encoded too, not passed through.
set -uo pipefail
RAMSHIFT=$(readlink -f "$1")
. "$(dirname "$0")/lib.sh"
FLAVOUR=${2:-debian}
qemu_test_begin qemu-test "$FLAVOUR"
qemu_build_guest
qemu_start vm0 "$GUEST_MB" "$DIRTY"
qemu_wait_beat vm0 2 240 || fail "the guest did not boot"
CUR=vm0 N=0

# migrate_ok LABEL QEMU-MIGRATE-ARGS...: CUR -> a new destination; checks the outcome.
# @NEXT@ in an argument stands for the destination's name; BEFORE_MIGRATE, if set, is a
# function called with that name first (separate bridge processes for it).
migrate_ok() {
  local label=$1; shift
  N=$((N + 1)); local next=vm$N
  qemu_start "$next" "$GUEST_MB" "$DIRTY" -incoming defer
  [ -z "${BEFORE_MIGRATE:-}" ] || "$BEFORE_MIGRATE" "$next"
  "$RAMSHIFT" qemu-migrate --src-qmp "$W/$CUR.qmp" --dst-qmp "$W/$next.qmp" --json "$W/$next.json" \
    --timeout 240 "${@//@NEXT@/$next}" 2> "$W/$next.err" ||
    fail "$label: qemu-migrate exit $?: $(tail -2 "$W/$next.err")"
  grep -q '"destination_status": "running"' "$W/$next.json" || fail "$label: destination not running"
  local last; last=$(qemu_beat "$CUR")
  kill "$(cat "$W/$CUR.pid")"; wait "$(cat "$W/$CUR.pid")" 2>/dev/null
  local ran=ok
  qemu_wait_beat "$next" $((last + 3)) 60 || ran="no heartbeat on the destination after $last"
  [ "$ran" != ok ] || qemu_check_clean "$next" || ran="memory differed"
  if [ "$ran" != ok ]; then
    # QEMU 7.2's own TCG multifd issue (README): the guest breaks although the bridge checked
    # that QEMU's destination read exactly the bytes QEMU's source wrote. Twice per run, that
    # step is redone from a freshly booted guest; anything else, or a third time, fails. (The
    # check: qemu-migrate's own bridges, or a separate destination bridge's report, or one
    # QEMU ran through exec: whose stderr is QEMU's.) Why twice: at its measured rate (2 in
    # about 20 migrations at 6 MB/s) a run's dozen migrations broke twice (2026-12-07: after
    # "exec: stdio bridges" and "multifd 2 through bridges over TLS", both bridges verified).
    if [ "$FLAVOUR" = debian ] && [ "${REDONE:-0}" -lt 2 ] &&
      grep -qs 'verified true\|every channel verified' "$W/$next.err" "$W/$next.dbr.err" \
        "$W/$next.qemu.out"; then
      REDONE=$((${REDONE:-0} + 1))
      qlog "QEMU 7.2 broke the guest after \"$label\" ($ran) although the bridge verified the stream; redoing the step once from a fresh guest"
      kill "$(cat "$W/$next.pid")"; wait "$(cat "$W/$next.pid")" 2>/dev/null
      N=$((N + 1)); CUR=vm$N
      qemu_start "$CUR" "$GUEST_MB" "$DIRTY"
      qemu_wait_beat "$CUR" 2 240 || fail "the fresh guest did not boot"
      migrate_ok "$label" "$@"
      return
    fi
    fail "$label: $ran"
  fi
  qlog "ok: $label ($(grep -a -m1 -o '"total_ms": [0-9]*' "$W/$next.json"), heartbeat $last -> $(qemu_beat "$next"))"
  CUR=$next
}

migrate_ok "single channel over tcp" --via tcp://127.0.0.1:0
migrate_ok "multifd 2 channels" --via tcp://127.0.0.1:0 --multifd-channels 2
grep -q '"mode": "multifd"' "$W/$CUR.json" || fail "multifd 2: packets were not re-encoded"
migrate_ok "multifd 4 channels, xbzrle+zstd" --via tcp://127.0.0.1:0 --multifd-channels 4 --codec xbzrle+zstd
[ "$(grep -c '"mode": "multifd"' "$W/$CUR.json")" -ge 8 ] || fail "multifd 4: not every channel re-encoded"
if [ "$FLAVOUR" = backports ]; then
  # QEMU 9.0+ lists zero pages in its packets instead of sending them (the guest has 1/8).
  grep -q '"qemu_zero_pages": [1-9]' "$W/$CUR.json" || fail "multifd 4: no zero pages listed by QEMU seen"
  ! grep -q '"note"' "$W/$CUR.json" || fail "a channel fell back to pass-through: $(grep -m1 '"note"' "$W/$CUR.json")"
fi
PORT=$((20000 + RANDOM % 20000))
migrate_ok "exec: stdio bridges" \
  --dst-uri "exec:$RAMSHIFT qemu-bridge dest --stdio --listen tcp://127.0.0.1:$PORT" \
  --src-uri "exec:$RAMSHIFT -q qemu-bridge source --stdio --to tcp://127.0.0.1:$PORT"

# Separate bridge processes, for TLS and the failure cases (garbage first hits the
# destination's port).
start_bridges() {
  qemu_start_bridges "$1" tcp://127.0.0.1:0 || fail "bridges did not start: $(cat "$W/$1".*br.err)"
  PIDS+=($DPID $SPID)
}

if [ "$FLAVOUR" = debian ]; then
  # The bridges' link authenticated and encrypted (X.509 in QEMU's --tls-dir layout), multifd.
  bash "$(dirname "$0")/../security/make_pki.sh" "$W/pki" > /dev/null 2>&1 || fail "make_pki.sh failed"
  tls_bridges() {
    DEST_ARGS="--tls-dir $W/pki/good --json $W/tls.dbr.json" SRC_ARGS="--tls-dir $W/pki/good --queues 3" \
      start_bridges "$1"
  }
  BEFORE_MIGRATE=tls_bridges migrate_ok "multifd 2 through bridges over TLS (X.509)" --multifd-channels 2 \
    --src-uri "unix:$W/@NEXT@.sb" --dst-uri "unix:$W/@NEXT@.in"
  wait "$SPID" || fail "TLS: source bridge exit $?"
  wait "$DPID" || fail "TLS: destination bridge exit $?"
  # The destination bridge's report names the channel and the identity the source proved.
  grep -q '"peer": ".*TLSv1.3 .*, x509, .*peer CN=sender' "$W/tls.dbr.json" ||
    fail "TLS: the destination bridge's report does not show TLS: $(grep -m1 '"peer"' "$W/tls.dbr.json")"
  qlog "ok: the destination bridge's peer: $(grep -m1 -o '"peer": "[^"]*' "$W/tls.dbr.json")"
fi

# migrate_fails LABEL VICTIM: starts a slow migration through bridge processes, kills VICTIM
# (dbridge | dqemu) two seconds in; QEMU must fail it and the source must keep running.
migrate_fails() {
  local label=$1 victim=$2
  N=$((N + 1)); local next=vm$N
  qemu_start "$next" "$GUEST_MB" "$DIRTY" -incoming defer
  start_bridges "$next"
  kill -0 "$DPID" 2>/dev/null || fail "$label: the destination bridge died on garbage: $(cat "$W/$next.dbr.err")"
  "$RAMSHIFT" qemu-migrate --src-qmp "$W/$CUR.qmp" --dst-qmp "$W/$next.qmp" --json "$W/$next.json" \
    --src-uri "unix:$W/$next.sb" --dst-uri "unix:$W/$next.in" --max-bandwidth 12M --timeout 120 \
    2> "$W/$next.err" &
  local mig=$!
  sleep 2
  case $victim in
    dbridge) kill -9 "$DPID" ;;
    dqemu) kill -9 "$(cat "$W/$next.pid")" ;;
  esac
  wait $mig; local rc=$?
  [ $rc = 1 ] || fail "$label: qemu-migrate exit $rc, expected 1: $(tail -3 "$W/$next.err")"
  grep -q '"source_status": "running"' "$W/$next.json" || fail "$label: the source VM is not running"
  wait "$SPID"; local src_rc=$?
  [ $src_rc = 1 ] || fail "$label: source bridge exit $src_rc, expected 1"
  local b; b=$(qemu_beat "$CUR")
  qemu_wait_beat "$CUR" $((b + 3)) 60 || fail "$label: the source guest stopped"
  qemu_check_clean "$CUR" || fail "$label: the source guest's memory changed"
  qlog "ok: $label (source bridge: $(tail -1 "$W/$next.sbr.err"))"
  if [ "$victim" = dqemu ]; then
    # The destination bridge must notice its QEMU went, and say so.
    wait "$DPID"; local drc=$?
    [ $drc = 1 ] || fail "destination bridge exit $drc after its QEMU died, expected 1"
    grep -q "destination QEMU" "$W/$next.dbr.err" ||
      fail "the destination bridge did not name its QEMU: $(cat "$W/$next.dbr.err")"
    qlog "ok: the destination bridge says: $(tail -1 "$W/$next.dbr.err")"
  fi
  kill -9 "$(cat "$W/$next.pid")" "$DPID" 2>/dev/null
}
migrate_fails "destination bridge killed mid-migration" dbridge
# Which of its threads notices first decides the words: the relay's "the peer bridge went
# away", or a channel's "peer ADDRESS closed the connection" when a send finds it gone.
grep -q "went away\|peer [0-9.:]* closed the connection" "$W/vm$N.sbr.err" ||
  fail "the source bridge did not say the peer went away: $(tail -1 "$W/vm$N.sbr.err")"
GARBAGE=1 migrate_fails "destination QEMU killed mid-migration" dqemu

# A source bridge aimed at a plain `ramshift receive`.
"$RAMSHIFT" receive --listen tcp://127.0.0.1:0 --once > "$W/rx.out" 2> "$W/rx.err" &
PIDS+=($!)
for _ in $(seq 100); do grep -q listening "$W/rx.out" && break; sleep 0.1; done
"$RAMSHIFT" qemu-bridge source --listen "unix:$W/bad.sb" --to "$(awk '/listening on/ {print $3}' "$W/rx.out")" \
  > /dev/null 2> "$W/bad.err"
rc=$?
[ $rc != 0 ] && grep -q "not a ramshift qemu-bridge" "$W/bad.err" || fail "bad peer: exit $rc, $(cat "$W/bad.err")"
qlog "ok: a source bridge refuses a peer that is not a bridge ($(tail -1 "$W/bad.err"))"
qlog "PASS"
