// Byte layout of a page batch, the body of a PAGE_BATCH frame (see docs/protocol.md).
//
//   BatchHeader (24 bytes, little-endian)
//     u32 region_id, u32 round, u16 page_count, u8 flags, u8 reserved (0),
//     u32 payload_len (bytes of the payload once decompressed),
//     u32 stored_len  (bytes of the payload as stored in this body),
//     u32 reserved2 (0)
//   payload   stored_len bytes: the raw pages and XBZRLE deltas in entry order,
//             zstd-compressed as one frame when flags has kBatchCompressed
//   entries   page_count x PageEntry (16 bytes)
//     u64 page_index, u32 len, u8 kind, u8 entry_flags, u16 reserved (0)
#pragma once

#include <cstddef>
#include <cstdint>

namespace ramshift::pipeline {

inline constexpr size_t kBatchHeaderBytes = 24;
inline constexpr size_t kPageEntryBytes = 16;
// Upper bound on pages per batch either side accepts. Why 1024: 4 MiB of 4 KiB pages,
// the largest message size perftest advises for 200 Gb/s links.
inline constexpr size_t kMaxBatchPages = 1024;

inline constexpr uint8_t kBatchCompressed = 1 << 0;

// kPlaced: the page's bytes were written straight into the destination's memory by a
// one-sided write (RDMA WRITE) ordered before this batch; len 0, nothing in the payload.
// Only valid in sessions where the destination sent MEMORY_KEYS.
enum class PageKind : uint8_t { kZero = 0, kRaw = 1, kXbzrle = 2, kPlaced = 3 };
inline constexpr uint8_t kPageKindCount = 4;

// Entry flag: after placing the page, both sides store it in their XBZRLE cache.
inline constexpr uint8_t kEntryCacheInsert = 1 << 0;

// How pages were sent; `zstd` counts raw pages that travelled inside a compressed payload,
// `placed` raw pages written straight into destination memory (rdma). `total()` counts the
// pages that travelled, the same on both ends; `zero_unsent` (source only) the zero pages
// that did not travel at all because the destination's fresh memory is zero already.
struct PageCounts {
  uint64_t zero = 0;
  uint64_t xbzrle = 0;
  uint64_t zstd = 0;
  uint64_t raw = 0;
  uint64_t placed = 0;
  uint64_t zero_unsent = 0;
  uint64_t total() const { return zero + xbzrle + zstd + raw + placed; }
  PageCounts& operator+=(const PageCounts& o) {
    zero_unsent += o.zero_unsent;
    zero += o.zero;
    xbzrle += o.xbzrle;
    zstd += o.zstd;
    raw += o.raw;
    placed += o.placed;
    return *this;
  }
};

}  // namespace ramshift::pipeline
