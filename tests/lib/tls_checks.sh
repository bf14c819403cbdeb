# Checks shared by the TLS tests: tests/security/tls_test.sh (tcp:// between two processes) and
# tests/softroce/security_cases.sh (rdma:// in the soft-RoCE VM). The caller has sourced
# tests/e2e/lib.sh (start_receiver, expect_exit, expect_stderr, pass, fail; WORK, RAMSHIFT,
# RX_URI) and made $WORK/src.img. Both write the ends' reports to $WORK/rx-tls.json and
# $WORK/tx-tls.json; TLS_SEND_EXTRA adds sender options (shell words).

# tls_migrate WHAT "RECEIVER FLAGS" "SENDER FLAGS": a whole migration that must verify.
tls_migrate() {
  rm -f "$WORK/dst.img"
  # shellcheck disable=SC2086
  start_receiver --once --accept-timeout 120 --guest-out "$WORK/dst.img" --json "$WORK/rx-tls.json" $2 ||
    { fail "$1: receiver"; return; }
  # shellcheck disable=SC2086
  expect_exit 0 "$1: migration completes" -- "$RAMSHIFT" send --to "$RX_URI" --queues 2 \
    --guest "file:$WORK/src.img" --json "$WORK/tx-tls.json" ${TLS_SEND_EXTRA:-} $3
  wait "$RX_PID" && pass "$1: receiver completes" || { fail "$1: receiver failed"; cat "$WORK/rx.err"; }
  cmp -s "$WORK/src.img" "$WORK/dst.img" && pass "$1: copy is identical" || fail "$1: copy differs"
}

# tls_refused WHAT "RECEIVER FLAGS" "SENDER FLAGS" SENDER_PATTERN RECEIVER_PATTERN: the sender
# fails saying why, the receiver says why too, keeps listening for a peer with the right
# credentials, and writes nothing.
tls_refused() {
  rm -f "$WORK/dst.img" "$WORK/dst.img.partial"
  # shellcheck disable=SC2086
  start_receiver --once --accept-timeout 120 --guest-out "$WORK/dst.img" $2 || { fail "$1: receiver"; return; }
  # shellcheck disable=SC2086
  timeout 60 "$RAMSHIFT" send --to "$RX_URI" --queues 2 --guest "file:$WORK/src.img" $3 \
    >"$WORK/out" 2>"$WORK/err"
  local rc=$?
  [ "$rc" = 1 ] || [ "$rc" = 2 ] && pass "$1: sender fails (exit $rc)" || { fail "$1: sender exit $rc"; cat "$WORK/err"; }
  expect_stderr "$4" "$1: sender says why"
  sleep 0.5
  kill -0 "$RX_PID" 2>/dev/null && pass "$1: receiver keeps listening" || fail "$1: receiver exited"
  grep -qiE "$5" "$WORK/rx.err" && pass "$1: receiver says why" || { fail "$1: receiver lacks /$5/"; cat "$WORK/rx.err"; }
  kill "$RX_PID" 2>/dev/null; wait "$RX_PID" 2>/dev/null
  [ ! -e "$WORK/dst.img" ] && [ ! -e "$WORK/dst.img.partial" ] && pass "$1: nothing written" ||
    fail "$1: the receiver wrote output"
}
