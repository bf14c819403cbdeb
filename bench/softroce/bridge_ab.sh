#!/bin/bash
[ -n "${BASH_VERSION:-}" ] || exec bash "$0" "$@"
# Runs inside the soft-RoCE VM: QEMU's own rdma: migration of a paused 128 MiB mixed guest,
# and the same through the bridge over rdma:// with two ramshift binaries (ramshift-old and
# ramshift: an A/B in one boot), single channel and multifd 2, three rounds; seconds and the
# pages placed by RDMA WRITE. From the host:
#   tests/softroce/rxe_vm.sh -m 3072 -b build/release/cli/ramshift -b OLD/ramshift-old \
#     -b bash -b /usr/bin/qemu-system-x86_64 -d /usr/share/qemu -d /usr/share/seabios \
#     -d /usr/lib/ipxe -d /usr/lib/x86_64-linux-gnu/qemu -f bench/softroce/lib.sh \
#     bench/softroce/bridge_ab.sh
. /opt/share/lib.sh
bench_image
placed() { grep -a -m1 -o '"placed": *[0-9]*' /tmp/bm.json | grep -o '[0-9]*$'; }
for i in 1 2 3; do
  echo "qemu-rdma: $(qemu_rdma_run)"
  for ch in 0 2; do
    for bin in ramshift-old ramshift; do
      echo "$bin multifd $ch: $(bridge_run $bin $ch) s, placed=$(placed)"
    done
  done
done
