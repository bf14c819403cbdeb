#include "ramshift/guest/pattern.h"

#include <fmt/format.h>

#include <algorithm>
#include <cstring>

namespace ramshift::guest {
namespace {

inline uint64_t splitmix(uint64_t x) {
  x += 0x9E3779B97F4A7C15ull;
  x = (x ^ (x >> 30)) * 0xBF58476D1CE4E5B9ull;
  x = (x ^ (x >> 27)) * 0x94D049BB133111EBull;
  return x ^ (x >> 31);
}

void fill_random(std::byte* p, size_t n, uint64_t state) {
  state |= 1;
  size_t i = 0;
  for (; i + 8 <= n; i += 8) {
    state ^= state << 13;
    state ^= state >> 7;
    state ^= state << 17;
    std::memcpy(p + i, &state, 8);
  }
  for (; i < n; ++i) p[i] = static_cast<std::byte>(splitmix(state + i));
}

constexpr std::string_view kWords[] = {
    "the ",    "memory ", "page ",    "guest ",  "kernel ",  "migration ", "queue ", "of ",
    "and ",    "to ",     "network ", "buffer ", "struct ",  "return ",    "if ",    "while ",
    "0x0000 ", "NULL ",   "int ",     "static ", "void ",    "data ",      "host ",  "rdma ",
    "= ",      "; ",      "{\n",      "}\n",     "process ", "thread ",    "lock ",  "dirty "};

void fill_text(std::byte* p, size_t n, uint64_t state) {
  size_t i = 0;
  while (i < n) {
    state = splitmix(state);
    for (int k = 0; k < 10 && i < n; ++k) {
      std::string_view w = kWords[(state >> (k * 5)) & 31];
      size_t len = std::min(w.size(), n - i);
      std::memcpy(p + i, w.data(), len);
      i += len;
    }
  }
}

}  // namespace

std::optional<Pattern> pattern_from_name(std::string_view name) {
  for (Pattern p :
       {Pattern::kZero, Pattern::kRandom, Pattern::kText, Pattern::kMixed, Pattern::kDelta})
    if (name == pattern_name(p)) return p;
  return std::nullopt;
}

Result<Pattern> parse_pattern(std::string_view name) {
  auto p = pattern_from_name(name);
  if (!p || *p == Pattern::kDelta)
    return Status(ErrorCode::kInvalidArgument,
                  fmt::format("unknown pattern '{}' (choose zero, random, text or mixed)", name));
  return *p;
}

const char* pattern_name(Pattern p) {
  switch (p) {
    case Pattern::kZero:
      return "zero";
    case Pattern::kRandom:
      return "random";
    case Pattern::kText:
      return "text";
    case Pattern::kMixed:
      return "mixed";
    case Pattern::kDelta:
      return "delta";
  }
  return "?";
}

void fill_pattern(std::span<std::byte> memory, Pattern pattern, uint64_t seed, uint64_t first_page,
                  size_t page_size) {
  for (size_t off = 0; off < memory.size(); off += page_size) {
    size_t n = std::min(page_size, memory.size() - off);
    uint64_t page = first_page + off / page_size;
    uint64_t h = splitmix(seed ^ splitmix(page));
    std::byte* p = memory.data() + off;
    Pattern kind = pattern;
    if (kind == Pattern::kMixed || kind == Pattern::kDelta) {
      unsigned q = static_cast<unsigned>(h >> 62);  // 0..3
      kind = q == 0 ? Pattern::kZero : q == 1 ? Pattern::kRandom : Pattern::kText;
    }
    switch (kind) {
      case Pattern::kZero:
        std::memset(p, 0, n);
        break;
      case Pattern::kRandom:
        fill_random(p, n, h);
        break;
      default:
        fill_text(p, n, h);
        break;
    }
  }
}

}  // namespace ramshift::guest
