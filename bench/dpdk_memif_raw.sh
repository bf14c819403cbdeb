#!/bin/bash
# The dpdk:// protocol's `bench` against the port's raw ceiling (`bench --raw`) over net_memif
# between two processes (no kernel, no link), in the same run: alternating raw, protocol,
# raw, protocol, ... RUNS times each, SECONDS each, with the command lines of
# docs/benchmarks/README.md ("Over `net_memif` between two processes"). Prints one line per
# run and the medians; each run's JSON stays in OUT.
#   bench/dpdk_memif_raw.sh [RAMSHIFT]   env: RUNS (3) SECS (5) OUT (a new /tmp directory)
set -euo pipefail
RS=${1:-build/release/cli/ramshift}
RUNS=${RUNS:-3}; SECS=${SECS:-5}
OUT=${OUT:-$(mktemp -d /tmp/ramshift-memif-XXXXXX)}
mkdir -p "$OUT"
SOCK=$OUT/rsm.sock
eal() {  # ROLE PREFIX
  echo "--no-huge --no-pci -m 512 --vdev=net_memif0,role=$1,socket=$SOCK,socket-abstract=no --file-prefix $2"
}
wait_listening() {  # FILE
  for _ in $(seq 150); do grep -qs "^listening on" "$1" && return 0; sleep 0.2; done
  echo "the server did not start: $(tail -3 "$1".err 2>/dev/null)" >&2; return 1
}

run_raw() {  # N
  local n=$1
  "$RS" bench --raw --server --listen dpdk://10.77.0.2:7000 --seconds "$SECS" \
    --dpdk-eal "$(eal server rsmA)" --json "$OUT/raw$n.rx.json" >"$OUT/raw$n.rx" 2>"$OUT/raw$n.rx.err" &
  local srv=$!
  wait_listening "$OUT/raw$n.rx"
  "$RS" bench --raw --to dpdk://10.77.0.2:7000 --dpdk-local-ip 10.77.0.1 \
    --dpdk-eal "$(eal client rsmB)" --seconds "$SECS" --json "$OUT/raw$n.tx.json" \
    >"$OUT/raw$n.tx" 2>"$OUT/raw$n.tx.err"
  wait "$srv"
  python3 - "$OUT/raw$n.tx.json" "$OUT/raw$n.rx.json" "$n" <<'PY'
import json, sys
tx, rx = (json.load(open(p)) for p in sys.argv[1:3])
print(f"raw {sys.argv[3]}: received {rx['gbit_per_s']:.2f} Gbit/s, {rx['frames_per_s']/1e6:.3f} M frames/s "
      f"({rx['received_frames']} frames, {rx['foreign_frames']} foreign); sent {tx['gbit_per_s']:.2f} Gbit/s, "
      f"accepted {tx['accepted_frames']} of {tx['offered_frames']} offered")
PY
}

run_protocol() {  # N
  local n=$1
  "$RS" bench --server --once --listen dpdk://10.77.0.2:7000 \
    --dpdk-eal "$(eal server rsmA)" >"$OUT/proto$n.rx" 2>"$OUT/proto$n.rx.err" &
  local srv=$!
  wait_listening "$OUT/proto$n.rx"
  "$RS" bench --to dpdk://10.77.0.2:7000 --dpdk-local-ip 10.77.0.1 \
    --dpdk-eal "$(eal client rsmB)" --seconds "$SECS" --queues 1 --codec none \
    --batch-size 1M --json "$OUT/proto$n.json" >"$OUT/proto$n.tx" 2>"$OUT/proto$n.tx.err"
  wait "$srv" || true
  python3 - "$OUT/proto$n.json" "$n" <<'PY'
import json, sys
j = json.load(open(sys.argv[1]))
r = j["results"][0] if isinstance(j, dict) and "results" in j else j[0]
keys = ("gbit_per_s", "sender_cpu_s_per_gb", "receiver_cpu_s_per_gb", "retransmitted_frames", "dropped_frames",
        "sent_copied_bytes", "sent_referenced_bytes")
print(f"protocol {sys.argv[2]}: " + ", ".join(f"{k} {r.get(k)}" for k in keys))
PY
}

echo "ramshift $("$RS" --version 2>&1 | head -1); load: $(cut -d' ' -f1-3 /proc/loadavg); $(date -u +%FT%TZ)"
for n in $(seq "$RUNS"); do
  run_raw "$n"; run_protocol "$n"
  echo "  load: $(cut -d' ' -f1-3 /proc/loadavg)"
done
python3 - "$OUT" "$RUNS" <<'PY'
import json, statistics, sys
out, runs = sys.argv[1], int(sys.argv[2])
raw = [json.load(open(f"{out}/raw{n}.rx.json"))["gbit_per_s"] for n in range(1, runs + 1)]
def proto(n):
    j = json.load(open(f"{out}/proto{n}.json"))
    return (j["results"][0] if isinstance(j, dict) and "results" in j else j[0])["gbit_per_s"]
pro = [proto(n) for n in range(1, runs + 1)]
mr, mp = statistics.median(raw), statistics.median(pro)
print(f"median raw (received) {mr:.2f} Gbit/s, protocol {mp:.2f} Gbit/s, protocol/raw {mp / mr:.2f}x")
PY
echo "runs' JSON in $OUT"
