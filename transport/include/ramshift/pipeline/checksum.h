// CRC32C (Castagnoli) via ISA-L's crc32_iscsi, and the memory digest built on it.
#pragma once

#include <algorithm>
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

// What both ends compare before the destination commits. Each side keeps one CRC32C per
// page of every region (the last page cut at the region's exact size) and refreshes a page's
// CRC right after it encoded (source) or placed (destination) that page, while its bytes are
// still in cache — so the digest costs no second pass over memory, and a round that touches
// a few pages here and there costs a few page CRCs. What travels is one CRC32C per chunk
// (`chunk_pages` pages) computed over that chunk's page CRCs (little-endian u32s): 4 bytes
// per chunk on the wire.
// Threading: update_page() of different pages may run concurrently (one element each).
class MemoryDigest {
 public:
  // `zero_filled`: every page starts at the CRC of zeros (a fresh destination); otherwise at 0.
  MemoryDigest(const std::vector<uint64_t>& region_bytes, size_t page_size, size_t chunk_pages,
               bool zero_filled);

  size_t chunk_bytes() const { return page_size_ * chunk_pages_; }
  // Recomputes page `page` of `region` from the region's memory.
  void update_page(uint32_t region, uint64_t page, std::span<const std::byte> region_memory) {
    uint64_t start = page * page_size_;
    uint64_t len = std::min<uint64_t>(page_size_, bytes_[region] - start);
    pages_[region][page] = crc32c(region_memory.subspan(start, len));
  }
  // Per region, one CRC per chunk (what the DIGEST frame carries).
  std::vector<std::vector<uint32_t>> chunk_crcs() const;

  // kCorrupt naming the first differing region/offset and how many chunks differ;
  // kProtocol when the shapes differ.
  Status compare(const std::vector<std::vector<uint32_t>>& theirs,
                 const std::vector<std::string>& region_names) const;

 private:
  size_t page_size_;
  size_t chunk_pages_;
  std::vector<uint64_t> bytes_;
  std::vector<std::vector<uint32_t>> pages_;
};

}  // namespace ramshift::pipeline
