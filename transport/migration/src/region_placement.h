// The engine's PlacementMap (rdma): a placed run of region `region` lands at the same
// offset of the destination's region, under whichever MEMORY_KEYS range holds it; a piece
// also stops at the end of our own registration chunk (MemoryPreparer's). Its writes go on
// `queue`, so they carry that queue's key where keys travel one per queue.
#pragma once

#include <algorithm>
#include <optional>

#include "ramshift/migration/page_sender.h"
#include "remote_memory.h"

namespace ramshift::migration {

class RegionPlacement final : public PlacementMap {
 public:
  RegionPlacement(const RemoteMemory& remote, uint32_t region, const std::byte* local_base,
                  uint64_t local_chunk_bytes, uint64_t page_size, uint32_t queue)
      : remote_(remote),
        region_(region),
        queue_(queue),
        base_(local_base),
        local_chunk_(local_chunk_bytes),
        page_size_(page_size) {}

  Result<PlacementPiece> locate(const pipeline::Placement& run, uint64_t offset) override {
    const uint64_t off = run.first_page * page_size_ + offset;
    // Runs come in page order and a range spans many of them: look one up (a shared lock
    // and a map search) only when a run leaves the last one, not once per run.
    if (!range_ || off < range_->offset || off >= range_->offset + range_->length)
      range_ = remote_.range_at(region_, off);
    if (!range_) return Status(ErrorCode::kInternal, "placed page outside the destination's keys");
    const uint64_t max =
        std::min(range_->offset + range_->length - off, local_chunk_ - off % local_chunk_);
    const uint32_t rkey =
        queue_ < range_->queue_rkeys.size() ? range_->queue_rkeys[queue_] : range_->rkey;
    return PlacementPiece{base_ + off, range_->address + (off - range_->offset), rkey, max};
  }

 private:
  const RemoteMemory& remote_;
  uint32_t region_;
  uint32_t queue_;
  const std::byte* base_;
  uint64_t local_chunk_;
  uint64_t page_size_;
  std::optional<wire::KeyRange> range_;
};

}  // namespace ramshift::migration
