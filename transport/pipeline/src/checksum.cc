#include "ramshift/pipeline/checksum.h"

#include <fmt/format.h>
#include <isa-l/crc.h>
#include <xxh_x86dispatch.h>

#include <algorithm>

#include "ramshift/base/byte_order.h"

namespace ramshift::pipeline {

uint32_t crc32c(std::span<const std::byte> data, uint32_t seed) {
  // crc32_iscsi takes an int length; feed it at most 1 GiB at a time.
  constexpr size_t kMaxPiece = size_t{1} << 30;
  uint32_t crc = seed;
  auto* p = reinterpret_cast<unsigned char*>(const_cast<std::byte*>(data.data()));
  size_t left = data.size();
  while (left > 0) {
    size_t n = std::min(left, kMaxPiece);
    crc = crc32_iscsi(p, static_cast<int>(n), crc);
    p += n;
    left -= n;
  }
  return crc;
}

uint64_t page_hash(std::span<const std::byte> data) {
  return XXH3_64bits_dispatch(data.data(), data.size());
}

struct StreamHash::State {
  XXH3_state_t* xxh;
};

StreamHash::StreamHash() : state_(new State{XXH3_createState()}) {
  // Allocation failure of 600 bytes is not recoverable anywhere else either.
  if (state_->xxh == nullptr) std::abort();
  XXH3_64bits_reset(state_->xxh);
}

StreamHash::~StreamHash() {
  XXH3_freeState(state_->xxh);
  delete state_;
}

void StreamHash::update(std::span<const std::byte> data) {
  XXH3_64bits_update_dispatch(state_->xxh, data.data(), data.size());
}

uint64_t StreamHash::digest() const { return XXH3_64bits_digest(state_->xxh); }

MemoryDigest::MemoryDigest(const std::vector<uint64_t>& region_bytes, size_t page_size,
                           size_t chunk_pages, bool zero_filled)
    : page_size_(page_size), chunk_pages_(chunk_pages), bytes_(region_bytes) {
  std::vector<std::byte> zeros(zero_filled ? page_size : 0);
  const uint64_t zero_hash = zero_filled ? page_hash(zeros) : 0;
  for (uint64_t b : region_bytes) {
    pages_.emplace_back((b + page_size - 1) / page_size, zero_hash);
    if (zero_filled && b % page_size)
      pages_.back().back() = page_hash({zeros.data(), b % page_size});
  }
}

std::vector<std::vector<uint64_t>> MemoryDigest::chunk_hashes() const {
  std::vector<std::vector<uint64_t>> out;
  std::vector<std::byte> le(chunk_pages_ * 8);
  for (const auto& pages : pages_) {
    auto& chunks = out.emplace_back();
    for (size_t first = 0; first < pages.size(); first += chunk_pages_) {
      size_t n = std::min(chunk_pages_, pages.size() - first);
      for (size_t i = 0; i < n; ++i) store_le<uint64_t>(le.data() + 8 * i, pages[first + i]);
      chunks.push_back(page_hash({le.data(), n * 8}));
    }
  }
  return out;
}

Status MemoryDigest::compare(const std::vector<std::vector<uint64_t>>& theirs,
                             const std::vector<std::string>& names) const {
  auto mine = chunk_hashes();
  if (theirs.size() != mine.size())
    return Status(ErrorCode::kProtocol,
                  fmt::format("digest covers {} regions, expected {}", theirs.size(), mine.size()));
  for (size_t r = 0; r < mine.size(); ++r) {
    if (theirs[r].size() != mine[r].size())
      return Status(ErrorCode::kProtocol,
                    fmt::format("digest of region {} has {} chunks, expected {}", r,
                                theirs[r].size(), mine[r].size()));
    size_t bad = 0, first_bad = 0;
    for (size_t c = 0; c < mine[r].size(); ++c)
      if (mine[r][c] != theirs[r][c] && bad++ == 0) first_bad = c;
    if (bad)
      return Status(
          ErrorCode::kCorrupt,
          fmt::format("verification failed: region {} differs from the source in {} of {} "
                      "chunks of {} bytes, the first at offset {}",
                      r < names.size() ? names[r] : std::to_string(r), bad, mine[r].size(),
                      chunk_bytes(), uint64_t{first_bad} * chunk_bytes()));
  }
  return Status::ok();
}

}  // namespace ramshift::pipeline
