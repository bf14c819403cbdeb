// Page batches: every codec round-trips every page shape; sender and receiver caches stay
// in step through evictions; malformed batches are rejected without touching memory.
#include <gtest/gtest.h>

#include <cstring>
#include <random>
#include <vector>

#include "ramshift/base/byte_order.h"
#include "ramshift/guest/pattern.h"
#include "ramshift/pipeline/batch_decoder.h"
#include "ramshift/pipeline/batch_encoder.h"
#include "ramshift/pipeline/entropy.h"
#include "ramshift/pipeline/zero_page.h"

namespace ramshift::pipeline {
namespace {

constexpr size_t kPage = 4096;
constexpr size_t kBatch = 32;

// A batch body in one piece, as the receiver gets it from the transport.
std::vector<std::byte> flatten(const BatchView& v) {
  std::vector<std::byte> out;
  for (auto s : v.segments) out.insert(out.end(), s.begin(), s.end());
  EXPECT_EQ(out.size(), v.bytes);
  return out;
}

struct Memory {
  explicit Memory(size_t pages) : bytes(pages * kPage) {}
  std::vector<std::byte> bytes;
  std::byte* page(size_t i) { return bytes.data() + i * kPage; }
  size_t pages() const { return bytes.size() / kPage; }
};

// Sends every page of `src` in batches (as a queue would) and applies them to `dst`.
PageCounts transfer(BatchEncoder& enc, BatchDecoder& dec, Memory& src, Memory& dst, uint32_t round,
                    bool compress, bool zero_copy = false) {
  PageCounts total;
  std::span<std::byte> regions[] = {dst.bytes};
  for (size_t first = 0; first < src.pages(); first += kBatch) {
    enc.begin(0, round, {round == 0, compress, round > 0, zero_copy});
    for (size_t p = first; p < std::min(src.pages(), first + kBatch); ++p) enc.add(p, src.page(p));
    auto view = enc.finish();
    total += enc.counts();
    if (view.empty()) continue;
    auto r = dec.apply(flatten(view), regions);
    EXPECT_TRUE(r.is_ok()) << r.status().message();
  }
  return total;
}

class BatchCodecTest : public ::testing::TestWithParam<CodecMode> {};

TEST_P(BatchCodecTest, EveryPatternArrivesExactlyOverSeveralRounds) {
  CodecConfig cfg;
  cfg.mode = GetParam();
  for (auto pattern : {guest::Pattern::kZero, guest::Pattern::kRandom, guest::Pattern::kText,
                       guest::Pattern::kMixed}) {
    Memory src(256), dst(256);
    guest::fill_pattern(src.bytes, pattern, 11);
    BatchEncoder enc(cfg, kPage, kBatch, 1 << 20);
    BatchDecoder dec(kPage, kBatch, codec_uses_xbzrle(cfg.mode) ? 1 << 20 : 0);
    std::mt19937_64 rng(5);
    for (uint32_t round = 0; round < 4; ++round) {
      transfer(enc, dec, src, dst, round, codec_may_compress(cfg.mode));
      ASSERT_EQ(std::memcmp(src.bytes.data(), dst.bytes.data(), src.bytes.size()), 0)
          << codec_name(cfg.mode) << " " << guest::pattern_name(pattern) << " round " << round;
      // The guest writes: one byte in some pages, whole rewrites of others, zeroes a few.
      for (int i = 0; i < 64; ++i) {
        size_t p = rng() % src.pages();
        switch (rng() % 3) {
          case 0:
            src.page(p)[rng() % kPage] ^= std::byte{1};
            break;
          case 1:
            guest::fill_pattern({src.page(p), kPage}, guest::Pattern::kText, rng());
            break;
          default:
            std::memset(src.page(p), 0, kPage);
            break;
        }
      }
    }
  }
}

INSTANTIATE_TEST_SUITE_P(AllCodecs, BatchCodecTest,
                         ::testing::Values(CodecMode::kNone, CodecMode::kZero, CodecMode::kXbzrle,
                                           CodecMode::kZstd, CodecMode::kXbzrleZstd,
                                           CodecMode::kAuto),
                         [](const auto& param_info) {
                           std::string n = codec_name(param_info.param);
                           for (auto& c : n)
                             if (c == '+') c = '_';
                           return n;
                         });

TEST(Batch, Round0SkipsZeroPagesAndLaterRoundsUseDeltas) {
  CodecConfig cfg;
  cfg.mode = CodecMode::kXbzrle;
  Memory src(64), dst(64);
  guest::fill_pattern(src.bytes, guest::Pattern::kMixed, 3);
  BatchEncoder enc(cfg, kPage, kBatch, 1 << 20);
  BatchDecoder dec(kPage, kBatch, 1 << 20);
  PageCounts r0 = transfer(enc, dec, src, dst, 0, false);
  EXPECT_GT(r0.zero_unsent, 0u);  // skipped, not sent: the destination is zero already
  EXPECT_EQ(r0.zero, 0u);
  EXPECT_EQ(r0.xbzrle, 0u);
  transfer(enc, dec, src, dst, 1, false);  // fills the caches
  for (size_t p = 0; p < src.pages(); ++p) src.page(p)[100] ^= std::byte{0xff};
  PageCounts r2 = transfer(enc, dec, src, dst, 2, false);
  EXPECT_EQ(r2.xbzrle, src.pages());
  EXPECT_EQ(std::memcmp(src.bytes.data(), dst.bytes.data(), src.bytes.size()), 0);
}

TEST(Batch, ZeroCopyBatchesPointIntoGuestMemoryAndDecodeTheSame) {
  for (auto mode : {CodecMode::kNone, CodecMode::kZero, CodecMode::kAuto}) {
    CodecConfig cfg;
    cfg.mode = mode;
    Memory src(128), dst(128);
    guest::fill_pattern(src.bytes, guest::Pattern::kMixed, 4);
    BatchEncoder enc(cfg, kPage, kBatch, 1 << 20);
    BatchDecoder dec(kPage, kBatch, 1 << 20);
    enc.begin(0, 0, {true, false, false, true});
    for (size_t p = 0; p < kBatch; ++p) enc.add(p, src.page(p));
    auto view = enc.finish();
    bool points_into_guest = false;
    for (auto s : view.segments)
      points_into_guest |=
          s.data() >= src.bytes.data() && s.data() < src.bytes.data() + src.bytes.size();
    EXPECT_TRUE(points_into_guest) << codec_name(mode);
    transfer(enc, dec, src, dst, 0, false, /*zero_copy=*/true);
    EXPECT_EQ(std::memcmp(src.bytes.data(), dst.bytes.data(), src.bytes.size()), 0)
        << codec_name(mode);
  }
}

// An image's pages while compressing: zstd reads them where they lie (one run, or several
// gathered around zero pages), a payload of consecutive pages is decompressed in place, and
// a batch zstd cannot shrink still goes out raw, pointing into the guest.
TEST(Batch, ZeroCopyCompressedBatchesArriveExactly) {
  CodecConfig cfg;
  cfg.mode = CodecMode::kZstd;
  for (auto pattern : {guest::Pattern::kText, guest::Pattern::kMixed, guest::Pattern::kRandom}) {
    Memory src(128), dst(128);
    guest::fill_pattern(src.bytes, pattern, 6);
    BatchEncoder enc(cfg, kPage, kBatch, 0);
    BatchDecoder dec(kPage, kBatch, 0);
    PageCounts counts = transfer(enc, dec, src, dst, 0, true, /*zero_copy=*/true);
    EXPECT_EQ(std::memcmp(src.bytes.data(), dst.bytes.data(), src.bytes.size()), 0)
        << guest::pattern_name(pattern);
    if (pattern == guest::Pattern::kRandom) {
      EXPECT_EQ(counts.zstd, 0u);
      EXPECT_GT(counts.raw, 0u);
    } else {
      EXPECT_GT(counts.zstd, 0u) << guest::pattern_name(pattern);
    }
  }
}

TEST(Batch, EntriesOutsideTheBatchChunkAreRejected) {
  CodecConfig cfg;
  cfg.mode = CodecMode::kZero;
  Memory src(2 * kBatch), dst(2 * kBatch);
  guest::fill_pattern(src.bytes, guest::Pattern::kText, 1);
  BatchEncoder enc(cfg, kPage, kBatch, 0);
  enc.begin(0, 0, {});
  enc.add(kBatch - 1, src.page(kBatch - 1));
  enc.add(kBatch, src.page(kBatch));  // the next chunk: a sender must never do this
  std::span<std::byte> regions[] = {dst.bytes};
  BatchDecoder dec(kPage, kBatch, 0);
  auto r = dec.apply(flatten(enc.finish()), regions);
  ASSERT_FALSE(r);
  EXPECT_NE(r.status().message().find("chunk"), std::string::npos) << r.status().message();
}

TEST(Batch, CachesAgreeThroughEvictions) {
  // A cache of 128 slots for 256 pages: every round evicts most of it; both sides
  // must still agree on which pages a delta may refer to.
  CodecConfig cfg;
  cfg.mode = CodecMode::kXbzrle;
  Memory src(256), dst(256);
  guest::fill_pattern(src.bytes, guest::Pattern::kText, 9);
  BatchEncoder enc(cfg, kPage, kBatch, 128 * kPage);
  BatchDecoder dec(kPage, kBatch, 128 * kPage);
  PageCounts all;
  for (uint32_t round = 0; round < 6; ++round) {
    all += transfer(enc, dec, src, dst, round, false);
    ASSERT_EQ(std::memcmp(src.bytes.data(), dst.bytes.data(), src.bytes.size()), 0) << round;
    for (size_t p = 0; p < src.pages(); p += 3) src.page(p)[p % kPage] ^= std::byte{7};
  }
  EXPECT_GT(all.xbzrle, 0u);  // some deltas survived eviction
}

// A valid batch to mutate.
std::vector<std::byte> sample_batch(BatchEncoder& enc, Memory& src) {
  enc.begin(0, 0, {false, false, false});
  for (size_t p = 0; p < 4; ++p) enc.add(p, src.page(p));
  return flatten(enc.finish());
}

TEST(Batch, MalformedBatchesAreRejectedAndMemoryIsUntouched) {
  CodecConfig cfg;
  cfg.mode = CodecMode::kZero;
  Memory src(8), dst(8);
  guest::fill_pattern(src.bytes, guest::Pattern::kText, 1);
  BatchEncoder enc(cfg, kPage, kBatch, 0);
  auto good = sample_batch(enc, src);
  std::span<std::byte> regions[] = {dst.bytes};
  const size_t entries = good.size() - 4 * kPageEntryBytes;
  struct Case {
    const char* what;
    std::function<void(std::vector<std::byte>&)> mutate;
  } cases[] = {
      {"region_id", [](auto& b) { store_le<uint32_t>(b.data(), 1); }},
      {"page_count", [](auto& b) { store_le<uint16_t>(b.data() + 8, 0); }},
      {"page_count", [](auto& b) { store_le<uint16_t>(b.data() + 8, 999); }},
      {"flags", [](auto& b) { b[10] = std::byte{0x80}; }},
      {"reserved", [](auto& b) { b[11] = std::byte{1}; }},
      {"payload_len", [](auto& b) { store_le<uint32_t>(b.data() + 12, 3 * kPage); }},
      {"stored_len", [](auto& b) { store_le<uint32_t>(b.data() + 16, 5); }},
      {"page_index", [=](auto& b) { store_le<uint64_t>(b.data() + entries, 8); }},
      {"page_index", [=](auto& b) { store_le<uint64_t>(b.data() + entries, ~0ull); }},
      {"kind", [=](auto& b) { b[entries + 12] = std::byte{9}; }},
      {"len", [=](auto& b) { store_le<uint32_t>(b.data() + entries + 8, 100); }},
      {"cache", [=](auto& b) { b[entries + 13] = std::byte{kEntryCacheInsert}; }},
      {"xbzrle",
       [=](auto& b) {
         b[entries + 12] = std::byte{2};
         store_le<uint32_t>(b.data() + entries + 8, 4);
       }},
      {"truncated", [](auto& b) { b.resize(b.size() - 1); }},
      {"header only", [](auto& b) { b.resize(10); }},
  };
  for (const auto& c : cases) {
    auto bad = good;
    c.mutate(bad);
    BatchDecoder dec(kPage, kBatch, 0);
    auto r = dec.apply(bad, regions);
    EXPECT_FALSE(r.is_ok()) << c.what;
    EXPECT_TRUE(std::all_of(dst.bytes.begin(), dst.bytes.end(),
                            [](std::byte x) { return x == std::byte{0}; }))
        << c.what << " wrote to memory before rejecting";
  }
  BatchDecoder dec(kPage, kBatch, 0);
  ASSERT_TRUE(dec.apply(good, regions).is_ok());
}

TEST(Batch, CorruptCompressedPayloadIsRejected) {
  CodecConfig cfg;
  cfg.mode = CodecMode::kZstd;
  Memory src(8), dst(8);
  guest::fill_pattern(src.bytes, guest::Pattern::kText, 1);
  BatchEncoder enc(cfg, kPage, kBatch, 0);
  enc.begin(0, 0, {false, true, false});
  for (size_t p = 0; p < 8; ++p) enc.add(p, src.page(p));
  std::vector<std::byte> bad = flatten(enc.finish());
  ASSERT_EQ(static_cast<uint8_t>(bad[10]) & kBatchCompressed, kBatchCompressed);
  for (size_t i = kBatchHeaderBytes; i < kBatchHeaderBytes + 40; ++i) bad[i] ^= std::byte{0x55};
  std::span<std::byte> regions[] = {dst.bytes};
  BatchDecoder dec(kPage, kBatch, 0);
  EXPECT_FALSE(dec.apply(bad, regions).is_ok());
}

TEST(Batch, RandomMutationsNeverCrashOrWriteOutOfBounds) {
  CodecConfig cfg;
  cfg.mode = CodecMode::kXbzrleZstd;
  Memory src(64);
  guest::fill_pattern(src.bytes, guest::Pattern::kMixed, 1);
  BatchEncoder enc(cfg, kPage, kBatch, 1 << 20);
  std::vector<std::vector<std::byte>> bodies;
  for (uint32_t round = 0; round < 3; ++round) {
    enc.begin(0, round, {false, round == 2, true});
    for (size_t p = 0; p < kBatch; ++p) {
      src.page(p)[round] ^= std::byte{1};
      enc.add(p, src.page(p));
    }
    bodies.push_back(flatten(enc.finish()));
  }
  std::mt19937_64 rng(99);
  // Guard pages around the region would be ideal; ASan builds check bounds precisely.
  Memory dst(kBatch);
  std::span<std::byte> regions[] = {dst.bytes};
  int rejected = 0;
  for (int i = 0; i < 3000; ++i) {
    BatchDecoder dec(kPage, kBatch, 1 << 20);
    for (auto body : bodies) {
      int flips = 1 + rng() % 4;
      for (int f = 0; f < flips; ++f)
        body[rng() % body.size()] ^= static_cast<std::byte>(1 << (rng() % 8));
      rejected += !dec.apply(body, regions).is_ok();
    }
  }
  // Header, entry and compressed-payload damage is caught here (raw page bytes are the
  // frame CRC's job); the run itself must not crash or trip a sanitizer.
  EXPECT_GT(rejected, 1000);
}

// Placement (rdma): raw pages leave the batch as kPlaced entries plus merged runs for the
// transport's one-sided writes; the receiver accepts such entries only when it offered
// remote-write memory, and zero pages still travel as markers.
TEST(Batch, PlacedPagesTravelAsRunsAndAreOnlyAcceptedWhenOffered) {
  CodecConfig cfg;
  cfg.mode = CodecMode::kZero;
  Memory src(kBatch), dst(kBatch);
  guest::fill_pattern(src.bytes, guest::Pattern::kRandom, 5);
  std::memset(src.page(3), 0, kPage);  // zero page splits the runs: 0..2, 4..31
  std::memset(dst.page(3), 0x5a, kPage);
  BatchEncoder enc(cfg, kPage, kBatch, 0);
  BatchPolicy policy;
  policy.place_raw = true;
  enc.begin(0, 1, policy);
  for (size_t p = 0; p < kBatch; ++p) enc.add(p, src.page(p));
  auto body = flatten(enc.finish());
  EXPECT_EQ(enc.counts().placed, kBatch - 1);
  EXPECT_EQ(enc.counts().zero, 1u);
  auto runs = enc.placements();
  ASSERT_EQ(runs.size(), 2u);
  EXPECT_EQ(runs[0].first_page, 0u);
  EXPECT_EQ(runs[0].bytes, 3 * kPage);
  EXPECT_EQ(runs[1].first_page, 4u);
  EXPECT_EQ(runs[1].memory, src.page(4));
  EXPECT_EQ(runs[1].bytes, (kBatch - 4) * kPage);
  EXPECT_LT(body.size(), 2 * kPage);  // entries only: no page bytes in the batch

  std::span<std::byte> regions[] = {dst.bytes};
  BatchDecoder refuses(kPage, kBatch, 0);
  auto r = refuses.apply(body, regions);
  ASSERT_FALSE(r.is_ok());
  EXPECT_NE(r.status().message().find("no remote-write memory"), std::string::npos);

  // What the NIC would do, then the batch: every page matches.
  for (const auto& run : runs) std::memcpy(dst.page(run.first_page), run.memory, run.bytes);
  BatchDecoder accepts(kPage, kBatch, 0);
  accepts.allow_placed(true);
  auto ok = accepts.apply(body, regions);
  ASSERT_TRUE(ok.is_ok()) << ok.status().message();
  EXPECT_EQ(ok->counts.placed, kBatch - 1);
  EXPECT_EQ(src.bytes, dst.bytes);

  // Filling the XBZRLE cache from live memory keeps pages in the batch.
  policy.cache_insert = true;
  cfg.mode = CodecMode::kXbzrle;
  BatchEncoder xenc(cfg, kPage, kBatch, 1 << 20);
  xenc.begin(0, 1, policy);
  for (size_t p = 0; p < kBatch; ++p) xenc.add(p, src.page(p));
  (void)xenc.finish();
  EXPECT_EQ(xenc.counts().placed, 0u);
  EXPECT_TRUE(xenc.placements().empty());
}

// Compressing and placing at once: pages that look incompressible go by one-sided write,
// the rest through zstd, and the destination rebuilds every page.
TEST(Batch, CompressingPlacesOnlyTheIncompressiblePages) {
  CodecConfig cfg;
  cfg.mode = CodecMode::kZstd;
  Memory src(kBatch), dst(kBatch);
  guest::fill_pattern(src.bytes, guest::Pattern::kMixed, 11);
  size_t random_pages = 0, text_pages = 0;
  for (size_t p = 0; p < kBatch; ++p) {
    if (is_zero(src.page(p), kPage)) continue;
    (looks_incompressible(src.page(p), kPage) ? random_pages : text_pages)++;
  }
  ASSERT_GT(random_pages, 0u);
  ASSERT_GT(text_pages, 0u);
  BatchEncoder enc(cfg, kPage, kBatch, 0);
  BatchPolicy policy;
  policy.compress = true;
  policy.place_raw = true;
  enc.begin(0, 1, policy);
  for (size_t p = 0; p < kBatch; ++p) enc.add(p, src.page(p));
  auto body = flatten(enc.finish());
  EXPECT_EQ(enc.counts().placed, random_pages);
  EXPECT_EQ(enc.counts().zstd, text_pages);
  EXPECT_LT(body.size(), text_pages * kPage / 2) << "text pages did not compress";
  for (const auto& run : enc.placements())
    std::memcpy(dst.page(run.first_page), run.memory, run.bytes);
  std::span<std::byte> regions[] = {dst.bytes};
  BatchDecoder dec(kPage, kBatch, 0);
  dec.allow_placed(true);
  auto ok = dec.apply(body, regions);
  ASSERT_TRUE(ok.is_ok()) << ok.status().message();
  EXPECT_EQ(src.bytes, dst.bytes);
}

// The sampling test behind it: random bytes look incompressible; text, zeros, repeated
// pointers and small integers do not.
TEST(Entropy, TellsRandomPagesFromCompressibleOnes) {
  Memory m(6);
  guest::fill_pattern(std::span(m.page(0), kPage), guest::Pattern::kRandom, 1);
  guest::fill_pattern(std::span(m.page(1), kPage), guest::Pattern::kText, 2);
  std::memset(m.page(2), 0, kPage);
  for (size_t i = 0; i < kPage; i += 8) {
    uint64_t ptr = 0x00007f3a12340000ull + (i % 256) * 64;
    std::memcpy(m.page(3) + i, &ptr, 8);
  }
  for (size_t i = 0; i < kPage; i += 4) {
    uint32_t v = static_cast<uint32_t>(i * 2654435761u) % 1000;
    std::memcpy(m.page(4) + i, &v, 4);
  }
  EXPECT_TRUE(looks_incompressible(m.page(0), kPage));
  EXPECT_FALSE(looks_incompressible(m.page(1), kPage));
  EXPECT_FALSE(looks_incompressible(m.page(2), kPage));
  EXPECT_FALSE(looks_incompressible(m.page(3), kPage));
  EXPECT_FALSE(looks_incompressible(m.page(4), kPage));
  // Every random page of a large sample, not just a lucky one (4 sigma margin).
  size_t missed = 0;
  for (uint64_t seed = 0; seed < 2000; ++seed) {
    guest::fill_pattern(std::span(m.page(5), kPage), guest::Pattern::kRandom, seed);
    missed += !looks_incompressible(m.page(5), kPage);
  }
  EXPECT_LE(missed, 2u);
}

}  // namespace
}  // namespace ramshift::pipeline
