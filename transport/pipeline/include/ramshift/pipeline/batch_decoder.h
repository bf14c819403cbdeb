// Per-queue page batch decoder: validates a batch body completely, then places its pages in
// destination memory, mirroring the sender's XBZRLE cache. One instance per receiving queue
// thread; buffers are allocated once.
//
// Safety: every header field, entry and run is checked before anything is written; a page
// index outside its region, an unknown kind or flag, lengths that do not add up, a payload
// that does not decompress to the announced size, or a delta against a page the cache does
// not hold all return kProtocol/kCorrupt with the field named. Nothing is ever written
// outside the region spans given. The one write before a failure: a compressed payload of
// consecutive raw pages is decompressed straight into them, so a payload that turns out
// not to decompress leaves those pages (and only those) partly written.
#pragma once

#include <cstddef>
#include <cstdint>
#include <functional>
#include <span>
#include <vector>

#include "ramshift/base/status.h"
#include "ramshift/pipeline/batch_format.h"
#include "ramshift/pipeline/checksum.h"
#include "ramshift/pipeline/page_cache.h"
#include "ramshift/pipeline/zstd_context.h"

namespace ramshift::pipeline {

struct DecodedBatch {
  uint32_t region_id = 0;
  uint32_t round = 0;
  uint64_t chunk = 0;  // every page of a batch lies in one chunk of max_pages pages
  PageCounts counts;
};

class BatchDecoder {
 public:
  BatchDecoder(size_t page_size, size_t max_pages, size_t cache_bytes);
  // Accept kPlaced entries: this session registered destination memory for remote writes
  // (elsewhere such an entry is a protocol error: nothing would have written the page).
  void allow_placed(bool allow) { allow_placed_ = allow; }
  // Called once a batch is validated, before it writes guest memory, with its region and
  // chunk (pages chunk x max_pages ...): the destination waits there until the memory under
  // that chunk is reserved. A failure is the batch's failure.
  using WriteGate = std::function<Status(uint32_t region, uint64_t chunk)>;
  void set_write_gate(WriteGate gate) { write_gate_ = std::move(gate); }

  // `regions[i]` is the destination memory of region i (a whole number of pages). With a
  // `digest`, each placed page's entry is refreshed right after it was written.
  // `cache_keys`, when given, names page index i's XBZRLE cache entry (the encoder's
  // `cache_key`); an index beyond it is kProtocol.
  Result<DecodedBatch> apply(std::span<const std::byte> body,
                             std::span<const std::span<std::byte>> regions,
                             MemoryDigest* digest = nullptr,
                             std::span<const uint64_t> cache_keys = {});

 private:
  bool allow_placed_ = false;
  WriteGate write_gate_;
  size_t page_size_;
  size_t max_pages_;
  PageCache cache_;
  ZstdDecompressor zstd_;
  std::vector<std::byte> payload_;  // decompressed payload
  std::vector<std::byte> scratch_;  // one page for XBZRLE reconstruction
};

}  // namespace ramshift::pipeline
