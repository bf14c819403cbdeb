// One RDMA READ as a work request, the same for both readers of this backend: the QEMU
// library's page pulls (page_pull.cc, PullTarget::read) and an rdma:// connection's
// one-sided reads (post-copy faults, rdma_queue_io.cc, RdmaQueue::read).
#pragma once

#include <infiniband/verbs.h>

#include <cstdint>

#include "page_pull.h"

namespace ramshift::transport::rdma {

// Fills `wr` (and its one `sge`) to read `r`; unsignaled, unchained, numbered by the caller.
inline void fill_read_request(const PullRead& r, ibv_sge& sge, ibv_send_wr& wr) {
  sge = ibv_sge{reinterpret_cast<uint64_t>(r.local), r.len, r.lkey};
  wr = ibv_send_wr{};
  wr.sg_list = &sge;
  wr.num_sge = 1;
  wr.opcode = IBV_WR_RDMA_READ;
  wr.wr.rdma.remote_addr = r.remote;
  wr.wr.rdma.rkey = r.rkey;
}

}  // namespace ramshift::transport::rdma
