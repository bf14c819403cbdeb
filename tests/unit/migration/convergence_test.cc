#include "ramshift/migration/convergence.h"

#include <gtest/gtest.h>

namespace ramshift::migration {
namespace {

constexpr uint64_t MB = 1'000'000;

TEST(Convergence, SwitchesOverWhenTheRestFitsTheDowntimeLimit) {
  ConvergencePolicy p({std::chrono::milliseconds(100)});
  // 100 MB/s; 20 MB left = 200 ms: another round.
  EXPECT_EQ(p.after_round({0, 1.0, 100 * MB, 20 * MB}).kind, Decision::kNextRound);
  // 5 MB left = 50 ms: switch over.
  auto d = p.after_round({1, 0.2, 20 * MB, 5 * MB});
  EXPECT_EQ(d.kind, Decision::kSwitchover);
  EXPECT_NEAR(d.expected_downtime_ms, 50, 1);
}

TEST(Convergence, NoProgressFailsWithoutAutoConvergeAndSaysWhy) {
  ConvergencePolicy p({std::chrono::milliseconds(100)});
  EXPECT_EQ(p.after_round({0, 1.0, 100 * MB, 60 * MB}).kind, Decision::kNextRound);
  // The guest dirties 60 MB/s while 50 MB/s go out: twice in a row is no progress.
  EXPECT_EQ(p.after_round({1, 1.0, 50 * MB, 60 * MB}).kind, Decision::kNextRound);
  auto d = p.after_round({2, 1.0, 50 * MB, 60 * MB});
  EXPECT_EQ(d.kind, Decision::kFail);
  EXPECT_NE(d.reason.find("--auto-converge"), std::string::npos) << d.reason;
}

TEST(Convergence, AutoConvergeThrottlesLikeQemu) {
  ConvergenceConfig c;
  c.auto_converge = true;
  ConvergencePolicy p(c);
  p.after_round({0, 1.0, 100 * MB, 60 * MB});
  p.after_round({1, 1.0, 50 * MB, 60 * MB});
  auto d = p.after_round({2, 1.0, 50 * MB, 60 * MB});
  EXPECT_EQ(d.kind, Decision::kThrottle);
  EXPECT_EQ(d.throttle_pct, 20);
  p.after_round({3, 1.0, 50 * MB, 60 * MB});
  d = p.after_round({4, 1.0, 50 * MB, 60 * MB});
  EXPECT_EQ(d.throttle_pct, 30);
}

TEST(Convergence, MaxRoundsForcesTheSwitchover) {
  ConvergenceConfig c;
  c.max_rounds = 3;
  ConvergencePolicy p(c);
  EXPECT_EQ(p.after_round({0, 1.0, 100 * MB, 40 * MB}).kind, Decision::kNextRound);
  EXPECT_EQ(p.after_round({1, 1.0, 40 * MB, 30 * MB}).kind, Decision::kNextRound);
  auto d = p.after_round({2, 1.0, 30 * MB, 25 * MB});
  EXPECT_EQ(d.kind, Decision::kSwitchover);
  EXPECT_NE(d.reason.find("max-rounds"), std::string::npos);
}

}  // namespace
}  // namespace ramshift::migration
