# The fault matrix over rdma://, sourced by suite.sh inside the soft-RoCE VM (real verbs): the
# cases of tests/netns/fault_matrix_netns_test.sh (tcp) with the same checks
# (tests/lib/fault_checks.sh), plus a peer that stops answering without closing (SIGSTOP, the
# link taken down). Each case breaks one thing at a named moment of a live migration and
# checks: nothing lost (the source's guest runs or is resumed, or the destination holds it
# complete and verified; never both running), a clear message from each end still alive,
# exit codes, and nothing left behind. Moments are reached with RAMSHIFT_TEST_HOLD_AT
# (transport/migration/src/test_hooks.h) or the sender's -v log. Holds are short (3 s: the
# check waits 1 s after the log line) to keep the suite within CI's time.
#   needs: $RAMSHIFT, $WORK, $ADDR, pass, fail, step (suite.sh and tests/e2e/lib.sh).
# FAULT_CASES="stop flap" (in the VM's environment, or suite.sh's third argument) runs only
# those groups: kill-rx kill-tx stop cut flap bad-input half-silent version disk memlock.

PEER_TIMEOUT=3
# Software speed: a process here takes a second or two to start, pin and tear down.
LIMIT=$((PEER_TIMEOUT + 8))
W=$WORK/fault
mkdir -p "$W"
FDEV=va  # the veth under rxe0, the device both ends use (suite.sh: the local route)

