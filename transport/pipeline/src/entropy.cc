#include "ramshift/pipeline/entropy.h"

#include <bit>
#include <cstdint>

namespace ramshift::pipeline {
namespace {
constexpr size_t kSamples = 512;
// Uniform random bytes give 256 * (1 - e^-2) ≈ 221 distinct values in 512 samples (σ ≈ 5);
// 200 is four σ below, and text or pointers stay well under 150.
constexpr int kRandomDistinct = 200;
}  // namespace

bool looks_incompressible(const std::byte* page, size_t len) {
  if (len < kSamples) return false;
  const size_t stride = len / kSamples;
  uint64_t seen[4] = {0, 0, 0, 0};
  for (size_t i = 0; i < kSamples; ++i) {
    auto b = static_cast<uint8_t>(page[i * stride + (i & (stride - 1))]);
    seen[b >> 6] |= uint64_t{1} << (b & 63);
  }
  int distinct = 0;
  for (uint64_t w : seen) distinct += std::popcount(w);
  return distinct >= kRandomDistinct;
}

}  // namespace ramshift::pipeline
