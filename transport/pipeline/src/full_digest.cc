#include "ramshift/pipeline/full_digest.h"

#include <algorithm>
#include <atomic>
#include <thread>

#include "ramshift/base/byte_order.h"
#include "ramshift/pipeline/checksum.h"

namespace ramshift::pipeline {

FullDigest hash_memory(const std::vector<std::span<const std::byte>>& regions,
                       const std::vector<uint64_t>& region_bytes, size_t page_size,
                       size_t chunk_pages, unsigned threads) {
  FullDigest out;
  const uint64_t chunk_bytes = uint64_t{page_size} * chunk_pages;
  // Every chunk of every region as one list, so the threads share the work evenly.
  struct Job {
    uint32_t region;
    uint64_t chunk;
  };
  std::vector<Job> jobs;
  for (uint32_t r = 0; r < regions.size(); ++r) {
    const uint64_t chunks = (region_bytes[r] + chunk_bytes - 1) / chunk_bytes;
    out.chunks.emplace_back(chunks);
    out.pages += (region_bytes[r] + page_size - 1) / page_size;
    for (uint64_t c = 0; c < chunks; ++c) jobs.push_back({r, c});
  }
  if (threads == 0) threads = std::max(1u, std::thread::hardware_concurrency());
  threads = static_cast<unsigned>(std::min<size_t>(threads, jobs.size()));
  std::atomic<size_t> next{0};
  auto work = [&] {
    std::vector<std::byte> le(chunk_pages * 8);
    for (size_t j; (j = next.fetch_add(1, std::memory_order_relaxed)) < jobs.size();) {
      const auto [r, c] = jobs[j];
      const uint64_t start = c * chunk_bytes;
      const uint64_t end = std::min(region_bytes[r], start + chunk_bytes);
      size_t n = 0;
      for (uint64_t at = start; at < end; at += page_size, ++n)
        store_le<uint64_t>(le.data() + 8 * n, page_hash(regions[r].subspan(
                                                  at, std::min<uint64_t>(page_size, end - at))));
      out.chunks[r][c] = page_hash({le.data(), n * 8});
    }
  };
  std::vector<std::thread> pool;
  for (unsigned t = 1; t < threads; ++t) pool.emplace_back(work);
  work();
  for (auto& t : pool) t.join();
  return out;
}

}  // namespace ramshift::pipeline