# start_rx [VAR=VALUE...] -- ARGS: a receiver on rxe0; sets RX and RX_URI.
start_rx() {
  local envs=()
  while [ "$1" != -- ]; do envs+=("$1"); shift; done; shift
  rm -f "$W/rx.out" "$W/rx.err" "$W/rx.json"
  env ${envs[@]+"${envs[@]}"} "$RAMSHIFT" receive --listen "rdma://$ADDR:0" --accept-timeout 120 \
    --peer-timeout "${PT:-$PEER_TIMEOUT}" --json "$W/rx.json" "$@" > "$W/rx.out" 2> "$W/rx.err" &
  RX=$!; PIDS+=("$RX")
  for _ in $(seq 400); do
    RX_URI=$(sed -n 's/^listening on //p' "$W/rx.out" 2>/dev/null)
    [ -n "$RX_URI" ] && return 0
    sleep 0.05
  done
  fail "receiver did not start"; cat "$W/rx.err"; return 1
}
# start_tx [VAR=VALUE...] -- ARGS: a sender (-v, so its rounds are logged); sets TX.
start_tx() {
  local envs=()
  while [ "$1" != -- ]; do envs+=("$1"); shift; done; shift
  rm -f "$W/tx.out" "$W/tx.err" "$W/tx.json"
  env ${envs[@]+"${envs[@]}"} "$RAMSHIFT" -v send --to "$RX_URI" \
    --peer-timeout "${PT:-$PEER_TIMEOUT}" --json "$W/tx.json" "$@" > "$W/tx.out" 2> "$W/tx.err" &
  TX=$!; PIDS+=("$TX")
}
# tails: both ends' last words, after a failed check.
tails() { echo "--- sender:"; tail -5 "$W/tx.err"; echo "--- receiver:"; tail -5 "$W/rx.err"; }
# nothing_left CASE: no ramshift process left, no partial output.
nothing_left() {
  sleep 0.2
  local left
  left=$(cat /proc/[0-9]*/comm 2>/dev/null | grep -c '^ramshift$')
  [ "$left" = 0 ] && pass "$1: no process left" || fail "$1: $left ramshift process(es) left"
  ls "$W"/*.partial >/dev/null 2>&1 && fail "$1: partial output left" || true
}
# still_serves CASE: the receiver $RX, after what CASE did to it, serves a real migration,
# then ends cleanly on SIGTERM while idle.
still_serves() {
  "$RAMSHIFT" send --to "$RX_URI" "${LIVE[@]}" > /dev/null 2> "$W/tx.err" &&
    pass "$1: a real migration completes afterwards" ||
    { fail "$1: the real migration afterwards"; tail -3 "$W/tx.err"; }
  kill -TERM "$RX"
  ends_with "$1: the receiver after SIGTERM while idle" "$RX" 0 10
}
fwant() { [ -z "${FAULT_CASES:-}" ] || [[ " $FAULT_CASES " == *" $1 "* ]]; }

# At software speed (about 2 MB/s with pages encoded, 16-24 MB/s raw) these are the tcp
# matrix's guests scaled down: LIVE's round 0 lasts ~4 s at 2 MiB/s, and it converges by
# throttling when the VM is slower than its dirty rate (seen: 0.7 MB/s); ENDLESS dirties faster
# than the link, so round 1 starts ("round 0:" logged) and never converges; FORCED switches
# over after round 1 whatever is left.
LIVE=(--guest synthetic:size=8M,dirty-rate=1M,pattern=mixed --auto-converge --downtime-limit 1000)
ENDLESS=(--guest synthetic:size=8M,dirty-rate=100M --max-rounds 1000 --downtime-limit 1
         --max-bandwidth 4M)
FORCED=(--guest synthetic:size=8M,dirty-rate=100M --max-rounds 2 --downtime-limit 1)
HOLD_SETUP_RX=RAMSHIFT_TEST_HOLD_AT=destination-setup:3
HOLD_SETUP_TX=RAMSHIFT_TEST_HOLD_AT=source-setup:3
HOLD_SWITCH=RAMSHIFT_TEST_HOLD_AT=source-switchover:3
HOLD_HANDOFF=RAMSHIFT_TEST_HOLD_AT=source-handoff:3
"$RAMSHIFT" make-image "$W/src.img" --size 8M --pattern mixed >/dev/null || fail "make-image"
IMG=(--guest "file:$W/src.img" --max-bandwidth 2M)

# ---- the receiver killed (-9): the kernel's rdma_cm disconnects its queues --------------
# kill_rx, kill_tx: tests/lib/fault_checks.sh, shared with the tcp matrix.
FAULT_LABEL="rdma "
if fwant kill-rx; then
  step "fault matrix: receiver killed (-9) in each phase"
  WENT="destination went away|disconnected|stopped answering"
  kill_rx "in set-up" "$HOLD_SETUP_RX" "" rx.err "holding at destination-setup" running "$WENT" "${LIVE[@]}"
  kill_rx "in round 0" "" "" tx.err "connected" running "$WENT" "${LIVE[@]}" --max-bandwidth 2M
  kill_rx "in a later round" "" "" tx.err "round 0:" running "$WENT" "${ENDLESS[@]}"
  kill_rx "in the switchover" "" "$HOLD_SWITCH" tx.err "holding at source-switchover" resumed "$WENT" \
    "${FORCED[@]}"
  # After COMMIT the guest is the destination's: the source keeps it paused and says so.
  kill_rx "in the hand-off" "" "$HOLD_HANDOFF" tx.err "holding at source-handoff" "paused \\(handed over\\)" \
    "hand-off|check the destination" "${LIVE[@]}"
fi

# ---- the sender killed (-9) ------------------------------------------------------------
if fwant kill-tx; then
  step "fault matrix: sender killed (-9) in each phase"
  GONE="source went away|disconnected|stopped answering"
  kill_tx "in set-up" "" "$HOLD_SETUP_TX" tx.err "holding at source-setup" "$GONE" "${IMG[@]}"
  kill_tx "in round 0" "" "" tx.err "connected" "$GONE" "${IMG[@]}"
  kill_tx "in a later round" "" "" tx.err "round 0:" "$GONE" "${ENDLESS[@]}"
  kill_tx "in the switchover" "" "$HOLD_SWITCH" tx.err "holding at source-switchover" "$GONE" "${FORCED[@]}"
  kill_tx "in the hand-off" "" "$HOLD_HANDOFF" tx.err "holding at source-handoff" \
    "before handing the guest over" "${LIVE[@]}"
fi

# ---- a peer that stops answering without closing: --peer-timeout ------------------------
# SIGSTOP leaves the peer's queues open and its device acknowledging every request (the
# kernel's soft-RoCE answers for it), so only the heartbeats' silence tells: the live end
# must give up within --peer-timeout (+ 1 s: the poller's 100 ms tick, a quarter-period
# heartbeat, the process's exit at software speed).
# stop_peer CASE WHO RX_ENV TX_ENV WAIT_FILE WAIT_PATTERN GUEST_STATE SEND_ARGS...
stop_peer() {
  local what="rdma $2 stopped (SIGSTOP) $1" who=$2 rxenv=$3 txenv=$4 file=$5 pattern=$6 guest=$7
  shift 7
  local stopped live end
  start_rx $rxenv -- --once || return
  start_tx $txenv -- "$@"
  wait_log "$W/$file" "$pattern"
  if [ "$who" = receiver ]; then stopped=$RX; live=$TX; end=tx; else stopped=$TX; live=$RX; end=rx; fi
  kill -STOP "$stopped"
  local t0=$SECONDS
  ends_with "$what: the $([ $end = tx ] && echo sender || echo receiver) gives up" "$live" 1 $((PEER_TIMEOUT + 4))
  echo "  ($what: ended $((SECONDS - t0)) s after the stop, --peer-timeout $PEER_TIMEOUT)"
  says "$what: $end" "$W/$end.err" "${STOP_SAYS:-stopped answering}"
  [ "$end" = tx ] && json_has "$what: sender" "$W/tx.json" "\"source_guest\": \"$guest"
  [ "$end" = rx ] && never_ran_guest "$what" "$W/rx.json"
  kill -9 "$stopped"; wait "$stopped" 2>/dev/null
  nothing_left "$what"
}
if fwant stop; then
  step "fault matrix: a peer that stops answering (SIGSTOP), given up within --peer-timeout"
  stop_peer "in set-up" receiver "$HOLD_SETUP_RX" "" rx.err "holding at destination-setup" running "${LIVE[@]}"
  stop_peer "in round 0" receiver "" "" tx.err "connected" running "${LIVE[@]}" --max-bandwidth 2M
  stop_peer "in the switchover" receiver "" "$HOLD_SWITCH" tx.err "holding at source-switchover" resumed \
    "${FORCED[@]}"
  # After COMMIT the sender's words are the hand-off's (kill_rx above): pass them on.
  STOP_SAYS="hand-off|check the destination" \
    stop_peer "in the hand-off" receiver "" "$HOLD_HANDOFF" tx.err "holding at source-handoff" \
    "paused \\(handed over\\)" "${LIVE[@]}"
  stop_peer "in set-up" sender "" "$HOLD_SETUP_TX" tx.err "holding at source-setup" "" "${LIVE[@]}"
  stop_peer "in round 0" sender "" "" tx.err "connected" "" "${LIVE[@]}" --max-bandwidth 2M
  stop_peer "in the hand-off" sender "" "$HOLD_HANDOFF" tx.err "holding at source-handoff" "" "${LIVE[@]}"
fi

# ---- bad input on the listening port (rdma_cm's, RDMA_PS_TCP) ---------------------------
# A receiver serving migrations one after another takes every kind of bad input from
# rdma_bad_peer (rdma/tools/bad_peer.cc: refused connect requests, half connections, bad
# queue hellos, ring writes that break the ring protocol, bad frames), says what was wrong
# with each, keeps listening, and then serves a real migration.
if fwant bad-input; then
  step "fault matrix: bad input on the rdma listening port"
  if ! command -v rdma_bad_peer >/dev/null; then
    fail "bad input: no rdma_bad_peer in the VM (run.sh copies it in)"
  elif start_rx -- --resume-seconds 0; then
    hostport=${RX_URI#rdma://}
    for c in cm-junk cm-short cm-version cm-queue half-connection queues-then-close hello-junk \
      hello-short imm-reserved imm-too-long credit-bogus message-cut junk short-header short-body \
      bad-crc huge-length bad-hello; do
      before=$(wc -l < "$W/rx.err")
      timeout 30 rdma_bad_peer "${hostport%:*}" "${hostport##*:}" "$c" > "$W/bad.out" 2>&1 ||
        { fail "bad peer $c: $(tail -1 "$W/bad.out")"; continue; }
      for _ in $(seq 60); do [ "$(wc -l < "$W/rx.err")" -gt "$before" ] && break; sleep 0.05; done
      sleep 0.2
      if kill -0 "$RX" 2>/dev/null; then
        said=$(tail -n +$((before + 1)) "$W/rx.err" | head -1 | cut -c1-110)
        [ -n "$said" ] && pass "rdma port, $c: still listening; said: $said" ||
          fail "rdma port, $c: still listening, but said nothing"
      else
        fail "rdma port, $c: the receiver exited"; tail -3 "$W/rx.err"; break
      fi
    done
    if kill -0 "$RX" 2>/dev/null; then still_serves "rdma port, after the bad input"; fi
    # The bench server's rdma port takes the transport-level kinds (its own protocol is not
    # a migration's; the tcp matrix covers its messages), then serves a real run.
    "$RAMSHIFT" bench --server --listen "rdma://$ADDR:0" > "$W/bs.out" 2> "$W/bs.err" &
    BS=$!; PIDS+=("$BS")
    for _ in $(seq 400); do grep -q listening "$W/bs.out" 2>/dev/null && break; sleep 0.05; done
    bs_uri=$(sed -n 's/^listening on //p' "$W/bs.out"); bs_hp=${bs_uri#rdma://}
    for c in cm-junk cm-short cm-version half-connection queues-then-close hello-junk hello-short \
      imm-reserved credit-bogus message-cut junk; do
      timeout 30 rdma_bad_peer "${bs_hp%:*}" "${bs_hp##*:}" "$c" > "$W/bad.out" 2>&1 ||
        fail "bench server, bad peer $c: $(tail -1 "$W/bad.out")"
    done
    sleep 0.3
    if kill -0 "$BS" 2>/dev/null; then
      pass "bench server's rdma port: still listening after 11 kinds of bad input"
      "$RAMSHIFT" -q bench --to "$bs_uri" --queues 1 --batch-size 64K --seconds 1 > /dev/null 2> "$W/bc.err" &&
        pass "bench server's rdma port: a real bench run after the bad input" ||
        { fail "bench server's rdma port: the real run"; tail -3 "$W/bc.err"; }
    else
      fail "bench server's rdma port: the server exited"; tail -3 "$W/bs.err"
    fi
    kill -TERM "$BS" 2>/dev/null; wait "$BS" 2>/dev/null
    nothing_left "rdma bad input"
  fi
fi

# ---- a peer that connects some queues and falls silent ------------------------------------
# Each queue the listener accepts pins a receive ring (4 MiB here): a peer that connects one
# queue of two and then says nothing, holding its side open, must not keep it. The listener
# gives a connection its connect timeout (10 s) to bring every queue up, then releases what
# it holds, says so, and keeps listening.
if fwant half-silent; then
  step "fault matrix: a peer that connects one queue of two and falls silent"
  # rdma res: the receiver's queue pairs and memory registrations ("pid N" on each line).
  held() { rdma res show "$1" 2>/dev/null | grep -c " pid $RX "; }
  if ! command -v rdma_bad_peer >/dev/null; then
    fail "half-silent: no rdma_bad_peer in the VM (run.sh copies it in)"
  elif start_rx -- --resume-seconds 0; then
    hostport=${RX_URI#rdma://}
    rdma_bad_peer "${hostport%:*}" "${hostport##*:}" half-silent > "$W/half.out" 2>&1 &
    BP=$!; PIDS+=("$BP")
    for _ in $(seq 600); do grep -q holding "$W/half.out" && break; sleep 0.05; done
    t0=$SECONDS
    qps=$(held qp); mrs=$(held mr)
    [ "$qps" -ge 1 ] && [ "$mrs" -ge 1 ] &&
      pass "half-silent: the receiver holds the peer's first queue ($qps QP, $mrs MRs)" ||
      fail "half-silent: the receiver holds $qps QPs, $mrs MRs after the first queue connected"
    for _ in $(seq 160); do grep -q "half-made connection" "$W/rx.err" && break; sleep 0.1; done
    if grep -q "half-made connection" "$W/rx.err"; then
      pass "half-silent: given up $((SECONDS - t0)) s after the first queue; said: $(grep -o 'gave up on a half-made.*within [0-9.]* s' "$W/rx.err" | head -1)"
      sleep 0.5
      kill -0 "$BP" 2>/dev/null && pass "half-silent: the peer still holds its side open" ||
        fail "half-silent: the peer left before the receiver gave up (the case did not hold)"
      qps=$(held qp); mrs=$(held mr)
      [ "$qps" = 0 ] && [ "$mrs" = 0 ] && pass "half-silent: the receiver released its queue and pinned memory" ||
        fail "half-silent: the receiver still holds $qps QPs, $mrs MRs"
    else
      fail "half-silent: the receiver kept the half-made connection $((SECONDS - t0)) s"; tail -3 "$W/rx.err"
    fi
    kill "$BP" 2>/dev/null; wait "$BP" 2>/dev/null
    if kill -0 "$RX" 2>/dev/null; then
      still_serves "half-silent"
    else
      fail "half-silent: the receiver exited"; tail -3 "$W/rx.err"
    fi
    nothing_left "rdma half-silent"
  fi
fi

# ---- a peer of another protocol version -----------------------------------------------
if fwant version; then
  step "fault matrix: a peer of another protocol version"
  start_rx -- --once || true
  start_tx RAMSHIFT_TEST_PROTOCOL_VERSION=3 -- "${LIVE[@]}"
  ends_with "rdma older source: sender" "$TX" 2 "$LIMIT"
  ends_with "rdma older source: receiver" "$RX" 2 "$LIMIT"
  says "rdma older source: receiver" "$W/rx.err" "source speaks protocol 3\.\.3, this destination speaks [0-9]+"
  says "rdma older source: sender" "$W/tx.err" "protocol 3\.\.3"
  start_rx RAMSHIFT_TEST_PROTOCOL_VERSION=3 -- --once || true
  start_tx -- "${LIVE[@]}"
  ends_with "rdma older destination: sender" "$TX" 2 "$LIMIT"
  ends_with "rdma older destination: receiver" "$RX" 2 "$LIMIT"
  says "rdma older destination: sender" "$W/tx.err" "destination speaks protocol 3\.\.3"
  says "rdma older destination: receiver" "$W/rx.err" "destination speaks protocol 3\.\.3, this source speaks [0-9]+"
  json_has "rdma older destination: sender" "$W/tx.json" '"source_guest": "running"'
  nothing_left "rdma protocol version"
fi

# ---- the receiver's locked-memory limit too low (suite.sh checks the sender's) ---------------
# 3 queues x 4 MiB of receive ring fit in 14 MiB; the 8 MiB guest does not. The destination
# cannot pin the guest: both ends say so, the source's guest runs on.
if fwant memlock; then
  step "fault matrix: the receiver's locked-memory limit too low"
  rm -f "$W/rx.out"
  setpriv --bounding-set=-ipc_lock --inh-caps=-ipc_lock bash -c \
    "ulimit -l 14336 && exec \"$RAMSHIFT\" receive --listen rdma://$ADDR:0 --once --json $W/rx.json" \
    > "$W/rx.out" 2> "$W/rx.err" &
  RX=$!; PIDS+=("$RX")
  for _ in $(seq 400); do RX_URI=$(sed -n 's/^listening on //p' "$W/rx.out"); [ -n "$RX_URI" ] && break; sleep 0.05; done
  start_tx -- "${LIVE[@]}"
  ends_with "rdma receiver memlock 14 MiB: sender" "$TX" 2 "$LIMIT"
  ends_with "rdma receiver memlock 14 MiB: receiver" "$RX" 2 "$LIMIT"
  says "rdma receiver memlock 14 MiB: receiver" "$W/rx.err" "RLIMIT_MEMLOCK.*ulimit -l"
  says "rdma receiver memlock 14 MiB: sender" "$W/tx.err" "RLIMIT_MEMLOCK|memlock|ulimit -l"
  json_has "rdma receiver memlock 14 MiB: sender" "$W/tx.json" '"source_guest": "running"'
  nothing_left "rdma receiver memlock"
fi

# ---- the receiver's disk is too small --------------------------------------------------
if fwant disk; then
  step "fault matrix: the receiver's disk too small"
  mkdir -p "$W/small"
  if mount -t tmpfs -o size=4M tmpfs "$W/small"; then
    sum=$(md5sum < "$W/src.img")
    start_rx -- --once --guest-out "$W/small/dst.img" || true
    start_tx -- --guest "file:$W/src.img"
    ends_with "rdma disk too small: sender" "$TX" 2 "$LIMIT"
    ends_with "rdma disk too small: receiver" "$RX" 2 "$LIMIT"
    says "rdma disk too small: receiver" "$W/rx.err" "disk full"
    says "rdma disk too small: sender" "$W/tx.err" "disk full"
    [ -z "$(ls -A "$W/small")" ] && pass "rdma disk too small: no output file left" || fail "rdma disk too small: $(ls "$W/small") left"
    [ "$(md5sum < "$W/src.img")" = "$sum" ] && pass "rdma disk too small: source image unchanged" || fail "rdma disk too small: source changed"
    umount "$W/small" || { sleep 1; umount -l "$W/small"; }
    nothing_left "rdma disk too small"
  else
    fail "rdma disk too small: cannot mount a tmpfs in the VM"
  fi
fi

# ---- the link: cut mid-round (stays down), and a flap (down 2 s, up) ---------------------
# Last: after its netdev went down and up, soft-RoCE here connects nothing new (every
# rdma_cm connect times out) until the device is made again, which reset_rxe does.
# Both ends must also end while the link is down or just back: a queue's disconnect request
# (a CM message on the device's management queue pair) that soft-RoCE took while its netdev
# was down could be lost for good, and the process destroying that id then hung in the
# kernel (cm_destroy_id, uninterruptible: not even -9 ended it); the queues now hold their
# disconnect until the port is back or --peer-timeout has passed since it went down
# (rdma/src/rdma_connection.cc, wait_for_port).
port_active() {
  for _ in $(seq 100); do rdma link show rxe0/1 2>/dev/null | grep -q 'state ACTIVE' && return 0; sleep 0.1; done
  return 1
}
reset_rxe() {
  rdma link delete rxe0 && rdma link add rxe0 type rxe netdev "$FDEV" && port_active \
    && pass "$1: rxe0 made again, active" || fail "$1: cannot make rxe0 again"
}
if fwant flap; then
  # Soft-RoCE fails a request it cannot transmit while its netdev is down (a local QP
  # operation error) where a NIC retransmits, so here a flap mid-round ends the migration
  # (every run so far); the queues give the port --peer-timeout to come back, so on a NIC a
  # shorter flap costs a pause. Either outcome must hold: completed and byte-identical, or
  # failed cleanly on both ends with the guest running on the source.
  step "fault matrix: the link down 2 s mid-round, then up"
  PT=5  # the default --peer-timeout: a 2 s outage is within it
  start_rx -- --once --resume-seconds 1 --dump-guest "$W/rx.dump" || true
  start_tx -- "${LIVE[@]}" --max-bandwidth 2M --verify full --dump-guest "$W/tx.dump"
  unset PT
  wait_log "$W/tx.err" "connected"
  sleep 1
  ip link set "$FDEV" down; sleep 2; ip link set "$FDEV" up
  for _ in $(seq 900); do kill -0 "$TX" 2>/dev/null || break; sleep 0.1; done
  if kill -0 "$TX" 2>/dev/null; then
    fail "rdma link flap: the sender still runs after 90 s"; tails
  else
    wait "$TX"; rc=$?
    if [ "$rc" = 0 ]; then
      pass "rdma link flap: the migration completed across the flap"
      ends_with "rdma link flap: receiver" "$RX" 0 15 || tails
      cmp -s "$W/tx.dump" "$W/rx.dump" && pass "rdma link flap: the destination's memory equals the paused source's" \
        || fail "rdma link flap: the dumps differ"
    else
      echo "  (rdma link flap: the migration failed, as soft-RoCE does on a down netdev)"
      [ "$rc" = 1 ] && pass "rdma link flap: sender exit 1" || fail "rdma link flap: sender exit $rc"
      says "rdma link flap: sender" "$W/tx.err" "port is down|port went down|stopped answering|went away"
      json_has "rdma link flap: sender" "$W/tx.json" '"source_guest": "running'
      ends_with "rdma link flap: receiver" "$RX" 1 $((PEER_TIMEOUT + 4)) || tails
      says "rdma link flap: receiver" "$W/rx.err" "port is down|port went down|stopped answering|went away"
      never_ran_guest "rdma link flap" "$W/rx.json"
    fi
  fi
  rm -f "$W"/*.dump
  port_active || fail "rdma link flap: the port stays down"
  nothing_left "rdma link flap"
  reset_rxe "rdma link flap"
fi

if fwant cut; then
  step "fault matrix: the link cut mid-round"
  start_rx -- --once || true
  start_tx -- "${LIVE[@]}" --max-bandwidth 2M
  wait_log "$W/tx.err" "connected"
  ip link set "$FDEV" down
  # The queues fail at once but hold their disconnect for up to --peer-timeout after the port
  # went down (a disconnect sent while it is down can hang the id's teardown): 3.5-6.6 s was
  # seen with --peer-timeout 3, so twice the timeout plus the teardown is the bound.
  ends_with "rdma link cut mid-round: sender" "$TX" 1 $((PEER_TIMEOUT * 2 + 4))
  ends_with "rdma link cut mid-round: receiver" "$RX" 1 $((PEER_TIMEOUT * 2 + 4))
  says "rdma link cut mid-round: sender" "$W/tx.err" "port went down|port is down|stopped answering"
  says "rdma link cut mid-round: receiver" "$W/rx.err" "port went down|port is down|stopped answering"
  json_has "rdma link cut mid-round: sender" "$W/tx.json" '"source_guest": "running'
  ip link set "$FDEV" up
  port_active && pass "rdma link cut: the port is active again" || fail "rdma link cut: the port stays down"
  nothing_left "rdma link cut"
  reset_rxe "rdma link cut"
fi
