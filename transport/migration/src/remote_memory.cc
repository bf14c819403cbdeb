#include "remote_memory.h"

#include <fmt/format.h>

#include <mutex>

namespace ramshift::migration {

void RemoteMemory::reset(size_t regions) {
  std::unique_lock lock(mu_);
  regions_.assign(regions, {});
  keyed_bytes_ = 0;
}

Status RemoteMemory::add(const wire::MemoryKeys& keys) {
  std::unique_lock lock(mu_);
  for (const auto& k : keys.ranges) {
    if (k.region_id >= regions_.size())
      return Status(ErrorCode::kProtocol,
                    fmt::format("memory_keys: region {} is not in the region table", k.region_id));
    auto& ranges = regions_[k.region_id];
    auto next = ranges.lower_bound(k.offset);
    bool overlaps = (next != ranges.end() && next->first < k.offset + k.length);
    if (!overlaps && next != ranges.begin()) {
      auto prev = std::prev(next);
      overlaps = prev->first + prev->second.length > k.offset;
    }
    if (overlaps)
      return Status(ErrorCode::kProtocol,
                    fmt::format("memory_keys: range {}+{} of region {} overlaps one sent before",
                                k.offset, k.length, k.region_id));
    ranges.emplace(k.offset, k);
    keyed_bytes_ += k.length;
  }
  return Status::ok();
}

bool RemoteMemory::covers(uint32_t region, uint64_t begin, uint64_t end) const {
  std::shared_lock lock(mu_);
  if (region >= regions_.size()) return false;
  const auto& ranges = regions_[region];
  while (begin < end) {
    auto it = ranges.upper_bound(begin);
    if (it == ranges.begin()) return false;
    --it;
    uint64_t range_end = it->first + it->second.length;
    if (range_end <= begin) return false;
    begin = range_end;
  }
  return true;
}

std::optional<wire::KeyRange> RemoteMemory::range_at(uint32_t region, uint64_t offset) const {
  std::shared_lock lock(mu_);
  if (region >= regions_.size()) return std::nullopt;
  const auto& ranges = regions_[region];
  auto it = ranges.upper_bound(offset);
  if (it == ranges.begin()) return std::nullopt;
  --it;
  if (it->first + it->second.length <= offset) return std::nullopt;
  return it->second;
}

uint64_t RemoteMemory::keyed_bytes() const {
  std::shared_lock lock(mu_);
  return keyed_bytes_;
}

}  // namespace ramshift::migration
