#!/bin/bash
# Makes the test credentials in folder $1, in QEMU's --tls-dir layout, with the openssl CLI:
#   good/     ca-cert.pem, server pair (SAN 127.0.0.1, localhost), client pair (CN=sender)
#   otherca/  the same names, every certificate signed by another CA of the same name
#   rogue/    good's CA and server pair; a client certificate signed by that other CA
#   expired/  good's CA and server pair; a client certificate that expired yesterday
#   nocert/   good's CA only: a client that has no certificate
#   keys.psk, other.psk: QEMU keys.psk files, same identity, different keys
# SERVER_SAN replaces the server certificates' subjectAltName (the soft-RoCE VM: IP:10.9.0.1).
set -euo pipefail
out=${1:?usage: $0 DIR}
mkdir -p "$out"/{good,otherca,rogue,expired,nocert}
cd "$out"
key() { openssl genpkey -algorithm EC -pkeyopt ec_paramgen_curve:P-256 -out "$1" 2>/dev/null; }
ca() {  # ca DIR CN
  key "$1/ca-key.pem"
  openssl req -x509 -new -key "$1/ca-key.pem" -out "$1/ca-cert.pem" -days 30 -subj "/CN=$2"
}
leaf() {  # leaf CA_DIR OUT_DIR NAME SUBJECT DAYS [SAN]
  key "$2/$3-key.pem"
  openssl req -new -key "$2/$3-key.pem" -subj "$4" -out "$2/$3.csr"
  local ext="$2/$3.ext"
  echo "basicConstraints=CA:FALSE" > "$ext"
  [ -n "${6:-}" ] && echo "subjectAltName=$6" >> "$ext"
  openssl x509 -req -in "$2/$3.csr" -CA "$1/ca-cert.pem" -CAkey "$1/ca-key.pem" \
    -CAcreateserial -days "$5" -extfile "$ext" -out "$2/$3-cert.pem" 2>/dev/null
  rm -f "$2/$3.csr" "$ext"
}
san=${SERVER_SAN:-IP:127.0.0.1,DNS:localhost}
ca good "ramshift test CA"
leaf good good server "/O=ramshift-test/CN=receiver" 30 "$san"
leaf good good client "/O=ramshift-test/CN=sender" 30
ca otherca "ramshift test CA"  # same name, another key: what a forged CA looks like
leaf otherca otherca server "/O=ramshift-test/CN=receiver" 30 "$san"
leaf otherca otherca client "/O=ramshift-test/CN=sender" 30
cp good/ca-cert.pem good/server-cert.pem good/server-key.pem expired/
cp good/ca-cert.pem good/server-cert.pem good/server-key.pem rogue/
leaf otherca rogue client "/O=ramshift-test/CN=sender" 30
leaf good expired client "/O=ramshift-test/CN=sender" -1
cp good/ca-cert.pem nocert/
rm -f good/ca-key.pem otherca/ca-key.pem ./*/*.srl
echo "sender:$(openssl rand -hex 32)" > keys.psk
echo "sender:$(openssl rand -hex 32)" > other.psk
chmod 600 */*-key.pem keys.psk other.psk
