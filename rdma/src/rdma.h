// rdma backend entry points (see rdma_queue.h for the per-queue protocol and
// docs/design.md for how the migration places guest pages with one-sided writes).
//   rdma://HOST:PORT  HOST must be an address of an RDMA device (RoCE: the netdev's IP).
// One RC queue pair per queue; the queues of one connection share a protection domain and
// are grouped on the listener by a random session token carried in the CM private data.
#pragma once

#include <memory>

#include "ramshift/transport/transport.h"

namespace ramshift::transport::rdma {

Result<std::unique_ptr<Listener>> listen(const Uri& uri, const TransportOptions& options);
Result<std::unique_ptr<Connection>> connect(const Uri& uri, uint32_t queues,
                                            const TransportOptions& options);

}  // namespace ramshift::transport::rdma
