#!/bin/bash
[ -n "${BASH_VERSION:-}" ] || exec bash "$0" "$@"
# Runs inside the soft-RoCE VM: send/receive of the 128 MiB mixed bench image over rdma://,
# 2 queues, --codec none, authenticated with a PSK (--tls-psk), without and with --encrypt,
# alternating run by run for N rounds (default 3). Prints per run: mode, seconds, pages placed
# by RDMA WRITE, and CPU seconds (user+sys) of sender and receiver together; then medians,
# the throughput ratio and CPU per GiB. From the host:
#   tests/softroce/rxe_vm.sh -m 2048 -b build/dev/cli/ramshift -b bash \
#     -f bench/softroce/lib.sh bench/softroce/encrypt_ab.sh [ROUNDS]
. /opt/share/lib.sh
bench_image
# A throwaway key for this VM (its busybox has neither od nor openssl): bash's RANDOM is no
# key generator, but nothing here is secret; the cost measured is the same for any key.
key=""
for _ in $(seq 32); do key+=$(printf '%02x' $((RANDOM % 256))); done
echo "bench:$key" >/tmp/keys.psk
cpu_s() {  # FILE: the children's user+sys in what `times` wrote there, in seconds
  tail -1 "$1" | awk '{ s = 0; for (i = 1; i <= 2; i++) { split($i, p, "m"); sub("s", "", p[2]); s += p[1] * 60 + p[2] }; printf "%.2f", s }'
}
run() {  # plain|encrypt -> "mode seconds placed cpu"
  local extra=() c0 c1
  [ "$1" = encrypt ] && extra=(--encrypt)
  rm -f /tmp/dst.img
  times >/tmp/times0  # a builtin, redirected without a subshell: this shell's children
  ramshift -q receive --listen rdma://$A:7000 --once --guest-out /tmp/dst.img \
    --tls-psk /tmp/keys.psk "${extra[@]}" >/tmp/rx.out 2>&1 &
  local rx=$!
  for _ in $(seq 200); do grep -q listening /tmp/rx.out 2>/dev/null && break; sleep 0.05; done
  ramshift -q send --to rdma://$A:7000 --guest file:$IMG --queues 2 --codec none \
    --tls-psk /tmp/keys.psk "${extra[@]}" --json /tmp/tx.json >/dev/null 2>/tmp/tx.err ||
    { cat /tmp/tx.err >&2; kill $rx 2>/dev/null; wait $rx 2>/dev/null; echo "$1 0 0 0"; return; }
  wait $rx || { echo "receiver failed: $(tail -1 /tmp/rx.out)" >&2; echo "$1 0 0 0"; return; }
  times >/tmp/times1
  c0=$(cpu_s /tmp/times0); c1=$(cpu_s /tmp/times1)
  cmp -s $IMG /tmp/dst.img || { echo "image differs" >&2; echo "$1 0 0 0"; return; }
  local t placed
  t=$(grep -o '"total_ms": *[0-9.]*' /tmp/tx.json | head -1 | awk '{printf "%.2f", $2 / 1000}')
  placed=$(grep -o '"placed": *[0-9]*' /tmp/tx.json | head -1 | grep -o '[0-9]*$')
  echo "$1 $t ${placed:-0} $(awk -v a="$c0" -v b="$c1" 'BEGIN {printf "%.2f", b - a}')"
}
declare -A T C
for r in $(seq "${1:-3}"); do
  for mode in plain encrypt; do
    line=$(run $mode)
    echo "round $r: $line"
    set -- $line
    T[$mode]+="$2 "
    C[$mode]+="$4 "
  done
done
for mode in plain encrypt; do
  t=$(echo ${T[$mode]} | tr ' ' '\n' | median)
  c=$(echo ${C[$mode]} | tr ' ' '\n' | median)
  echo "$mode: seconds ${T[$mode]}(median $t), MB/s $(awk -v t="$t" -v m=$IMG_MIB 'BEGIN {printf "%.1f", (t > 0) ? m * 1.048576 / t : 0}'), CPU s ${C[$mode]}(median $c), CPU s per GiB $(awk -v c="$c" -v m=$IMG_MIB 'BEGIN {printf "%.1f", c * 1024 / m}')"
done
echo "encrypt/plain time per round: $(round_ratios qemu "${T[encrypt]}" "${T[plain]}")"
