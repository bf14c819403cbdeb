#!/bin/bash
[ -n "${BASH_VERSION:-}" ] || exec bash "$0" "$@"
# Runs inside the soft-RoCE VM: send/receive of a 128 MiB mixed image over rdma://, 2 queues,
# codecs none, zero, auto and zstd one after the other, N rounds (default 4). Prints per run:
# codec, total_ms, the pages object and codec_auto. From the host:
#   tests/softroce/rxe_vm.sh -m 2048 -b build/release/transport/ramshift -b bash bench/softroce/codec_ab.sh
A=10.9.0.1
ramshift make-image --size 128M --pattern mixed /tmp/src.img >/dev/null
run() {
  rm -f /tmp/dst.img
  ramshift -q receive --listen rdma://$A:7000 --once --guest-out /tmp/dst.img >/tmp/rx.out 2>&1 &
  local rx=$!
  for _ in $(seq 200); do grep -q listening /tmp/rx.out 2>/dev/null && break; sleep 0.05; done
  ramshift -q send --to rdma://$A:7000 --guest file:/tmp/src.img --queues 2 --codec "$1" --json /tmp/tx.json >/dev/null 2>/tmp/tx.err || cat /tmp/tx.err
  wait $rx
  t=$(grep -o '"total_ms": *[0-9.]*' /tmp/tx.json | head -1 | grep -o '[0-9.]*$')
  p=$(tr -d '\n ' < /tmp/tx.json | grep -o '"pages":{[^}]*}')
  a=$(tr -d '\n ' < /tmp/tx.json | grep -o '"codec_auto":{[^}]*}')
  echo "$1 $t $p $a"
}
for _ in $(seq "${1:-4}"); do for c in none zero auto zstd; do run $c; done; done
