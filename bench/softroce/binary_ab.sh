#!/bin/bash
[ -n "${BASH_VERSION:-}" ] || exec bash "$0" "$@"
# Runs inside the soft-RoCE VM: two ramshift binaries alternating, send/receive of a 128 MiB
# mixed image over rdma://, 2 queues, a receiver that keeps the memory only (no output file,
# no cmp: the receiver checks every page's digest). N rounds (default 5). Prints per run the
# sender's seconds and the VM's busy CPU ticks (/proc/stat, 100 per second per vCPU) around
# the send, then the medians. From the host:
#   tests/softroce/rxe_vm.sh -m 2048 -b OLD/ramshift-old -b NEW/ramshift-new -b bash \
#     -f bench/softroce/lib.sh bench/softroce/binary_ab.sh [ROUNDS] [CODEC]
. /opt/share/lib.sh
CODEC=${2:-none}
V=new
ramshift() { "/opt/bin/ramshift-$V" "$@"; }
bench_image
busy() { awk '/^cpu /{print $2+$3+$4+$7+$8}' /proc/stat; }
run() {  # -> "seconds ticks", or "0 0"
  ramshift -q receive --listen rdma://$A:7000 --once >/tmp/rx.out 2>&1 &
  local rx=$! b0 b1
  for _ in $(seq 200); do grep -q listening /tmp/rx.out 2>/dev/null && break; sleep 0.05; done
  b0=$(busy)
  ramshift -q send --to rdma://$A:7000 --guest file:$IMG --queues 2 --codec "$CODEC" \
    --json /tmp/tx.json >/dev/null 2>/tmp/tx.err || { cat /tmp/tx.err >&2; kill $rx; echo "0 0"; return; }
  b1=$(busy)
  wait $rx || { echo "receiver failed: $(tail -1 /tmp/rx.out)" >&2; echo "0 0"; return; }
  echo "$(grep -o '"total_ms": *[0-9.]*' /tmp/tx.json | awk '{printf "%.2f", $2 / 1000}') $((b1 - b0))"
}
declare -A T C
for i in $(seq "${1:-5}"); do
  for V in old new; do
    set -- $(run)
    T[$V]+="$1 "; C[$V]+="$2 "
    echo "progress: round $i $V $CODEC: $1 s, $2 busy ticks"
  done
done
for V in old new; do
  echo "$V: seconds ${T[$V]}(median $(echo ${T[$V]} | tr ' ' '\n' | median)), busy ticks ${C[$V]}(median $(echo ${C[$V]} | tr ' ' '\n' | median))"
done
