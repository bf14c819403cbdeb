#!/bin/bash
# TLS against plaintext on loopback: `send`/`receive` of an image over 2 data queues, runs
# alternating plaintext / TLS X.509 / TLS PSK so that a noisy minute hits all three alike.
# Prints the medians as a markdown table.
#   bench/tls_bench.sh [RAMSHIFT_BINARY]     env: SIZE (1G), RUNS (5), CODEC (none), PATTERN (random)
set -euo pipefail
RS=${1:-build/release/cli/ramshift}
SIZE=${SIZE:-1G}; RUNS=${RUNS:-5}; CODEC=${CODEC:-none}; PATTERN=${PATTERN:-random}
W=$(mktemp -d /tmp/ramshift-tls-bench-XXXXXX)
RX_PID=
cleanup() {
  [ -n "$RX_PID" ] && kill "$RX_PID" 2>/dev/null
  rm -rf "$W"
}
trap cleanup EXIT
bash "$(dirname "$0")/../tests/security/make_pki.sh" "$W/pki"
"$RS" make-image "$W/src.img" --size "$SIZE" --pattern "$PATTERN" >/dev/null

. "$(dirname "${BASH_SOURCE[0]}")/stats.sh"  # median
gbps_of() { python3 -c "import json,sys; r=json.load(open(sys.argv[1])); assert r['status']=='completed', r; print(r['guest_bytes']/r['total_ms']/1e6)" "$1"; }

run() {  # TLS_FLAGS... -> GB/s of guest memory (the source's total_ms)
  "$RS" -q receive --listen tcp://127.0.0.1:0 --once "$@" > "$W/rx.out" &
  RX_PID=$!
  for _ in $(seq 200); do grep -q listening "$W/rx.out" 2>/dev/null && break; sleep 0.05; done
  local uri; uri=$(sed -n 's/^listening on //p' "$W/rx.out")
  "$RS" -q send --to "$uri" --guest "file:$W/src.img" --queues 2 --codec "$CODEC" \
    --json "$W/tx.json" "$@"
  wait "$RX_PID"; RX_PID=
  gbps_of "$W/tx.json"
}

plain=(); x509=(); psk=()
for i in $(seq "$RUNS"); do
  plain+=("$(run)")
  x509+=("$(run --tls-dir "$W/pki/good")")
  psk+=("$(run --tls-psk "$W/pki/keys.psk")")
  echo "run $i: plaintext ${plain[-1]} x509 ${x509[-1]} psk ${psk[-1]} GB/s" >&2
done
mp=$(printf '%s\n' "${plain[@]}" | median)
row() {  # LABEL VALUES...
  local label=$1; shift
  local m; m=$(printf '%s\n' "$@" | median)
  printf '| %s | %.3f | %s| %.2fx |\n' "$label" "$m" "$(printf '%.3f ' "$@")" \
    "$(python3 -c "print($m / $mp)")"
}
echo "| mode | median GB/s | runs | vs plaintext |"
echo "| --- | ---: | --- | ---: |"
row "plaintext" "${plain[@]}"
row "TLS 1.3, X.509 (--tls-dir)" "${x509[@]}"
row "TLS 1.3, PSK (--tls-psk)" "${psk[@]}"
