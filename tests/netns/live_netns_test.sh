#!/bin/bash
# Two hosts joined by a real link: two network namespaces, a veth pair shaped to 1 Gbit/s
# with tc tbf, created here and removed on exit (also on failure). A 512 MiB guest dirtying
# 20 MB/s migrates across and verifies.
set -uo pipefail
RAMSHIFT=${1:?usage: $0 PATH_TO_RAMSHIFT}
if [ "$(id -u)" != 0 ] || ! command -v ip >/dev/null; then echo "SKIP: needs root and iproute2"; exit 77; fi
source "$(dirname "$0")/../../scripts/lib/netns.sh"
A=rsnetA$$; B=rsnetB$$; W=$(mktemp -d)
cleanup() { netns_link_down "$A" "$B"; rm -rf "$W"; }
trap cleanup EXIT
netns_link_up "$A" "$B" 10.78.0 1gbit || { echo "SKIP: cannot create network namespaces"; exit 77; }

ip netns exec "$B" "$RAMSHIFT" -q receive --listen tcp://10.78.0.2:7000 --once --json "$W/rx.json" \
  --resume-seconds 1 > "$W/rx.out" 2> "$W/rx.err" &
RX=$!
for _ in $(seq 100); do grep -q listening "$W/rx.out" && break; sleep 0.05; done
ip netns exec "$A" "$RAMSHIFT" -q send --to tcp://10.78.0.2:7000 \
  --guest synthetic:size=512M,dirty-rate=20M,pattern=mixed --json "$W/tx.json"
tx=$?
wait "$RX"; rx=$?
echo "sender exit $tx, receiver exit $rx"
[ "$tx" = 0 ] && [ "$rx" = 0 ] || { cat "$W/rx.err"; exit 1; }
python3 - "$W/tx.json" "$W/rx.json" <<'PY'
import json, sys
tx, rx = (json.load(open(p)) for p in sys.argv[1:3])
assert tx["status"] == rx["status"] == "completed"
assert rx["resumed"]["verified"] is True
print(f"PASS: 512 MiB across 1 Gbit/s in {tx['total_ms']:.0f} ms, downtime {tx['downtime_ms']:.1f} ms, "
      f"{tx['rounds']} rounds, {tx['wire_bytes']/2**20:.0f} MiB on the wire")
PY
