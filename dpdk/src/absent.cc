// dpdk:// when this binary lacks the backend (libdpdk missing at configure, or
// RAMSHIFT_DPDK=OFF): an empty slot, so the scheme parses and listen/connect say why they
// refuse it (RAMSHIFT_DPDK_ABSENT_REASON, set at configure).
#include "backend_entry.h"

namespace ramshift::transport::dpdk {
namespace {

Backend empty_slot() {
  Backend b = describe_backend();
  b.absent_reason = RAMSHIFT_DPDK_ABSENT_REASON;
  return b;
}

const BackendRegistrar kRegistered(empty_slot());

}  // namespace
}  // namespace ramshift::transport::dpdk
