# Sourced by inproc_suite.sh in the soft-RoCE VM (W, LIB, ADDR, migrate_paused with SRC_EXEC and
# DST_EXEC, jget, show, stop_all, step/pass/fail): the library's READ connection authenticates
# with qemu-exec's --tls-* flags (docs/security.md, "The QEMU in-process library").
#  - X.509 on both sides, the destination's --tls-authz naming the source: RAM identical, pages
#    by READ, each side's note names TLS 1.3 and the identity the other side proved
#  - a wrong PSK, a certificate not in --tls-authz, TLS on one side only: refused on both sides
#    with the reason in each side's stats; no key made or sent (no registration on the source,
#    no frame); the migration completes over plain multifd, RAM identical
#  - the source's stats: each channel gave the destination memory-window keys on its READ
#    connection, and its exposure ended on the destination's DONE (not the peer timeout); with
#    --rdma-memory-windows false on the source, region keys, said why, RAM identical
#  - rdma_pull_probe: a guest-memory key from an earlier connection, with or without that
#    connection still held, reads nothing through the next one; a destination that holds its
#    connection without saying it is done reads nothing after the bound; DONE ends the
#    exposure at once
#  - with INPROC_BASE_LIB on inproc_run.sh: figures, what registering per connection costs
#    (the same plain 2-channel migration with that build's library and with this one,
#    alternated three times; registration time per side and the migration's time;
#    INPROC_ONLY=regcost runs only these)
# Credentials: inproc_run.sh makes them (make_pki.sh, the destination's certificate for $ADDR).
if [ "${ONLY:-}" != regcost ]; then  # INPROC_ONLY=regcost: the figures below only
P=$(cat /opt/share/inproc_pki 2>/dev/null)
step "the READ connection authenticated: credentials"
[ -f "$P/good/ca-cert.pem" ] && [ -f "$P/keys.psk" ] && [ -f "$P/other.psk" ] &&
  pass "test PKI at hand (destination certificate for $ADDR)" || fail "no test PKI in '$P'"

# notes FILE: the stats file's notes, one line.
notes() { tr -d '\n' < "$1" | grep -o '"notes": *\[[^]]*\]'; }
jstr() { tr -d '\n' < "$1" | grep -o "\"$2\": *\"[^\"]*\"" | head -1; }

step "the READ connection authenticated with X.509, the source in the destination's --tls-authz"
SRC_EXEC=(--tls-dir "$P/good")
DST_EXEC=(--tls-dir "$P/good" --tls-authz "CN=sender,O=ramshift-test")
if migrate_paused x509 2 rdma; then pass "x509: qemu-migrate completed"; else
  fail "x509: qemu-migrate: $(tail -3 "$W/mx509.err")"; cat "$W/qsx509.log" "$W/qdx509.log"; fi
sleep 2  # the source QEMU closes its channels just after it reports completion
stop_all
cmp -s "$W/src.img" "$W/dst.ram" && pass "x509: destination RAM identical to the image" ||
  fail "x509: destination RAM differs from the image"
rd=$(jget "$W/dx509.json" destination rdma_bytes); rs=$(jget "$W/sx509.json" source rdma_bytes)
[ "${rd:-0}" -gt $((32 << 20)) ] && [ "$rd" = "${rs:-1}" ] &&
  pass "x509: $rd bytes of pages by RDMA READ" || { fail "x509: rdma_bytes ${rd:-?}/${rs:-?}"; show "$W/dx509.json"; }
notes "$W/sx509.json" | grep -q 'RDMA READ (rdma .*TLSv1.3 .*x509, peer CN=receiver,O=ramshift-test)' &&
  pass "x509: the source's note names TLS 1.3 and the destination's certificate" ||
  { fail "x509: the source's note lacks the session"; notes "$W/sx509.json"; }
notes "$W/dx509.json" | grep -q 'RDMA READ (rdma .*TLSv1.3 .*x509, peer CN=sender,O=ramshift-test)' &&
  pass "x509: the destination's note names TLS 1.3 and the source's certificate" ||
  { fail "x509: the destination's note lacks the session"; notes "$W/dx509.json"; }
