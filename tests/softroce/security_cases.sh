# Sourced by suite.sh (with E2E_DIR, WORK, ADDR, RAMSHIFT, step/pass/fail): rdma:// with
# --tls-dir / --tls-psk between two processes in the VM. X.509 and PSK migrations complete and
# verify; each refusal (no, expired or wrongly signed client certificate, a receiver from
# another CA, a client outside --tls-authz, a wrong PSK, plaintext against TLS both ways) is
# refused with the reason on both sides, the receiver keeps listening, and nothing is written.
# The credentials come from run.sh (make_pki.sh on the host, the receiver's certificate
# naming $ADDR; its folder named in /opt/share/softroce_pki), or are made here where the suite
# runs on a host with RDMA. Run alone: run.sh with SOFTROCE_ONLY=security.
step "rdma:// authenticated with TLS: credentials"
P=$(cat /opt/share/softroce_pki 2>/dev/null)
if [ -z "$P" ] || [ ! -f "$P/good/ca-cert.pem" ]; then
  P=$WORK/pki
  SERVER_SAN="IP:$ADDR" bash "$E2E_DIR/../security/make_pki.sh" "$P" >"$WORK/pki.log" 2>&1 || cat "$WORK/pki.log"
fi
[ -f "$P/good/ca-cert.pem" ] && [ -f "$P/rogue/ca-cert.pem" ] && [ -f "$P/keys.psk" ] &&
  pass "test PKI at hand (server certificate for $ADDR)" || fail "no test PKI in $P"
[ -f "$WORK/src.img" ] || "$RAMSHIFT" make-image --size 16M --pattern mixed "$WORK/src.img" >/dev/null

# tls_migrate and tls_refused: the checks tls_test.sh uses over tcp://.
source "$E2E_DIR/../lib/tls_checks.sh"
TLS_SEND_EXTRA="--codec none"

X="--tls-dir $P/good"
step "rdma:// with TLS: X.509 and PSK migrations"
tls_migrate "rdma x509" "$X --tls-authz CN=sender,O=ramshift-test" "$X"
# Each report's peer names the session and the identity the other side proved.
grep -q '"peer": *"rdma .*TLSv1.3 TLS_AES_256_GCM_SHA384, x509, peer CN=sender,O=ramshift-test)' "$WORK/rx-tls.json" &&
  pass "rdma x509: the receiver's report names TLS 1.3 and the sender's certificate" ||
  { fail "rdma x509: the receiver's report lacks the session"; grep '"peer"' "$WORK/rx-tls.json"; }
grep -q '"peer": *"rdma .*TLSv1.3 TLS_AES_256_GCM_SHA384, x509, peer CN=receiver,O=ramshift-test)' "$WORK/tx-tls.json" &&
  pass "rdma x509: the sender's report names TLS 1.3 and the receiver's certificate" ||
  { fail "rdma x509: the sender's report lacks the session"; grep '"peer"' "$WORK/tx-tls.json"; }
placed=$(grep -o '"placed": *[0-9]*' "$WORK/tx-tls.json" | grep -o '[0-9]*$')
[ "${placed:-0}" -gt 0 ] && pass "rdma x509: raw pages still go by RDMA WRITE after authentication ($placed)" ||
  fail "rdma x509: no page placed by RDMA WRITE"
tls_migrate "rdma psk" "--tls-psk $P/keys.psk --tls-authz sender" "--tls-psk $P/keys.psk"

step "rdma:// with TLS: refusals"
tls_refused "rdma: no client certificate" "$X" "--tls-dir $P/nocert" \
  "refused this side's credentials.*certificate required" "did not return a certificate"
tls_refused "rdma: expired client certificate" "$X" "--tls-dir $P/expired" \
  "expired" "certificate has expired"
tls_refused "rdma: client certificate from another CA" "$X" "--tls-dir $P/rogue" \
  "refused this side's credentials.*unknown ca" "unable to get local issuer certificate"
tls_refused "rdma: receiver certificate from another CA" "$X" "--tls-dir $P/otherca" \
  "server-cert.pem was refused" "alert unknown ca"
tls_refused "rdma: certificate not in --tls-authz" "$X --tls-authz CN=someone-else" "$X" \
  "refused this connection.*CN=sender,O=ramshift-test.*not in .*--tls-authz" \
  "CN=sender,O=ramshift-test.*not in .*--tls-authz"
tls_refused "rdma: wrong PSK" "--tls-psk $P/keys.psk" "--tls-psk $P/other.psk" \
  "same identity and key" "binder does not verify"
tls_refused "rdma: plaintext sender, TLS receiver" "$X" "" \
  "refused this connection: it accepts only TLS" "connected without TLS"
tls_refused "rdma: TLS sender, plaintext receiver" "" "$X" \
  "refused this connection: it runs without TLS" "speaks TLS, but this side was started without"

