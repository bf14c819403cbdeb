// Built instead of the verbs backend when this binary cannot carry it: rdma:// stays a known
// scheme whose connect and listen say why (RAMSHIFT_RDMA_ABSENT_REASON, set at configure).
#include "backend_entry.h"

namespace ramshift::transport::rdma {
namespace {

Backend empty_slot() {
  Backend b = describe_backend();
  b.absent_reason = RAMSHIFT_RDMA_ABSENT_REASON;
  return b;
}

const BackendRegistrar kRegistered(empty_slot());

}  // namespace
}  // namespace ramshift::transport::rdma
