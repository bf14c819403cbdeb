#!/bin/bash
[ -n "${BASH_VERSION:-}" ] || exec bash "$0" "$@"
# Runs inside the soft-RoCE VM: send/receive of a 128 MiB mixed image over rdma://, 2 queues,
# codecs none, zero, auto and zstd one after the other, N rounds (default 4). Prints per run:
# codec, total_ms, the pages object and codec_auto. From the host:
#   tests/softroce/rxe_vm.sh -m 2048 -b build/release/cli/ramshift -b bash \
#     -f bench/softroce/lib.sh bench/softroce/codec_ab.sh
. /opt/share/lib.sh
bench_image
run() {
  [ "$(rs_run 2 "$1")" = 0 ] && { echo "$1 failed"; return; }
  t=$(grep -o '"total_ms": *[0-9.]*' /tmp/tx.json | head -1 | grep -o '[0-9.]*$')
  p=$(tr -d '\n ' < /tmp/tx.json | grep -o '"pages":{[^}]*}')
  a=$(tr -d '\n ' < /tmp/tx.json | grep -o '"codec_auto":{[^}]*}')
  echo "$1 $t $p $a"
}
for _ in $(seq "${1:-4}"); do for c in none zero auto zstd; do run $c; done; done
