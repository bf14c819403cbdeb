// run_local_pair (what `ramshift demo` runs): a live guest migrated to a destination thread
// resumes there verified; a receiver process that never comes up, or one that goes away
// without migrating, is an error or a failed report, never a migration called good.
#include <gtest/gtest.h>

#include <thread>

#include "ramshift/guest/synthetic.h"
#include "ramshift/migration/local_pair.h"

namespace ramshift::migration {
namespace {

using namespace std::chrono_literals;

std::unique_ptr<guest::SyntheticGuest> make_guest() {
  auto g = guest::SyntheticGuest::create(
      guest::SyntheticSpec::parse("size=32M,dirty-rate=4M,threads=1,pattern=mixed").value());
  EXPECT_TRUE(g.is_ok()) << g.status().message();
  return std::move(g).value();
}

TEST(LocalPair, ALiveGuestMovesToADestinationThreadAndRunsThereVerified) {
  auto g = make_guest();
  std::this_thread::sleep_for(50ms);
  LocalPairConfig config;
  config.in_process_uri = "loopback://local-pair-test";
  config.destination.resume_for = 200ms;
  int started = 0;
  auto report = run_local_pair(*g, config, [&](const ReceiverStarted& s) {
    ++started;
    EXPECT_EQ(s.pid, 0) << "a destination thread has no process of its own";
  });
  ASSERT_TRUE(report.is_ok()) << report.status().message();
  EXPECT_EQ(started, 1);
  EXPECT_TRUE(report->live_guest);
  EXPECT_TRUE(report->source.completed) << report->source.error.message();
  EXPECT_TRUE(report->destination.completed) << report->destination.error.message();
  EXPECT_TRUE(report->destination.resumed_verified.value_or(false));
  EXPECT_GT(report->destination.resumed_writes, 0u) << "the guest did not run on the destination";
  EXPECT_TRUE(report->migrated());
  EXPECT_TRUE(report->verified());
}

TEST(LocalPair, AReceiverThatNeverListensIsAnErrorAndTheSourceGuestRunsOn) {
  auto g = make_guest();
  LocalPairConfig config;
  config.receiver_process = ReceiverProcess{{"/bin/sh", "-c", "exit 3"}, "/nonexistent"};
  auto report = run_local_pair(*g, config);
  ASSERT_FALSE(report.is_ok());
  EXPECT_NE(report.status().message().find("did not start listening"), std::string::npos)
      << report.status().message();
  uint64_t before = g->writes();
  std::this_thread::sleep_for(100ms);
  EXPECT_GT(g->writes(), before) << "the source guest must still be running";
}

TEST(LocalPair, AReceiverThatGoesAwayAfterListeningIsAFailedMigration) {
  auto g = make_guest();
  LocalPairConfig config;
  // Says it listens on a port nobody serves, then exits 3 without a report.
  config.receiver_process = ReceiverProcess{
      {"/bin/sh", "-c", "echo 'listening on tcp://127.0.0.1:1'; exit 3"}, "/nonexistent"};
  config.source.connect_timeout = 2s;
  auto report = run_local_pair(*g, config);
  ASSERT_TRUE(report.is_ok()) << report.status().message();
  EXPECT_FALSE(report->source.completed);
  EXPECT_EQ(report->receiver_exit, 3);
  EXPECT_FALSE(report->migrated());
  EXPECT_FALSE(report->verified());
  g->pause();
  EXPECT_TRUE(g->verify().is_ok()) << "the source guest must be intact";
}

}  // namespace
}  // namespace ramshift::migration
