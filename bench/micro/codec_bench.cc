// Page pipeline micro-benchmarks, each beside the limit it is judged against:
//   BM_Limit_Memcpy / BM_Limit_ReadScan   what any page pipeline on this machine can reach
//   BM_Zero_Detect                        goal >= 10 GB/s
//   BM_Xbzrle_Encode/OneByteDelta         goal >= 2 GB/s
//   BM_Zstd_BatchEncode vs BM_Zstd_Direct goal: within 10% at the same level
//   BM_Crc32c, BM_Batch_Decode            for reference
//   BM_PageDigest/Xxh3 vs /Crc32c         the memory digest's per-page hash, and the CRC32C
//                                         it replaced (run it in the soft-RoCE VM too)
#include <benchmark/benchmark.h>
#include <zstd.h>

#include <cstring>
#include <vector>

#include "ramshift/guest/pattern.h"
#include "ramshift/pipeline/batch_decoder.h"
#include "ramshift/pipeline/batch_encoder.h"
#include "ramshift/pipeline/checksum.h"
#include "ramshift/pipeline/xbzrle.h"
#include "ramshift/pipeline/zero_page.h"

namespace {

using namespace ramshift;
constexpr size_t kPage = 4096;
// Why 64 MiB: far beyond the last-level cache, so figures are memory-bound like a guest's.
constexpr size_t kArena = 64u << 20;

std::vector<std::byte>& arena(guest::Pattern p) {
  static std::vector<std::byte> a[4];
  auto& v = a[static_cast<int>(p)];
  if (v.empty()) {
    v.resize(kArena);
    guest::fill_pattern(v, p, 1);
  }
  return v;
}

void BM_Limit_Memcpy(benchmark::State& state) {
  auto& src = arena(guest::Pattern::kRandom);
  std::vector<std::byte> dst(kArena);
  for (auto _ : state) {
    for (size_t off = 0; off < kArena; off += kPage)
      std::memcpy(dst.data() + off, src.data() + off, kPage);
    benchmark::ClobberMemory();
  }
  state.SetBytesProcessed(static_cast<int64_t>(state.iterations() * kArena));
}
BENCHMARK(BM_Limit_Memcpy)->Unit(benchmark::kMillisecond);

void BM_Limit_ReadScan(benchmark::State& state) {
  auto& src = arena(guest::Pattern::kRandom);
  for (auto _ : state) {
    // An OR-reduction: the compiler vectorises it, so this is the memory's read bandwidth.
    uint64_t acc = 0;
    const auto* p = reinterpret_cast<const uint64_t*>(src.data());
    for (size_t i = 0; i < kArena / 8; ++i) acc |= p[i];
    benchmark::DoNotOptimize(acc);
  }
  state.SetBytesProcessed(static_cast<int64_t>(state.iterations() * kArena));
}
BENCHMARK(BM_Limit_ReadScan)->Unit(benchmark::kMillisecond);

void BM_Zero_Detect(benchmark::State& state) {
  std::vector<std::byte> zero(kArena);  // all-zero pages: the detector must read every byte
  std::memset(zero.data(), 0, kArena);
  for (auto _ : state) {
    size_t n = 0;
    for (size_t off = 0; off < kArena; off += kPage)
      n += pipeline::is_zero(zero.data() + off, kPage);
    benchmark::DoNotOptimize(n);
  }
  state.SetBytesProcessed(static_cast<int64_t>(state.iterations() * kArena));
  state.SetItemsProcessed(static_cast<int64_t>(state.iterations() * (kArena / kPage)));
}
BENCHMARK(BM_Zero_Detect)->Unit(benchmark::kMillisecond);

// Old/new page pairs: the new version differs from the old in one byte per page.
void BM_Xbzrle_Encode_OneByteDelta(benchmark::State& state) {
  auto& old_pages = arena(guest::Pattern::kText);
  std::vector<std::byte> new_pages = old_pages;
  for (size_t off = 0; off < kArena; off += kPage)
    new_pages[off + (off / kPage * 37) % kPage] ^= std::byte{1};
  std::vector<std::byte> out(kPage);
  for (auto _ : state) {
    int64_t total = 0;
    for (size_t off = 0; off < kArena; off += kPage)
      total += pipeline::xbzrle::encode(old_pages.data() + off, new_pages.data() + off, kPage, out);
    benchmark::DoNotOptimize(total);
  }
  state.SetBytesProcessed(static_cast<int64_t>(state.iterations() * kArena));
  state.SetItemsProcessed(static_cast<int64_t>(state.iterations() * (kArena / kPage)));
}
BENCHMARK(BM_Xbzrle_Encode_OneByteDelta)->Unit(benchmark::kMillisecond);

void BM_Xbzrle_Decode_OneByteDelta(benchmark::State& state) {
  auto& text = arena(guest::Pattern::kText);
  std::vector<std::byte> page(text.begin(), text.begin() + kPage), changed = page, delta(kPage);
  changed[1234] ^= std::byte{1};
  int64_t n = pipeline::xbzrle::encode(page.data(), changed.data(), kPage, delta);
  for (auto _ : state) {
    auto s = pipeline::xbzrle::decode({delta.data(), static_cast<size_t>(n)}, page);
    benchmark::DoNotOptimize(s);
  }
  state.SetBytesProcessed(static_cast<int64_t>(state.iterations() * kPage));
}
BENCHMARK(BM_Xbzrle_Decode_OneByteDelta);

void BM_Crc32c(benchmark::State& state) {
  auto& src = arena(guest::Pattern::kRandom);
  for (auto _ : state) benchmark::DoNotOptimize(pipeline::crc32c(src));
  state.SetBytesProcessed(static_cast<int64_t>(state.iterations() * kArena));
}
BENCHMARK(BM_Crc32c)->Unit(benchmark::kMillisecond);

// One hash per 4 KiB page, as pipeline::MemoryDigest computes them: XXH3 (today's digest)
// and the CRC32C it replaced.
template <typename Hash>
void BM_PageDigest(benchmark::State& state, Hash hash) {
  auto& src = arena(guest::Pattern::kRandom);
  for (auto _ : state)
    for (size_t off = 0; off < kArena; off += 4096)
      benchmark::DoNotOptimize(hash(std::span<const std::byte>(src.data() + off, 4096)));
  state.SetBytesProcessed(static_cast<int64_t>(state.iterations() * kArena));
}
BENCHMARK_CAPTURE(BM_PageDigest, Xxh3, [](std::span<const std::byte> p) {
  return pipeline::page_hash(p);
})->Unit(benchmark::kMillisecond);
BENCHMARK_CAPTURE(BM_PageDigest, Crc32c, [](std::span<const std::byte> p) {
  return pipeline::crc32c(p);
})->Unit(benchmark::kMillisecond);

constexpr size_t kBatchPages = 64;

// The page pipeline's zstd path: 64 text pages classified, packed and compressed per batch.
void BM_Zstd_BatchEncode(benchmark::State& state) {
  auto& src = arena(guest::Pattern::kText);
  pipeline::CodecConfig cfg;
  cfg.mode = pipeline::CodecMode::kZstd;
  cfg.zstd_level = static_cast<int>(state.range(0));
  pipeline::BatchEncoder enc(cfg, kPage, kBatchPages, 0);
  size_t wire = 0;
  for (auto _ : state) {
    for (size_t off = 0; off < kArena; off += kPage * kBatchPages) {
      enc.begin(0, 1, {false, true, false});
      for (size_t p = 0; p < kBatchPages; ++p)
        enc.add(off / kPage + p, src.data() + off + p * kPage);
      wire += enc.finish().bytes;
    }
  }
  state.SetBytesProcessed(static_cast<int64_t>(state.iterations() * kArena));
  state.counters["ratio"] =
      static_cast<double>(state.iterations() * kArena) / static_cast<double>(wire);
}
BENCHMARK(BM_Zstd_BatchEncode)->Arg(1)->Arg(-3)->Unit(benchmark::kMillisecond);

// zstd on its own over the same 256 KiB inputs, same level: the peer figure.
void BM_Zstd_Direct(benchmark::State& state) {
  auto& src = arena(guest::Pattern::kText);
  ZSTD_CCtx* ctx = ZSTD_createCCtx();
  ZSTD_CCtx_setParameter(ctx, ZSTD_c_compressionLevel, static_cast<int>(state.range(0)));
  std::vector<std::byte> out(ZSTD_compressBound(kPage * kBatchPages));
  size_t wire = 0;
  for (auto _ : state) {
    for (size_t off = 0; off < kArena; off += kPage * kBatchPages)
      wire += ZSTD_compress2(ctx, out.data(), out.size(), src.data() + off, kPage * kBatchPages);
  }
  ZSTD_freeCCtx(ctx);
  state.SetBytesProcessed(static_cast<int64_t>(state.iterations() * kArena));
  state.counters["ratio"] =
      static_cast<double>(state.iterations() * kArena) / static_cast<double>(wire);
}
BENCHMARK(BM_Zstd_Direct)->Arg(1)->Arg(-3)->Unit(benchmark::kMillisecond);

// Receive side: decode + place 64-page batches of mixed content (zero, raw).
void BM_Batch_Decode_Mixed(benchmark::State& state) {
  auto& src = arena(guest::Pattern::kMixed);
  pipeline::CodecConfig cfg;
  cfg.mode = pipeline::CodecMode::kZero;
  pipeline::BatchEncoder enc(cfg, kPage, kBatchPages, 0);
  std::vector<std::vector<std::byte>> bodies;
  for (size_t off = 0; off < kArena; off += kPage * kBatchPages) {
    enc.begin(0, 1, {});
    for (size_t p = 0; p < kBatchPages; ++p) enc.add(off / kPage + p, src.data() + off + p * kPage);
    auto view = enc.finish();
    bodies.emplace_back(view.segments[0].begin(), view.segments[0].end());
  }
  std::vector<std::byte> dst(kArena);
  std::span<std::byte> regions[] = {dst};
  pipeline::BatchDecoder dec(kPage, kBatchPages, 0);
  for (auto _ : state)
    for (const auto& b : bodies) benchmark::DoNotOptimize(dec.apply(b, regions));
  state.SetBytesProcessed(static_cast<int64_t>(state.iterations() * kArena));
}
BENCHMARK(BM_Batch_Decode_Mixed)->Unit(benchmark::kMillisecond);

}  // namespace

BENCHMARK_MAIN();
