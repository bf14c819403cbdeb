#include "ramshift/pipeline/xbzrle.h"

#include <gtest/gtest.h>

#include <cstring>
#include <random>
#include <vector>

#include "ramshift/guest/pattern.h"

namespace ramshift::pipeline {
namespace {

constexpr size_t kPage = 4096;
using Page = std::vector<std::byte>;

Page make(guest::Pattern p, uint64_t seed) {
  Page page(kPage);
  guest::fill_pattern(page, p, seed);
  return page;
}

// Encodes new against old, decodes onto a copy of old, and checks the result is new.
int64_t round_trip(const Page& old_page, const Page& new_page) {
  std::vector<std::byte> delta(kPage);
  int64_t n = xbzrle::encode(old_page.data(), new_page.data(), kPage, delta);
  if (n < 0) return n;
  Page out = old_page;
  EXPECT_TRUE(xbzrle::decode({delta.data(), static_cast<size_t>(n)}, out).is_ok());
  EXPECT_EQ(std::memcmp(out.data(), new_page.data(), kPage), 0);
  return n;
}

TEST(Xbzrle, UnchangedPageIsAnEmptyDelta) {
  Page a = make(guest::Pattern::kText, 1);
  EXPECT_EQ(round_trip(a, a), 0);
}

TEST(Xbzrle, OneByteChangedCostsAFewBytes) {
  for (size_t at : {size_t{0}, size_t{1}, size_t{31}, size_t{32}, size_t{2048}, kPage - 1}) {
    Page a = make(guest::Pattern::kRandom, 2);
    Page b = a;
    b[at] ^= std::byte{0x5a};
    int64_t n = round_trip(a, b);
    EXPECT_GE(n, 3) << at;
    EXPECT_LE(n, 5) << at;  // two ULEB128 lengths (<= 2 bytes each) + 1 byte
  }
}

TEST(Xbzrle, ManyShapesRoundTrip) {
  std::mt19937_64 rng(7);
  for (int trial = 0; trial < 200; ++trial) {
    Page a = make(static_cast<guest::Pattern>(trial % 4), trial);
    Page b = a;
    int edits = trial % 50;
    for (int e = 0; e < edits; ++e) {
      size_t at = rng() % kPage;
      size_t len = 1 + rng() % 40;
      for (size_t i = at; i < std::min(kPage, at + len); ++i) b[i] = static_cast<std::byte>(rng());
    }
    round_trip(a, b);
  }
}

TEST(Xbzrle, AlternatingBytesStillDecode) {
  Page a(kPage, std::byte{0});
  Page b = a;
  for (size_t i = 0; i < kPage; i += 2) b[i] = std::byte{1};
  round_trip(a, b);
}

TEST(Xbzrle, RandomRewriteDoesNotFitAndSaysSo) {
  Page a = make(guest::Pattern::kRandom, 3);
  Page b = make(guest::Pattern::kRandom, 4);
  std::vector<std::byte> delta(kPage - kPage / 4);
  EXPECT_EQ(xbzrle::encode(a.data(), b.data(), kPage, delta), -1);
}

TEST(Xbzrle, DecodeRejectsCorruptDeltas) {
  Page page(kPage, std::byte{0});
  auto reject = [&](std::vector<uint8_t> bytes, const char* what) {
    std::vector<std::byte> d(bytes.size());
    std::memcpy(d.data(), bytes.data(), bytes.size());
    Status s = xbzrle::decode(d, page);
    EXPECT_FALSE(s.is_ok()) << what;
    EXPECT_EQ(s.code(), ErrorCode::kCorrupt) << what;
  };
  reject({0x80}, "truncated length");
  reject({0x00}, "missing changed run");
  reject({0x00, 0x00}, "empty changed run");
  reject({0x00, 0x05, 1, 2}, "changed run longer than the delta");
  reject({0x80, 0x20, 0x01, 0xff}, "unchanged run of 4096 leaves no room");
  reject({0xff, 0xff, 0xff, 0xff, 0x7f, 0x01, 0x00}, "length overflowing 32 bits");
  reject({0x00, 0x81, 0x20}, "changed run past the page end");
}

}  // namespace
}  // namespace ramshift::pipeline
