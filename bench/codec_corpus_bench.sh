#!/bin/bash
# The codec table of docs/benchmarks: `ramshift send`/`receive` of each corpus (bench/corpus.sh)
# with each codec, on loopback and across a shaped veth between two network namespaces this
# script creates and removes. Codecs alternate within each run (so load drifts hit them all
# alike); a cell is the median of RUNS runs, in seconds. `auto/best` compares `auto` with the
# fastest fixed setting of that row. Prints a markdown table (and writes it to $OUT if set).
#   bench/codec_corpus_bench.sh [RAMSHIFT_BINARY]
#   env: SIZE (1G), RUNS (3), CORPUS_DIR (~/.cache/ramshift/corpus), LINK_RATE (1gbit),
#        CORPORA ("real-files guest-ram synthetic"), LINKS ("loopback link"),
#        CODECS ("none zero zstd:-1 zstd:1 zstd:3 auto"; zstd:N is --codec zstd --zstd-level N),
#        BASELINE (another ramshift binary: adds its `auto` as the column auto@base)
set -euo pipefail
here=$(cd "$(dirname "$0")" && pwd)
RS=$(realpath "${1:-build/release/cli/ramshift}")
SIZE=${SIZE:-1G}; RUNS=${RUNS:-3}; LINK_RATE=${LINK_RATE:-1gbit}
CORPUS_DIR=${CORPUS_DIR:-$HOME/.cache/ramshift/corpus}
CORPORA=${CORPORA:-real-files guest-ram synthetic}
LINKS=${LINKS:-loopback link}
CODECS=${CODECS:-none zero zstd:-1 zstd:1 zstd:3 auto}
BASE=""
if [ -n "${BASELINE:-}" ]; then BASE=$(realpath "$BASELINE"); CODECS+=" auto@base"; fi
W=$(mktemp -d /tmp/ramshift-codec-XXXXXX)
NSA=rscodecA$$; NSB=rscodecB$$
source "$here/../scripts/lib/netns.sh"
cleanup() { netns_link_down "$NSA" "$NSB"; rm -rf "$W"; }
trap cleanup EXIT

. "$(dirname "${BASH_SOURCE[0]}")/stats.sh"  # median

# run_once LINK IMAGE CODEC -> "seconds raw_share" (raw_share: raw pages / non-zero pages sent)
run_once() {
  local link=$1 img=$2 codec=$3 rx=() tx=() host=127.0.0.1 args=() rs=$RS
  [ "$codec" = auto@base ] && { rs=$BASE; codec=auto; }
  if [ "$link" = link ]; then rx=(ip netns exec "$NSB"); tx=(ip netns exec "$NSA"); host=10.78.0.2; fi
  case $codec in
    zstd:*) args=(--codec zstd --zstd-level "${codec#zstd:}") ;;
    *) args=(--codec "$codec") ;;
  esac
  "${rx[@]}" nice "$rs" -q receive --listen "tcp://$host:0" --once > "$W/rx.out" &
  local pid=$!
  # A loaded host can take seconds to start the receiver: wait up to 60 s for its address.
  for _ in $(seq 600); do grep -q listening "$W/rx.out" 2>/dev/null && break; sleep 0.1; done
  local uri; uri=$(sed -n 's/^listening on //p' "$W/rx.out")
  [ -n "$uri" ] || { kill "$pid" 2>/dev/null; echo "receiver did not start" >&2; return 1; }
  rm -f "$W/tx.json"
  if ! "${tx[@]}" nice "$rs" -q send --to "$uri" --guest "file:$img" "${args[@]}" --json "$W/tx.json"; then
    kill "$pid" 2>/dev/null; wait "$pid" 2>/dev/null; return 1
  fi
  wait "$pid"
  python3 -c "
import json, sys
r = json.load(open(sys.argv[1])); assert r['status'] == 'completed', r
p = r['pages']; sent = p['raw'] + p['zstd']
print(r['total_ms'] / 1e3, p['raw'] / sent if sent else 0)" "$W/tx.json"
}

commit=$(git -C "$here" rev-parse --short HEAD 2>/dev/null || echo '?')
header="| corpus | link |"; rule="| --- | --- |"
for c in $CODECS; do header+=" $c |"; rule+=" ---: |"; done
header+=" auto raw pages | auto/best |"; rule+=" ---: | ---: |"
rows=()
for corpus in $CORPORA; do
  img=$CORPUS_DIR/$corpus-$SIZE.img
  RAMSHIFT=$RS "$here/corpus.sh" "$corpus" "$img" "$SIZE"
  for link in $LINKS; do
    if [ "$link" = link ]; then netns_link_up "$NSA" "$NSB" 10.78.0 "$LINK_RATE"; fi
    declare -A secs=() share=()
    for r in $(seq "$RUNS"); do
      for c in $CODECS; do
        # One retry: on a host shared with other work a run can time out.
        out=$(run_once "$link" "$img" "$c") || { echo "$corpus $link $c: failed, once more" >&2
          out=$(run_once "$link" "$img" "$c"); }
        read -r s f <<< "$out"
        secs[$c]+="$s "; share[$c]+="$f "
        echo "$corpus $link run $r $c: ${s}s (raw share $f)" >&2
      done
    done
    [ "$link" = link ] && netns_link_down "$NSA" "$NSB"
    label=$link; [ "$link" = link ] && label="$LINK_RATE veth"
    row="| $corpus | $label |"; best=""; auto=""
    for c in $CODECS; do
      m=$(printf '%s\n' ${secs[$c]} | median)
      row+=" $(printf '%.2f' "$m") |"
      if [ "$c" = auto ]; then auto=$m
      elif [ "$c" = auto@base ]; then :
      elif [ -z "$best" ] || (( $(echo "$m < $best" | bc -l) )); then best=$m; fi
    done
    sh=$(printf '%s\n' ${share[auto]:-0} | median)
    row+=" $(printf '%.0f%%' "$(echo "$sh * 100" | bc -l)") |"
    row+=" $([ -n "$auto" ] && [ -n "$best" ] && printf '%.2f' "$(echo "$auto / $best" | bc -l)" || echo -) |"
    rows+=("$row")
    unset secs share
  done
done
{
  echo "Seconds to send a $SIZE image, median of $RUNS (ramshift $commit, $(nproc) cores)."
  echo
  echo "$header"; echo "$rule"
  printf '%s\n' "${rows[@]}"
} | tee "${OUT:-/dev/null}"
