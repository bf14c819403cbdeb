// Per-queue page batch encoder: classify each page (zero / XBZRLE delta / raw), pack the
// batch, optionally zstd-compress its payload. One instance per sending queue thread; all
// buffers are allocated once at construction, so the hot path neither allocates nor locks.
//
// Race safety for live guests: a page is copied once (a snapshot) before it is encoded, and
// the same snapshot feeds the delta, the payload and the cache, so a guest write racing with
// encoding can never put sender and receiver caches out of step. (The dirty log re-sends it.)
#pragma once

#include <cstddef>
#include <cstdint>
#include <memory>
#include <span>
#include <vector>

#include "ramshift/pipeline/batch_format.h"
#include "ramshift/pipeline/codec.h"
#include "ramshift/pipeline/page_cache.h"
#include "ramshift/pipeline/zstd_context.h"

namespace ramshift::pipeline {

// Decisions taken once per batch by the caller (the engine or the auto governor).
struct BatchPolicy {
  bool skip_zero = false;     // round 0 on a fresh destination: zero pages need not travel
  bool compress = false;      // zstd the payload (ignored unless the codec may compress)
  bool cache_insert = false;  // raw pages also enter the XBZRLE cache (later rounds)
  // Raw pages are not copied: the batch points into guest memory, and the transport gathers
  // them straight from there (when compressing, zstd reads them there). Only for memory
  // that cannot change until the batch is sent (a memory image); ignored when inserting
  // into the cache.
  bool zero_copy = false;
  // Raw pages are placed by the transport's one-sided writes (placements()) and the batch
  // carries only kPlaced entries for them. While compressing, only the pages that look
  // incompressible (entropy.h) are placed; the rest go through zstd. Ignored when inserting
  // into the cache unless stable_pages (the cache must hold what the destination received,
  // and a live page may change between our read and the NIC's).
  bool place_raw = false;
  // The pages given to add() are a private copy that stays unchanged until the placements
  // have landed (the QEMU bridge's packets, not live guest memory): placed pages may then
  // also enter the XBZRLE cache, since the destination receives exactly what was cached.
  bool stable_pages = false;
};

// A run of raw pages to write straight into the destination's memory before the batch.
struct Placement {
  uint64_t first_page = 0;
  const std::byte* memory = nullptr;
  size_t bytes = 0;
};

// A finished batch: its body as a gather list (header and entries in the encoder's buffer,
// raw pages possibly in guest memory). Valid until the next begin().
struct BatchView {
  std::span<const std::span<const std::byte>> segments;
  size_t bytes = 0;
  bool empty() const { return bytes == 0; }
};

class BatchEncoder {
 public:
  // `cache_bytes` is this queue's share of the XBZRLE cache (0 or a codec without XBZRLE:
  // no cache). `max_pages` <= kMaxBatchPages.
  BatchEncoder(const CodecConfig& config, size_t page_size, size_t max_pages, size_t cache_bytes);

  void begin(uint32_t region_id, uint32_t round, const BatchPolicy& policy);
  // Encodes one page of the current region (read once, `page_size` bytes). `cache_key`
  // names the page in the XBZRLE cache; by default PageCache::make_key(region, page_index).
  // The QEMU bridge gives its own (ramblock, offset) key to pages it numbers by position in
  // a multifd packet, so the cache follows the guest page, not the packet slot.
  // `may_insert` false keeps a page that is not cached yet out of the cache even when the
  // policy inserts (the bridge's first sending of a page, as QEMU's own XBZRLE does).
  static constexpr uint64_t kKeyFromIndex = ~uint64_t{0};
  void add(uint64_t page_index, const std::byte* page, uint64_t cache_key = kKeyFromIndex,
           bool may_insert = true);

  size_t entry_count() const { return entries_; }
  bool full() const { return entries_ == max_pages_; }

  // Packs the batch. Returns the body to send (valid until the next begin), empty when every
  // page was skipped. counts() then describes the finished batch.
  BatchView finish();
  const PageCounts& counts() const { return counts_; }
  // The finished batch's placed runs (contiguous pages merged), in page order.
  std::span<const Placement> placements() const { return placements_; }
  // Guest bytes given to zstd and nanoseconds spent compressing them, for the last batch.
  uint64_t compressed_input_bytes() const { return compressed_in_; }
  uint64_t compress_ns() const { return compress_ns_; }

 private:
  void append_entry(uint64_t page_index, uint32_t len, PageKind kind, uint8_t flags);
  void append_raw(std::byte* dst, const std::byte* page);  // copy, or reference (zero copy)
  // Whether a raw page is placed: when placing, and while compressing only if it looks
  // incompressible.
  bool place_page(const std::byte* page) const;
  // A page written by one-sided write: a kPlaced entry, its run merged with the last one.
  void emit_placed(uint64_t page_index, const std::byte* page, uint8_t flags);
  // A raw page: placed (entry only) when place_page(), else stored in the payload.
  void emit_raw(uint64_t page_index, std::byte* dst, const std::byte* page, uint8_t flags);
  // Zero copy while compressing: the payload in one piece, the run itself or staging_.
  const std::byte* gather_runs();

  CodecConfig config_;
  size_t page_size_;
  size_t max_pages_;
  PageCache cache_;
  ZstdCompressor zstd_;

  std::vector<std::byte> out_;      // header | payload | entries
  std::vector<std::byte> staging_;  // uncompressed payload when compressing
  std::vector<std::byte> entry_buf_;
  std::vector<std::byte> snapshot_;  // one page
  // Zero-copy raw pages: runs of guest memory in payload order, then the gather list.
  std::vector<std::span<const std::byte>> runs_;
  std::vector<std::span<const std::byte>> segments_;
  bool zero_copy_ = false;
  bool place_ = false;
  std::vector<Placement> placements_;

  uint32_t region_id_ = 0;
  uint32_t round_ = 0;
  BatchPolicy policy_;
  bool compress_ = false;
  size_t entries_ = 0;
  size_t payload_len_ = 0;
  PageCounts counts_;
  uint64_t raw_in_batch_ = 0;
  uint64_t compressed_in_ = 0;
  uint64_t compress_ns_ = 0;
};

}  // namespace ramshift::pipeline
