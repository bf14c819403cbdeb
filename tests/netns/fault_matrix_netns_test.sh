#!/bin/bash
# The fault matrix over tcp between two hosts: two network namespaces joined by a veth pair
# (created here, removed on exit, also on failure). Each case breaks one thing at a named
# moment of a live migration and checks what a user would: nothing lost (the source's guest
# runs or is resumed, or the destination holds it complete and verified; never both
# running), a clear message from each end still alive, exit codes, and nothing left behind
# (files, processes). The moments are reached with RAMSHIFT_TEST_HOLD_AT (the engine stops
# there for a few seconds, transport/migration/src/test_hooks.h) or the sender's -v log.
# docs/user-guide.md ("Failures, case by case") has the table of these cases.
set -uo pipefail
RAMSHIFT=${1:?usage: $0 PATH_TO_RAMSHIFT}
if [ "$(id -u)" != 0 ] || ! command -v ip >/dev/null; then echo "SKIP: needs root and iproute2"; exit 77; fi
HERE=$(cd "$(dirname "$0")" && pwd)
source "$HERE/../../scripts/lib/netns.sh"
source "$HERE/../lib/fault_checks.sh"  # wait_log, ends_with, says, json_has, never_ran_guest, no_output,
                                       # and the cases kill_rx, kill_tx
A=rsfmA$$; B=rsfmB$$; W=$(mktemp -d)
MNT=""
cleanup() {
  netns_link_down "$A" "$B"
  [ -n "$MNT" ] && umount "$MNT" 2>/dev/null
  rm -rf "$W"
}
trap cleanup EXIT
netns_link_up "$A" "$B" 10.81.0 200mbit || { echo "SKIP: cannot create network namespaces"; exit 77; }
DST=tcp://10.81.0.2:7000
PEER_TIMEOUT=3
FAILS=0
pass() { echo "PASS: $*"; }
fail() { echo "FAIL: $*"; FAILS=$((FAILS + 1)); }

