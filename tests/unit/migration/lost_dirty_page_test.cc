// A dirty tracker that loses pages (the test knob RAMSHIFT_TEST_DROP_DIRTY_EVERY) against
// each verification mode, source and destination in one process. The paused source's
// memory is compared byte for byte with what the destination verified, before the guest
// runs there: the only check that does not trust the migration's own digest.
#include <gtest/gtest.h>

#include <cstdlib>
#include <cstring>
#include <thread>

#include "ramshift/guest/dirty_tracker.h"
#include "ramshift/guest/synthetic.h"
#include "ramshift/migration/destination.h"
#include "ramshift/migration/source.h"
#include "unit/migration/pair_harness.h"

namespace ramshift::migration {
namespace {

using namespace std::chrono_literals;

// Sets the knob for the guest's tracker (it is read when dirty tracking starts) and clears
// it again, so no other test sees it.
class DropDirtyPages {
 public:
  explicit DropDirtyPages(int every) {
    ::setenv(guest::kTestDropDirtyEveryEnv, std::to_string(every).c_str(), 1);
  }
  ~DropDirtyPages() { ::unsetenv(guest::kTestDropDirtyEveryEnv); }
};

using pair_test::migrate;
using pair_test::Outcome;

// A synthetic guest that has run (and dirtied memory) for 100 ms.
std::unique_ptr<guest::SyntheticGuest> running_guest(const std::string& spec) {
  auto g =
      std::move(guest::SyntheticGuest::create(guest::SyntheticSpec::parse(spec).value()).value());
  std::this_thread::sleep_for(100ms);
  return g;
}

// Pages where the paused source and the destination's verified copy differ.
uint64_t differing_pages(const guest::SyntheticGuest& g, const std::vector<std::byte>& copy) {
  const auto source = g.regions()[0].memory;
  EXPECT_EQ(copy.size(), g.regions()[0].bytes);
  if (copy.size() != g.regions()[0].bytes) return UINT64_MAX;
  const size_t ps = host_page_size();
  uint64_t n = 0;
  for (uint64_t at = 0; at < copy.size(); at += ps)
    n += std::memcmp(source.data() + at, copy.data() + at, std::min(ps, copy.size() - at)) != 0;
  return n;
}

class LostDirtyPageTest : public ::testing::TestWithParam<std::string> {};

// What the default mode does today: the digest covers what was sent, not what the guest
// holds, so both sides agree on the same stale hashes and the migration "verifies". Only the
// byte comparison and the guest's own generation table see the lost writes.
TEST_P(LostDirtyPageTest, TransferModeMissesThemTheDigestStillMatches) {
  DropDirtyPages drop(5);
  auto g = running_guest("size=32M,dirty-rate=16M,threads=2");
  auto out = migrate(GetParam(), *g, SourceConfig{});
  // The bug, documented: the source reports a verified, completed migration...
  EXPECT_TRUE(out.source.completed) << out.source.error.message();
  EXPECT_TRUE(out.source.verified);
  // ...while the destination's memory is not the paused source's.
  EXPECT_GT(differing_pages(*g, out.destination_memory), 0u);
  // The guest's own check (its generation table) catches it once it runs there.
  EXPECT_FALSE(out.destination.resumed_verified.value_or(true));
  // A lost write leaves either an older generation or, if the page was never sent, a zero
  // page where the table says a generation was written; both name the generation.
  const std::string why = out.destination.error.message();
  EXPECT_TRUE(why.find("older write") != std::string::npos ||
              why.find("is zero but generation") != std::string::npos)
      << why;
}

// --verify full compares memory, not the transfer: the lost writes are found, resent and
// counted, and the destination ends byte-identical to the paused source.
TEST_P(LostDirtyPageTest, FullModeRepairsThemAndCountsTheRepairs) {
  DropDirtyPages drop(5);
  auto g = running_guest("size=32M,dirty-rate=16M,threads=2");
  SourceConfig sc;
  sc.verify = VerifyMode::kFull;
  // Repair rounds lengthen the pause past the 100 ms default, and the guard would abort the
  // switch-over (counted alike on both ends, but three aborts fail): room for the repairs.
  sc.convergence.downtime_limit = 2s;
  auto out = migrate(GetParam(), *g, sc);
  ASSERT_TRUE(out.source.completed) << out.source.error.message();
  ASSERT_TRUE(out.destination.completed) << out.destination.error.message();
  EXPECT_EQ(differing_pages(*g, out.destination_memory), 0u);
  ASSERT_TRUE(out.source.verify.has_value());
  EXPECT_EQ(out.source.verify->mode, "full");
  EXPECT_GT(out.source.verify->mismatches_repaired, 0u);
  EXPECT_GT(out.source.verify->chunks_repaired, 0u);
  EXPECT_GE(out.source.verify->pages_checked, 2 * (32u << 20) / host_page_size());
  ASSERT_TRUE(out.destination.verify.has_value());
  EXPECT_EQ(out.destination.verify->mismatches_repaired, out.source.verify->mismatches_repaired);
  EXPECT_TRUE(out.destination.resumed_verified.value_or(false));
  EXPECT_NE(out.source.to_json().find("\"mismatches_repaired\""), std::string::npos);
}

// Without a fault there is nothing to repair, and the copy is still byte-identical.
TEST_P(LostDirtyPageTest, FullModeWithoutAFaultRepairsNothing) {
  auto g = running_guest("size=32M,dirty-rate=8M,threads=2");
  SourceConfig sc;
  sc.verify = VerifyMode::kFull;
  auto out = migrate(GetParam(), *g, sc);
  ASSERT_TRUE(out.source.completed) << out.source.error.message();
  EXPECT_EQ(differing_pages(*g, out.destination_memory), 0u);
  ASSERT_TRUE(out.source.verify.has_value());
  EXPECT_EQ(out.source.verify->mismatches_repaired, 0u);
  EXPECT_EQ(out.source.verify->pages_checked, (32u << 20) / host_page_size());
  EXPECT_TRUE(out.destination.resumed_verified.value_or(false));
}

INSTANTIATE_TEST_SUITE_P(Backends, LostDirtyPageTest, ::testing::Values("loopback", "tcp"),
                         [](const auto& param_info) { return param_info.param; });

}  // namespace
}  // namespace ramshift::migration
