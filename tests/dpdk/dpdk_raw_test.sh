#!/bin/bash
# `bench --raw` over net_memif between two processes (shared memory, no kernel path, no
# namespace needed): the raw receiver and sender for 2 s. A user would notice if the receiver
# counted nothing, counted frames that were not the sender's (foreign), or counted more than
# the sender's port accepted. Also: --raw over another transport is a usage error (exit 2).
#   dpdk_raw_test.sh RAMSHIFT
set -uo pipefail
RAMSHIFT=${1:?usage: $0 PATH_TO_RAMSHIFT}
if [ "$(id -u)" != 0 ]; then echo "SKIP: needs root"; exit 77; fi
if "$RAMSHIFT" receive --listen dpdk://10.78.0.2:7000 --once --accept-timeout 0.1 2>&1 |
   grep -q "not found at configure\|RAMSHIFT_DPDK=OFF"; then
  echo "SKIP: this ramshift was built without DPDK"; exit 77
fi
W=$(mktemp -d)
pids=()
cleanup() {
  for p in "${pids[@]}"; do kill -9 "$p" 2>/dev/null; done
  rm -rf "$W"
}
trap cleanup EXIT
fail() { echo "FAIL: $*"; tail -5 "$W"/*.err 2>/dev/null; exit 1; }

out=$("$RAMSHIFT" bench --raw --to tcp://127.0.0.1:9 --seconds 1 2>&1); rc=$?
[ "$rc" = 2 ] && grep -q "dpdk:// only" <<<"$out" || fail "--raw over tcp:// gave exit $rc: $out"

eal() {  # ROLE
  echo "--no-huge --no-pci -m 256 --file-prefix=rsraw$$$1 --vdev=net_memif0,role=$1,socket=$W/memif.sock,socket-abstract=no"
}
timeout 60 "$RAMSHIFT" bench --raw --server --listen dpdk://10.77.9.2:7000 --seconds 2 \
  --dpdk-eal "$(eal server)" --json "$W/rx.json" >"$W/rx.out" 2>"$W/rx.err" &
rx=$!; pids+=("$rx")
for _ in $(seq 100); do grep -q "^listening on" "$W/rx.out" && break; sleep 0.2; done
grep -q "^listening on" "$W/rx.out" || fail "the raw receiver did not start"
timeout 60 "$RAMSHIFT" bench --raw --to dpdk://10.77.9.2:7000 --dpdk-local-ip 10.77.9.1 \
  --seconds 2 --dpdk-eal "$(eal client)" --json "$W/tx.json" >"$W/tx.out" 2>"$W/tx.err"
tx=$?
wait "$rx"; rc=$?
[ "$tx" = 0 ] || fail "raw sender exit $tx"
[ "$rc" = 0 ] || fail "raw receiver exit $rc"
cat "$W/tx.out" "$W/rx.out"
python3 - "$W/tx.json" "$W/rx.json" <<'PY' || fail "the figures"
import json, sys
tx, rx = (json.load(open(p)) for p in sys.argv[1:3])
assert tx["role"] == "sender" and rx["role"] == "receiver"
assert 0 < tx["accepted_frames"] <= tx["offered_frames"], tx
assert rx["received_frames"] > 0, rx
assert rx["foreign_frames"] == 0, rx
assert rx["received_frames"] <= tx["accepted_frames"], (rx, tx)
assert rx["payload_bytes"] == tx["payload_bytes"] == 1452, (rx, tx)
assert rx["gbit_per_s"] > 0 and tx["gbit_per_s"] > 0
if rx["end_marker"]:
    assert rx["sender_accepted_frames"] == tx["accepted_frames"], (rx, tx)
print(f"PASS: sent {tx['accepted_frames']} of {tx['offered_frames']} offered, "
      f"{tx['gbit_per_s']:.2f} Gbit/s; received {rx['received_frames']}, "
      f"{rx['gbit_per_s']:.2f} Gbit/s, 0 foreign, end marker {rx['end_marker']}")
PY