step "rdma:// --encrypt: payloads sealed with keys from the handshake"
tls_migrate "rdma encrypt" "--tls-psk $P/keys.psk --encrypt" "--tls-psk $P/keys.psk --encrypt"
grep -q '"peer": *"rdma .*payloads sealed: AES-256-GCM)' "$WORK/tx-tls.json" &&
  grep -q '"peer": *"rdma .*payloads sealed: AES-256-GCM)' "$WORK/rx-tls.json" &&
  pass "rdma encrypt: both reports say the payloads were sealed" ||
  { fail "rdma encrypt: a report lacks the sealing"; grep -h '"peer"' "$WORK/tx-tls.json" "$WORK/rx-tls.json"; }
# Sealed batches cannot be placed one-sided: every raw page went in a message.
placed=$(grep -o '"placed": *[0-9]*' "$WORK/tx-tls.json" | grep -o '[0-9]*$')
[ "${placed:-0}" = 0 ] && pass "rdma encrypt: no page went by RDMA WRITE" ||
  fail "rdma encrypt: $placed pages went by RDMA WRITE"
tls_refused "rdma: --encrypt on one side only" "--tls-psk $P/keys.psk --encrypt" "--tls-psk $P/keys.psk" \
  "runs with --encrypt and this side does not" "runs without --encrypt and this side does"
expect_exit 2 "--encrypt without --tls-dir or --tls-psk is a usage error" -- \
  "$RAMSHIFT" send --to "rdma://$ADDR:9" --guest "file:$WORK/src.img" --encrypt
expect_stderr "need --tls-dir DIR or --tls-psk FILE" "and says what it needs"

