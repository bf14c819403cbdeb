// What the registry knows of dpdk:// whether or not this binary carries DPDK. dpdk_backend.cc
// adds the factories; absent.cc, built instead when libdpdk is missing or RAMSHIFT_DPDK=OFF,
// the reason.
#pragma once

#include "ramshift/transport/registry.h"

namespace ramshift::transport::dpdk {

inline Backend describe_backend() {
  Backend b;
  b.scheme = "dpdk";
  b.summary = "DPDK: user-space Ethernet/IPv4/UDP with its own reliability (ACK/SACK, window)";
  // 1 MiB, as rdma: each batch is cut into MTU frames anyway, and fewer, larger messages
  // mean fewer wake-ups of the receiver's poll.
  b.traits.preferred_batch_bytes = 1u << 20;
  b.traits.one_sided_write = true;  // WRITE frames: sent by reference, copied once into place
  return b;
}

}  // namespace ramshift::transport::dpdk
