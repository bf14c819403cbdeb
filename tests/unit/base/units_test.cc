#include "ramshift/base/units.h"

#include <gtest/gtest.h>

namespace ramshift {
namespace {

TEST(ParseSize, AcceptsBinarySuffixes) {
  EXPECT_EQ(parse_size("4096").value(), 4096u);
  EXPECT_EQ(parse_size("64K").value(), 64u * 1024);
  EXPECT_EQ(parse_size("256M").value(), 256ull << 20);
  EXPECT_EQ(parse_size("1G").value(), 1ull << 30);
  EXPECT_EQ(parse_size("1GiB").value(), 1ull << 30);
  EXPECT_EQ(parse_size("1.5g").value(), 3ull << 29);
}

TEST(ParseSize, RejectsGarbageWithAnExample) {
  for (const char* bad : {"", "abc", "12Q", "-5", "1..2G", "G"}) {
    auto r = parse_size(bad);
    ASSERT_FALSE(r) << bad;
    EXPECT_EQ(r.status().code(), ErrorCode::kInvalidArgument);
    EXPECT_NE(r.status().message().find(bad), std::string::npos) << r.status().message();
  }
}

TEST(ParseRate, BitsAreDecimalBytesAreBinary) {
  EXPECT_EQ(parse_rate("1Gbit").value(), 125000000u);
  EXPECT_EQ(parse_rate("800Mbit/s").value(), 100000000u);
  EXPECT_EQ(parse_rate("100M").value(), 100ull << 20);
  EXPECT_EQ(parse_rate("0").value(), 0u);
  EXPECT_FALSE(parse_rate("1Xbit"));
  EXPECT_FALSE(parse_rate("fast"));
}

}  // namespace
}  // namespace ramshift
