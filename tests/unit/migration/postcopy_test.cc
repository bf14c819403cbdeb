// Post-copy and hybrid migration of a running synthetic guest, source and destination in one
// process over tcp and loopback, with the kernel's real userfaultfd on the destination. What
// a user would notice is checked: the guest runs on the destination while its pages arrive
// (faults are served, its threads go on writing), both ends complete and verify the
// transfer's digest, the guest's own check of every page passes after it ran there, and
// every page the destination did not rewrite is byte for byte the paused source's.
#include <gtest/gtest.h>

#include <atomic>
#include <thread>

#include "ramshift/base/byte_order.h"
#include "ramshift/guest/synthetic.h"
#include "ramshift/migration/destination.h"
#include "ramshift/migration/source.h"
#include "unit/migration/pair_harness.h"

namespace ramshift::migration {
namespace {

using namespace std::chrono_literals;

std::unique_ptr<guest::SyntheticGuest> make_guest(const std::string& spec) {
  auto g = guest::SyntheticGuest::create(guest::SyntheticSpec::parse(spec).value());
  EXPECT_TRUE(g.is_ok()) << g.status().message();
  return std::move(g).value();
}

using pair_test::migrate;
using pair_test::Outcome;

// Every page of the destination holds either exactly the paused source's bytes, or a newer
// generation the guest wrote after it resumed there (whose own check, resumed_verified,
// covers it). Returns how many pages were compared byte for byte.
uint64_t expect_source_bytes_or_newer(const guest::SyntheticGuest& g, const Outcome& out) {
  const size_t ps = 4096;
  const auto source = g.regions()[0].memory;
  EXPECT_EQ(out.destination_memory.size(), source.size());
  if (out.destination_memory.size() != source.size()) return 0;
  uint64_t same = 0;
  for (uint64_t p = 0; p < source.size() / ps; ++p) {
    const std::byte* d = out.destination_memory.data() + p * ps;
    const std::byte* s = source.data() + p * ps;
    if (std::equal(s, s + ps, d)) {
      ++same;
      continue;
    }
    const uint64_t dest_generation = load_le<uint64_t>(d + 8);
    EXPECT_GT(dest_generation, g.generation(p))
        << "page " << p << " differs from the paused source's and is not a newer write";
    if (dest_generation <= g.generation(p)) return same;
  }
  return same;
}

void expect_completed(const Outcome& out, const char* mode) {
  ASSERT_TRUE(out.source.completed) << out.source.error.message();
  ASSERT_TRUE(out.destination.completed) << out.destination.error.message();
  EXPECT_EQ(out.source.mode, mode);
  EXPECT_EQ(out.destination.mode, "postcopy");
  ASSERT_TRUE(out.source.postcopy.has_value());
  ASSERT_TRUE(out.destination.postcopy.has_value());
  EXPECT_TRUE(out.destination.resumed_verified.value_or(false));
  EXPECT_GT(out.destination.resumed_writes, 0u) << "the guest did not run on the destination";
  ASSERT_TRUE(out.source.downtime_ms.has_value());
  EXPECT_TRUE(out.destination.verify.has_value());
}

class PostcopyTest : public ::testing::TestWithParam<std::string> {};

TEST_P(PostcopyTest, TheGuestRunsOnTheDestinationAtOnceAndEveryPageArrives) {
  auto g = make_guest("size=64M,dirty-rate=40M,threads=2,pattern=mixed");
  std::this_thread::sleep_for(100ms);
  SourceConfig sc;
  sc.mode = MigrationMode::kPostcopy;
  auto out = migrate(GetParam(), *g, sc);
  expect_completed(out, "postcopy");
  EXPECT_EQ(out.source.rounds, 0u) << "post-copy sends no pre-copy round";
  const auto& d = *out.destination.postcopy;
  // Every page moved after the guest left: each placed once, pushed or asked for.
  EXPECT_EQ(d.pages_pushed + d.pages_faulted, 64u << 20 >> 12);
  EXPECT_GT(d.faults, 0u) << "the guest never waited for a page: did it run before they came?";
  EXPECT_GT(d.requests, 0u);
  EXPECT_EQ(out.source.postcopy->requests, d.requests);
  EXPECT_FALSE(d.blocked.empty());
  EXPECT_GE(d.fault_latency.max_us, d.fault_latency.p50_us);
  EXPECT_GT(expect_source_bytes_or_newer(*g, out), 0u);
}

TEST_P(PostcopyTest, HybridSwitchesAfterTheRoundsAskedForAndMovesOnlyWhatIsDirty) {
  auto g = make_guest("size=64M,dirty-rate=20M,threads=2,pattern=mixed");
  std::this_thread::sleep_for(100ms);
  SourceConfig sc;
  sc.mode = MigrationMode::kHybrid;
  sc.postcopy_after = 2;
  sc.convergence.downtime_limit = 1ms;  // pre-copy alone would go on copying
  auto out = migrate(GetParam(), *g, sc);
  expect_completed(out, "hybrid");
  EXPECT_EQ(out.source.rounds, 2u);
  EXPECT_EQ(out.destination.rounds, 2u);
  const auto& d = *out.destination.postcopy;
  EXPECT_GT(d.pages_pushed + d.pages_faulted, 0u);
  EXPECT_LT(d.pages_pushed + d.pages_faulted, (64u << 20 >> 12) / 2)
      << "hybrid should move only the pages dirtied since their round";
  // Most of them were dropped there before the pause (POSTCOPY_DISCARD), not in the downtime.
  EXPECT_GE(out.source.postcopy->discard_rounds, 1u);
  EXPECT_EQ(d.discard_rounds, out.source.postcopy->discard_rounds);
  EXPECT_GT(d.pages_discarded, 0u);
  EXPECT_LE(d.pages_discarded, d.pages_pushed + d.pages_faulted);
  EXPECT_GT(expect_source_bytes_or_newer(*g, out), (64u << 20 >> 12) / 2);
}

// A guest dirtying faster than the (limited) link: pre-copy alone fails ("not converging",
// the live test shows it); hybrid completes by switching to post-copy.
TEST_P(PostcopyTest, HybridCompletesWhatPrecopyCannotConverge) {
  auto g = make_guest("size=8M,dirty-rate=24M,pattern=random");
  SourceConfig sc;
  sc.mode = MigrationMode::kHybrid;
  sc.bandwidth_limit = 8 << 20;
  sc.convergence.downtime_limit = 20ms;
  auto out = migrate(GetParam(), *g, sc);
  expect_completed(out, "hybrid");
  EXPECT_GE(out.source.rounds, 1u);
  EXPECT_GT(expect_source_bytes_or_newer(*g, out), 0u);
}

// A destination that cannot run post-copy (its guest would be a file on disk) refuses at the
// HELLO, says why on both ends, and the source guest never stopped.
TEST_P(PostcopyTest, ADestinationThatCannotRefusesBeforeAnyPageMoves) {
  auto g = make_guest("size=8M,dirty-rate=4M,pattern=mixed");
  SourceConfig sc;
  sc.mode = MigrationMode::kPostcopy;
  DestinationConfig dc;
  dc.output_path = ::testing::TempDir() + "/pc-refused.img";
  auto out = migrate(GetParam(), *g, sc, dc);
  EXPECT_FALSE(out.source.completed);
  EXPECT_FALSE(out.destination.completed);
  EXPECT_NE(out.source.error.message().find("--guest-out"), std::string::npos)
      << out.source.error.message();
  EXPECT_EQ(out.source.rounds, 0u);
  const uint64_t before = g->writes();
  std::this_thread::sleep_for(200ms);
  EXPECT_GT(g->writes(), before) << "the source guest must still run";
  g->pause();
  EXPECT_TRUE(g->verify().is_ok());
}

// The link breaks half-way through post-copy (the destination's connection is closed under
// it): neither end hangs (the guest threads waiting for pages are woken and stopped), both
// fail, and both say the guest is lost, which it is: no host holds all of it.
TEST_P(PostcopyTest, ALinkLostDuringPostcopyFailsBothEndsAndSaysTheGuestIsLost) {
  auto g = make_guest("size=64M,dirty-rate=20M,threads=2,pattern=mixed");
  static int n = 0;
  auto listener =
      transport::listen(transport::parse_uri(GetParam() == "tcp"
                                                 ? "tcp://127.0.0.1:0"
                                                 : "loopback://pc-cut-" + std::to_string(n++))
                            .value())
          .value();
  SourceConfig sc;
  sc.to = listener->address();
  sc.mode = MigrationMode::kPostcopy;
  std::atomic<bool> cut{false};
  std::atomic<transport::Connection*> dest_conn{nullptr};
  MigrationReport dest_report;
  std::thread dest([&] {
    auto conn = std::move(listener->accept(10s)).value();
    dest_conn = conn.get();
    dest_report = run_destination(std::move(conn), DestinationConfig{});
  });
  std::thread killer([&] {
    while (!cut.load()) std::this_thread::sleep_for(100us);
    if (auto* c = dest_conn.load()) c->close();
  });
  auto report = run_source(*g, sc, [&](const Progress& p) {
    if (p.postcopy && p.done_bytes > p.total_bytes / 4 && p.done_bytes < p.total_bytes) cut = true;
  });
  cut = true;
  killer.join();
  dest.join();
  if (report.completed) GTEST_SKIP() << "post-copy finished before the cut landed";
  EXPECT_NE(report.error.message().find("is lost"), std::string::npos) << report.error.message();
  EXPECT_EQ(report.source_guest.value_or(""), "paused (handed over)");
  EXPECT_FALSE(dest_report.completed);
  // The destination says the guest is lost once it ran there; a cut that beat POSTCOPY_START
  // to its control thread leaves it never started there (and says only that the link broke).
  if (dest_report.mode == "postcopy")
    EXPECT_NE(dest_report.error.message().find("the guest is lost"), std::string::npos)
        << dest_report.error.message();
  else
    EXPECT_FALSE(dest_report.resumed_verified.has_value());
}

TEST(PostcopyConfig, AnImageOrVerifyFullIsRefusedUpFront) {
  auto g = make_guest("size=1M,dirty-rate=1M");
  SourceConfig sc;
  sc.to = transport::parse_uri("tcp://127.0.0.1:9").value();
  sc.mode = MigrationMode::kHybrid;
  sc.verify = VerifyMode::kFull;
  auto r = run_source(*g, sc);
  EXPECT_FALSE(r.completed);
  EXPECT_NE(r.error.message().find("--verify full"), std::string::npos) << r.error.message();
  EXPECT_EQ(r.error.code(), ErrorCode::kInvalidArgument);
}

INSTANTIATE_TEST_SUITE_P(Backends, PostcopyTest, ::testing::Values("tcp", "loopback"));

}  // namespace
}  // namespace ramshift::migration
