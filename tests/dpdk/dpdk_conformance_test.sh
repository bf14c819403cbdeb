#!/bin/bash
# The transport conformance suite on dpdk://, for real: one EAL in one process with two
# net_af_packet ports, the two ends of a veth pair inside a network namespace made here; the
# listener uses port 0 (10.79.0.2), the connecting side port 1 (10.79.0.1), and every frame
# crosses the veth through the kernel. The namespace and veth go on exit.
#   dpdk_conformance_test.sh CONFORMANCE_TESTS_BINARY [GTEST_FILTER]
set -uo pipefail
BIN=${1:?usage: $0 PATH_TO_CONFORMANCE_TESTS [FILTER]}
FILTER=${2:-Backends/TransportConformance.*/dpdk}
if [ "$(id -u)" != 0 ] || ! command -v ip >/dev/null; then echo "SKIP: needs root and iproute2"; exit 77; fi
NS=rscf$$; IA=rscf$$a; IB=rscf$$b
cleanup() {
  ip netns pids "$NS" 2>/dev/null | xargs -r kill -9 2>/dev/null
  ip netns del "$NS" 2>/dev/null
}
trap cleanup EXIT
ip netns add "$NS" && ip link add "$IA" type veth peer name "$IB" ||
  { echo "SKIP: cannot create a network namespace"; exit 77; }
ip link set "$IA" netns "$NS"; ip link set "$IB" netns "$NS"
ip -n "$NS" link set "$IA" up; ip -n "$NS" link set "$IB" up
export RAMSHIFT_DPDK_CONFORMANCE_EAL="--no-huge --no-pci -m 512 --file-prefix=rscf$$ --vdev=net_af_packet0,iface=$IA --vdev=net_af_packet1,iface=$IB"
out=$(mktemp)
ip netns exec "$NS" "$BIN" --gtest_filter="$FILTER" 2>&1 | grep -v "^EAL\|^TELEMETRY" | tee "$out"
rc=${PIPESTATUS[0]}
# A build without DPDK skips every case; say so rather than pass silently.
if grep -q "not found at configure\|RAMSHIFT_DPDK=OFF" "$out" && ! grep -q "^\[       OK \]" "$out"; then
  rm -f "$out"; echo "SKIP: this build has no DPDK backend"; exit 77
fi
rm -f "$out"
exit "$rc"
