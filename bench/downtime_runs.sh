#!/bin/bash
# N live migrations across a LINK (1gbit) shaped veth between two network namespaces
# (created here, removed on exit), each report kept in OUTDIR and one line printed per run:
# status, total time, downtime and its parts (downtime_detail). Unlike live_bench.sh a failed
# run does not stop it: on a loaded host "not converging" is a result too.
#   bench/downtime_runs.sh BINARY OUTDIR N GUEST_SPEC [send options...]
#   e.g. bench/downtime_runs.sh build/release/cli/ramshift /tmp/d 5 synthetic:size=1G,dirty-rate=20M,pattern=mixed
set -uo pipefail
BIN=$1 OUT=$2 N=$3 SPEC=$4; shift 4
LINK=${LINK:-1gbit}
source "$(dirname "$0")/../scripts/lib/netns.sh"
A=rsdtA$$; B=rsdtB$$
trap 'netns_link_down $A $B' EXIT
netns_link_up "$A" "$B" 10.83.0 "$LINK" || { echo "cannot create namespaces" >&2; exit 77; }
mkdir -p "$OUT"
for i in $(seq "$N"); do
  ip netns exec "$B" "$BIN" -q receive --listen tcp://10.83.0.2:7000 --once --json "$OUT/rx$i.json" \
    --resume-seconds 1 > "$OUT/rx.out" 2> "$OUT/rx$i.err" &
  rx=$!
  for _ in $(seq 100); do grep -q listening "$OUT/rx.out" 2>/dev/null && break; sleep 0.05; done
  ip netns exec "$A" "$BIN" send --to tcp://10.83.0.2:7000 --guest "$SPEC" --json "$OUT/tx$i.json" \
    "$@" 2> "$OUT/tx$i.err"
  wait "$rx"
  python3 - "$OUT/tx$i.json" <<'PY'
import json, sys
t = json.load(open(sys.argv[1]))
d = t.get("downtime_detail") or {}
print(t["status"], "total %.2f s" % (t["total_ms"] / 1000), "downtime", t["downtime_ms"],
      "rounds", t["rounds"], {k: round(v, 2) for k, v in d.items()}, t["error"] or "")
PY
done
