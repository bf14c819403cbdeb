#include "ramshift/pipeline/batch_decoder.h"

#include <fmt/format.h>

#include <cstring>

#include "ramshift/base/byte_order.h"
#include "ramshift/pipeline/xbzrle.h"

namespace ramshift::pipeline {
namespace {
Status bad(std::string msg) {
  return Status(ErrorCode::kProtocol, "page batch: " + std::move(msg));
}
}  // namespace

BatchDecoder::BatchDecoder(size_t page_size, size_t max_pages, size_t cache_bytes)
    : page_size_(page_size), max_pages_(max_pages), cache_(cache_bytes, page_size) {
  payload_.resize(page_size * max_pages);
  scratch_.resize(page_size);
}

Result<DecodedBatch> BatchDecoder::apply(std::span<const std::byte> body,
                                         std::span<const std::span<std::byte>> regions,
                                         MemoryDigest* digest,
                                         std::span<const uint64_t> cache_keys) {
  if (body.size() < kBatchHeaderBytes)
    return bad(
        fmt::format("{} bytes is shorter than the {}-byte header", body.size(), kBatchHeaderBytes));
  const std::byte* h = body.data();
  DecodedBatch out;
  out.region_id = load_le<uint32_t>(h);
  out.round = load_le<uint32_t>(h + 4);
  const size_t count = load_le<uint16_t>(h + 8);
  const uint8_t flags = static_cast<uint8_t>(h[10]);
  const size_t payload_len = load_le<uint32_t>(h + 12);
  const size_t stored_len = load_le<uint32_t>(h + 16);
  if (h[11] != std::byte{0} || load_le<uint32_t>(h + 20) != 0)
    return bad("reserved header bytes are not zero");
  if (flags & ~kBatchCompressed) return bad(fmt::format("unknown flags 0x{:02x}", flags));
  if (out.region_id >= regions.size())
    return bad(fmt::format("region_id {} but the region table has {} regions", out.region_id,
                           regions.size()));
  if (count == 0 || count > max_pages_)
    return bad(fmt::format("page_count {} outside 1..{}", count, max_pages_));
  if (payload_len > count * page_size_)
    return bad(
        fmt::format("payload_len {} exceeds {} pages of {} bytes", payload_len, count, page_size_));
  const bool compressed = flags & kBatchCompressed;
  if (!compressed && stored_len != payload_len)
    return bad(fmt::format("stored_len {} differs from payload_len {} in an uncompressed batch",
                           stored_len, payload_len));
  if (body.size() != kBatchHeaderBytes + stored_len + count * kPageEntryBytes)
    return bad(fmt::format("body is {} bytes, header implies {}", body.size(),
                           kBatchHeaderBytes + stored_len + count * kPageEntryBytes));

  std::span<std::byte> region = regions[out.region_id];
  const uint64_t region_pages = region.size() / page_size_;
  const std::byte* entries = h + kBatchHeaderBytes + stored_len;

  // Pass 1: every entry is checked before any byte of guest memory changes.
  size_t sum = 0;
  out.chunk = load_le<uint64_t>(entries) / max_pages_;
  // Whether the payload is whole raw pages bound for consecutive pages (no cache copy):
  // then a compressed payload is decompressed straight into guest memory, not into
  // payload_ and copied page by page (a copy of every page the receiver gets).
  bool in_place = compressed;
  uint64_t first_payload_page = 0;
  size_t payload_pages = 0;
  for (size_t i = 0; i < count; ++i) {
    const std::byte* e = entries + i * kPageEntryBytes;
    uint64_t index = load_le<uint64_t>(e);
    uint32_t len = load_le<uint32_t>(e + 8);
    uint8_t kind = static_cast<uint8_t>(e[12]);
    uint8_t eflags = static_cast<uint8_t>(e[13]);
    if (index >= region_pages)
      return bad(fmt::format("entry {}: page_index {} beyond region {} ({} pages)", i, index,
                             out.region_id, region_pages));
    if (!cache_keys.empty() && index >= cache_keys.size())
      return bad(fmt::format("entry {}: page_index {} has no cache key ({} given)", i, index,
                             cache_keys.size()));
    if (index / max_pages_ != out.chunk)
      return bad(fmt::format("entry {}: page {} is outside the batch's chunk {} (pages {}..{})", i,
                             index, out.chunk, out.chunk * max_pages_,
                             (out.chunk + 1) * max_pages_ - 1));
    if (kind >= kPageKindCount) return bad(fmt::format("entry {}: unknown page kind {}", i, kind));
    if ((eflags & ~kEntryCacheInsert) || load_le<uint16_t>(e + 14) != 0)
      return bad(fmt::format("entry {}: unknown flags 0x{:02x} or reserved bits set", i, eflags));
    PageKind k = static_cast<PageKind>(kind);
    if ((k == PageKind::kZero && len != 0) || (k == PageKind::kRaw && len != page_size_) ||
        (k == PageKind::kXbzrle && len >= page_size_) || (k == PageKind::kPlaced && len != 0))
      return bad(fmt::format("entry {}: len {} is invalid for its kind", i, len));
    if (k == PageKind::kPlaced && !allow_placed_)
      return bad(
          fmt::format("entry {}: a placed page, but this session has no remote-write "
                      "memory",
                      i));
    if ((k == PageKind::kXbzrle || (eflags & kEntryCacheInsert)) && !cache_.enabled())
      return bad(fmt::format("entry {}: uses the XBZRLE cache, which this session has not got", i));
    if (len > 0 && in_place) {
      if (payload_pages == 0) first_payload_page = index;
      in_place = k == PageKind::kRaw && !(eflags & kEntryCacheInsert) &&
                 index == first_payload_page + payload_pages;
      ++payload_pages;
    }
    sum += len;
  }
  if (sum != payload_len)
    return bad(fmt::format("entry lengths add up to {}, payload_len says {}", sum, payload_len));

  const std::byte* payload = h + kBatchHeaderBytes;
  in_place = in_place && payload_pages > 0;
  if (write_gate_) RS_RETURN_IF_ERROR(write_gate_(out.region_id, out.chunk));
  if (compressed) {
    // In place, a payload that fails to decompress leaves its pages partly written: the
    // batch fails, and with it the migration, which never commits such memory.
    std::byte* into = in_place ? region.data() + first_payload_page * page_size_ : payload_.data();
    RS_RETURN_IF_ERROR(
        zstd_.decompress({payload, stored_len}, {into, payload_len}).with_context("page batch"));
    payload = into;
  }

  // Pass 2: place the pages.
  size_t off = 0;
  for (size_t i = 0; i < count; ++i) {
    const std::byte* e = entries + i * kPageEntryBytes;
    uint64_t index = load_le<uint64_t>(e);
    uint32_t len = load_le<uint32_t>(e + 8);
    PageKind kind = static_cast<PageKind>(e[12]);
    bool insert = static_cast<uint8_t>(e[13]) & kEntryCacheInsert;
    std::byte* dst = region.data() + index * page_size_;
    uint64_t key = PageCache::make_key(out.region_id, index);
    if (!cache_keys.empty()) key = cache_keys[index];  // index checked in pass 1
    switch (kind) {
      case PageKind::kZero:
        std::memset(dst, 0, page_size_);
        if (insert) std::memset(cache_.claim(key), 0, page_size_);
        ++out.counts.zero;
        break;
      case PageKind::kRaw:
        if (!in_place) std::memcpy(dst, payload + off, page_size_);
        if (insert) cache_.insert(key, dst);
        ++(compressed ? out.counts.zstd : out.counts.raw);
        break;
      case PageKind::kPlaced:  // landed before this batch (ordered one-sided write)
        // Cached as it landed: the sender places only pages it cannot change meanwhile
        // when it also caches them (BatchPolicy::stable_pages).
        if (insert) cache_.insert(key, dst);
        ++out.counts.placed;
        break;
      case PageKind::kXbzrle: {
        std::byte* old = cache_.find(key);
        if (!old)
          return Status(ErrorCode::kCorrupt,
                        fmt::format("page batch entry {}: XBZRLE delta for page {} of region {}, "
                                    "but the cache slot holds another page (caches out of step)",
                                    i, index, out.region_id));
        std::memcpy(scratch_.data(), old, page_size_);
        RS_RETURN_IF_ERROR(
            xbzrle::decode({payload + off, len}, scratch_)
                .with_context(fmt::format("page batch entry {} (page {})", i, index)));
        std::memcpy(dst, scratch_.data(), page_size_);
        if (insert) std::memcpy(old, scratch_.data(), page_size_);
        ++out.counts.xbzrle;
        break;
      }
    }
    if (digest) digest->update_page(out.region_id, index, region);
    off += len;
  }
  return out;
}

}  // namespace ramshift::pipeline
