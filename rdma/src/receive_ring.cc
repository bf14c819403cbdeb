#include "receive_ring.h"

#include <fmt/format.h>

#include <algorithm>

#include "ring_protocol.h"

namespace ramshift::transport::rdma {

ReceiveRing::ReceiveRing(uint32_t slots, uint32_t slot_bytes, uint32_t queue)
    : slots_(slots), slot_bytes_(slot_bytes), queue_(queue) {}

Result<ArrivedFragment> ReceiveRing::arrive(uint32_t imm) {
  const uint32_t len = imm & kImmLenMask;
  if ((imm & (kImmCredit | kImmReserved)) != 0 || len > slot_bytes_)
    return Status(ErrorCode::kProtocol,
                  fmt::format("rdma queue {}: fragment header {:#x} is invalid (slot is {} bytes)",
                              queue_, imm, slot_bytes_));
  if (arrived_ - reported_.load() >= slots_)
    return Status(
        ErrorCode::kProtocol,
        fmt::format("rdma queue {}: the peer wrote past the credits it was given", queue_));
  ArrivedFragment f{static_cast<uint32_t>(arrived_ % slots_), len, (imm & kImmLast) != 0};
  ++arrived_;
  return f;
}

void ReceiveRing::begin_poll() {
  released_ += held_;
  held_ = 0;
  if (!reassembling_) reassembly_.clear();
}

size_t ReceiveRing::views_per_poll() const { return std::max<uint32_t>(1, slots_ / 2); }

bool ReceiveRing::credit_due() const {
  return released_ - reported_.load() >= std::max<uint32_t>(1, slots_ / 2);
}

uint32_t ReceiveRing::report_credit() {
  reported_ = released_;
  return credit_imm(released_);
}

Result<ReceiveRing::Taken> ReceiveRing::take(std::span<ConstBuffer> out) {
  Taken t{0, false};
  while (!ready_.empty() && t.messages < out.size()) {
    const ArrivedFragment f = ready_.front();
    const std::byte* src = memory_ + size_t{f.slot} * slot_bytes_;
    if (!reassembling_ && f.last) {
      out[t.messages++] = ConstBuffer(src, f.len);
      ++held_;
      ready_.pop_front();
      continue;
    }
    if (t.messages > 0) break;  // hand out the views first; their slots must be released in order
    reassembling_ = true;
    reassembly_.insert(reassembly_.end(), src, src + f.len);
    ready_.pop_front();
    ++released_;
    t.copied = true;
    if (reassembly_.size() > kMaxRingMessage)
      return Status(ErrorCode::kProtocol, "rdma peer sent a message above the size limit");
    if (f.last) {
      reassembling_ = false;
      out[t.messages++] = ConstBuffer(reassembly_);
      break;
    }
  }
  return t;
}

}  // namespace ramshift::transport::rdma
