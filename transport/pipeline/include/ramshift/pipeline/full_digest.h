// The memory digest computed from memory itself, every page, on several threads: what
// `--verify full` compares. Same shape and the same hash as MemoryDigest::chunk_hashes()
// (per region, one XXH3 per chunk over the chunk's little-endian page hashes), so a full
// digest of memory that MemoryDigest tracked exactly equals its chunk_hashes().
#pragma once

#include <cstddef>
#include <cstdint>
#include <span>
#include <vector>

namespace ramshift::pipeline {

struct FullDigest {
  std::vector<std::vector<uint64_t>> chunks;  // per region, one hash per chunk
  uint64_t pages = 0;                         // pages hashed
};

// Hashes `regions` (region r holds `region_bytes[r]` bytes: the last page cut there) in
// chunks of `chunk_pages` pages of `page_size`, on `threads` threads (0: one per core) that
// take chunks from a shared counter. The memory must not change meanwhile (a paused guest).
FullDigest hash_memory(const std::vector<std::span<const std::byte>>& regions,
                       const std::vector<uint64_t>& region_bytes, size_t page_size,
                       size_t chunk_pages, unsigned threads = 0);

}  // namespace ramshift::pipeline
