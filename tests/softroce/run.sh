#!/bin/bash
# ctest entry: runs suite.sh directly where this host has an RDMA device and
# RAMSHIFT_RDMA_ADDR names its address, else inside the soft-RoCE VM.
#   run.sh PATH_TO_RAMSHIFT PATH_TO_CONFORMANCE_TESTS PATH_TO_RDMA_BAD_PEER
set -uo pipefail
HERE=$(cd "$(dirname "$0")" && pwd)
RAMSHIFT=${1:?usage: run.sh RAMSHIFT CONFORMANCE_TESTS RDMA_BAD_PEER}; CONF=${2:?}; BAD=${3:?}
E2E=$(cd "$HERE/../e2e" && pwd)
if [ -n "${RAMSHIFT_RDMA_ADDR:-}" ] && [ -n "$(ibv_devices 2>/dev/null | awk 'NR>2')" ]; then
  echo "softroce: using this host's RDMA device at $RAMSHIFT_RDMA_ADDR"
  PATH=$(dirname "$RAMSHIFT"):$(dirname "$CONF"):$(dirname "$BAD"):$PATH exec bash "$HERE/suite.sh" "$E2E"
fi
# QEMU for the bridge step; it finds its firmware and modules at their host paths.
QEMU=/usr/bin/qemu-system-x86_64
QARGS=()
if [ -x "$QEMU" ]; then
  QARGS+=(-b "$QEMU")
  for d in /usr/share/qemu /usr/share/seabios /usr/lib/ipxe /usr/lib/x86_64-linux-gnu/qemu "$QEMU"; do
    [ -e "$d" ] && QARGS+=(-d "$d")
  done
fi
LIB=$(cd "$HERE/../lib" && pwd)
# The openssl CLI makes the test credentials inside (security_cases.sh, make_pki.sh).
SEC=$(cd "$HERE/../security" && pwd)
# SOFTROCE_ONLY=faults [FAULT_CASES=...]: only the fault matrix (fault_cases.sh);
# SOFTROCE_ONLY=security: only rdma:// with --tls-* (security_cases.sh).
exec bash "$HERE/rxe_vm.sh" -m 2048 -b "$RAMSHIFT" -b "$CONF" -b "$BAD" -b bash -b openssl "${QARGS[@]}" \
  -d "$E2E" -d "$LIB" -d "$SEC" -d "$HERE" "$HERE/suite.sh" "$E2E" ${SOFTROCE_ONLY:+"$SOFTROCE_ONLY" "${FAULT_CASES:-}"}
