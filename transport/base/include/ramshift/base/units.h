// Parsing and printing of sizes and rates as users type them.
//
// Sizes: "4096", "64K", "256M", "1G", "1GiB", "512MiB" — binary multiples (K = 1024).
// Rates: bytes per second, "100M" = 100 MiB/s, or bits with a "bit" suffix in decimal units
// as network people write them: "1Gbit" = 1e9 bit/s = 125,000,000 B/s, "800Mbit".
#pragma once

#include <cstdint>
#include <string>
#include <string_view>

#include "ramshift/base/status.h"

namespace ramshift {

Result<uint64_t> parse_size(std::string_view text);
// Returns bytes per second. 0 is allowed and means "no limit" to callers that say so.
Result<uint64_t> parse_rate(std::string_view text);

std::string format_bytes(uint64_t bytes);          // "1.50 GiB"
std::string format_rate(double bytes_per_second);  // "1.12 GiB/s" (binary, like format_bytes)

}  // namespace ramshift
