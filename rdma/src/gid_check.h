// --rdma-gid-index N: perftest's -x, for a transport that connects through rdma_cm. rdma_cm
// chooses the GID itself, from the local address and the port's default RoCE mode (RoCE v2
// needs an IPv4-mapped GID of the right type), so the index is not something to set on the
// QP: it is checked once each queue is connected, and a queue on another GID fails with the
// one it got and how to get N.
#pragma once

#include <infiniband/verbs.h>

#include <cstdint>

#include "ramshift/base/status.h"

namespace ramshift::transport::rdma {

// Ok when `want` < 0 or the connected `qp`'s packets leave from GID `want` of `port`.
Status check_gid_index(ibv_qp* qp, uint8_t port, int want, uint32_t queue);

}  // namespace ramshift::transport::rdma
