#!/bin/bash
# A destination that vanishes without closing (the link cut: its end of the veth taken down,
# so nothing answers and nothing is reset) is given up within --peer-timeout, in round 0, in
# a later round and in the switchover, and the source's guest keeps running. Two network
# namespaces created here and removed on exit (also on failure).
set -uo pipefail
RAMSHIFT=${1:?usage: $0 PATH_TO_RAMSHIFT}
if [ "$(id -u)" != 0 ] || ! command -v ip >/dev/null; then echo "SKIP: needs root and iproute2"; exit 77; fi
source "$(dirname "$0")/../../scripts/lib/netns.sh"
A=rsptA$$; B=rsptB$$; W=$(mktemp -d)
cleanup() { netns_link_down "$A" "$B"; rm -rf "$W"; }
trap cleanup EXIT
PEER_TIMEOUT=3
MARGIN=3  # keepalive probes every timeout/5 (>= 1 s), the 100 ms wait slices, process exit
FAILS=0
pass() { echo "PASS: $*"; }
fail() { echo "FAIL: $*"; FAILS=$((FAILS + 1)); }

# cut_and_check PHASE WHEN SEND_ARGS...: a fresh link and receiver, `send` across it; the
# link is cut once WHEN (a shell condition) holds; the sender must end within the timeout +
# margin with exit 1 and a report whose source guest runs (or was resumed).
cut_and_check() {
  local phase=$1 when=$2; shift 2
  netns_link_down "$A" "$B"
  netns_link_up "$A" "$B" 10.79.0 100mbit || { echo "SKIP: cannot create network namespaces"; exit 77; }
  rm -f "$W"/*
  ip netns exec "$B" "$RAMSHIFT" -q receive --listen tcp://10.79.0.2:7000 --once \
    --peer-timeout "$PEER_TIMEOUT" > "$W/rx.out" 2> "$W/rx.err" &
  local rx=$!
  for _ in $(seq 100); do grep -q listening "$W/rx.out" && break; sleep 0.05; done
  ip netns exec "$A" "$RAMSHIFT" -v send --to tcp://10.79.0.2:7000 --peer-timeout "$PEER_TIMEOUT" \
    --json "$W/tx.json" "$@" > "$W/tx.out" 2> "$W/tx.err" &
  local tx=$!
  for _ in $(seq 600); do eval "$when" && break; sleep 0.05; done
  ip -n "$B" link set "${B:0:11}b" down
  local cut=$SECONDS
  local rc=""
  for _ in $(seq $(( (PEER_TIMEOUT + MARGIN) * 10 ))); do
    kill -0 "$tx" 2>/dev/null || break
    sleep 0.1
  done
  if kill -0 "$tx" 2>/dev/null; then
    fail "$phase: the sender still runs $((PEER_TIMEOUT + MARGIN)) s after the link was cut"
    kill -9 "$tx"; wait "$tx" 2>/dev/null
  else
    wait "$tx"; rc=$?
    [ "$rc" = 1 ] && pass "$phase: sender exits 1 within $((SECONDS - cut + 1)) s of the cut" \
      || { fail "$phase: sender exit $rc"; tail -5 "$W/tx.err"; }
    grep -qiE "stopped answering|timed out" "$W/tx.err" && pass "$phase: sender says the peer stopped answering" \
      || { fail "$phase: sender's message"; tail -5 "$W/tx.err"; }
    grep -qE '"source_guest": "(running|resumed)"' "$W/tx.json" \
      && pass "$phase: the source guest runs ($(grep -o '"source_guest": "[a-z]*"' "$W/tx.json"))" \
      || { fail "$phase: source guest"; cat "$W/tx.json"; }
  fi
  # The receiver, cut off too, gives up by its own peer timeout and leaves nothing running.
  for _ in $(seq $(( (PEER_TIMEOUT + MARGIN) * 10 ))); do kill -0 "$rx" 2>/dev/null || break; sleep 0.1; done
  if kill -0 "$rx" 2>/dev/null; then fail "$phase: the receiver still runs"; kill -9 "$rx"; fi
  wait "$rx" 2>/dev/null
}

# Round 0: a 256 MiB guest needs ~20 s at 100 Mbit/s; cut 2 s in.
cut_and_check "round 0" "sleep 2" \
  --guest synthetic:size=256M,dirty-rate=1M
# A later round: a guest dirtying faster than the link never converges; cut once round 1 runs.
cut_and_check "a later round" "grep -q 'round 0:' \"$W/tx.err\"" \
  --guest synthetic:size=32M,dirty-rate=100M --max-rounds 1000 --downtime-limit 1
# The switchover: --max-rounds 1 pauses the guest after round 0 with most of it dirty, so
# the final round lasts seconds; cut as the source decides to pause it. The source resumes it.
cut_and_check "switchover" "grep -q 'max-rounds 1 reached' \"$W/tx.err\"" \
  --guest synthetic:size=32M,dirty-rate=100M --max-rounds 1
[ "$FAILS" = 0 ] && { echo "all passed"; exit 0; }
echo "$FAILS failed"; exit 1
