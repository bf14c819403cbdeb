// The source's view of the destination memory it may write directly (rdma): the key ranges
// of every MEMORY_KEYS frame so far. The control thread adds ranges as they arrive; data
// threads ask, per batch, whether its pages are covered and where each piece goes.
#pragma once

#include <cstdint>
#include <map>
#include <optional>
#include <shared_mutex>
#include <vector>

#include "ramshift/base/status.h"
#include "ramshift/wire/frame.h"

namespace ramshift::migration {

class RemoteMemory {
 public:
  void reset(size_t regions);

  // Control thread: adds one frame's ranges. A range overlapping one already known is
  // kProtocol (the destination would be handing out two keys for one page).
  Status add(const wire::MemoryKeys& keys);

  // Data threads: whether every byte of [begin, end) of `region` lies in known ranges.
  bool covers(uint32_t region, uint64_t begin, uint64_t end) const;
  // Data threads: the range holding byte `offset` of `region`, if any.
  std::optional<wire::KeyRange> range_at(uint32_t region, uint64_t offset) const;

  uint64_t keyed_bytes() const;

 private:
  mutable std::shared_mutex mu_;
  std::vector<std::map<uint64_t, wire::KeyRange>> regions_;  // per region, by offset
  uint64_t keyed_bytes_ = 0;
};

}  // namespace ramshift::migration
