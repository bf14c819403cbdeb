#include "send_ring.h"

#include <fmt/format.h>

#include <algorithm>
#include <cassert>
#include <cstring>

namespace ramshift::transport::rdma {

Gather::Gather(std::span<const ConstBuffer> segments) : segments_(segments) {
  for (auto s : segments) remaining_ += s.size();
}

void Gather::copy(std::byte* dst, size_t n) {
  remaining_ -= n;
  while (n > 0) {
    ConstBuffer s = segments_[segment_];
    size_t take = std::min(n, s.size() - offset_);
    if (take > 0) std::memcpy(dst, s.data() + offset_, take);
    dst += take;
    n -= take;
    offset_ += take;
    if (offset_ == s.size()) {
      ++segment_;
      offset_ = 0;
    }
  }
}

SendRing::SendRing(uint32_t queue, size_t max_chain) : queue_(queue), staged_(max_chain) {}

void SendRing::attach(uint32_t peer_slots, uint32_t peer_slot_bytes, std::span<std::byte> staging) {
  slots_ = peer_slots;
  slot_bytes_ = peer_slot_bytes;
  staging_ = staging;
}

size_t SendRing::fragments_for(size_t bytes) const {
  return bytes == 0 ? 1 : (bytes + slot_bytes_ - 1) / slot_bytes_;
}

std::span<const StagedFragment> SendRing::stage(Gather& src, size_t count) {
  assert(count <= staged_.size() && count <= free_slots());
  uint64_t seq = sent_.load();
  for (size_t i = 0; i < count; ++i, ++seq) {
    const uint64_t offset = (seq % slots_) * slot_bytes_;
    const size_t len = std::min<size_t>(src.remaining(), slot_bytes_);
    std::byte* dst = staging_.data() + offset;
    src.copy(dst, len);
    staged_[i] = {dst, static_cast<uint32_t>(len), src.remaining() == 0, offset};
  }
  // Credits count fragments written; counted before posting so a fast credit never exceeds it.
  sent_ += count;
  return std::span<const StagedFragment>(staged_).first(count);
}

void SendRing::hold(Gather& src) {
  pending_.resize(src.remaining());
  src.copy(pending_.data(), pending_.size());
  pending_offset_ = 0;
  pending_active_ = true;
}

std::span<const StagedFragment> SendRing::stage_pending(uint64_t send_room) {
  if (!pending_active_) return {};
  const size_t needed = fragments_for(pending_.size() - pending_offset_);
  const size_t n = std::min<uint64_t>({needed, free_slots(), send_room});
  if (n == 0) return {};
  ConstBuffer tail[1] = {ConstBuffer(pending_).subspan(pending_offset_)};
  Gather g(tail);
  auto staged = stage(g, n);
  pending_offset_ = pending_.size() - g.remaining();
  if (n == needed) {
    pending_active_ = false;
    pending_.clear();
    pending_offset_ = 0;
  }
  return staged;
}

Status SendRing::on_credit(uint32_t value) {
  const uint64_t have = peer_released_.load();
  const uint64_t delta = (value - (have & kCreditMask)) & kCreditMask;
  if (delta > sent_.load() - have)
    return Status(
        ErrorCode::kProtocol,
        fmt::format("rdma queue {}: the peer returned credits for slots never written", queue_));
  peer_released_ = have + delta;
  return Status::ok();
}

}  // namespace ramshift::transport::rdma
