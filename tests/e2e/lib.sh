# Helpers for end-to-end tests: real processes of the real `ramshift` binary on loopback.
# Each test sources this, gets $RAMSHIFT and a private $WORK folder removed on exit.
set -uo pipefail
RAMSHIFT=${1:?usage: $0 PATH_TO_RAMSHIFT}
WORK=$(mktemp -d "${TMPDIR:-/tmp}/ramshift-e2e-XXXXXX")
PIDS=()
cleanup() {
  for p in "${PIDS[@]}"; do kill -9 "$p" 2>/dev/null; done
  wait 2>/dev/null
  rm -rf "$WORK"
}
trap cleanup EXIT
FAILS=0
pass() { echo "PASS: $*"; }
fail() { echo "FAIL: $*"; FAILS=$((FAILS + 1)); }
# expect_exit CODE DESCRIPTION -- command...
expect_exit() {
  local want=$1 what=$2; shift 3
  "$@" >"$WORK/out" 2>"$WORK/err"; local got=$?
  if [ "$got" = "$want" ]; then pass "$what (exit $got)"; else fail "$what: exit $got, wanted $want"; cat "$WORK/err"; fi
}
# expect_stderr PATTERN DESCRIPTION: the last command's stderr matches PATTERN
expect_stderr() {
  if grep -qiE "$1" "$WORK/err"; then pass "$2"; else fail "$2: stderr lacks /$1/"; cat "$WORK/err"; fi
}
# start_receiver ARGS...: starts `ramshift receive` in the background on $LISTEN_URI
# (default tcp://127.0.0.1:0); sets RX_PID, RX_URI.
start_receiver() {
  # The background job truncates rx.out only once it runs: a previous receiver's "listening
  # on" line left in the file would otherwise be read first, and its port is closed by now.
  rm -f "$WORK/rx.out"
  "$RAMSHIFT" receive --listen "${LISTEN_URI:-tcp://127.0.0.1:0}" "$@" >"$WORK/rx.out" 2>"$WORK/rx.err" &
  RX_PID=$!
  PIDS+=("$RX_PID")
  for _ in $(seq 400); do  # up to 20 s: the soft-RoCE VM runs at software speed
    RX_URI=$(sed -n 's/^listening on //p' "$WORK/rx.out" 2>/dev/null)
    [ -n "$RX_URI" ] && return 0
    sleep 0.05
  done
  echo "receiver did not start"; cat "$WORK/rx.err"; return 1
}
# expect_sender_fails_when_receiver_dies SECONDS SEND_ARGS...: starts `ramshift send` to the
# running receiver, kill -9s the receiver SECONDS after the sender connected (a large guest
# takes a while to create on a busy host), and checks the sender exits 1 and says why.
expect_sender_fails_when_receiver_dies() {
  local after=$1; shift
  "$RAMSHIFT" -v send --to "$RX_URI" "$@" >"$WORK/out" 2>"$WORK/err" &
  local tx=$!; PIDS+=("$tx")
  for _ in $(seq 600); do grep -q "connected" "$WORK/err" && break; sleep 0.05; done
  sleep "$after"
  kill -9 "$RX_PID"
  wait "$tx"; local rc=$?
  [ "$rc" = 1 ] && pass "sender exits 1 when the receiver dies mid-migration" || { fail "sender exit $rc"; cat "$WORK/err"; }
  expect_stderr "destination went away|reset|closed" "sender says the destination went away"
}
finish() { [ "$FAILS" = 0 ] && { echo "all passed"; exit 0; }; echo "$FAILS failed"; exit 1; }
