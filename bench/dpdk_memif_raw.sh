#!/bin/bash
# The dpdk:// protocol's `bench` against the port's raw ceiling (`bench --raw`) over net_memif
# between two processes (no kernel, no link), in the same run: alternating raw, protocol,
# protocol copying, raw, ... RUNS times each, SECONDS each, with the command lines of
# docs/benchmarks/README.md ("Over `net_memif` between two processes"). "protocol" places raw
# pages by one-sided writes sent by reference (zero copy); "copying" is the same with
# RAMSHIFT_DPDK_TEST_NO_WRITES=1 on both ends (raw pages inside the batches, copied), COPY=0
# leaves it out. Prints one line per run and the medians; each run's JSON stays in OUT.
#   bench/dpdk_memif_raw.sh [RAMSHIFT]   env: RUNS (3) SECS (5) COPY (1) OUT (a new /tmp dir)
set -euo pipefail
RS=${1:-build/release/cli/ramshift}
RUNS=${RUNS:-3}; SECS=${SECS:-5}; COPY=${COPY:-1}
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

run_protocol() {  # N [copy]: "copy" runs both ends with RAMSHIFT_DPDK_TEST_NO_WRITES=1
  local n=$1 name=proto$1 knob=()
  if [ "${2:-}" = copy ]; then name=copy$1; knob=(env RAMSHIFT_DPDK_TEST_NO_WRITES=1); fi
  "${knob[@]}" "$RS" bench --server --once --listen dpdk://10.77.0.2:7000 \
    --dpdk-eal "$(eal server rsmA)" >"$OUT/$name.rx" 2>"$OUT/$name.rx.err" &
  local srv=$!
  wait_listening "$OUT/$name.rx"
  "${knob[@]}" "$RS" bench --to dpdk://10.77.0.2:7000 --dpdk-local-ip 10.77.0.1 \
    --dpdk-eal "$(eal client rsmB)" --seconds "$SECS" --queues 1 --codec none \
    --batch-size 1M --json "$OUT/$name.json" >"$OUT/$name.tx" 2>"$OUT/$name.tx.err"
  wait "$srv" || true
  python3 - "$OUT/$name.json" "$n" "${2:-protocol}" <<'PY'
import json, sys
j = json.load(open(sys.argv[1]))
r = j["results"][0] if isinstance(j, dict) and "results" in j else j[0]
keys = ("gbit_per_s", "sender_cpu_s_per_gb", "receiver_cpu_s_per_gb", "retransmitted_frames", "dropped_frames",
        "sent_copied_bytes", "sent_referenced_bytes")
print(f"{sys.argv[3]} {sys.argv[2]}: " + ", ".join(f"{k} {r.get(k)}" for k in keys))
PY
}

echo "ramshift $("$RS" --version 2>&1 | head -1); load: $(cut -d' ' -f1-3 /proc/loadavg); $(date -u +%FT%TZ)"
for n in $(seq "$RUNS"); do
  run_raw "$n"; run_protocol "$n"
  [ "$COPY" = 1 ] && run_protocol "$n" copy
  echo "  load: $(cut -d' ' -f1-3 /proc/loadavg)"
done
python3 - "$OUT" "$RUNS" "$COPY" <<'PY'
import json, os, statistics, sys
out, runs, copy = sys.argv[1], int(sys.argv[2]), sys.argv[3] == "1"
raw = [json.load(open(f"{out}/raw{n}.rx.json"))["gbit_per_s"] for n in range(1, runs + 1)]
def result(name):
    j = json.load(open(f"{out}/{name}.json"))
    return j["results"][0] if isinstance(j, dict) and "results" in j else j[0]
def med(prefix, key):
    return statistics.median(result(f"{prefix}{n}")[key] for n in range(1, runs + 1))
mr, mp = statistics.median(raw), med("proto", "gbit_per_s")
print(f"median raw (received) {mr:.2f} Gbit/s, protocol {mp:.2f} Gbit/s, protocol/raw {mp / mr:.2f}x; "
      f"CPU s/GB tx/rx {med('proto', 'sender_cpu_s_per_gb'):.2f}/{med('proto', 'receiver_cpu_s_per_gb'):.2f}")
if copy:
    mc = med("copy", "gbit_per_s")
    print(f"median copying {mc:.2f} Gbit/s, copying/raw {mc / mr:.2f}x, protocol/copying {mp / mc:.2f}x; "
          f"CPU s/GB tx/rx {med('copy', 'sender_cpu_s_per_gb'):.2f}/{med('copy', 'receiver_cpu_s_per_gb'):.2f}")
PY
echo "runs' JSON in $OUT"
