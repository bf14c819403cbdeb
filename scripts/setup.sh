#!/bin/bash
# Installs what building and testing ramshift needs on Debian 12, skipping what is present.
# Usage: scripts/setup.sh [--test]   (--test adds what the test suites use)
set -euo pipefail
PKGS=(build-essential cmake ninja-build pkg-config
      libzstd-dev libisal-dev libxxhash-dev libfmt-dev libcli11-dev nlohmann-json3-dev
      libibverbs-dev librdmacm-dev ibverbs-providers
      libdpdk-dev dpdk  # the dpdk:// backend (dpdk/)
      libssl-dev  # TLS 1.3 for tcp:// (security/)
      gnuplot-nox  # `ramshift bench --plot`
      libsystemd-dev)  # sd_notify readiness for the systemd units (packaging/systemd/)
if [ "${1:-}" = "--test" ]; then
  PKGS+=(libgtest-dev libgmock-dev libbenchmark-dev clang libclang-rt-14-dev clang-format
         iproute2 iperf3 python3 libcap2-bin bc
         openssl  # tests/security/ makes its certificates with the CLI
         qemu-system-x86 busybox-static cpio libc6-dev ibverbs-utils perftest util-linux xz-utils  # soft-RoCE VM
         dpkg-dev file groff-base binutils  # the .deb (cpack, dpkg-shlibdeps), man page and symbol checks
         libvirt-daemon-system libvirt-clients libvirt-daemon-driver-qemu)  # tests/libvirt/
fi
missing=()
for p in "${PKGS[@]}"; do
  dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q "install ok installed" || missing+=("$p")
done
if [ ${#missing[@]} -gt 0 ]; then
  echo "setup: installing ${missing[*]}"
  SUDO=""; [ "$(id -u)" = 0 ] || SUDO=sudo
  $SUDO apt-get update -q >/dev/null
  DEBIAN_FRONTEND=noninteractive $SUDO apt-get install -y -q --no-install-recommends "${missing[@]}" >/dev/null
fi
