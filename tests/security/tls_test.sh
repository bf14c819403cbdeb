#!/bin/bash
# tcp:// with TLS between real processes, credentials made here with the openssl CLI
# (make_pki.sh): X.509 and PSK migrations complete and verify; a missing, expired, wrongly
# signed or not-allowed certificate, a wrong PSK, and plaintext against TLS (both ways) are
# each refused with a message on both sides, and the receiver writes nothing.
source "$(dirname "$0")/../e2e/lib.sh"
bash "$(dirname "$0")/make_pki.sh" "$WORK/pki" || exit 1
P=$WORK/pki
"$RAMSHIFT" make-image "$WORK/src.img" --size 64M --pattern mixed >/dev/null || exit 1

# tls_migrate and tls_refused (shared with the rdma:// cases in the soft-RoCE VM).
source "$(dirname "$0")/../lib/tls_checks.sh"

X="--tls-dir $P/good"
tls_migrate "x509" "$X --tls-authz CN=sender,O=ramshift-test" "$X"
tls_migrate "psk" "--tls-psk $P/keys.psk --tls-authz sender" "--tls-psk $P/keys.psk"

tls_refused "no client certificate" "$X" "--tls-dir $P/nocert" \
  "refused this side's credentials.*certificate required" "did not return a certificate"
tls_refused "expired client certificate" "$X" "--tls-dir $P/expired" \
  "expired" "certificate has expired"
tls_refused "client certificate from another CA" "$X" "--tls-dir $P/rogue" \
  "refused this side's credentials.*unknown ca" "unable to get local issuer certificate"
tls_refused "receiver certificate from another CA" "$X" "--tls-dir $P/otherca" \
  "server-cert.pem was refused" "alert unknown ca"
tls_refused "certificate not in --tls-authz" "$X --tls-authz CN=someone-else" "$X" \
  "refused this connection.*CN=sender,O=ramshift-test.*not in .*--tls-authz" \
  "CN=sender,O=ramshift-test.*not in .*--tls-authz"
tls_refused "wrong PSK" "--tls-psk $P/keys.psk" "--tls-psk $P/other.psk" \
  "same identity and key" "binder does not verify"
tls_refused "plaintext sender, TLS receiver" "$X" "" \
  "refused this connection: it accepts only TLS" "connected without TLS"
tls_refused "TLS sender, plaintext receiver" "" "$X" \
  "TLS handshake with 127.0.0.1 failed" "speaks TLS, but this side was started without"

# Junk on a TLS receiver's port (a fake TLS record, a cut ClientHello, random bytes) is refused
# without harm, and a real sender migrates after it.
rm -f "$WORK/dst.img"
start_receiver --once --guest-out "$WORK/dst.img" $X || exit 1
python3 - "${RX_URI##*:}" <<'PY'
import os, socket, sys
port = int(sys.argv[1])
def send(data):
    s = socket.create_connection(("127.0.0.1", port)); s.sendall(data); s.close()
send(b"\x16\x03\x01\xff\xff" + os.urandom(3000))      # a record longer than it says
send(b"\x16\x03\x01\x00\x40\x01\x00\x00\x3c\x03\x03")  # a ClientHello cut short
send(b"\x16" + os.urandom(200))
send(os.urandom(100000))
PY
expect_exit 0 "a TLS sender succeeds after junk hit the TLS port" -- \
  "$RAMSHIFT" send --to "$RX_URI" --guest "file:$WORK/src.img" $X
wait "$RX_PID" && pass "the TLS receiver survived the junk and completed" || fail "receiver failed after junk"
cmp -s "$WORK/src.img" "$WORK/dst.img" && pass "copy after junk is identical" || fail "copy after junk differs"

# Bad credentials are refused before anything connects (exit 2), naming the file.
expect_exit 2 "a --tls-dir without ca-cert.pem is a usage error" -- \
  "$RAMSHIFT" send --to tcp://127.0.0.1:9 --guest "file:$WORK/src.img" --tls-dir "$WORK"
expect_stderr "no ca-cert.pem" "and says which file is missing"
echo "sender:abcd" > "$WORK/short.psk"
expect_exit 2 "a PSK shorter than 16 bytes is refused" -- \
  "$RAMSHIFT" receive --listen tcp://127.0.0.1:0 --once --tls-psk "$WORK/short.psk"
expect_stderr "line 1: the key has 2 bytes" "and says which line is wrong"
# doctor checks the credentials: readable, in date, signed by the CA, each key its certificate's.
"$RAMSHIFT" doctor --tls-dir "$P/good" >"$WORK/doc" 2>&1
[ "$(grep -c '^ok    tls\.' "$WORK/doc")" = 5 ] && pass "doctor: every good credential is ok" \
  || { fail "doctor on good credentials"; cat "$WORK/doc"; }
grep -q "CN=sender,O=ramshift-test" "$WORK/doc" && pass "doctor prints the subject in --tls-authz form" \
  || fail "doctor lacks the client subject"
"$RAMSHIFT" doctor --tls-dir "$P/expired" >"$WORK/doc" 2>&1
grep -qE "^fail +tls.client-cert.pem .*expired" "$WORK/doc" && pass "doctor fails an expired certificate" \
  || { fail "doctor on an expired certificate"; cat "$WORK/doc"; }
mkdir -p "$WORK/mixed" && cp "$P/good/"* "$WORK/mixed/" && cp "$P/rogue/client-key.pem" "$WORK/mixed/"
"$RAMSHIFT" doctor --tls-dir "$WORK/mixed" >"$WORK/doc" 2>&1
grep -qE "^fail +tls.client-key.pem .*not the key of" "$WORK/doc" && pass "doctor fails a key that is not its certificate's" \
  || { fail "doctor on a mismatched key"; cat "$WORK/doc"; }
expect_exit 2 "a key that is not its certificate's is refused before connecting" -- \
  "$RAMSHIFT" send --to tcp://127.0.0.1:9 --guest "file:$WORK/src.img" --tls-dir "$WORK/mixed"
expect_stderr "client-key.pem does not belong to .*client-cert.pem" "and says which files disagree"
finish
