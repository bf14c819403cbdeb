// Prepares guest memory chunk by chunk on background threads while the migration already
// runs: the destination reserves its output file's blocks and faults the chunk in (tcp) or
// registers it for the source's one-sided writes (rdma); the source registers its own
// memory for them. Setup then costs
// only the first chunk, not the whole guest (pinning and zeroing gigabytes takes seconds).
//
// Chunks are fixed per region (see chunk_bytes()), prepared in address order by 1..4
// threads (more only for large guests, where pinning is the bottleneck), and each is
// announced through `prepare` exactly once. ready()/wait_ready() tell a data thread whether
// the chunks under a byte range are done; they are cheap (one atomic load per chunk).
#pragma once

#include <atomic>
#include <condition_variable>
#include <cstdint>
#include <functional>
#include <memory>
#include <mutex>
#include <span>
#include <thread>
#include <vector>

#include "ramshift/base/status.h"
#include "ramshift/transport/transport.h"
#include "ramshift/wire/frame.h"

namespace ramshift::migration {

// Registers `chunk` (at `offset` of region `region`) for the source's one-sided writes and
// returns the MEMORY_KEYS that tell the source where it is (one range per registration the
// transport split it into).
Result<wire::MemoryKeys> register_for_writes(transport::Connection& conn, uint32_t region,
                                             uint64_t offset, std::span<std::byte> chunk);

class MemoryPreparer {
 public:
  // Called once per chunk on a preparer thread: region index, byte offset in the region,
  // the chunk's memory. A failure stops every thread; wait_ready() and finish() return it.
  using PrepareFn =
      std::function<Status(uint32_t region, uint64_t offset, std::span<std::byte> chunk)>;

  // The chunk size for a region of `bytes`: about 1/32 of it, 2 MiB-aligned, 2..32 MiB.
  // Small enough that the first chunk is quick, large enough that a 64 GiB guest is 2048
  // registrations; below the size from which the rdma backend splits one registration.
  static uint64_t chunk_bytes(uint64_t bytes);

  // Starts preparing `regions` (each a whole number of pages) at once.
  MemoryPreparer(std::vector<std::span<std::byte>> regions, PrepareFn prepare);
  ~MemoryPreparer();  // stops early and joins
  MemoryPreparer(const MemoryPreparer&) = delete;
  MemoryPreparer& operator=(const MemoryPreparer&) = delete;

  // Whether every chunk under [begin, end) of `region` is prepared.
  bool ready(uint32_t region, uint64_t begin, uint64_t end) const;
  // Blocks until it is, a chunk failed (its error), or `stop` turns true (kCancelled).
  Status wait_ready(uint32_t region, uint64_t begin, uint64_t end, const std::atomic<bool>& stop);
  // Waits for every chunk; the first failure, if any.
  Status finish();
  // The first failure so far, without waiting.
  Status status() const;
  // Chunk size of `region` (the unit of ready()).
  uint64_t region_chunk_bytes(uint32_t region) const { return regions_[region].chunk; }

 private:
  struct Region {
    std::span<std::byte> memory;
    uint64_t chunk = 0;
    std::unique_ptr<std::atomic<bool>[]> done;
    size_t chunks = 0;
  };
  void worker();

  std::vector<Region> regions_;
  PrepareFn prepare_;
  // Next chunk to hand out, as (region, chunk) flattened into one counter.
  std::atomic<uint64_t> next_{0};
  std::vector<uint64_t> first_index_;  // flattened index of each region's chunk 0
  uint64_t total_chunks_ = 0;
  std::atomic<bool> stop_{false};
  mutable std::mutex mu_;
  std::condition_variable cv_;
  Status error_;
  std::vector<std::thread> threads_;
};

}  // namespace ramshift::migration
