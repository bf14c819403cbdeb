#include "ramshift/migration/convergence.h"

#include <gtest/gtest.h>

#include <algorithm>
#include <filesystem>
#include <fstream>
#include <sstream>
#include <vector>

namespace ramshift::migration {
namespace {

constexpr uint64_t MB = 1'000'000;
using std::chrono::milliseconds;

TEST(Convergence, KeepsCopyingUnderTheLimitWhileARoundStillPays) {
  ConvergencePolicy p({milliseconds(100)});
  // 100 MB/s; 20 MB left = 210 ms: another round.
  EXPECT_EQ(p.after_round({0, 1.0, 100 * MB, 20 * MB}).kind, Decision::kNextRound);
  // 5 MB left fits 100 ms, but at 25 MB/s of dirtying another round leaves ~1.3 MB: copy it.
  auto d = p.after_round({1, 0.2, 20 * MB, 5 * MB});
  EXPECT_EQ(d.kind, Decision::kNextRound) << d.reason;
  EXPECT_NEAR(d.expected_downtime_ms, 60, 1);  // 10 ms switch-over + 5 MB at 100 MB/s
  EXPECT_LT(d.next_round_downtime_ms, 25);
  // 1.3 MB left: the next round would last 16 ms and leave 0.4 MB: still pays.
  EXPECT_EQ(p.after_round({2, 0.053, 5 * MB, 13 * MB / 10}).kind, Decision::kNextRound);
  // 0.4 MB left: another round (8 ms) would leave 0.19 MB, under half: still pays.
  EXPECT_EQ(p.after_round({3, 0.016, 13 * MB / 10, 4 * MB / 10}).kind, Decision::kNextRound);
  // 0.175 MB left: another round (6 ms, mostly its fixed cost) would leave 0.15 MB: stop.
  d = p.after_round({4, 0.007, 4 * MB / 10, 175 * MB / 1000});
  EXPECT_EQ(d.kind, Decision::kSwitchover) << d.reason;
  EXPECT_NEAR(d.expected_downtime_ms, 13, 1);  // 10 ms + 0.175 MB at the 57 MB/s just seen
}

TEST(Convergence, AnIdleGuestSwitchesOverAtOnce) {
  ConvergencePolicy p({milliseconds(100)});
  auto d = p.after_round({0, 1.0, 100 * MB, 0});
  EXPECT_EQ(d.kind, Decision::kSwitchover) << d.reason;
  EXPECT_NEAR(d.expected_downtime_ms, 10, 0.1);  // the switch-over's fixed part alone
}

TEST(Convergence, SwitchesOverAtTheFirstFitWhenRoundsShrinkTheRestLittle) {
  ConvergencePolicy p({milliseconds(100)});
  // The guest dirties 60% of what the link moves: each round leaves 0.6x, never pays.
  EXPECT_EQ(p.after_round({0, 1.0, 100 * MB, 60 * MB}).kind, Decision::kNextRound);
  EXPECT_EQ(p.after_round({1, 0.6, 60 * MB, 36 * MB}).kind, Decision::kNextRound);
  EXPECT_EQ(p.after_round({2, 0.36, 36 * MB, 21600 * MB / 1000}).kind, Decision::kNextRound);
  EXPECT_EQ(p.after_round({3, 0.216, 21600 * MB / 1000, 12960 * MB / 1000}).kind,
            Decision::kNextRound);
  EXPECT_EQ(p.after_round({4, 0.1296, 12960 * MB / 1000, 7776 * MB / 1000}).kind,
            Decision::kSwitchover);  // 88 ms predicted
}

TEST(Convergence, CostsTheRestRawAtTheSlowerOfTheLastTwoRounds) {
  ConvergencePolicy p({milliseconds(100)});
  // Round 0 moved 100 MB/s of pages; round 1 compressed 2:1, so 200 MB/s of guest bytes went
  // as 100 MB/s on the wire. The last round may go raw: 8 MB cost 80 ms, not 40.
  EXPECT_EQ(p.after_round({0, 1.0, 100 * MB, 30 * MB, 100 * MB}).kind, Decision::kNextRound);
  auto d = p.after_round({1, 0.15, 30 * MB, 8 * MB, 15 * MB});
  EXPECT_NEAR(d.expected_downtime_ms, 90, 1);
  EXPECT_DOUBLE_EQ(d.bandwidth, 200 * MB);
}

TEST(Convergence, NoProgressFailsWithoutAutoConvergeAndSaysWhy) {
  ConvergencePolicy p({milliseconds(100)});
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

TEST(Convergence, AWorkingSetThatStopsShrinkingEndsTheCopying) {
  // A 20 MB hot set rewritten within every round: the linear prediction says a round pays,
  // what is left says otherwise.
  ConvergencePolicy p({milliseconds(1000)});
  EXPECT_EQ(p.after_round({0, 1.0, 100 * MB, 20 * MB}).kind, Decision::kNextRound);
  EXPECT_EQ(p.after_round({1, 0.2, 20 * MB, 20 * MB}).kind, Decision::kNextRound);
  EXPECT_EQ(p.after_round({2, 0.2, 20 * MB, 20 * MB}).kind, Decision::kSwitchover);
}

TEST(Convergence, ARoundThatRanSlowGuardsTheSwitchover) {
  // The guest dirties 60 MB/s against a 100 MB/s link: no round pays, the limit decides.
  // `slow` rounds: round 1 runs twice as long as predicted (a link or host hiccup), then the
  // link recovers. The plain prediction fits 100 ms after round 6 (66 ms); if the switch-over
  // ran as slow as round 1 did it would take 132 ms, so the guard copies one more round.
  for (const bool slow : {false, true}) {
    ConvergencePolicy p({milliseconds(100)});
    std::vector<RoundMeasurement> rounds{{0, 1.0, 100 * MB, 60 * MB}};
    if (slow)
      rounds.push_back({1, 1.206, 60 * MB, 72 * MB});
    else
      rounds.push_back({1, 0.6, 60 * MB, 36 * MB});
    for (uint32_t r = 2; r < 10; ++r) {
      const uint64_t sent = rounds.back().dirty_bytes;
      rounds.push_back({r, static_cast<double>(sent) / (100 * MB), sent, sent * 6 / 10});
    }
    Decision d;
    uint32_t switched = 0;
    for (const auto& m : rounds) {
      d = p.after_round(m);
      if (d.kind == Decision::kSwitchover) {
        switched = m.round;
        break;
      }
      EXPECT_EQ(d.kind, Decision::kNextRound) << m.round << ": " << d.reason;
    }
    ASSERT_EQ(d.kind, Decision::kSwitchover) << d.reason;
    if (!slow) {
      EXPECT_DOUBLE_EQ(d.slowdown, 1);
      EXPECT_LE(d.expected_downtime_ms, 100) << d.reason;
      continue;
    }
    EXPECT_NEAR(d.slowdown, 2, 0.01) << d.reason;
    EXPECT_LE(d.worst_downtime_ms, 100) << d.reason;
    // Without the guard it would have switched over one round earlier, at 66 ms predicted.
    EXPECT_LT(d.expected_downtime_ms, 50) << d.reason;
    EXPECT_GE(switched, 7u);
  }
}

TEST(Convergence, ASwitchoverAbortedForRunningLateWidensTheGuard) {
  // 100 MB/s, the guest dirtying 60 MB/s: the limit decides, at ~7.8 MB left (88 ms).
  ConvergencePolicy p({milliseconds(100)});
  std::vector<RoundMeasurement> rounds{{0, 1.0, 100 * MB, 60 * MB}};
  Decision d;
  for (uint32_t r = 1;; ++r) {
    d = p.after_round(rounds.back());
    if (d.kind == Decision::kSwitchover) break;
    ASSERT_EQ(d.kind, Decision::kNextRound) << d.reason;
    const uint64_t sent = rounds.back().dirty_bytes;
    rounds.push_back({r, static_cast<double>(sent) / (100 * MB), sent, sent * 6 / 10});
  }
  ASSERT_DOUBLE_EQ(d.slowdown, 1) << d.reason;
  EXPECT_GT(d.device_state_ms, -1);
  // Its pages ran at a third of the rate (the guard resumed the guest; the round ended live
  // and left the guest's 60 MB/s of dirtying for that time): the policy times that round
  // against what the switch-over predicted, and the next switch-over must fit even then.
  const uint64_t rest = rounds.back().dirty_bytes;
  const double late_s = 3.0 * static_cast<double>(rest) / (100 * MB);
  const uint64_t left = static_cast<uint64_t>(late_s * 60 * MB);
  RoundMeasurement aborted{rounds.back().round + 1, late_s, rest, left};
  aborted.aborted_switchover = true;
  d = p.after_round(aborted);
  EXPECT_NEAR(d.slowdown, 3, 0.05) << d.reason;
  EXPECT_NE(d.kind, Decision::kSwitchover) << d.reason;  // 3x the rest does not fit any more
  EXPECT_EQ(d.kind, Decision::kNextRound) << "a stall is not the guest outrunning the link";
  // ...but the link is still 100 MB/s, not the aborted round's third of it: the next round,
  // at the link's rate, is costed at that rate, and the rounds converge to a switch-over
  // that fits even 3x slow.
  const double next_s = static_cast<double>(left) / (100 * MB);
  d = p.after_round({aborted.round + 1, next_s, left, left * 6 / 10});
  EXPECT_NEAR(d.expected_downtime_ms - d.switchover_fixed_ms - d.device_state_ms,
              static_cast<double>(left * 6 / 10) / (100 * MB) * 1000, 0.5)
      << d.reason;
  uint64_t now_left = left * 6 / 10;
  for (uint32_t r = aborted.round + 2; d.kind != Decision::kSwitchover && r < aborted.round + 12;
       ++r) {
    ASSERT_EQ(d.kind, Decision::kNextRound) << d.reason;
    d = p.after_round({r, static_cast<double>(now_left) / (100 * MB), now_left, now_left * 6 / 10});
    now_left = now_left * 6 / 10;
  }
  EXPECT_EQ(d.kind, Decision::kSwitchover) << d.reason;
  EXPECT_LE(d.worst_downtime_ms, 100) << d.reason;
}

TEST(Convergence, MeasuresTheFixedCostsFromTheRounds) {
  // A link of 20 MB/s where every round costs 30 ms beyond its bytes (the soft-RoCE VM's
  // shape): the constants (3 ms a round, 10 ms a switch-over) give way to what was measured
  // once two rounds below 1 MB have been timed.
  ConvergencePolicy p({milliseconds(100)});
  auto d = p.after_round({0, 3.2, 64 * MB, 600'000});  // the bulk rate: 20 MB/s
  EXPECT_FALSE(d.fixed_measured);
  EXPECT_DOUBLE_EQ(d.switchover_fixed_ms, 10);
  d = p.after_round({1, 0.060, 600'000, 200'000});  // 30 ms of bytes + 30 ms fixed
  EXPECT_FALSE(d.fixed_measured) << "one round is not a measurement: " << d.reason;
  d = p.after_round({2, 0.040, 200'000, 100'000});  // 10 ms of bytes + 30 ms fixed
  ASSERT_TRUE(d.fixed_measured) << d.reason;
  EXPECT_NEAR(d.round_overhead_ms, 30, 0.5);
  EXPECT_NEAR(d.switchover_fixed_ms, 60, 1);  // the last round's and the commit exchange's
  // 100 KB left at the slower of the last two rounds (round 1: 10 MB/s with its fixed part).
  EXPECT_NEAR(d.expected_downtime_ms, 70, 1) << d.reason;
  // The rounds ran as predicted once their fixed part is known: no slowdown is charged.
  EXPECT_NEAR(d.slowdown, 1, 0.01) << d.reason;
}

TEST(Convergence, NoProgressCopiesOnWhileTheSmallestRestFitsInsteadOfFailing) {
  // 20 MB/s, 30 ms fixed a round (measured after round 2). The guest's rest reached 40 KB
  // (62 ms predicted), then two bursts left more than the rounds sent: no progress two rounds
  // in a row, with 1 MB left (110 ms). Failing there would end a migration whose rounds come
  // back to a rest that fits; the policy copies on, and switches over when they do.
  const std::vector<RoundMeasurement> rounds{{0, 3.2, 64 * MB, 600'000},
                                             {1, 0.060, 600'000, 40'000},
                                             {2, 0.032, 40'000, 900'000},
                                             {3, 0.075, 900'000, 1'000'000},
                                             {4, 0.080, 990'000, 40'000}};
  ConvergencePolicy p({milliseconds(100)});
  Decision d;
  for (size_t i = 0; i < 4; ++i) d = p.after_round(rounds[i]);
  EXPECT_EQ(d.kind, Decision::kNextRound) << d.reason;
  EXPECT_GT(d.worst_downtime_ms, 100) << d.reason;
  EXPECT_NE(d.reason.find("back at its smallest"), std::string::npos) << d.reason;
  d = p.after_round(rounds[4]);
  EXPECT_EQ(d.kind, Decision::kSwitchover) << d.reason;
  EXPECT_LE(d.worst_downtime_ms, 100) << d.reason;
  // With a 50 ms limit even the smallest rest does not fit: it fails, and says why.
  ConvergencePolicy q({milliseconds(50)});
  for (size_t i = 0; i < 4; ++i) d = q.after_round(rounds[i]);
  EXPECT_EQ(d.kind, Decision::kFail) << d.reason;
  EXPECT_NE(d.reason.find("fixed part, measured"), std::string::npos) << d.reason;
}

// ---- Recorded rounds (tests/unit/migration/traces/*.csv; each file says how it was made) ----

struct Trace {
  std::string name;
  std::vector<RoundMeasurement> rounds;
};

Trace load_trace(const std::string& name) {
  const auto path = std::filesystem::path(RAMSHIFT_TRACES_DIR) / (name + ".csv");
  std::ifstream in(path);
  EXPECT_TRUE(in) << path;
  Trace t{name, {}};
  std::string line;
  while (std::getline(in, line)) {
    if (line.empty() || line[0] == '#' || line.starts_with("round,")) continue;
    std::replace(line.begin(), line.end(), ',', ' ');
    std::istringstream fields(line);
    RoundMeasurement m;
    fields >> m.round >> m.seconds >> m.sent_guest_bytes >> m.wire_bytes >> m.dirty_bytes;
    if (!(fields >> m.device_state_bytes)) m.device_state_bytes = 0;  // a later column
    t.rounds.push_back(m);
  }
  EXPECT_FALSE(t.rounds.empty()) << path;
  return t;
}

struct Outcome {
  size_t round = 0;  // the round after which the policy ended the copying (or the last one)
  Decision decision;
};

// Feeds the recorded rounds until the policy switches over or gives up.
Outcome replay(const Trace& t, const ConvergenceConfig& config) {
  ConvergencePolicy p(config);
  Outcome o;
  for (const auto& m : t.rounds) {
    o.round = m.round;
    o.decision = p.after_round(m);
    if (o.decision.kind == Decision::kSwitchover || o.decision.kind == Decision::kFail) break;
  }
  return o;
}

// The rounds a human would pick from the whole trace: the remaining set of each costs
// downtime at the link's rate (the median raw rate of the rounds that sent at least 1 MB,
// so a round's fixed cost does not skew it). Picks within 3 ms of the trace's smallest rest
// are as good as each other: the switch-over's own fixed part varies more than that between
// runs (1.2-12 ms). So the first acceptable round is the first within 3 ms, and the last is
// the first within 1 ms: copying on from there gains nothing measurable.
struct Picks {
  uint32_t first = 0;
  uint32_t last = 0;
};

Picks human_picks(const Trace& t) {
  std::vector<double> rates;
  for (const auto& m : t.rounds)
    if (m.sent_guest_bytes >= MB)
      rates.push_back(std::min(m.sent_guest_bytes, m.wire_bytes) / m.seconds);
  std::sort(rates.begin(), rates.end());
  const double rate = rates[rates.size() / 2];
  uint64_t smallest = UINT64_MAX;
  for (const auto& m : t.rounds) smallest = std::min(smallest, m.dirty_bytes);
  auto first_within = [&](double ms) {
    for (const auto& m : t.rounds)
      if ((m.dirty_bytes - smallest) / rate * 1000 <= ms) return m.round;
    return t.rounds.back().round;
  };
  return {first_within(3), first_within(1)};
}

class ConvergingTrace : public ::testing::TestWithParam<const char*> {};

TEST_P(ConvergingTrace, StopsWhereAHumanWouldAndUnderTheLimit) {
  const Trace t = load_trace(GetParam());
  const ConvergenceConfig defaults;
  const Outcome o = replay(t, defaults);
  ASSERT_EQ(o.decision.kind, Decision::kSwitchover) << o.decision.reason;
  const Picks human = human_picks(t);
  EXPECT_GE(o.round, human.first) << o.decision.reason;
  EXPECT_LE(o.round, human.last) << o.decision.reason;
  EXPECT_LE(o.decision.expected_downtime_ms, defaults.downtime_limit.count());
  // The rest left is the copying's floor: at most a few hundred pages.
  EXPECT_LT(t.rounds[o.round].dirty_bytes, 600 * 1024u) << o.decision.reason;
}

INSTANTIATE_TEST_SUITE_P(Recorded, ConvergingTrace,
                         ::testing::Values("veth_1gbit_20M_converging_a",
                                           "veth_1gbit_20M_converging_b", "loopback_20M_floor",
                                           "constructed_bursty"));

TEST(ConvergenceTrace, TheIssuesScenarioCopiesOnWhereTodaysPolicyStoppedShort) {
  // Today's policy switched over after round 1 predicting 74 ms; it took 96.1 ms.
  const Trace t = load_trace("veth_1gbit_20M_default_undershoot");
  ConvergencePolicy p(ConvergenceConfig{});
  p.after_round(t.rounds[0]);
  const Decision d = p.after_round(t.rounds[1]);
  EXPECT_EQ(d.kind, Decision::kNextRound) << d.reason;
  EXPECT_GE(d.expected_downtime_ms, 96.1) << "the prediction must cover what was measured";
}

TEST(ConvergenceTrace, ABurstDoesNotEndTheCopying) {
  const Trace t = load_trace("constructed_bursty");
  ConvergencePolicy p(ConvergenceConfig{});
  for (size_t i = 0; i < 3; ++i) p.after_round(t.rounds[i]);
  const Decision d = p.after_round(t.rounds[3]);  // 2.29 MB left after a 4x burst
  EXPECT_EQ(d.kind, Decision::kNextRound) << d.reason;
}

TEST(ConvergenceTrace, OnALoadedHostTheSwitchoverIsCostedWithTheDeviceStateAndTheGuard) {
  // Recorded at load 5.5 on 2 cores: the policy without the device state switched over after
  // round 8 predicting 17 ms (51 ms with the 3x guard); it took 100.8 ms, of which the last
  // pages 21.4 (95 pages) and the 1 MB device state 34.7.
  const Trace t = load_trace("veth_1gbit_20M_loaded");
  ConvergencePolicy p(ConvergenceConfig{});
  Decision d;
  for (const auto& m : t.rounds) {
    d = p.after_round(m);
    if (d.kind == Decision::kSwitchover) break;
  }
  // Round 5 ran 3.07x its prediction (48 ms for 1.3 MB), round 6 as long: the host's fixed
  // part that moment, measured (~39 ms a round), not charged again as a 3x slowdown.
  EXPECT_TRUE(d.fixed_measured) << d.reason;
  EXPECT_GE(d.switchover_fixed_ms, 75) << d.reason;
  EXPECT_NEAR(d.slowdown, 1, 0.05) << d.reason;
  // The device state at the bulk rate (the rounds of >= 1 MB: ~100-120 MB/s) is ~9 ms of it.
  ConvergencePolicy without_state(ConvergenceConfig{});
  Decision plain;
  for (auto m : t.rounds) {
    m.device_state_bytes = 0;
    plain = without_state.after_round(m);
    if (plain.kind == Decision::kSwitchover) break;
  }
  EXPECT_NEAR(d.expected_downtime_ms - plain.expected_downtime_ms, 8.7, 1.5) << d.reason;
  // Whatever it decides, a switch-over it allows covers the pages and state measured there.
  if (d.kind == Decision::kSwitchover)
    EXPECT_GE(d.worst_downtime_ms, 21.4 + 34.7) << d.reason;
  else
    EXPECT_EQ(d.kind, Decision::kNextRound) << d.reason;
}

TEST(ConvergenceTrace, ABurstyGuestIsCaughtInALull) {
  // burst=4, recorded: round 1 ended in a burst with 3.6 MB left (77 ms, under the limit),
  // yet another round paid; round 2 fell in a lull and left nothing. The prediction then is
  // the fixed part and the 1 MB device state at the bulk rate (70 MB/s on the loaded host).
  const Trace t = load_trace("veth_1gbit_20M_bursty_loaded");
  ConvergencePolicy p(ConvergenceConfig{});
  p.after_round(t.rounds[0]);
  Decision d = p.after_round(t.rounds[1]);
  EXPECT_EQ(d.kind, Decision::kNextRound) << d.reason;
  EXPECT_LE(d.expected_downtime_ms, 100) << d.reason;
  d = p.after_round(t.rounds[2]);
  EXPECT_EQ(d.kind, Decision::kSwitchover) << d.reason;
  EXPECT_NEAR(d.expected_downtime_ms, 10 + 1048665 / 69.9e6 * 1000, 1) << d.reason;
  EXPECT_NEAR(d.slowdown, 1, 0.01) << "the rounds ran as predicted";
}

TEST(ConvergenceTrace, AStallingGuestFailsOrIsThrottledAsToday) {
  for (const char* name : {"veth_1gbit_100M_stalling", "veth_1gbit_20M_starved"}) {
    const Trace t = load_trace(name);
    // The recorded runs failed "not converging" after their last round.
    Outcome o = replay(t, ConvergenceConfig{});
    EXPECT_EQ(o.decision.kind, Decision::kFail) << name << ": " << o.decision.reason;
    EXPECT_EQ(o.round, t.rounds.back().round) << name;
    ConvergenceConfig auto_converge;
    auto_converge.auto_converge = true;
    ConvergencePolicy p(auto_converge);
    Decision d;
    for (const auto& m : t.rounds) d = p.after_round(m);
    EXPECT_EQ(d.kind, Decision::kThrottle) << name << ": " << d.reason;
    EXPECT_EQ(d.throttle_pct, 20) << name;
  }
}

// The soft-RoCE VM's runs that failed "not converging" at the defaults: every round cost
// 20-80 ms whatever it carried, against the constants' 3 ms. Measured, that fixed part is
// counted once (the switch-over's), not again as a slowdown; in two of the five runs the
// policy then switches over at the remaining set's floor, its prediction with the guard under
// the limit.
class SoftRoceStallTrace : public ::testing::TestWithParam<const char*> {};

TEST_P(SoftRoceStallTrace, SwitchesOverUnderTheLimitWithTheVmsFixedCosts) {
  const Trace t = load_trace(GetParam());
  const ConvergenceConfig defaults;
  const Outcome o = replay(t, defaults);
  ASSERT_EQ(o.decision.kind, Decision::kSwitchover) << o.decision.reason;
  EXPECT_TRUE(o.decision.fixed_measured) << o.decision.reason;
  EXPECT_LE(o.decision.worst_downtime_ms, defaults.downtime_limit.count()) << o.decision.reason;
  // The prediction carries the VM's fixed costs, not the host's: a round here took at least
  // 20 ms, so the last round and the commit exchange at least 40 (the runs that completed
  // measured 105 and 134 ms against 41 predicted with the constants).
  EXPECT_GE(o.decision.expected_downtime_ms, 40) << o.decision.reason;
  // At its floor: within 20 pages of the smallest rest reached.
  uint64_t smallest = UINT64_MAX;
  for (const auto& m : t.rounds) smallest = std::min(smallest, m.dirty_bytes);
  EXPECT_LE(t.rounds[o.round].dirty_bytes, smallest + 20 * 4096) << o.decision.reason;
}

INSTANTIATE_TEST_SUITE_P(Recorded, SoftRoceStallTrace,
                         ::testing::Values("softroce_rdma_64M_1M_stall_b",
                                           "softroce_tcp_64M_1M_stall_b"));

// The other three failed runs' rounds cost 35-60 ms each even at their floor: the last
// round and the commit exchange alone are predicted 75-146 ms, and the runs that completed
// measured 105 and 134 ms. At 100 ms they fail, saying so; at QEMU's 300 ms they switch over.
class SoftRoceSlowTrace : public ::testing::TestWithParam<const char*> {};

TEST_P(SoftRoceSlowTrace, FailsAt100MsNamingTheMeasuredFixedPartAndSwitchesOverAt300) {
  const Trace t = load_trace(GetParam());
  const Outcome o = replay(t, ConvergenceConfig{});
  ASSERT_EQ(o.decision.kind, Decision::kFail) << o.decision.reason;
  EXPECT_TRUE(o.decision.fixed_measured);
  EXPECT_GT(o.decision.switchover_fixed_ms, 60) << o.decision.reason;
  EXPECT_NE(o.decision.reason.find("measured from this migration's rounds"), std::string::npos)
      << o.decision.reason;
  ConvergenceConfig qemus;
  qemus.downtime_limit = milliseconds(300);
  const Outcome at300 = replay(t, qemus);
  ASSERT_EQ(at300.decision.kind, Decision::kSwitchover) << at300.decision.reason;
  EXPECT_LE(at300.decision.worst_downtime_ms, 300) << at300.decision.reason;
}

INSTANTIATE_TEST_SUITE_P(Recorded, SoftRoceSlowTrace,
                         ::testing::Values("softroce_rdma_64M_1M_stall_a",
                                           "softroce_rdma_64M_1M_stall_c",
                                           "softroce_tcp_64M_1M_stall_a"));

TEST(ConvergenceTrace, ALimitBelowTheFloorIsNotPromised) {
  // At 1 ms no switch-over fits; the guest at its floor looks stalled: fail as today.
  ConvergenceConfig c;
  c.downtime_limit = milliseconds(1);
  const Trace t = load_trace("loopback_20M_floor");
  const Outcome o = replay(t, c);
  EXPECT_EQ(o.decision.kind, Decision::kFail) << o.decision.reason;
  EXPECT_EQ(o.round, t.rounds.back().round);
}

}  // namespace
}  // namespace ramshift::migration
