#!/bin/bash
# ramshift against stock QEMU on the codec corpora (bench/corpus.sh), the goal of issue 26:
# the same memory image moved across the same shaped link by both, alternating run by run.
#   QEMU      a paused guest (-S, never runs) whose RAM is a copy of the image
#             (memory-backend-file, share=on), migrated with multifd (QEMU_CHANNELS, 2) and
#             multifd-compression QEMU_COMPRESSION (zstd) to a destination QEMU whose RAM is
#             another file; driven by `ramshift qemu-migrate` (max-bandwidth lifted)
#   ramshift  `ramshift send --guest file:IMAGE` at its defaults (--codec auto, 2 queues) to
#             `ramshift receive --guest-out FILE`
# Both source ends run in one network namespace, both destinations in another, joined by a
# veth shaped with tc tbf to LINK_RATE (1gbit) each way. Every run's destination memory is
# compared (cmp) with the image. Prints, per corpus, the medians of RUNS (3) runs: seconds from
# the start of the migration to completed (QEMU's total-time; ramshift's total_ms), each
# tool's wall time, the bytes each put on the wire (the veth's counter: packets, headers
# included), and ramshift's link floor (those bytes at the link's rate) with its ratio to it.
#   bench/qemu_corpus_bench.sh [RAMSHIFT_BINARY]
#   env: SIZE (1G), RUNS (3), CORPORA ("real-files guest-ram"), CORPUS_DIR
#        (~/.cache/ramshift/corpus), SCRATCH (/dev/shm: the copies; 3 x SIZE), LINK_RATE,
#        RAMSHIFT_ARGS (more `send` options), OUT (also write the table there),
#        TLS (0; 1: both with TLS 1.3 X.509 from tests/security/make_pki.sh: QEMU's
#        tls-creds-x509 on both QEMUs and migrate parameter tls-creds, ramshift's --tls-dir)
set -euo pipefail
here=$(cd "$(dirname "$0")" && pwd)
RS=$(realpath "${1:-build/release/cli/ramshift}")
SIZE=${SIZE:-1G}; RUNS=${RUNS:-3}; LINK_RATE=${LINK_RATE:-1gbit}
CORPUS_DIR=${CORPUS_DIR:-$HOME/.cache/ramshift/corpus}
CORPORA=${CORPORA:-real-files guest-ram}
QEMU_CHANNELS=${QEMU_CHANNELS:-2}; QEMU_COMPRESSION=${QEMU_COMPRESSION:-zstd}; TLS=${TLS:-0}
QEMU_BIN=${QEMU_BIN:-qemu-system-x86_64}
command -v "$QEMU_BIN" > /dev/null || { echo "needs $QEMU_BIN (apt-get install qemu-system-x86)" >&2; exit 77; }
W=$(mktemp -d "${SCRATCH:-/dev/shm}/ramshift-qcorpus-XXXXXX")
NSA=rsqcA$$; NSB=rsqcB$$; PFX=10.79.0
source "$here/../scripts/lib/netns.sh"
cleanup() {
  local p
  for p in "$W"/*.pid; do [ -e "$p" ] && kill -9 "$(cat "$p")" 2> /dev/null; done
  netns_link_down "$NSA" "$NSB"; rm -rf "$W"
}
trap cleanup EXIT
netns_link_up "$NSA" "$NSB" "$PFX" "$LINK_RATE" || { echo "cannot create namespaces" >&2; exit 77; }
bytes=$(numfmt --from=iec "$SIZE")
# The link's rate in bytes/s; tbf counts whole packets, as the veth's byte counter does.
link_Bps=$(numfmt --from=si "$(echo "$LINK_RATE" | sed 's/bit$//; s/[gG]$/G/; s/[mM]$/M/; s/[kK]$/K/')")
link_Bps=$((link_Bps / 8))

. "$(dirname "${BASH_SOURCE[0]}")/stats.sh"  # median
now() { date +%s.%N; }
# Bytes the source namespace's end of the veth has sent (every packet, headers included).
txbytes() { ip netns exec "$NSA" cat "/sys/class/net/${NSA:0:11}a/statistics/tx_bytes"; }
jnum() { python3 -c "import json,sys; r=json.load(open(sys.argv[1])); print(eval(sys.argv[2], {}, {'r': r}))" "$@"; }

# With TLS=1: one PKI in QEMU's layout whose server certificate names the destination's address
# (ramshift checks it) and localhost (QEMU's tls-hostname below).
TLS_SRC=() TLS_DST=() RS_TLS=()
if [ "$TLS" = 1 ]; then
  SERVER_SAN="IP:$PFX.2,DNS:localhost" bash "$here/../tests/security/make_pki.sh" "$W/pki" > /dev/null
  TLS_SRC=(-object "tls-creds-x509,id=tls0,dir=$W/pki/good,endpoint=client")
  TLS_DST=(-object "tls-creds-x509,id=tls0,dir=$W/pki/good,endpoint=server")
  RS_TLS=(--tls-dir "$W/pki/good")
fi
# qmp SOCKET COMMAND ARGUMENTS_JSON: one QMP command; fails on QEMU's error.
qmp() {
  python3 - "$@" <<'EOF'
import json, socket, sys
s = socket.socket(socket.AF_UNIX); s.connect(sys.argv[1]); f = s.makefile("rw")
def ask(cmd, args=None):
    f.write(json.dumps({"execute": cmd, **({"arguments": args} if args else {})}) + "\n"); f.flush()
    while True:
        r = json.loads(f.readline())
        if "return" in r: return r
        if "error" in r: sys.exit(f"QMP {cmd}: {r['error']}")
json.loads(f.readline())  # greeting
ask("qmp_capabilities"); ask(sys.argv[2], json.loads(sys.argv[3]))
EOF
}

# qemu_vm NAME MEMFILE [ARGS...]: a guest that never runs (-S), its RAM the file MEMFILE.
qemu_vm() {
  local name=$1 mem=$2 ns=$NSA; shift 2
  [ "$name" = dst ] && ns=$NSB
  ip netns exec "$ns" "$QEMU_BIN" -accel tcg -machine pc,memory-backend=m -m "$((bytes >> 20))M" \
    -object "memory-backend-file,id=m,size=$bytes,mem-path=$mem,share=on" -nodefaults \
    -no-user-config -display none -S -qmp "unix:$W/$name.qmp,server=on,wait=off" "$@" \
    > "$W/$name.qemu.out" 2>&1 &
  echo $! > "$W/$name.pid"
  for _ in $(seq 300); do [ -S "$W/$name.qmp" ] && return 0; sleep 0.1; done
  echo "QEMU $name did not start: $(cat "$W/$name.qemu.out")" >&2; return 1
}
qemu_vm_stop() {
  local n
  for n in src dst; do
    [ -e "$W/$n.pid" ] || continue
    kill "$(cat "$W/$n.pid")" 2> /dev/null; wait "$(cat "$W/$n.pid")" 2> /dev/null || true; rm -f "$W/$n.pid"
  done
}

# qemu_once IMAGE -> "total_s wall_s wire_bytes" (wire: the veth's count; QEMU 7.2's own
# ram.transferred counts multifd pages before compression)
qemu_once() {
  local img=$1 t0 t1 b0
  rm -f "$W/dst.mem" "$W/q.json"
  qemu_vm src "$img" "${TLS_SRC[@]}" && qemu_vm dst "$W/dst.mem" -incoming defer "${TLS_DST[@]}" || return 1
  if [ "$TLS" = 1 ]; then
    qmp "$W/src.qmp" migrate-set-parameters '{"tls-creds": "tls0", "tls-hostname": "localhost"}' &&
      qmp "$W/dst.qmp" migrate-set-parameters '{"tls-creds": "tls0"}' || { qemu_vm_stop; return 1; }
  fi
  b0=$(txbytes); t0=$(now)
  "$RS" -q qemu-migrate --src-qmp "$W/src.qmp" --dst-qmp "$W/dst.qmp" --dst-uri "tcp:$PFX.2:4444" \
    --multifd-channels "$QEMU_CHANNELS" --multifd-compression "$QEMU_COMPRESSION" \
    --timeout 900 --json "$W/q.json" 2> "$W/q.err" || { qemu_vm_stop; tail -3 "$W/q.err" >&2; return 1; }
  t1=$(now)
  echo "$(jnum "$W/q.json" "r['qemu']['total_ms'] / 1e3") $(echo "$t1 - $t0" | bc -l)" \
    "$(($(txbytes) - b0))"
  qemu_vm_stop
  cmp -s "$img" "$W/dst.mem" || { echo "QEMU: destination memory differs from the image" >&2; return 1; }
}

# ramshift_once IMAGE -> "total_s wall_s wire_bytes raw_share" (wire: the veth's count; raw
# share: raw pages / non-zero pages sent)
ramshift_once() {
  local img=$1 t0 t1 b0 b1 uri pid
  rm -f "$W/rs.mem" "$W/tx.json"
  ip netns exec "$NSB" "$RS" -q receive --listen "tcp://$PFX.2:0" --once --guest-out "$W/rs.mem" \
    "${RS_TLS[@]}" > "$W/rx.out" 2> "$W/rx.err" &
  pid=$!
  for _ in $(seq 600); do grep -q listening "$W/rx.out" 2> /dev/null && break; sleep 0.1; done
  uri=$(sed -n 's/^listening on //p' "$W/rx.out")
  [ -n "$uri" ] || { kill "$pid" 2> /dev/null; echo "receiver did not start" >&2; return 1; }
  b0=$(txbytes); t0=$(now)
  # shellcheck disable=SC2086
  ip netns exec "$NSA" "$RS" -q send --to "$uri" --guest "file:$img" ${RAMSHIFT_ARGS:-} "${RS_TLS[@]}" \
    --json "$W/tx.json" 2> "$W/tx.err" || { kill "$pid" 2> /dev/null; tail -3 "$W/tx.err" >&2; return 1; }
  t1=$(now); b1=$(txbytes)
  wait "$pid" || { tail -3 "$W/rx.err" >&2; return 1; }
  cmp -s "$img" "$W/rs.mem" || { echo "ramshift: destination memory differs from the image" >&2; return 1; }
  echo "$(jnum "$W/tx.json" "r['total_ms'] / 1e3") $(echo "$t1 - $t0" | bc -l)" \
    "$((b1 - b0))" \
    "$(jnum "$W/tx.json" "r['pages']['raw'] / max(1, r['pages']['raw'] + r['pages']['zstd'])")"
}

commit=$(git -C "$here" rev-parse --short HEAD 2> /dev/null || echo '?')
rows=()
for corpus in $CORPORA; do
  orig=$CORPUS_DIR/$corpus-$SIZE.img
  RAMSHIFT=$RS "$here/corpus.sh" "$corpus" "$orig" "$SIZE"
  # The runs read a copy in SCRATCH (memory, like a guest's RAM); the cached image stays intact.
  img=$W/src.mem
  cp "$orig" "$img"
  q_t=() q_w=() q_b=() r_t=() r_w=() r_b=() r_s=()
  for r in $(seq "$RUNS"); do
    # One retry each: on a host shared with other work a run can time out.
    out=$(qemu_once "$img") || { echo "$corpus QEMU run $r failed, once more" >&2; out=$(qemu_once "$img"); }
    read -r t w b <<< "$out"; q_t+=("$t"); q_w+=("$w"); q_b+=("$b")
    echo "$corpus run $r QEMU multifd $QEMU_CHANNELS $QEMU_COMPRESSION: ${t}s (wall $w), $b bytes" >&2
    out=$(ramshift_once "$img") || { echo "$corpus ramshift run $r failed, once more" >&2; out=$(ramshift_once "$img"); }
    read -r t w b s <<< "$out"; r_t+=("$t"); r_w+=("$w"); r_b+=("$b"); r_s+=("$s")
    echo "$corpus run $r ramshift: ${t}s (wall $w), $b bytes, raw share $s" >&2
  done
  # The paused source guest must not have changed its memory (the comparison would be void).
  cmp -s "$orig" "$img" || { echo "$corpus: the source image changed during the runs" >&2; exit 1; }
  med() { printf '%s\n' "$@" | median; }
  qt=$(med "${q_t[@]}"); rt=$(med "${r_t[@]}"); rb=$(med "${r_b[@]}")
  floor=$(echo "$rb / $link_Bps" | bc -l)
  rows+=("$(printf '| %s | %.2f (%.2f) | %.0f | %.2f (%.2f) | %.0f | %.0f%% | **%.2f** | %.2f | %.2f |' \
    "$corpus" "$qt" "$(med "${q_w[@]}")" "$(med "${q_b[@]}" | awk '{print $1 / 1e6}')" \
    "$rt" "$(med "${r_w[@]}")" "$(echo "$rb / 1000000" | bc -l)" \
    "$(med "${r_s[@]}" | awk '{print $1 * 100}')" "$(echo "$rt / $qt" | bc -l)" "$floor" \
    "$(echo "$rt / $floor" | bc -l)")")
  printf '%s runs (s): QEMU %s; ramshift %s\n' "$corpus" "${q_t[*]}" "${r_t[*]}" >&2
done
{
  echo "$SIZE image, $LINK_RATE veth,$([ "$TLS" = 1 ] && echo " both with TLS 1.3 X.509,") medians of $RUNS alternating runs (ramshift $commit," \
    "$(nproc) cores, load $(cut -d' ' -f1-3 /proc/loadavg) at the end)."
  echo
  echo "| corpus | QEMU s (wall) | QEMU MB sent | ramshift s (wall) | ramshift MB sent | raw pages | ramshift / QEMU | link floor s | ramshift / floor |"
  echo "| --- | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: |"
  printf '%s\n' "${rows[@]}"
} | tee "${OUT:-/dev/null}"
