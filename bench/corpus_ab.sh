#!/bin/bash
# Two (or more) ramshift binaries alternating run by run over the shaped veth of
# qemu_corpus_bench.sh: `send --guest file:IMAGE` of each corpus (bench/corpus.sh) to
# `receive --guest-out` in /dev/shm, every copy compared (cmp) with the image. For a change
# to the page path's CPU cost, where loopback (binary_ab.sh) hides what the link shows.
# Prints per run the sender's total_ms, the bytes on the veth, the share of non-zero pages
# sent raw, and each side's CPU seconds (user+sys), then the medians per binary.
#   bench/corpus_ab.sh LABEL=BINARY [LABEL=BINARY ...]
#   env: RUNS (3), CORPORA ("real-files guest-ram"), SIZE (1G), CORPUS_DIR, LINK_RATE (1gbit)
set -euo pipefail
here=$(cd "$(dirname "$0")" && pwd)
RUNS=${RUNS:-3}; SIZE=${SIZE:-1G}; LINK_RATE=${LINK_RATE:-1gbit}
CORPORA=${CORPORA:-real-files guest-ram}
CORPUS_DIR=${CORPUS_DIR:-$HOME/.cache/ramshift/corpus}
[ $# -ge 1 ] || { echo "usage: $0 LABEL=BINARY [LABEL=BINARY ...]" >&2; exit 2; }
W=$(mktemp -d /dev/shm/ramshift-cab-XXXXXX)
NSA=rscabA$$; NSB=rscabB$$; PFX=10.81.0
source "$here/../scripts/lib/netns.sh"
. "$here/stats.sh"  # median
cleanup() { netns_link_down "$NSA" "$NSB"; rm -rf "$W"; }
trap cleanup EXIT
netns_link_up "$NSA" "$NSB" "$PFX" "$LINK_RATE" || { echo "cannot create namespaces" >&2; exit 77; }
txbytes() { ip netns exec "$NSA" cat "/sys/class/net/${NSA:0:11}a/statistics/tx_bytes"; }

# once BINARY IMAGE -> "seconds MB raw_share tx_cpu_s rx_cpu_s"
once() {
  local rs=$1 img=$2 pid uri b0
  rm -f "$W/rs.mem" "$W/tx.json"
  ip netns exec "$NSB" /usr/bin/time -f "%U %S" -o "$W/rx.time" "$rs" -q receive \
    --listen "tcp://$PFX.2:0" --once --guest-out "$W/rs.mem" > "$W/rx.out" 2> "$W/rx.err" &
  pid=$!
  for _ in $(seq 600); do grep -q listening "$W/rx.out" 2> /dev/null && break; sleep 0.1; done
  uri=$(sed -n 's/^listening on //p' "$W/rx.out")
  [ -n "$uri" ] || { kill "$pid" 2> /dev/null; echo "receiver did not start" >&2; return 1; }
  b0=$(txbytes)
  ip netns exec "$NSA" /usr/bin/time -f "%U %S" -o "$W/tx.time" "$rs" -q send --to "$uri" \
    --guest "file:$img" --json "$W/tx.json" 2> "$W/tx.err" ||
    { kill "$pid" 2> /dev/null; tail -3 "$W/tx.err" >&2; return 1; }
  wait "$pid" || { tail -3 "$W/rx.err" >&2; return 1; }
  cmp -s "$img" "$W/rs.mem" || { echo "$rs: the copy differs from the image" >&2; return 1; }
  python3 - "$W/tx.json" "$W/tx.time" "$W/rx.time" "$(($(txbytes) - b0))" <<'PY'
import json, sys
r = json.load(open(sys.argv[1])); p = r['pages']; sent = max(1, p['raw'] + p['zstd'])
cpu = lambda f: sum(map(float, open(f).read().split()[:2]))
print(f"{r['total_ms'] / 1e3:.3f} {int(sys.argv[4]) / 1e6:.1f} {p['raw'] / sent:.3f} "
      f"{cpu(sys.argv[2]):.2f} {cpu(sys.argv[3]):.2f}")
PY
}

for corpus in $CORPORA; do
  RAMSHIFT=${1#*=} "$here/corpus.sh" "$corpus" "$CORPUS_DIR/$corpus-$SIZE.img" "$SIZE"
  cp "$CORPUS_DIR/$corpus-$SIZE.img" "$W/src.mem"
  declare -A secs=() txc=() rxc=()
  for r in $(seq "$RUNS"); do
    for spec in "$@"; do
      label=${spec%%=*}
      out=$(once "${spec#*=}" "$W/src.mem") || { echo "$corpus $label run $r: failed" >&2; continue; }
      read -r s mb raw tx rx <<< "$out"
      secs[$label]+="$s "; txc[$label]+="$tx "; rxc[$label]+="$rx "
      echo "$corpus $label run $r: ${s} s, $mb MB, raw $raw, CPU s sender $tx receiver $rx" \
        "(load $(cut -d' ' -f1 /proc/loadavg))"
    done
  done
  for spec in "$@"; do
    label=${spec%%=*}
    echo "$corpus $label medians: $(printf '%s\n' ${secs[$label]:-0} | median) s," \
      "CPU s sender $(printf '%s\n' ${txc[$label]:-0} | median)" \
      "receiver $(printf '%s\n' ${rxc[$label]:-0} | median)"
  done
  unset secs txc rxc
  rm -f "$W/src.mem"
done
