// One signaled SEND of a small message from registered memory: the set-up's hello, the
// authenticated handshake's messages and the pull queue's requests. Each is waited for on its
// own completion, so none of them takes part in the data path's selective signaling
// (work_requests.h).
#pragma once

#include <infiniband/verbs.h>

#include <cstddef>
#include <cstdint>
#include <span>

namespace ramshift::transport::rdma {

// Posts `message` (inside memory registered under `lkey`; empty: a zero-byte SEND) as work
// request `wr_id`. Returns ibv_post_send's error number, 0 when posted: the caller says what
// it was sending.
inline int post_signaled_send(ibv_qp* qp, uint64_t wr_id, std::span<const std::byte> message,
                              uint32_t lkey) {
  ibv_sge sge{reinterpret_cast<uint64_t>(message.data()), static_cast<uint32_t>(message.size()),
              lkey};
  ibv_send_wr wr{};
  wr.wr_id = wr_id;
  wr.sg_list = message.empty() ? nullptr : &sge;
  wr.num_sge = message.empty() ? 0 : 1;
  wr.opcode = IBV_WR_SEND;
  wr.send_flags = IBV_SEND_SIGNALED;
  ibv_send_wr* bad = nullptr;
  return ibv_post_send(qp, &wr, &bad);
}

}  // namespace ramshift::transport::rdma
