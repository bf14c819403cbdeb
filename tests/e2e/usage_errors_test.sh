#!/bin/bash
# Bad input gets one clear line and exit 2, never a crash.
source "$(dirname "$0")/lib.sh"
"$RAMSHIFT" make-image "$WORK/img" --size 8M || exit 1

expect_exit 2 "malformed URI" -- "$RAMSHIFT" send --to 127.0.0.1:7000 --guest "file:$WORK/img"
expect_stderr "malformed URI.*tcp://" "malformed URI explains the form"
expect_exit 2 "unknown codec" -- "$RAMSHIFT" send --to tcp://127.0.0.1:1 --guest "file:$WORK/img" --codec lz4
expect_stderr "unknown codec 'lz4'" "unknown codec is named"
expect_exit 2 "missing image" -- "$RAMSHIFT" send --to tcp://127.0.0.1:1 --guest "file:$WORK/nope"
expect_stderr "does not exist" "missing image is named"
expect_exit 2 "unreadable image (a directory)" -- "$RAMSHIFT" send --to tcp://127.0.0.1:1 --guest "file:$WORK"
expect_stderr "not a regular file" "unreadable image is explained"
expect_exit 2 "unknown guest kind" -- "$RAMSHIFT" send --to tcp://127.0.0.1:1 --guest "disk:$WORK/img"
expect_exit 2 "unknown option" -- "$RAMSHIFT" send --to tcp://127.0.0.1:1 --guest "file:$WORK/img" --frobnicate

# The global flags work after the command too: -q there silences the summary, -v there logs
# the steps, and an unknown flag is still refused.
start_receiver --once || exit 1
"$RAMSHIFT" send --to "$RX_URI" --guest "file:$WORK/img" -q >"$WORK/q.out" 2>&1; rc=$?
[ "$rc" = 0 ] || kill "$RX_PID"  # a sender that never connected leaves the receiver waiting
wait "$RX_PID"
[ "$rc" = 0 ] && ! grep -q "completed" "$WORK/q.out" && pass "-q after the command" ||
  fail "-q after the command: exit $rc, output: $(head -3 "$WORK/q.out")"
start_receiver --once || exit 1
"$RAMSHIFT" send --to "$RX_URI" --guest "file:$WORK/img" -v >"$WORK/v.out" 2>&1; rc=$?
[ "$rc" = 0 ] || kill "$RX_PID"
wait "$RX_PID"
[ "$rc" = 0 ] && grep -q "connected" "$WORK/v.out" && pass "-v after the command" ||
  fail "-v after the command: exit $rc, output: $(head -3 "$WORK/v.out")"
expect_exit 2 "unknown flag after the command" -- "$RAMSHIFT" send --to tcp://127.0.0.1:1 --guest "file:$WORK/img" -x

# Host unreachable: a port nothing listens on (refused), and a name that does not resolve.
port=$(python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])')
expect_exit 2 "connection refused" -- "$RAMSHIFT" send --to "tcp://127.0.0.1:$port" --guest "file:$WORK/img"
expect_stderr "refused" "refusal is explained"
expect_exit 2 "unresolvable host" -- "$RAMSHIFT" send --to tcp://no-such-host.invalid:7000 --guest "file:$WORK/img"

# rdma:// on a host without an RDMA device (this machine): the fix is named. Where the
# binary has no rdma backend, or the host has a device, the message differs: skip.
"$RAMSHIFT" send --to rdma://127.0.0.1:7000 --guest "file:$WORK/img" >/dev/null 2>"$WORK/err"; rc=$?
if ! grep -q "not available in this build" "$WORK/err" && [ -z "$(ls /sys/class/infiniband 2>/dev/null)" ]; then
  [ "$rc" = 2 ] && pass "rdma without a device (exit 2)" || fail "rdma without a device: exit $rc"
  expect_stderr "no RDMA device found; use tcp:// or load rdma_rxe" "missing RDMA device is explained"
fi

# Port in use.
start_receiver || exit 1
expect_exit 2 "port in use" -- "$RAMSHIFT" receive --listen "$RX_URI" --once
expect_stderr "already in use" "port in use is explained"
kill "$RX_PID"

# Size mismatch: both sides refuse with the reason.
start_receiver --once --expect-size 16M || exit 1
expect_exit 2 "size mismatch (sender)" -- "$RAMSHIFT" send --to "$RX_URI" --guest "file:$WORK/img"
expect_stderr "size mismatch" "size mismatch reaches the sender"
wait "$RX_PID"; rc=$?
[ "$rc" = 2 ] && pass "size mismatch (receiver exit 2)" || fail "receiver exit $rc on size mismatch"

# Receiver disk full: a 16 MiB tmpfs cannot take a 64 MiB guest.
"$RAMSHIFT" make-image "$WORK/big" --size 64M || exit 1
mkdir -p "$WORK/small"
if mount -t tmpfs -o size=16M tmpfs "$WORK/small" 2>/dev/null; then
  trap 'umount "$WORK/small" 2>/dev/null; cleanup' EXIT
  start_receiver --once --guest-out "$WORK/small/out.img" || exit 1
  expect_exit 2 "receiver disk full (sender)" -- "$RAMSHIFT" send --to "$RX_URI" --guest "file:$WORK/big"
  expect_stderr "disk full" "disk full reaches the sender"
  wait "$RX_PID"; rc=$?
  [ "$rc" = 2 ] && pass "disk full (receiver exit 2)" || fail "receiver exit $rc on disk full"
  [ -z "$(ls "$WORK/small")" ] && pass "nothing left on the full disk" || fail "files left on the full disk"
  umount "$WORK/small"
else
  echo "SKIP: disk full (cannot mount a tmpfs here)"
fi
finish
