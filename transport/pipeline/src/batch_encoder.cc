#include "ramshift/pipeline/batch_encoder.h"

#include <chrono>
#include <cstring>

#include "ramshift/base/byte_order.h"
#include "ramshift/pipeline/entropy.h"
#include "ramshift/pipeline/xbzrle.h"
#include "ramshift/pipeline/zero_page.h"

namespace ramshift::pipeline {

BatchEncoder::BatchEncoder(const CodecConfig& config, size_t page_size, size_t max_pages,
                           size_t cache_bytes)
    : config_(config),
      page_size_(page_size),
      max_pages_(max_pages),
      cache_(codec_uses_xbzrle(config.mode) ? cache_bytes : 0, page_size),
      zstd_(config.zstd_level) {
  size_t payload_max = page_size * max_pages;
  out_.resize(kBatchHeaderBytes + std::max(payload_max, ZstdCompressor::bound(payload_max)));
  staging_.resize(payload_max);
  entry_buf_.resize(max_pages * kPageEntryBytes);
  snapshot_.resize(page_size);
  runs_.reserve(max_pages);
  segments_.reserve(max_pages + 2);
}

void BatchEncoder::begin(uint32_t region_id, uint32_t round, const BatchPolicy& policy) {
  region_id_ = region_id;
  round_ = round;
  policy_ = policy;
  compress_ = policy.compress && codec_may_compress(config_.mode);
  zero_copy_ = policy.zero_copy && !policy.cache_insert;
  // While compressing, only pages that would not compress are placed (place_page()).
  place_ = policy.place_raw && (!policy.cache_insert || policy.stable_pages);
  runs_.clear();
  placements_.clear();
  entries_ = 0;
  payload_len_ = 0;
  counts_ = {};
  raw_in_batch_ = 0;
  compressed_in_ = 0;
  compress_ns_ = 0;
}

void BatchEncoder::append_entry(uint64_t page_index, uint32_t len, PageKind kind, uint8_t flags) {
  std::byte* e = entry_buf_.data() + entries_ * kPageEntryBytes;
  store_le<uint64_t>(e, page_index);
  store_le<uint32_t>(e + 8, len);
  e[12] = static_cast<std::byte>(kind);
  e[13] = static_cast<std::byte>(flags);
  store_le<uint16_t>(e + 14, 0);
  ++entries_;
}

void BatchEncoder::append_raw(std::byte* dst, const std::byte* page) {
  if (!zero_copy_) {
    std::memcpy(dst, page, page_size_);
    return;
  }
  if (!runs_.empty() && runs_.back().data() + runs_.back().size() == page)
    runs_.back() = {runs_.back().data(), runs_.back().size() + page_size_};
  else
    runs_.emplace_back(page, page_size_);
}

bool BatchEncoder::place_page(const std::byte* page) const {
  // Compressing: text and structures go to zstd, random-looking pages go by one-sided write
  // (zstd would spend CPU on them for nothing, and the write costs the sender no copy).
  return place_ && (!compress_ || looks_incompressible(page, page_size_));
}

void BatchEncoder::emit_placed(uint64_t page_index, const std::byte* page, uint8_t flags) {
  Placement* last = placements_.empty() ? nullptr : &placements_.back();
  if (last && last->first_page + last->bytes / page_size_ == page_index &&
      last->memory + last->bytes == page)
    last->bytes += page_size_;
  else
    placements_.push_back({page_index, page, page_size_});
  append_entry(page_index, 0, PageKind::kPlaced, flags);
  ++counts_.placed;
}

void BatchEncoder::emit_raw(uint64_t page_index, std::byte* dst, const std::byte* page,
                            uint8_t flags) {
  if (place_page(page)) return emit_placed(page_index, page, flags);
  append_raw(dst, page);
  payload_len_ += page_size_;
  append_entry(page_index, static_cast<uint32_t>(page_size_), PageKind::kRaw, flags);
  ++raw_in_batch_;
}

void BatchEncoder::add(uint64_t page_index, const std::byte* page, uint64_t cache_key,
                       bool may_insert) {
  // Pages are written to the staging buffer when compressing, else straight to the output.
  std::byte* payload = compress_ ? staging_.data() : out_.data() + kBatchHeaderBytes;
  std::byte* dst = payload + payload_len_;
  const uint64_t key =
      cache_key == kKeyFromIndex ? PageCache::make_key(region_id_, page_index) : cache_key;
  // Zero-copy batches leave the cache alone: a cached page would need a snapshot.
  const bool use_cache = cache_.enabled() && !zero_copy_;

  if (!codec_detects_zero(config_.mode)) {
    emit_raw(page_index, dst, page, 0);
    return;
  }
  if (is_zero(page, page_size_)) {
    if (policy_.skip_zero) {
      ++counts_.zero_unsent;
      return;
    }
    uint8_t flags = 0;
    if (use_cache && ((policy_.cache_insert && may_insert) || cache_.find(key))) {
      std::memset(cache_.claim(key), 0, page_size_);
      flags = kEntryCacheInsert;
    }
    append_entry(page_index, 0, PageKind::kZero, flags);
    ++counts_.zero;
    return;
  }
  if (use_cache) {
    if (std::byte* old = cache_.find(key)) {
      std::memcpy(snapshot_.data(), page, page_size_);
      // Insist on saving a quarter of the page; otherwise raw (and maybe zstd) does better.
      int64_t n = xbzrle::encode(old, snapshot_.data(), page_size_,
                                 std::span<std::byte>(dst, page_size_ - page_size_ / 4));
      if (n < 0) std::memcpy(dst, snapshot_.data(), page_size_);
      std::memcpy(old, snapshot_.data(), page_size_);
      if (n >= 0) {
        payload_len_ += static_cast<size_t>(n);
        append_entry(page_index, static_cast<uint32_t>(n), PageKind::kXbzrle, kEntryCacheInsert);
        ++counts_.xbzrle;
      } else if (place_page(page)) {  // stable pages: placed bytes = the snapshot just cached
        emit_placed(page_index, page, kEntryCacheInsert);
      } else {
        payload_len_ += page_size_;
        append_entry(page_index, static_cast<uint32_t>(page_size_), PageKind::kRaw,
                     kEntryCacheInsert);
        ++raw_in_batch_;
      }
      return;
    }
  }
  const bool insert = use_cache && policy_.cache_insert && may_insert;
  if (insert && place_page(page)) {
    cache_.insert(key, page);  // stable pages: what the placement carries
    emit_placed(page_index, page, kEntryCacheInsert);
    return;
  }
  if (insert) {
    append_raw(dst, page);
    cache_.insert(key, dst);  // from the snapshot we send, never from live memory
    payload_len_ += page_size_;
    append_entry(page_index, static_cast<uint32_t>(page_size_), PageKind::kRaw, kEntryCacheInsert);
    ++raw_in_batch_;
    return;
  }
  emit_raw(page_index, dst, page, 0);
}

const std::byte* BatchEncoder::gather_runs() {
  // One run (a batch without zero pages) is compressed where it lies: copying it into
  // staging_ first was a copy of every page zstd compresses.
  if (runs_.size() == 1) return runs_.front().data();
  size_t off = 0;
  for (const auto& run : runs_) {
    std::memcpy(staging_.data() + off, run.data(), run.size());
    off += run.size();
  }
  return staging_.data();
}

BatchView BatchEncoder::finish() {
  if (entries_ == 0) return {};
  std::byte* h = out_.data();
  std::byte* payload = h + kBatchHeaderBytes;
  size_t stored = payload_len_;
  uint8_t flags = 0;
  if (compress_ && payload_len_ > 0) {
    auto t0 = std::chrono::steady_clock::now();
    const std::byte* src = zero_copy_ ? gather_runs() : staging_.data();
    // Keep the result only if it saves at least 1/32 of the payload (≈ 3%): below that the
    // receiver's decompression costs more than the link time it saves. The output buffer
    // is given its full compressBound: zstd takes a slower, bounds-checked path otherwise.
    size_t budget = payload_len_ - payload_len_ / 32;
    size_t n = zstd_.compress(std::span<const std::byte>(src, payload_len_),
                              std::span<std::byte>(payload, ZstdCompressor::bound(payload_len_)));
    if (n > budget) n = 0;
    compress_ns_ = static_cast<uint64_t>(
        std::chrono::duration_cast<std::chrono::nanoseconds>(std::chrono::steady_clock::now() - t0)
            .count());
    compressed_in_ = payload_len_;
    if (n > 0) {
      stored = n;
      flags |= kBatchCompressed;
    } else if (!zero_copy_) {
      std::memcpy(payload, staging_.data(), payload_len_);
    }
  }
  if (flags & kBatchCompressed)
    counts_.zstd += raw_in_batch_;
  else
    counts_.raw += raw_in_batch_;

  store_le<uint32_t>(h, region_id_);
  store_le<uint32_t>(h + 4, round_);
  store_le<uint16_t>(h + 8, static_cast<uint16_t>(entries_));
  h[10] = static_cast<std::byte>(flags);
  h[11] = std::byte{0};
  store_le<uint32_t>(h + 12, static_cast<uint32_t>(payload_len_));
  store_le<uint32_t>(h + 16, static_cast<uint32_t>(stored));
  store_le<uint32_t>(h + 20, 0);
  segments_.clear();
  const size_t entry_bytes = entries_ * kPageEntryBytes;
  if (zero_copy_ && !(flags & kBatchCompressed)) {
    // header | runs of guest memory | entries (copied behind the header in out_)
    std::memcpy(payload, entry_buf_.data(), entry_bytes);
    segments_.emplace_back(h, kBatchHeaderBytes);
    segments_.insert(segments_.end(), runs_.begin(), runs_.end());
    segments_.emplace_back(payload, entry_bytes);
  } else {
    std::memcpy(payload + stored, entry_buf_.data(), entry_bytes);
    segments_.emplace_back(h, kBatchHeaderBytes + stored + entry_bytes);
  }
  return {segments_, kBatchHeaderBytes + stored + entry_bytes};
}

}  // namespace ramshift::pipeline
