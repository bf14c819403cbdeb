#include "ramshift/pipeline/checksum.h"

#include <isa-l/crc.h>

#include <algorithm>
#include <climits>

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

std::vector<uint32_t> memory_digest(std::span<const std::byte> memory) {
  std::vector<uint32_t> out;
  out.reserve((memory.size() + kDigestChunkBytes - 1) / kDigestChunkBytes);
  for (size_t off = 0; off < memory.size(); off += kDigestChunkBytes) {
    size_t n = std::min(kDigestChunkBytes, memory.size() - off);
    out.push_back(crc32c(memory.subspan(off, n)));
  }
  return out;
}

}  // namespace ramshift::pipeline
