// Synthetic memory contents with known character, for images, tests and benchmarks.
//   zero    all zero
//   random  incompressible (xorshift), XBZRLE's and zstd's worst case
//   text    words from a small vocabulary: zstd level 1 compresses it ≈ 3-4x
//   mixed   per page: 1/4 zero, 1/4 random, 1/2 text (like a booted guest's RAM)
//   delta   filled as mixed; it names a workload that rewrites one byte per page, so each
//           page differs a little from its last sending (XBZRLE's best case)
// The one list of pattern names: images take the first four, the synthetic guest's
// workload mixed, random, delta and zero, the bench all five.
#pragma once

#include <cstdint>
#include <optional>
#include <span>
#include <string_view>

#include "ramshift/base/status.h"

namespace ramshift::guest {

enum class Pattern { kZero, kRandom, kText, kMixed, kDelta };

// Any of the five names; nullopt for another.
std::optional<Pattern> pattern_from_name(std::string_view name);
// An image's pattern: zero, random, text or mixed (kInvalidArgument saying so otherwise).
Result<Pattern> parse_pattern(std::string_view name);
const char* pattern_name(Pattern p);

// Fills `memory` page by page; the content of page i depends only on (pattern, seed, i),
// so any slice can be produced independently (and in parallel).
void fill_pattern(std::span<std::byte> memory, Pattern pattern, uint64_t seed,
                  uint64_t first_page = 0, size_t page_size = 4096);

}  // namespace ramshift::guest
