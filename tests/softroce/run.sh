#!/bin/bash
# ctest entry: runs suite.sh directly where this host has an RDMA device and
# RAMSHIFT_RDMA_ADDR names its address, else inside the soft-RoCE VM.
#   run.sh PATH_TO_RAMSHIFT PATH_TO_CONFORMANCE_TESTS
set -uo pipefail
HERE=$(cd "$(dirname "$0")" && pwd)
RAMSHIFT=${1:?usage: run.sh RAMSHIFT CONFORMANCE_TESTS}; CONF=${2:?}
E2E=$(cd "$HERE/../e2e" && pwd)
if [ -n "${RAMSHIFT_RDMA_ADDR:-}" ] && [ -n "$(ibv_devices 2>/dev/null | awk 'NR>2')" ]; then
  echo "softroce: using this host's RDMA device at $RAMSHIFT_RDMA_ADDR"
  PATH=$(dirname "$RAMSHIFT"):$(dirname "$CONF"):$PATH exec bash "$HERE/suite.sh" "$E2E"
fi
exec bash "$HERE/rxe_vm.sh" -m 2048 -b "$RAMSHIFT" -b "$CONF" -b bash -d "$E2E" "$HERE/suite.sh" "$E2E"
