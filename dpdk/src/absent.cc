// dpdk:// has no implementation yet (its own issue). Until it lands this folder registers an
// empty slot, so the scheme parses and listen/connect say why they refuse it
// (RAMSHIFT_DPDK_ABSENT_REASON, set at configure).
#include "ramshift/transport/registry.h"

namespace ramshift::transport::dpdk {
namespace {

Backend empty_slot() {
  Backend b;
  b.scheme = "dpdk";
  b.summary = "user-space Ethernet/UDP with its own reliability";
  b.absent_reason = RAMSHIFT_DPDK_ABSENT_REASON;
  return b;
}

const BackendRegistrar kRegistered(empty_slot());

}  // namespace
}  // namespace ramshift::transport::dpdk
