#include "ramshift/base/cpu_affinity.h"

#include <gtest/gtest.h>
#include <sched.h>

#include <string>

namespace ramshift {
namespace {

uint32_t first_allowed_cpu() {
  cpu_set_t set;
  CPU_ZERO(&set);
  EXPECT_EQ(sched_getaffinity(0, sizeof set, &set), 0);
  for (uint32_t c = 0; c < CPU_SETSIZE; ++c)
    if (CPU_ISSET(c, &set)) return c;
  return 0;
}

TEST(CpuListTest, ParsesSortsAndDeduplicates) {
  const uint32_t c = first_allowed_cpu();
  const std::string n = std::to_string(c);
  auto one = parse_cpu_list(n, "cpus");
  ASSERT_TRUE(one.is_ok()) << one.status().message();
  EXPECT_EQ(*one, std::vector<uint32_t>{c});
  auto twice = parse_cpu_list(n + "," + n + "-" + n, "cpus");
  ASSERT_TRUE(twice.is_ok()) << twice.status().message();
  EXPECT_EQ(*twice, std::vector<uint32_t>{c});
}

TEST(CpuListTest, RefusesBadSyntaxNamingTheFlag) {
  for (const char* bad : {"", "a", "1-", "-1", "0,,1", "1-0", " 0", "0x1", "99999"}) {
    auto r = parse_cpu_list(bad, "cpus");
    ASSERT_FALSE(r.is_ok()) << "'" << bad << "' was taken";
    EXPECT_NE(r.status().message().find("--cpus"), std::string::npos) << r.status().message();
  }
}

TEST(CpuListTest, RefusesACpuThisProcessMayNotUse) {
  // 1023 is outside any affinity mask this test runs under (CPU_SETSIZE is 1024).
  auto r = parse_cpu_list("1023", "cpus");
  ASSERT_FALSE(r.is_ok());
  EXPECT_NE(r.status().message().find("not available"), std::string::npos);
  EXPECT_NE(r.status().message().find(allowed_cpu_list()), std::string::npos);
}

}  // namespace
}  // namespace ramshift
