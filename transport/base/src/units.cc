#include "ramshift/base/units.h"

#include <fmt/format.h>

#include <cctype>
#include <charconv>
#include <cmath>
#include <string>

namespace ramshift {
namespace {

std::string lower(std::string_view s) {
  std::string out(s);
  for (char& c : out) c = static_cast<char>(std::tolower(static_cast<unsigned char>(c)));
  return out;
}

// Splits "1.5GiB" into 1.5 and "gib".
bool split_number(std::string_view text, double* number, std::string* suffix) {
  size_t i = 0;
  while (i < text.size() && (std::isdigit(static_cast<unsigned char>(text[i])) || text[i] == '.'))
    ++i;
  if (i == 0) return false;
  auto [ptr, ec] = std::from_chars(text.data(), text.data() + i, *number);
  if (ec != std::errc() || ptr != text.data() + i || !std::isfinite(*number) || *number < 0)
    return false;
  *suffix = lower(text.substr(i));
  return true;
}

}  // namespace

Result<uint64_t> parse_size(std::string_view text) {
  double n = 0;
  std::string suffix;
  if (!split_number(text, &n, &suffix))
    return Status(ErrorCode::kInvalidArgument,
                  fmt::format("'{}' is not a size (examples: 4096, 64K, 256M, 1G)", text));
  double mult = 0;
  if (suffix.empty() || suffix == "b")
    mult = 1;
  else if (suffix == "k" || suffix == "kib" || suffix == "kb")
    mult = 1024.0;
  else if (suffix == "m" || suffix == "mib" || suffix == "mb")
    mult = 1024.0 * 1024;
  else if (suffix == "g" || suffix == "gib" || suffix == "gb")
    mult = 1024.0 * 1024 * 1024;
  else if (suffix == "t" || suffix == "tib" || suffix == "tb")
    mult = 1024.0 * 1024 * 1024 * 1024;
  if (mult == 0)
    return Status(
        ErrorCode::kInvalidArgument,
        fmt::format("'{}' has an unknown size suffix '{}' (use K, M, G or T)", text, suffix));
  double bytes = n * mult;
  if (bytes > 1.8e19)
    return Status(ErrorCode::kInvalidArgument, fmt::format("size '{}' is too large", text));
  return static_cast<uint64_t>(std::llround(bytes));
}

Result<uint64_t> parse_rate(std::string_view text) {
  double n = 0;
  std::string suffix;
  if (!split_number(text, &n, &suffix))
    return Status(
        ErrorCode::kInvalidArgument,
        fmt::format("'{}' is not a rate (examples: 100M = 100 MiB/s, 1Gbit, 800Mbit)", text));
  for (const char* tail : {"/s", "ps"}) {
    std::string t(tail);
    if (suffix.size() > t.size() && suffix.compare(suffix.size() - t.size(), t.size(), t) == 0)
      suffix.resize(suffix.size() - t.size());
  }
  if (suffix.size() >= 3 && suffix.compare(suffix.size() - 3, 3, "bit") == 0) {
    std::string p = suffix.substr(0, suffix.size() - 3);
    double mult = 0;
    if (p.empty())
      mult = 1;
    else if (p == "k")
      mult = 1e3;
    else if (p == "m")
      mult = 1e6;
    else if (p == "g")
      mult = 1e9;
    if (mult == 0)
      return Status(ErrorCode::kInvalidArgument,
                    fmt::format("'{}' has an unknown rate unit (use Kbit, Mbit or Gbit)", text));
    return static_cast<uint64_t>(std::llround(n * mult / 8));
  }
  auto size = parse_size(fmt::format("{}{}", n, suffix));
  if (!size)
    return Status(
        ErrorCode::kInvalidArgument,
        fmt::format("'{}' is not a rate (examples: 100M = 100 MiB/s, 1Gbit, 800Mbit)", text));
  return size;
}

std::string format_bytes(uint64_t bytes) {
  const char* units[] = {"B", "KiB", "MiB", "GiB", "TiB"};
  double v = static_cast<double>(bytes);
  int u = 0;
  while (v >= 1024 && u < 4) {
    v /= 1024;
    ++u;
  }
  return u == 0 ? fmt::format("{} B", bytes) : fmt::format("{:.2f} {}", v, units[u]);
}

// Binary units, like format_bytes and like --max-bandwidth's "100M": a size and the rate
// beside it can be divided in one's head.
std::string format_rate(double bps) {
  if (bps >= double(1ull << 30)) return fmt::format("{:.2f} GiB/s", bps / double(1ull << 30));
  if (bps >= double(1u << 20)) return fmt::format("{:.1f} MiB/s", bps / double(1u << 20));
  return fmt::format("{:.1f} KiB/s", bps / 1024);
}

}  // namespace ramshift
