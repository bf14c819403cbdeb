#include "ramshift/pipeline/xbzrle.h"

#include <fmt/format.h>

#include <cstring>

namespace ramshift::pipeline::xbzrle {
namespace {

inline uint64_t load64(const std::byte* p) {
  uint64_t v;
  std::memcpy(&v, p, sizeof v);
  return v;
}

// Writes `v` as ULEB128; returns false when `out` has no room.
inline bool put_uleb(uint32_t v, std::byte* out, size_t cap, size_t* pos) {
  do {
    if (*pos >= cap) return false;
    uint8_t b = v & 0x7f;
    v >>= 7;
    out[(*pos)++] = static_cast<std::byte>(v ? (b | 0x80) : b);
  } while (v);
  return true;
}

inline bool get_uleb(std::span<const std::byte> in, size_t* pos, uint32_t* v) {
  uint32_t result = 0;
  for (int shift = 0; shift < 35; shift += 7) {
    if (*pos >= in.size()) return false;
    uint8_t b = static_cast<uint8_t>(in[(*pos)++]);
    if (shift == 28 && (b & 0x70)) return false;  // would overflow 32 bits
    result |= static_cast<uint32_t>(b & 0x7f) << shift;
    if (!(b & 0x80)) {
      *v = result;
      return true;
    }
  }
  return false;
}

// Why 4: a changed run costs at least two length bytes, so breaking it for fewer than four
// equal bytes would make the delta longer, not shorter.
constexpr size_t kMinUnchangedToSplit = 4;

}  // namespace

int64_t encode(const std::byte* old_page, const std::byte* new_page, size_t page_size,
               std::span<std::byte> out) {
  const size_t n = page_size;
  std::byte* o = out.data();
  const size_t cap = out.size();
  size_t pos = 0;
  size_t w = 0;
  while (pos < n) {
    // Unchanged run: 32 bytes per step while nothing differs, then words, then bytes.
    size_t run_start = pos;
    while (pos + 32 <= n) {
      uint64_t x = (load64(old_page + pos) ^ load64(new_page + pos)) |
                   (load64(old_page + pos + 8) ^ load64(new_page + pos + 8)) |
                   (load64(old_page + pos + 16) ^ load64(new_page + pos + 16)) |
                   (load64(old_page + pos + 24) ^ load64(new_page + pos + 24));
      if (x) break;
      pos += 32;
    }
    while (pos + 8 <= n && load64(old_page + pos) == load64(new_page + pos)) pos += 8;
    while (pos < n && old_page[pos] == new_page[pos]) ++pos;
    if (pos == n) break;  // trailing unchanged run is implicit
    size_t unchanged = pos - run_start;

    // Changed run: extend over short equal stretches that would cost more to encode.
    size_t changed_start = pos;
    while (pos < n) {
      if (old_page[pos] != new_page[pos]) {
        ++pos;
        continue;
      }
      size_t eq = 0;
      while (pos + eq < n && eq < kMinUnchangedToSplit && old_page[pos + eq] == new_page[pos + eq])
        ++eq;
      if (eq >= kMinUnchangedToSplit || pos + eq == n) break;
      pos += eq;
    }
    size_t changed = pos - changed_start;
    if (!put_uleb(static_cast<uint32_t>(unchanged), o, cap, &w)) return -1;
    if (!put_uleb(static_cast<uint32_t>(changed), o, cap, &w)) return -1;
    if (changed > cap - w) return -1;
    std::memcpy(o + w, new_page + changed_start, changed);
    w += changed;
  }
  return static_cast<int64_t>(w);
}

Status decode(std::span<const std::byte> delta, std::span<std::byte> page) {
  size_t in = 0;
  size_t pos = 0;
  while (in < delta.size()) {
    uint32_t unchanged = 0;
    uint32_t changed = 0;
    if (!get_uleb(delta, &in, &unchanged))
      return Status(
          ErrorCode::kCorrupt,
          fmt::format("xbzrle: truncated or oversized unchanged-run length at byte {}", in));
    if (!get_uleb(delta, &in, &changed))
      return Status(
          ErrorCode::kCorrupt,
          fmt::format("xbzrle: truncated or oversized changed-run length at byte {}", in));
    if (changed == 0)
      return Status(ErrorCode::kCorrupt, fmt::format("xbzrle: empty changed run at byte {}", in));
    if (unchanged > page.size() - pos || changed > page.size() - pos - unchanged)
      return Status(ErrorCode::kCorrupt,
                    fmt::format("xbzrle: runs reach byte {} of a {}-byte page",
                                uint64_t{pos} + unchanged + changed, page.size()));
    if (changed > delta.size() - in)
      return Status(ErrorCode::kCorrupt,
                    fmt::format("xbzrle: changed run of {} bytes but only {} left in the delta",
                                changed, delta.size() - in));
    pos += unchanged;
    std::memcpy(page.data() + pos, delta.data() + in, changed);
    pos += changed;
    in += changed;
  }
  return Status::ok();
}

}  // namespace ramshift::pipeline::xbzrle
