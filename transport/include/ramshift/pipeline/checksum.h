// CRC32C (Castagnoli) via ISA-L's crc32_iscsi, and whole-memory digests built on it.
#pragma once

#include <cstddef>
#include <cstdint>
#include <span>
#include <vector>

namespace ramshift::pipeline {

// CRC32C of `data`, continuing from `seed` (use the previous result to chain pieces).
// Hardware-accelerated by ISA-L; any length (split internally below ISA-L's int limit).
uint32_t crc32c(std::span<const std::byte> data, uint32_t seed = 0);

// Granularity of a memory digest: one CRC32C per 1 MiB chunk. Why 1 MiB: 4 bytes of digest
// per MiB keeps the digest frame at 4 KiB per GiB of guest, yet a mismatch still names a
// place small enough to investigate.
inline constexpr size_t kDigestChunkBytes = 1 << 20;

// One CRC32C per kDigestChunkBytes chunk of `memory` (the last chunk may be short).
std::vector<uint32_t> memory_digest(std::span<const std::byte> memory);

}  // namespace ramshift::pipeline
