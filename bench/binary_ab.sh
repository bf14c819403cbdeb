#!/bin/bash
# Two ramshift binaries alternating (A B A B ...): `send`/`receive` of one image over tcp
# loopback, into a file, every page checked against the source by `cmp`. For a change that
# must leave the page path no slower (a refactor, a new layer). Prints each run's seconds
# (the sender's total_ms) and the medians, and the ratio NEW/OLD taken pair by pair.
#   bench/binary_ab.sh OLD_BINARY NEW_BINARY     env: SIZE (1G), RUNS (5), PATTERN (mixed),
#                                                     CODEC (auto), QUEUES (2)
set -euo pipefail
OLD=$(readlink -f "$1"); NEW=$(readlink -f "$2")
SIZE=${SIZE:-1G}; RUNS=${RUNS:-5}; PATTERN=${PATTERN:-mixed}; CODEC=${CODEC:-auto}; QUEUES=${QUEUES:-2}
W=$(mktemp -d /tmp/ramshift-ab-XXXXXX)
RX_PID=
cleanup() {
  [ -n "$RX_PID" ] && kill "$RX_PID" 2>/dev/null || true
  rm -rf "$W"
}
trap cleanup EXIT
. "$(dirname "${BASH_SOURCE[0]}")/stats.sh"  # median

"$NEW" make-image "$W/src.img" --size "$SIZE" --pattern "$PATTERN" >/dev/null

run() {  # BINARY -> seconds of the sender's report
  local rs=$1
  rm -f "$W/out.img"
  "$rs" -q receive --listen tcp://127.0.0.1:0 --guest-out "$W/out.img" --once >"$W/rx.out" 2>&1 &
  RX_PID=$!
  for _ in $(seq 200); do grep -q listening "$W/rx.out" 2>/dev/null && break; sleep 0.05; done
  local uri; uri=$(sed -n 's/^listening on //p' "$W/rx.out")
  "$rs" -q send --to "$uri" --guest "file:$W/src.img" --queues "$QUEUES" --codec "$CODEC" \
    --json "$W/tx.json" >/dev/null
  wait "$RX_PID"; RX_PID=
  cmp -s "$W/src.img" "$W/out.img" || { echo "the copy differs from the source ($rs)" >&2; exit 1; }
  python3 -c "import json,sys; r=json.load(open(sys.argv[1])); assert r['status']=='completed', r; print(round(r['total_ms']/1000, 3))" "$W/tx.json"
}

old=(); new=(); ratios=()
for i in $(seq "$RUNS"); do
  o=$(run "$OLD"); n=$(run "$NEW")
  old+=("$o"); new+=("$n"); ratios+=("$(python3 -c "print(round($n/$o, 3))")")
  echo "run $i: old $o s, new $n s" >&2
done
mo=$(printf '%s\n' "${old[@]}" | median); mn=$(printf '%s\n' "${new[@]}" | median)
mr=$(printf '%s\n' "${ratios[@]}" | median)
echo "| binary | median s | runs |"
echo "| --- | ---: | --- |"
echo "| old ($OLD) | $mo | ${old[*]} |"
echo "| new ($NEW) | $mn | ${new[*]} |"
echo "new/old, pair by pair: median $(printf '%.3f' "$mr") (${ratios[*]})"