# keys_and_exposure TAG KEYS: every RDMA channel of the source gave the destination KEYS ("memory
# windows" or "region keys") on its READ connection, and its exposure ended when the
# destination said it was done, well before the peer timeout (5 s).
keys_and_exposure() {
  local f=$W/s$1.json ch k e ms
  ch=$(jget "$f" source rdma_channels)
  k=$(tr -d '\n' < "$f" | grep -o "\"keys\": *\"$2\"" | wc -l)
  [ "${ch:-0}" -gt 0 ] && [ "$k" = "$ch" ] &&
    pass "$1: the source's $ch RDMA channel(s) gave the destination $2" ||
    { fail "$1: keys: $k of ${ch:-?} channels say $2"; show "$f"; }
  e=$(tr -d '\n' < "$f" | grep -o '"exposure_ended": *"done"' | wc -l)
  ms=$(tr -d '\n' < "$f" | grep -o '"exposed_after_close_ms": *[0-9]*' | grep -o '[0-9]*$' | sort -n | tail -1)
  [ "$e" = "$ch" ] && [ "${ms:-99999}" -lt 5000 ] &&
    pass "$1: every channel's exposure ended on the destination's DONE, at most $ms ms after the source QEMU closed it" ||
    { fail "$1: exposure: $e of ${ch:-?} ended on DONE, the longest ${ms:-?} ms"; show "$f"; }
}
keys_and_exposure x509 "memory windows"
for side in s:source d:destination; do
  f=$W/${side%%:*}x509.json
  echo "x509 ${side#*:}: $(tr -d '\n' < "$f" |
    grep -o '"registered_bytes": *[0-9]*\|"registration_ms": *[0-9.]*\|"registrations": *[0-9]*' | tr '\n' ' ')"
done

step "the region-key fallback: the source with --rdma-memory-windows false"
SRC_EXEC=(--tls-dir "$P/good" --rdma-memory-windows false)
DST_EXEC=(--tls-dir "$P/good" --tls-authz "CN=sender,O=ramshift-test")
if migrate_paused nowin 2 rdma; then pass "no windows: qemu-migrate completed"; else
  fail "no windows: qemu-migrate: $(tail -3 "$W/mnowin.err")"; fi
sleep 2
stop_all
cmp -s "$W/src.img" "$W/dst.ram" && pass "no windows: destination RAM identical to the image" ||
  fail "no windows: destination RAM differs from the image"
keys_and_exposure nowin "region keys"
notes "$W/snowin.json" | grep -q 'rdma-memory-windows false was given: the destination.s keys are the memory regions' &&
  pass "no windows: the source's stats say why the keys are the regions'" ||
  { fail "no windows: the source's notes lack the reason"; notes "$W/snowin.json"; }
SRC_EXEC=(); DST_EXEC=()

# refused TAG WHAT SOURCE_SAYS DESTINATION_SAYS: a migration whose READ connection is refused.
refused() {
  local tag=$1 what=$2 src_re=$3 dst_re=$4
  if migrate_paused "$tag" 2 rdma; then pass "$what: the migration completed over plain multifd"; else
    fail "$what: qemu-migrate: $(tail -3 "$W/m$tag.err")"; fi
  stop_all
  cmp -s "$W/src.img" "$W/dst.ram" && pass "$what: destination RAM identical to the image" ||
    fail "$what: destination RAM differs from the image"
  local s=$W/s$tag.json d=$W/d$tag.json
  jstr "$s" fallback_reason | grep -q -- "$src_re" &&
    pass "$what: the source says $(jstr "$s" fallback_reason | cut -c1-240)" ||
    { fail "$what: the source's stats lack '$src_re'"; show "$s"; }
  jstr "$d" fallback_reason | grep -q -- "$dst_re" &&
    pass "$what: the destination says $(jstr "$d" fallback_reason | cut -c1-240)" ||
    { fail "$what: the destination's stats lack '$dst_re'"; show "$d"; }
  local reg fr rd
  reg=$(tr -d '\n' < "$s" | grep -o '"registrations": *[0-9]*' | grep -o '[0-9]*$')
  fr=$(jget "$d" destination frames); rd=$(jget "$d" destination rdma_bytes)
  [ "${reg:-1}" = 0 ] && [ "${fr:-1}" = 0 ] && [ "${rd:-1}" = 0 ] &&
    pass "$what: no key made or sent (source registrations 0, frames 0, rdma_bytes 0)" ||
    { fail "$what: registrations ${reg:-?}, frames ${fr:-?}, rdma_bytes ${rd:-?}"; show "$s"; }
}

