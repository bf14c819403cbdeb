#include "ramshift/pipeline/checksum.h"

#include <gtest/gtest.h>

#include <cstring>
#include <string>
#include <vector>

namespace ramshift::pipeline {
namespace {

std::span<const std::byte> bytes_of(const std::string& s) {
  return {reinterpret_cast<const std::byte*>(s.data()), s.size()};
}

// Frames carry ISA-L's crc32_iscsi with seed 0 and no final inversion (docs/protocol.md);
// with the usual pre- and post-inversion it is the standard CRC32C check value.
TEST(Checksum, Crc32cIsCastagnoliWithoutInversion) {
  EXPECT_EQ(~crc32c(bytes_of("123456789"), ~0u), 0xE3069283u);
  EXPECT_EQ(crc32c(bytes_of("123456789")), 0x58E3FA20u);  // what the wire carries
  // Chained pieces give the CRC of the whole.
  EXPECT_EQ(crc32c(bytes_of("6789"), crc32c(bytes_of("12345"))), 0x58E3FA20u);
}

// The bridge hashes a channel in whatever pieces QEMU's socket delivers: the receiving side
// sees other piece boundaries, and both must agree.
TEST(Checksum, StreamHashIgnoresPieceBoundaries) {
  std::string text;
  for (int i = 0; i < 5000; ++i) text += std::to_string(i * 7919);
  StreamHash a, b;
  a.update(bytes_of(text));
  for (size_t off = 0; off < text.size(); off += 13) b.update(bytes_of(text.substr(off, 13)));
  EXPECT_EQ(a.digest(), page_hash(bytes_of(text)));
  EXPECT_EQ(b.digest(), a.digest());
  StreamHash c;
  c.update(bytes_of(text.substr(1)));
  EXPECT_NE(c.digest(), a.digest());
}

// A destination that starts zero-filled agrees with a source whose memory is zeros (round 0
// skips zero pages), including a last page cut short; one changed byte anywhere fails the
// comparison with the region and the chunk's offset.
TEST(Checksum, MemoryDigestFindsTheChangedChunk) {
  const size_t page = 4096, chunk_pages = 4;
  const std::vector<uint64_t> sizes{16 * page, 3 * page + 100};
  std::vector<std::vector<std::byte>> src{std::vector<std::byte>(16 * page),
                                          std::vector<std::byte>(4 * page)};
  MemoryDigest source(sizes, page, chunk_pages, false), dest(sizes, page, chunk_pages, true);
  for (uint32_t r = 0; r < 2; ++r)
    for (uint64_t p = 0; p < (sizes[r] + page - 1) / page; ++p) source.update_page(r, p, src[r]);
  EXPECT_TRUE(dest.compare(source.chunk_hashes(), {"ram", "rom"}).is_ok());

  src[0][9 * page + 17] = std::byte{1};
  source.update_page(0, 9, src[0]);
  Status s = dest.compare(source.chunk_hashes(), {"ram", "rom"});
  ASSERT_EQ(s.code(), ErrorCode::kCorrupt);
  EXPECT_NE(s.message().find("ram differs from the source in 1 of 4 chunks"), std::string::npos)
      << s.message();
  EXPECT_NE(s.message().find("offset 32768"), std::string::npos) << s.message();

  // A byte past the region's exact end is not part of the guest.
  src[0][9 * page + 17] = std::byte{0};
  source.update_page(0, 9, src[0]);
  src[1][3 * page + 200] = std::byte{5};
  source.update_page(1, 3, src[1]);
  EXPECT_TRUE(dest.compare(source.chunk_hashes(), {"ram", "rom"}).is_ok());
  EXPECT_EQ(dest.compare({{1}}, {"ram"}).code(), ErrorCode::kProtocol);
}

}  // namespace
}  // namespace ramshift::pipeline
