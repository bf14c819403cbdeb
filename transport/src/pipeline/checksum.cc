#include "ramshift/pipeline/checksum.h"

#include <fmt/format.h>
#include <isa-l/crc.h>

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

MemoryDigest::MemoryDigest(const std::vector<uint64_t>& region_bytes, size_t page_size,
                           size_t chunk_pages, bool zero_filled)
    : page_size_(page_size), chunk_pages_(chunk_pages), bytes_(region_bytes) {
  std::vector<std::byte> zeros(zero_filled ? page_size : 0);
  const uint32_t zero_crc = zero_filled ? crc32c(zeros) : 0;
  for (uint64_t b : region_bytes) {
    pages_.emplace_back((b + page_size - 1) / page_size, zero_crc);
    if (zero_filled && b % page_size) pages_.back().back() = crc32c({zeros.data(), b % page_size});
  }
}

std::vector<std::vector<uint32_t>> MemoryDigest::chunk_crcs() const {
  std::vector<std::vector<uint32_t>> out;
  std::vector<std::byte> le(chunk_pages_ * 4);
  for (const auto& pages : pages_) {
    auto& chunks = out.emplace_back();
    for (size_t first = 0; first < pages.size(); first += chunk_pages_) {
      size_t n = std::min(chunk_pages_, pages.size() - first);
      for (size_t i = 0; i < n; ++i) store_le<uint32_t>(le.data() + 4 * i, pages[first + i]);
      chunks.push_back(crc32c({le.data(), n * 4}));
    }
  }
  return out;
}

Status MemoryDigest::compare(const std::vector<std::vector<uint32_t>>& theirs,
                             const std::vector<std::string>& names) const {
  auto mine = chunk_crcs();
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