step "the READ connection refused: a wrong PSK"
SRC_EXEC=(--tls-psk "$P/other.psk"); DST_EXEC=(--tls-psk "$P/keys.psk")
refused psk "wrong PSK" "same identity and key" "refused the source's RDMA connection: .*binder does not verify"

step "the READ connection refused: a certificate not in the destination's --tls-authz"
SRC_EXEC=(--tls-dir "$P/good"); DST_EXEC=(--tls-dir "$P/good" --tls-authz "CN=someone-else")
refused authz "not in --tls-authz" "refused this connection: .*CN=sender,O=ramshift-test.*not in .*--tls-authz" \
  "refused the source's RDMA connection: .*CN=sender,O=ramshift-test.*not in .*--tls-authz"

step "the READ connection refused: TLS on the source only"
SRC_EXEC=(--tls-dir "$P/good"); DST_EXEC=()
refused onesided "TLS on one side" "refused this connection: the destination runs without --tls-dir" \
  "connect request refused: the destination runs without --tls-dir"
SRC_EXEC=(); DST_EXEC=()

step "a guest-memory key from an earlier connection reads nothing through the next"
if command -v rdma_pull_probe >/dev/null; then
  timeout 180 rdma_pull_probe "$ADDR" --tls-psk "$P/keys.psk" >"$W/probe.out" 2>&1
  rc=$?
  while read -r l; do
    case $l in PASS:*) pass "probe: ${l#PASS: }" ;; FAIL:*) fail "probe: ${l#FAIL: }" ;; *) echo "$l" ;; esac
  done < "$W/probe.out"
  [ $rc = 0 ] && pass "probe: exit 0" || fail "probe: exit $rc"
else
  fail "no rdma_pull_probe in the VM (inproc_run.sh copies it in)"
fi
fi

# /opt/share/inproc_base: "NAME PATH" lines, the other libraries (inproc_run.sh).
if [ -s /opt/share/inproc_base ]; then
  step "figures: registration against other builds' libraries (2 channels, no TLS, alternated)"
  THIS_LIB=$LIB
  reg() { tr -d '\n' < "$1" | grep -o "\"$2\": *[0-9.]*" | grep -o '[0-9.]*$' | cut -d. -f1; }
  names=(); paths=()
  while read -r name path; do names+=("$name"); paths+=("$path"); done < /opt/share/inproc_base
  names+=(this); paths+=("$THIS_LIB")
  for i in 1 2 3; do
    for k in "${!names[@]}"; do
      name=${names[$k]}; LIB=${paths[$k]}
      tag=rc$name$i
      migrate_paused "$tag" 2 rdma || fail "figures: $name run $i: $(tail -2 "$W/m$tag.err")"
      stop_all
      cmp -s "$W/src.img" "$W/dst.ram" || fail "figures: $name run $i: RAM differs"
      echo "regcost $name $i: source $(reg "$W/s$tag.json" registrations) registrations" \
        "of $(reg "$W/s$tag.json" registered_bytes) bytes $(reg "$W/s$tag.json" registration_ms) ms," \
        "destination $(reg "$W/d$tag.json" registrations) registrations" \
        "$(reg "$W/d$tag.json" registration_ms) ms, $(jget "$W/d$tag.json" destination mode)" \
        "$(jget "$W/d$tag.json" destination rdma_bytes) bytes by READ, $(grep -o 'total [0-9]* ms' "$W/m$tag.err")"
    done
  done
  LIB=$THIS_LIB
fi