# start_rx [VAR=VALUE...] -- ARGS: a receiver in namespace B; sets RX.
start_rx() {
  local envs=()
  while [ "$1" != -- ]; do envs+=("$1"); shift; done; shift
  rm -f "$W/rx.out" "$W/rx.err" "$W/rx.json"
  ip netns exec "$B" env "${envs[@]}" "$RAMSHIFT" receive --listen "$DST" \
    --peer-timeout "${PT:-$PEER_TIMEOUT}" --json "$W/rx.json" "$@" > "$W/rx.out" 2> "$W/rx.err" &
  RX=$!
  for _ in $(seq 200); do grep -q listening "$W/rx.out" 2>/dev/null && return 0; sleep 0.05; done
  fail "receiver did not start"; cat "$W/rx.err"; return 1
}
# start_tx [VAR=VALUE...] -- ARGS: a sender (-v, so its rounds are logged) in namespace A; sets TX.
start_tx() {
  local envs=()
  while [ "$1" != -- ]; do envs+=("$1"); shift; done; shift
  rm -f "$W/tx.out" "$W/tx.err" "$W/tx.json"
  ip netns exec "$A" env "${envs[@]}" "$RAMSHIFT" -v send --to "$DST" --peer-timeout "${PT:-$PEER_TIMEOUT}" \
    --json "$W/tx.json" "$@" > "$W/tx.out" 2> "$W/tx.err" &
  TX=$!
}
# nothing_left CASE: no process of ours in either namespace, no partial output.
nothing_left() {
  sleep 0.2
  local left
  left=$( (ip netns pids "$A"; ip netns pids "$B") 2>/dev/null | wc -l)
  [ "$left" = 0 ] && pass "$1: no process left in either namespace" || fail "$1: $left process(es) left"
  ls "$W"/*.partial >/dev/null 2>&1 && fail "$1: partial output left" || true
}

LIVE=(--guest synthetic:size=64M,dirty-rate=4M,pattern=mixed)
# A guest dirtying faster than the link: each round resends it all (2 s at 8 MiB/s), and it
# runs into round 1 ("round 0:" is logged as round 1 starts) before the policy gives up.
ENDLESS=(--guest synthetic:size=16M,dirty-rate=100M --max-rounds 1000 --downtime-limit 1
         --max-bandwidth 8M)
# The same guest switched over after round 1 whatever is left, so its final round is long.
FORCED=(--guest synthetic:size=32M,dirty-rate=100M --max-rounds 2 --downtime-limit 1)
HOLD_SETUP_RX=RAMSHIFT_TEST_HOLD_AT=destination-setup:5
HOLD_SETUP_TX=RAMSHIFT_TEST_HOLD_AT=source-setup:5
HOLD_SWITCH=RAMSHIFT_TEST_HOLD_AT=source-switchover:4
HOLD_HANDOFF=RAMSHIFT_TEST_HOLD_AT=source-handoff:4
LIMIT=$((PEER_TIMEOUT + 5))
# FAULT_CASES="flap version" runs only those groups (kill-rx kill-tx flap postcopy bad-input version
# disk).
want() { [ -z "${FAULT_CASES:-}" ] || [[ " $FAULT_CASES " == *" $1 "* ]]; }

# ---- the receiver killed (-9) --------------------------------------------------------
# kill_rx, kill_tx: tests/lib/fault_checks.sh, shared with the rdma matrix.
if want kill-rx; then
WENT="destination went away|closed the connection|connection reset|stopped answering|broken pipe"
kill_rx "in set-up" "$HOLD_SETUP_RX" "" rx.err "holding at destination-setup" running "$WENT" "${LIVE[@]}"
kill_rx "in round 0" "" "" tx.err "connected" running "$WENT" "${LIVE[@]}" --max-bandwidth 8M
kill_rx "in a later round" "" "" tx.err "round 0:" running "$WENT" "${ENDLESS[@]}"
kill_rx "in the switchover" "" "$HOLD_SWITCH" tx.err "holding at source-switchover" resumed "$WENT" \
  "${FORCED[@]}"
# After COMMIT the guest is the destination's: the source keeps it paused and says so. The
# destination died with its verified copy; the guest is intact, paused, on the source.
kill_rx "in the hand-off" "" "$HOLD_HANDOFF" tx.err "holding at source-handoff" "paused \\(handed over\\)" \
  "hand-off|check the destination" "${LIVE[@]}"

fi

# ---- the sender killed (-9) ----------------------------------------------------------
"$RAMSHIFT" make-image "$W/src.img" --size 64M --pattern mixed || exit 1
IMG=(--guest "file:$W/src.img" --max-bandwidth 8M)
if want kill-tx; then
GONE="source went away|closed the connection|connection reset|stopped answering"
kill_tx "in set-up" "" "$HOLD_SETUP_TX" tx.err "holding at source-setup" "$GONE" "${IMG[@]}"
kill_tx "in round 0" "" "" tx.err "connected" "$GONE" "${IMG[@]}"
kill_tx "in a later round" "" "" tx.err "round 0:" "$GONE" "${ENDLESS[@]}"
kill_tx "in the switchover" "" "$HOLD_SWITCH" tx.err "holding at source-switchover" "$GONE" \
  "${FORCED[@]}"
kill_tx "in the hand-off" "" "$HOLD_HANDOFF" tx.err "holding at source-handoff" \
  "before handing the guest over" "${LIVE[@]}"

fi

# ---- the link flaps: down 2 s mid-round, then up: the migration completes -------------
if want flap; then
# The default --peer-timeout (5 s): a 2 s outage is within it.
PT=5
start_rx -- --once --resume-seconds 1 --dump-guest "$W/rx.dump" || exit 1
start_tx -- "${LIVE[@]}" --max-bandwidth 8M --verify full --dump-guest "$W/tx.dump"
unset PT
wait_log "$W/tx.err" "connected"
sleep 1
ip -n "$B" link set "${B:0:11}b" down; sleep 2; ip -n "$B" link set "${B:0:11}b" up
ends_with "link down 2 s mid-round: sender" "$TX" 0 60
ends_with "link down 2 s mid-round: receiver" "$RX" 0 10
cmp -s "$W/tx.dump" "$W/rx.dump" && pass "link flap: the destination's memory equals the paused source's" \
  || fail "link flap: the dumps differ"
rm -f "$W"/*.dump
nothing_left "link flap"
fi

# ---- post-copy: the link flaps, or is cut for good, while the guest runs on the destination --
if want postcopy; then
# The guest runs on the destination from the start; its pages come after it. A flap within
# --peer-timeout (5 s) only pauses the guest's threads that fault (tcp rides it out: its
# retransmissions carry on when the link returns); a cut longer than the timeout loses the
# guest (it ran here without all its memory, and the source's paused copy is stale), which
# both ends must say, with the source keeping its paused copy and running nothing.
PC=(--mode postcopy --guest synthetic:size=128M,dirty-rate=4M,threads=2,pattern=mixed)
cut_link() { ip -n "$B" link set "${B:0:11}b" down; sleep "$1"; ip -n "$B" link set "${B:0:11}b" up; }
PT=5
start_rx -- --once --resume-seconds 1 --control "unix:$W/rx.sock" || exit 1
start_tx -- "${PC[@]}" --control "unix:$W/tx.sock"
unset PT
wait_log "$W/tx.err" "connected"
sleep 1
cut_link 2
# Should it hang, both ends' own status (their --control sockets) says where.
both_status() {
  "$RAMSHIFT" status --json - "$W/tx.sock" 2>&1 | head -c 3000
  "$RAMSHIFT" status --json - "$W/rx.sock" 2>&1 | head -c 3000
}
ends_with "post-copy, link down 2 s: sender" "$TX" 0 60 "$W/tx.err $W/rx.err" both_status
ends_with "post-copy, link down 2 s: receiver" "$RX" 0 10 "$W/rx.err"
python3 - "$W/tx.json" "$W/rx.json" <<'PY' && pass "post-copy, link down 2 s: every page placed and verified; the guest checked its memory there; faulting threads waited out the outage ($(python3 -c "import json;print(round(max(b['max_ms'] for b in json.load(open('$W/rx.json'))['postcopy']['blocked_ms'])))") ms)" || fail "post-copy, link down 2 s: reports"
import json, sys
tx, rx = (json.load(open(p)) for p in sys.argv[1:3])
assert tx["status"] == rx["status"] == "completed" and tx["verified"] and rx["verified"], (tx["error"], rx["error"])
assert rx["resumed"]["verified"] is True, rx["resumed"]
# The outage fell inside post-copy: some fault waited through most of it.
assert max(b["max_ms"] for b in rx["postcopy"]["blocked_ms"]) >= 1500, rx["postcopy"]["blocked_ms"]
PY
nothing_left "post-copy, link down 2 s"

start_rx -- --once --resume-seconds 1 || exit 1
start_tx -- "${PC[@]}"
wait_log "$W/tx.err" "connected"
sleep 1
cut_link $((PEER_TIMEOUT + 4)) &
CUT=$!
ends_with "post-copy, link cut: sender" "$TX" 1 "$LIMIT"
ends_with "post-copy, link cut: receiver" "$RX" 1 "$LIMIT"
wait "$CUT"
says "post-copy, link cut: sender" "$W/tx.err" "guest ran on the destination without all its memory and is lost"
says "post-copy, link cut: receiver" "$W/rx.err" "post-copy failed, the guest is lost"
json_has "post-copy, link cut: sender" "$W/tx.json" '"source_guest": "paused \(handed over\)"'
nothing_left "post-copy, link cut"
fi

# ---- bad input on the listening ports -------------------------------------------------
if want bad-input; then
# A receiver serving migrations one after another takes every kind of bad input, says
# what was wrong with each, keeps listening, and then serves a real migration.
start_rx -- --resume-seconds 0 || exit 1
for c in junk queues-then-close message-too-long message-cut bad-magic short-header short-body bad-crc \
  huge-length bad-hello; do
  before=$(wc -l < "$W/rx.err")
  ip netns exec "$A" python3 "$HERE/bad_peer.py" 10.81.0.2 7000 "$c" || fail "bad peer $c could not connect"
  for _ in $(seq 40); do [ "$(wc -l < "$W/rx.err")" -gt "$before" ] && break; sleep 0.05; done
  sleep 0.2
  if kill -0 "$RX" 2>/dev/null; then
    pass "receive port, $c: still listening; said: $(tail -n +$((before + 1)) "$W/rx.err" | head -1 | cut -c1-110)"
  else
    fail "receive port, $c: the receiver exited"; tail -3 "$W/rx.err"; break
  fi
done
if kill -0 "$RX" 2>/dev/null; then
  ip netns exec "$A" "$RAMSHIFT" -q send --to "$DST" "${LIVE[@]}" > /dev/null 2> "$W/tx.err" \
    && pass "receive port: a real migration completes after the bad input" \
    || { fail "receive port: the real migration after the bad input"; tail -3 "$W/tx.err"; }
  kill -TERM "$RX"
  ends_with "receive port: the receiver after SIGTERM while idle" "$RX" 0 5
fi
# The bench server's port takes the same bad input (it speaks the same tcp queues).
rm -f "$W/bs.out"
ip netns exec "$B" "$RAMSHIFT" bench --server --listen tcp://10.81.0.2:7100 > "$W/bs.out" 2> "$W/bs.err" &
BS=$!
for _ in $(seq 200); do grep -q listening "$W/bs.out" 2>/dev/null && break; sleep 0.05; done
for c in junk message-too-long message-cut bad-magic short-body bad-crc bad-hello; do
  ip netns exec "$A" python3 "$HERE/bad_peer.py" 10.81.0.2 7100 "$c"
done
sleep 0.3
if kill -0 "$BS" 2>/dev/null; then
  pass "bench server port: still listening after bad input"
  ip netns exec "$A" "$RAMSHIFT" -q bench --to tcp://10.81.0.2:7100 --queues 1 --batch-size 64K \
    --seconds 1 > /dev/null 2> "$W/bc.err" && pass "bench server port: a real bench run after the bad input" \
    || { fail "bench server port: the real run"; tail -3 "$W/bc.err"; }
else
  fail "bench server port: the server exited"; tail -3 "$W/bs.err"
fi
kill -TERM "$BS" 2>/dev/null; wait "$BS" 2>/dev/null
nothing_left "bad input"
fi

# ---- a peer of another protocol version ----------------------------------------------
if want version; then
# An older source: the destination refuses it at HELLO and says which versions; the
# source reports the destination's words. And a source meeting an older destination.
start_rx -- --once || exit 1
start_tx RAMSHIFT_TEST_PROTOCOL_VERSION=3 -- "${LIVE[@]}"
ends_with "older source: sender" "$TX" 2 "$LIMIT"
ends_with "older source: receiver" "$RX" 2 "$LIMIT"
says "older source: receiver" "$W/rx.err" "source speaks protocol 3\.\.3, this destination speaks [0-9]+"
says "older source: sender" "$W/tx.err" "protocol 3\.\.3"
start_rx RAMSHIFT_TEST_PROTOCOL_VERSION=3 -- --once || exit 1
start_tx -- "${LIVE[@]}"
ends_with "older destination: sender" "$TX" 2 "$LIMIT"
ends_with "older destination: receiver" "$RX" 2 "$LIMIT"
says "older destination: sender" "$W/tx.err" "destination speaks protocol 3\.\.3"
says "older destination: receiver" "$W/rx.err" "destination speaks protocol 3\.\.3, this source speaks [0-9]+"
json_has "older destination: sender" "$W/tx.json" '"source_guest": "running"'
nothing_left "protocol version"
fi

# ---- the receiver's disk is too small ------------------------------------------------
# The free space is checked before READY: "receiver disk full", exit 2 on both ends, no file
# left, the source image unchanged. (A disk filled by someone else mid-transfer cannot be
# staged from outside: the blocks are reserved within milliseconds of READY, ahead of the
# pages; tests/unit covers a reservation that fails.)
MNT="$W/small"; mkdir -p "$MNT"
if ! want disk; then
  :
elif mount -t tmpfs -o size=48M tmpfs "$MNT"; then
  sum=$(md5sum < "$W/src.img")
  start_rx -- --once --guest-out "$MNT/dst.img" || exit 1
  start_tx -- --guest "file:$W/src.img"
  ends_with "disk too small: sender" "$TX" 2 "$LIMIT"
  ends_with "disk too small: receiver" "$RX" 2 "$LIMIT"
  says "disk too small: receiver" "$W/rx.err" "disk full"
  says "disk too small: sender" "$W/tx.err" "disk full"
  [ -z "$(ls -A "$MNT")" ] && pass "disk too small: no output file left" || fail "disk too small: $(ls "$MNT") left"
  [ "$(md5sum < "$W/src.img")" = "$sum" ] && pass "disk too small: source image unchanged" || fail "disk too small: source changed"
  nothing_left "disk too small"
else
  echo "SKIP (disk full): cannot mount a tmpfs"
fi

[ "$FAILS" = 0 ] && { echo "all passed"; exit 0; }
echo "$FAILS failed"; exit 1
