#!/bin/bash
# ctest softroce.inproc: boots the soft-RoCE VM (rxe_vm.sh) with QEMU, ramshift, the in-process
# library and the test guest (tests/qemu/guest, Debian's kernel), and runs inproc_suite.sh.
#   inproc_run.sh PATH_TO_RAMSHIFT [PATH_TO_LIBRAMSHIFT_QEMU]
set -uo pipefail
HERE=$(cd "$(dirname "$0")" && pwd)
RAMSHIFT=$(readlink -f "${1:?usage: inproc_run.sh RAMSHIFT [LIBRARY]}")
LIB=$(readlink -f "${2:-$(dirname "$RAMSHIFT")/../lib/libramshift_qemu.so}")
[ -f "$LIB" ] || { echo "inproc: no $LIB" >&2; exit 2; }
QEMU=/usr/bin/qemu-system-x86_64
[ -x "$QEMU" ] || { echo "inproc: needs $QEMU (qemu-system-x86)" >&2; exit 77; }
T=$(mktemp -d /tmp/inproc-run.XXXXXX)
trap 'rm -rf "$T"' EXIT
. "$HERE/../lib/debian_kernel.sh"
debian_kernel || exit $?
mkdir -p "$T/root/dev"
gcc -static -O2 -o "$T/root/init" "$HERE/../qemu/guest/init.c" || exit 2
(cd "$T/root" && find . | cpio -o -H newc 2>/dev/null | gzip -1 > "$T/guest.cpio.gz")
cp "$KERNEL" "$T/vmlinuz"
QARGS=(-b "$QEMU")
for d in /usr/share/qemu /usr/share/seabios /usr/lib/ipxe /usr/lib/x86_64-linux-gnu/qemu "$QEMU"; do
  [ -e "$d" ] && QARGS+=(-d "$d")
done
# The running test guest (a nested TCG boot) did not finish within 8 minutes under load, so
# it runs only when asked for (INPROC_RUNNING=1); the paused-guest cases always run.
RXE_VM_TIMEOUT=${RXE_VM_TIMEOUT:-1500} bash "$HERE/rxe_vm.sh" -m 2048 -b "$RAMSHIFT" -b bash \
  "${QARGS[@]}" -d "$(dirname "$LIB")" -f "$T/vmlinuz" -f "$T/guest.cpio.gz" \
  "$HERE/inproc_suite.sh" "$LIB" ${INPROC_RUNNING:+/opt/share/vmlinuz /opt/share/guest.cpio.gz}