step "remote memory: a key captured from an earlier connection opens nothing in the next"
# One long-lived receiver (no --once; plaintext, so that a former peer may connect at all).
# The ring: rdma_bad_peer takes queue 0's ring address and rkey from a first connection, then,
# on a second connection to the same process, RDMA WRITEs 4 KiB with them.
# The guest memory: rdma_bad_peer plays a source of a 16 MiB guest far enough to be given the
# destination's first MEMORY_KEYS range (address and its data queue's rkey), then on the next
# migration to the same process it is given new keys, writes 4 KiB with those (must land,
# else the check could not fail) and 4 KiB with the old address and key on the same queue.
# Each connection has its own protection domain, and the old registrations (and memory
# windows) went with their connection, so both old keys must be refused by the device.
# Memory windows (rxe has type 2B): a key is bound to its queue's queue pair, so the data
# queue's key through queue 0 is refused, and so is queue 1's receive-ring key; a source from before keys per queue is given the
# region's key, which works through any queue (the fallback, the same as on a device without
# windows). A real migration afterwards completes, its copy is identical, and its report
# names the memory windows.
if command -v rdma_bad_peer >/dev/null; then
  rm -f "$WORK"/dst-*.img
  rm -f "$WORK"/rx-*.json
  start_receiver --accept-timeout 120 --guest-out "$WORK/dst-{id}.img" --json "$WORK/rx-{id}.json" ||
    fail "stale rkey: receiver"
  hp=${RX_URI#rdma://}
  bad_peer() { timeout 30 rdma_bad_peer "${hp%:*}" "${hp##*:}" "$@"; }
  bad_peer capture-rkey >"$WORK/cap.out" 2>&1
  # (no <(...) here: the VM's busybox has no /dev/fd)
  cap=$(grep '^captured ' "$WORK/cap.out")
  old_addr=$(echo "$cap" | awk '{print $2}'); old_rkey=$(echo "$cap" | awk '{print $3}')
  [ -n "${old_rkey:-}" ] && pass "stale rkey: captured ring rkey $old_rkey from a first connection" ||
    { fail "stale rkey: nothing captured"; cat "$WORK/cap.out"; }
  sleep 1
  bad_peer "stale-rkey:${old_addr:-0}:${old_rkey:-0}" >"$WORK/stale.out" 2>&1
  rc=$?
  [ "$rc" = 0 ] && pass "stale rkey: the write with the old key was refused ($(grep '^write:' "$WORK/stale.out"))" ||
    { fail "stale rkey: exit $rc"; cat "$WORK/stale.out"; }
  grep "this connection's ring" "$WORK/stale.out"
  sleep 1

  bad_peer capture-memory-key >"$WORK/capmem.out" 2>&1
  cap=$(grep '^captured-memory ' "$WORK/capmem.out")
  mem_addr=$(echo "$cap" | awk '{print $2}'); mem_rkey=$(echo "$cap" | awk '{print $3}')
  mem_len=$(echo "$cap" | awk '{print $4}')
  [ -n "${mem_rkey:-}" ] && [ "${mem_len:-0}" -gt 0 ] &&
    pass "stale guest-memory key: a first migration gave rkey $mem_rkey for $mem_len bytes of guest memory" ||
    { fail "stale guest-memory key: no MEMORY_KEYS captured"; cat "$WORK/capmem.out"; tail -5 "$WORK/rx.err"; }
  sleep 1
  bad_peer "stale-memory-key:${mem_addr:-0}:${mem_rkey:-0}" >"$WORK/stalemem.out" 2>&1
  rc=$?
  grep "this migration's guest memory" "$WORK/stalemem.out"
  case $rc in
    0) pass "stale guest-memory key: on the next migration the device refused the old key ($(grep '^the captured key:' "$WORK/stalemem.out")), the new one wrote" ;;
    1) fail "stale guest-memory key: the write with the old key landed"; cat "$WORK/stalemem.out" ;;
    3) fail "stale guest-memory key: the control write with this migration's own key failed"; cat "$WORK/stalemem.out" ;;
    *) fail "stale guest-memory key: exit $rc"; cat "$WORK/stalemem.out"; tail -5 "$WORK/rx.err" ;;
  esac
  sleep 1
  # through_queue_0 CASE STATUS RC WHAT: rdma_bad_peer CASE's write through queue 0 ended
  # with STATUS and the tool exited RC.
  through_queue_0() {
    local out="$WORK/$1-$RX_PID.out" rc
    bad_peer "$1" >"$out" 2>&1
    rc=$?
    grep -q "^through queue 0: write: $2" "$out" && [ "$rc" = "$3" ] && pass "$4" ||
      { fail "$4 (exit $rc)"; cat "$out"; }
    sleep 1
  }
  through_queue_0 other-queue-key "remote access error" 0 \
    "memory windows: the data queue's key through queue 0 was refused, through its own queue it wrote"
  through_queue_0 ring-key-other-queue "remote access error" 0 \
    "memory windows: queue 1's receive-ring key through queue 0 was refused, through queue 1 it wrote"
  through_queue_0 other-queue-key-old success 0 \
    "region keys: a source without keys per queue gets the region's key, which works through any queue"
  kill -0 "$RX_PID" 2>/dev/null && pass "stale keys: the receiver is still listening" ||
    { fail "stale keys: the receiver is gone"; tail -5 "$WORK/rx.err"; }
  rm -f "$WORK"/dst-*.img
  expect_exit 0 "stale keys: the receiver still takes a real migration" -- \
    "$RAMSHIFT" send --to "$RX_URI" --guest "file:$WORK/src.img" --queues 2 --codec none --json "$WORK/tx-mw.json"
  sleep 1
  dst=$(ls "$WORK"/dst-*.img 2>/dev/null | head -1)
  cmp -s "$WORK/src.img" "${dst:-/nonexistent}" && pass "stale keys: that copy ($(basename "${dst:-none}")) is identical" ||
    { fail "stale keys: copy differs or missing"; ls "$WORK"/dst-*; tail -5 "$WORK/rx.err"; }
  rx_json=$(ls -t "$WORK"/rx-*.json 2>/dev/null | head -1)
  placed=$(grep -o '"placed": *[0-9]*' "$WORK/tx-mw.json" | grep -o '[0-9]*$')
  grep -q '"peer": *"rdma .*memory windows' "${rx_json:-/nonexistent}" && [ "${placed:-0}" -gt 0 ] &&
    pass "memory windows: the receiver's report names them, and $placed pages went by RDMA WRITE through them" ||
    { fail "memory windows: not in the receiver's report, or no page placed"; grep -h '"peer"\|"placed"' "$WORK/tx-mw.json" "${rx_json:-/nonexistent}"; }
  kill "$RX_PID" 2>/dev/null; wait "$RX_PID" 2>/dev/null

  # A receiver told not to bind windows (as on a device without them) gives region keys,
  # says so, and another queue's key then lands: the check above can tell the two apart.
  start_receiver -v --accept-timeout 60 --guest-out "$WORK/dst-{id}.img" --rdma-memory-windows false ||
    fail "region keys: receiver"
  hp=${RX_URI#rdma://}
  through_queue_0 other-queue-key success 0 \
    "region keys: with --rdma-memory-windows false a guest-memory key works through any queue"
  grep -q "rdma-memory-windows false was given: the peer's keys are the memory regions'" "$WORK/rx.err" &&
    pass "region keys: the receiver says why its keys are the regions'" ||
    { fail "region keys: the receiver does not say why"; tail -3 "$WORK/rx.err"; }
  through_queue_0 ring-key-other-queue success 1 \
    "region keys: with --rdma-memory-windows false a receive ring's key works through any queue"
  kill "$RX_PID" 2>/dev/null; wait "$RX_PID" 2>/dev/null
else
  fail "stale rkey: no rdma_bad_peer in the VM (run.sh copies it in)"
fi
