// CRC32C (Castagnoli) via ISA-L's crc32_iscsi, and the memory digest built on it.
#pragma once

#include <cstddef>
#include <cstdint>
#include <span>
#include <string>
#include <vector>

#include "ramshift/base/status.h"

namespace ramshift::pipeline {

// CRC32C of `data`, continuing from `seed` (use the previous result to chain pieces).
// Hardware-accelerated by ISA-L; any length (split internally below ISA-L's int limit).
uint32_t crc32c(std::span<const std::byte> data, uint32_t seed = 0);

// What both ends compare before the destination commits: one CRC32C per chunk of each
// region, a chunk being the pages one batch covers (batch_pages x page_size), the last chunk
// cut at the region's exact size.
//
// Why per batch chunk: each side refreshes a chunk's CRC right after it encoded or placed
// that chunk, while the bytes are still in cache, so the digest costs no second pass over
// memory at the end of the migration. Chunks never sent hold zeros on the destination.
// Threading: update() of different chunks may run concurrently (one element each).
class MemoryDigest {
 public:
  // `zero_filled`: start every chunk at the CRC of zeros (a fresh destination); otherwise
  // at 0 until updated.
  MemoryDigest(const std::vector<uint64_t>& region_bytes, size_t chunk_bytes, bool zero_filled);

  size_t chunk_bytes() const { return chunk_bytes_; }
  uint64_t chunk_count(uint32_t region) const { return crcs_[region].size(); }
  // Recomputes chunk `chunk` of `region` from the region's memory.
  void update(uint32_t region, uint64_t chunk, std::span<const std::byte> region_memory);
  // Recomputes every chunk of `region`.
  void update_all(uint32_t region, std::span<const std::byte> region_memory);
  const std::vector<std::vector<uint32_t>>& crcs() const { return crcs_; }

  // kCorrupt naming the first differing region/offset and how many chunks differ;
  // kProtocol when the shapes differ.
  Status compare(const std::vector<std::vector<uint32_t>>& theirs,
                 const std::vector<std::string>& region_names) const;

 private:
  size_t chunk_bytes_;
  std::vector<uint64_t> bytes_;
  std::vector<std::vector<uint32_t>> crcs_;
};

}  // namespace ramshift::pipeline
