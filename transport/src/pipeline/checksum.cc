#include "ramshift/pipeline/checksum.h"

#include <fmt/format.h>
#include <isa-l/crc.h>

#include <algorithm>

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

MemoryDigest::MemoryDigest(const std::vector<uint64_t>& region_bytes, size_t chunk_bytes,
                           bool zero_filled)
    : chunk_bytes_(chunk_bytes), bytes_(region_bytes) {
  std::vector<std::byte> zeros(zero_filled ? chunk_bytes : 0);
  const uint32_t zero_crc = zero_filled ? crc32c(zeros) : 0;
  for (uint64_t b : region_bytes) {
    uint64_t n = (b + chunk_bytes - 1) / chunk_bytes;
    crcs_.emplace_back(n, zero_crc);
    if (zero_filled && b % chunk_bytes)
      crcs_.back().back() = crc32c({zeros.data(), b % chunk_bytes});
  }
}

void MemoryDigest::update(uint32_t region, uint64_t chunk, std::span<const std::byte> memory) {
  uint64_t start = chunk * chunk_bytes_;
  uint64_t len = std::min<uint64_t>(chunk_bytes_, bytes_[region] - start);
  crcs_[region][chunk] = crc32c(memory.subspan(start, len));
}

void MemoryDigest::update_all(uint32_t region, std::span<const std::byte> memory) {
  for (uint64_t c = 0; c < crcs_[region].size(); ++c) update(region, c, memory);
}

Status MemoryDigest::compare(const std::vector<std::vector<uint32_t>>& theirs,
                             const std::vector<std::string>& names) const {
  if (theirs.size() != crcs_.size())
    return Status(ErrorCode::kProtocol, fmt::format("digest covers {} regions, expected {}",
                                                    theirs.size(), crcs_.size()));
  for (size_t r = 0; r < crcs_.size(); ++r) {
    if (theirs[r].size() != crcs_[r].size())
      return Status(ErrorCode::kProtocol,
                    fmt::format("digest of region {} has {} chunks, expected {}", r,
                                theirs[r].size(), crcs_[r].size()));
    size_t bad = 0, first_bad = 0;
    for (size_t c = 0; c < crcs_[r].size(); ++c)
      if (crcs_[r][c] != theirs[r][c] && bad++ == 0) first_bad = c;
    if (bad)
      return Status(
          ErrorCode::kCorrupt,
          fmt::format("verification failed: region {} differs from the source in {} of {} "
                      "chunks of {} bytes, the first at offset {}",
                      r < names.size() ? names[r] : std::to_string(r), bad, crcs_[r].size(),
                      chunk_bytes_, uint64_t{first_bad} * chunk_bytes_));
  }
  return Status::ok();
}

}  // namespace ramshift::pipeline
