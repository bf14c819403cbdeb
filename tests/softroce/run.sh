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
# The test credentials for security_cases.sh, made here (make_pki.sh, the openssl CLI) with
# the receiver's certificate naming rxe0's address; the VM gets the folder at the same path
# and its name in /opt/share/softroce_pki.
PKI=$(mktemp -d /tmp/rs-softroce-pki.XXXXXX)
trap 'rm -rf "$PKI"' EXIT
SERVER_SAN=IP:10.9.0.1 bash "$HERE/../security/make_pki.sh" "$PKI/pki" >"$PKI/make_pki.log" 2>&1 ||
  { echo "make_pki.sh failed:"; cat "$PKI/make_pki.log"; }
echo "$PKI/pki" >"$PKI/softroce_pki"
# SOFTROCE_ONLY=faults [FAULT_CASES=...]: only the fault matrix (fault_cases.sh);
# SOFTROCE_ONLY=security: only rdma:// with --tls-* (security_cases.sh);
# SOFTROCE_ONLY=postcopy: only post-copy over rdma:// (postcopy_cases.sh);
# SOFTROCE_ONLY=bridge: only stock QEMU through the bridges over rdma:// (bridge_cases.sh).
# perftest's ib_read_lat goes in for the post-copy step's peer figure (rxe_vm.sh installs it).
IRL=$(command -v ib_read_lat || true)
[ -n "$IRL" ] && QARGS+=(-b "$IRL")
bash "$HERE/rxe_vm.sh" -m 2048 -b "$RAMSHIFT" -b "$CONF" -b "$BAD" -b bash "${QARGS[@]}" \
  -d "$E2E" -d "$LIB" -d "$HERE" -d "$PKI/pki" -f "$PKI/softroce_pki" \
  "$HERE/suite.sh" "$E2E" ${SOFTROCE_ONLY:+"$SOFTROCE_ONLY" "${FAULT_CASES:-}"}
