#include "sealed_queues.h"

#include <fmt/format.h>

namespace ramshift::transport::rdma {

Result<std::unique_ptr<SealedQueues>> SealedQueues::create(
    std::span<const SecureSession* const> sessions) {
  auto out = std::make_unique<SealedQueues>();
  out->queues_.resize(sessions.size());
  for (uint32_t i = 0; i < sessions.size(); ++i) {
    if (!sessions[i])
      return Status(ErrorCode::kInternal, "--encrypt on a queue that did not authenticate");
    RS_ASSIGN_OR_RETURN(out->queues_[i].send, sessions[i]->sealer(true, i));
    RS_ASSIGN_OR_RETURN(out->queues_[i].receive, sessions[i]->sealer(false, i));
  }
  return out;
}

Result<ConstBuffer> SealedQueues::seal(uint32_t queue, std::span<const ConstBuffer> segments) {
  Queue& q = queues_[queue];
  size_t total = 0;
  for (auto s : segments) total += s.size();
  q.sealed.resize(total + PayloadSealer::kOverhead);
  RS_RETURN_IF_ERROR(q.send->seal(segments, q.sealed));
  return ConstBuffer(q.sealed);
}

Status SealedQueues::open(uint32_t queue, std::span<ConstBuffer> views) {
  Queue& q = queues_[queue];
  if (q.opened.size() < views.size()) q.opened.resize(views.size());
  for (size_t i = 0; i < views.size(); ++i) {
    if (views[i].size() < PayloadSealer::kOverhead)
      return Status(ErrorCode::kMismatch,
                    fmt::format("rdma queue {}: a message of {} bytes cannot be sealed (is the "
                                "peer running with --encrypt?)",
                                queue, views[i].size()));
    auto& plain = q.opened[i];
    plain.resize(views[i].size() - PayloadSealer::kOverhead);
    RS_RETURN_IF_ERROR(q.receive->open(views[i], plain));
    views[i] = ConstBuffer(plain);
  }
  return Status::ok();
}

}  // namespace ramshift::transport::rdma
