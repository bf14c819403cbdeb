// qemu-migrate's switch-over tuner replayed on query-migrate traces recorded from real QEMU
// (tests/unit/qemu/traces/, README.md there says how each was made) and on a few built ones.
#include "switchover_tuner.h"

#include <fmt/format.h>
#include <fmt/ranges.h>
#include <gtest/gtest.h>

#include <algorithm>
#include <cmath>
#include <cstdio>
#include <fstream>
#include <string>
#include <vector>

namespace ramshift::qemu {
namespace {

std::vector<MigrationSnapshot> load_trace(const std::string& name) {
  std::ifstream in(std::string(RAMSHIFT_QEMU_TRACES_DIR) + "/" + name);
  EXPECT_TRUE(in) << name;
  std::vector<MigrationSnapshot> out;
  for (std::string line; std::getline(in, line);)
    if (!line.empty())
      out.push_back(MigrationSnapshot::from_query_migrate(nlohmann::json::parse(line)));
  return out;
}

struct Replay {
  std::vector<TunerAction> actions;
  uint64_t final_limit_ms = 0;
  std::optional<uint64_t> last_bandwidth;
  TuningReport report;
};

Replay replay(const std::vector<MigrationSnapshot>& trace, SwitchoverTunerConfig config = {}) {
  SwitchoverTuner tuner(config);
  Replay r;
  for (const auto& s : trace) {
    auto a = tuner.observe(s);
    if (a.empty()) continue;
    if (a.switchover_bandwidth) r.last_bandwidth = a.switchover_bandwidth;
    r.actions.push_back(a);
  }
  r.final_limit_ms = tuner.downtime_limit_ms();
  r.report = tuner.report();
  return r;
}

std::vector<uint64_t> limits(const TuningReport& t) {
  std::vector<uint64_t> v;
  for (const auto& s : t.downtime_limit_steps) v.push_back(s.downtime_limit_ms);
  return v;
}

// The number of iterations (dirty-sync-count increases after the bulk pass) in a trace.
uint64_t iterations(const std::vector<MigrationSnapshot>& trace) {
  uint64_t n = 0;
  for (const auto& s : trace) n = std::max(n, s.dirty_sync_count);
  return n > 1 ? n - 1 : 0;
}

TEST(SwitchoverTuner, TraceFileRoundTripsQemuKeys) {
  const auto q = nlohmann::json::parse(
      R"({"status":"active","total-time":1234,"setup-time":7,"expected-downtime":40,
          "ram":{"remaining":4096000,"transferred":99999999,"dirty-sync-count":5,
                 "dirty-pages-rate":2500,"page-size":4096,"mbps":940.5,"total":1}})");
  const auto s = MigrationSnapshot::from_query_migrate(q);
  EXPECT_EQ(s.remaining_bytes, 4096000u);
  EXPECT_EQ(s.dirty_sync_count, 5u);
  EXPECT_DOUBLE_EQ(s.total_ms, 1234);
  const auto back = MigrationSnapshot::from_query_migrate(s.to_json());
  EXPECT_EQ(back.to_json(), s.to_json());
}

// The default floor of a replayed trace: kFloorMs from before `migrate`, with the rates of the
// last iteration reported beside it.
void expect_default_floor(const Replay& r) {
  EXPECT_EQ(r.report.floor_source, "fixed");
  EXPECT_EQ(r.report.floor_ms, SwitchoverTuner::kFloorMs);
  ASSERT_GE(r.report.downtime_limit_steps.size(), 1u);
  EXPECT_EQ(r.report.downtime_limit_steps[0].downtime_limit_ms, SwitchoverTuner::kFloorMs);
  ASSERT_TRUE(r.report.floor_link_rate);
  ASSERT_TRUE(r.report.floor_dirty_rate);
}

// A converging trace: the floor, never raised.
void expect_kept_the_floor(const Replay& r) {
  expect_default_floor(r);
  EXPECT_EQ(limits(r.report), std::vector<uint64_t>{5});
  EXPECT_EQ(static_cast<double>(r.final_limit_ms), r.report.floor_ms);
}

// QEMU 10.0 on a 1 Gbit/s veth, a guest dirtying 20 MB/s, tuned: every iteration still
// shrank what was left until QEMU switched over, so the limit stays at the floor, and the
// switch-over bandwidth is the link's sustained rate.
TEST(SwitchoverTuner, ConvergingQemu10KeepsTheFloorAndSetsTheLinkRate) {
  const auto trace = load_trace("qemu10_veth_1gbit_20M_converging.jsonl");
  ASSERT_GT(trace.size(), 20u);
  ASSERT_GE(iterations(trace), 2u) << "the trace must have iterations after the bulk pass";
  const auto r = replay(trace);
  expect_kept_the_floor(r);
  ASSERT_TRUE(r.last_bandwidth);
  // tbf rate 1gbit: 125 MB/s on the wire, TCP/IP headers and QEMU's own framing off it.
  EXPECT_GT(*r.last_bandwidth, 100e6);
  EXPECT_LT(*r.last_bandwidth, 126e6);
  // Set once and then only when it moved by more than kRateChange: a handful of updates,
  // not one per poll.
  EXPECT_LE(r.report.switchover_bandwidth_updates, 5u);
}

// The same with QEMU 7.2, which has no avail-switchover-bandwidth: only the limit is tuned, its
// floor the same.
TEST(SwitchoverTuner, ConvergingQemu72KeepsTheFloorWithoutSwitchoverBandwidth) {
  const auto trace = load_trace("qemu72_veth_1gbit_20M_converging.jsonl");
  ASSERT_GE(iterations(trace), 2u);
  const auto r = replay(trace, {.ceiling_ms = 300, .set_switchover_bandwidth = false});
  expect_kept_the_floor(r);
  for (const auto& a : r.actions) EXPECT_FALSE(a.switchover_bandwidth);
  EXPECT_FALSE(r.report.switchover_bandwidth);
}

// The stalling trace below, run on: its last `n` iterations (each 26-53 MB left, none
// shrinking) once more after its end, as a guest that keeps outrunning the link would. Built;
// the recording was cancelled at 45 s.
std::vector<MigrationSnapshot> stall_longer(std::vector<MigrationSnapshot> t, uint64_t n) {
  while (!t.empty() && t.back().status != "active") t.pop_back();
  const MigrationSnapshot end = t.back();
  std::vector<MigrationSnapshot> tail;
  for (const auto& s : t)
    if (s.dirty_sync_count + n > end.dirty_sync_count) tail.push_back(s);
  const MigrationSnapshot& from = tail.front();
  for (auto x : tail) {
    x.total_ms += end.total_ms - from.total_ms + 100;
    x.transferred_bytes += end.transferred_bytes - from.transferred_bytes;
    x.dirty_sync_count += n;
    t.push_back(x);
  }
  return t;
}

// A guest dirtying 20 MB/s across a 100 Mbit/s link (12.5 MB/s): what is left never
// shrinks, so the limit doubles, two iterations at a time, up to the ceiling, where QEMU
// can switch over. From the default floor that is two doublings more than from 20 ms: the
// 45 s recorded (13 iterations, ~2.5 s each late on) end at 160 ms, and 4 more iterations
// reach the ceiling; from a floor given as 20 ms the recording reaches it.
TEST(SwitchoverTuner, StallingTraceEndsWithTheLimitRaisedToTheCeiling) {
  const auto trace = load_trace("qemu10_veth_100mbit_20M_stalling.jsonl");
  const auto recorded = replay(trace);
  expect_default_floor(recorded);
  EXPECT_EQ(limits(recorded.report), (std::vector<uint64_t>{5, 10, 20, 40, 80, 160}));
  // The reported rates say why: QEMU saw the guest dirty more than the link moved.
  EXPECT_GT(*recorded.report.floor_dirty_rate, *recorded.report.floor_link_rate);
  const auto r = replay(stall_longer(trace, 6));
  EXPECT_EQ(r.final_limit_ms, 300u);
  EXPECT_EQ(limits(r.report), (std::vector<uint64_t>{5, 10, 20, 40, 80, 160, 300}));
  const auto given = replay(trace, {.floor_ms = 20});
  EXPECT_EQ(given.final_limit_ms, 300u);
  EXPECT_EQ(limits(given.report), (std::vector<uint64_t>{20, 40, 80, 160, 300}));
  // Step by step: each raise waited for its own kStallIterations iterations.
  for (const auto* t : {&r, &given}) {
    const auto& st = t->report.downtime_limit_steps;
    for (size_t i = 2; i < st.size(); ++i)
      EXPECT_GE(st[i].dirty_sync_count,
                st[i - 1].dirty_sync_count + SwitchoverTuner::kStallIterations)
          << "step " << i;
  }
  std::printf("ceiling reached at %.1f s from the default floor, %.1f s from 20 ms\n",
              r.report.downtime_limit_steps.back().at_ms / 1e3,
              given.report.downtime_limit_steps.back().at_ms / 1e3);
  ASSERT_TRUE(r.last_bandwidth);
  EXPECT_GT(*r.last_bandwidth, 9e6);
  EXPECT_LT(*r.last_bandwidth, 12.6e6);
  // A user's lower ceiling is never passed.
  const auto low = replay(trace, {.ceiling_ms = 50});
  EXPECT_EQ(limits(low.report), (std::vector<uint64_t>{5, 10, 20, 40, 50}));
}

// The link's bandwidth changes under QEMU: an iperf3 flow took half of the 1 Gbit/s veth from
// 1 s to 4 s into the migration. The switch-over bandwidth follows it down and back up (re-set
// each time it moved by more than kRateChange), and the iterations still shrink: the floor.
TEST(SwitchoverTuner, SwitchoverBandwidthFollowsALinkThatChanges) {
  const auto trace = load_trace("qemu10_veth_1gbit_20M_competing_flow.jsonl");
  const auto r = replay(trace);
  expect_kept_the_floor(r);
  std::vector<uint64_t> set;
  for (const auto& a : r.actions)
    if (a.switchover_bandwidth) set.push_back(*a.switchover_bandwidth);
  ASSERT_GE(set.size(), 3u);
  EXPECT_GT(set.front(), 90e6);                                // before the flow
  EXPECT_LT(*std::min_element(set.begin(), set.end()), 70e6);  // while it shared the link
  EXPECT_GT(set.back(), 100e6);                                // after it
}

// QEMU's own switch-over bandwidth is one 100 ms window (its `mbps`); on the recorded link it
// swings far more than the tuner's sustained rate, which is what the tuner replaces it with.
TEST(SwitchoverTuner, SustainedRateIsSteadierThanQemusWindow) {
  const auto trace = load_trace("qemu10_veth_1gbit_20M_converging.jsonl");
  SwitchoverTuner tuner({});
  std::vector<double> window, sustained;
  for (const auto& s : trace) {
    tuner.observe(s);
    if (s.status != "active" || !tuner.sustained_rate() || s.mbps <= 0) continue;
    window.push_back(s.mbps * 1e6 / 8);
    sustained.push_back(*tuner.sustained_rate());
  }
  ASSERT_GE(window.size(), 5u);
  auto spread = [](std::vector<double> v) {
    std::sort(v.begin(), v.end());
    return (v.back() - v.front()) / v[v.size() / 2];
  };
  EXPECT_GT(spread(window), 2 * spread(sustained))
      << "QEMU's window " << spread(window) << ", sustained " << spread(sustained);
}

// A burst: one iteration that comes back four times larger (the guest rewrote a burst of
// pages) in the middle of a converging trace. One iteration is not a stall; the limit stays.
// Two bursts in a row are, and raise it one step.
TEST(SwitchoverTuner, OneBurstDoesNotRaiseTheLimitTwoInARowDo) {
  auto trace = load_trace("qemu10_veth_1gbit_20M_converging.jsonl");
  // Built from the converging trace: after its first iteration, add iterations whose
  // remaining is 4x the trace's largest.
  uint64_t big = 0;
  size_t at = 0;
  for (size_t i = 0; i < trace.size(); ++i) {
    big = std::max(big, trace[i].remaining_bytes);
    if (!at && trace[i].dirty_sync_count >= 2) at = i;
  }
  ASSERT_GT(at, 0u);
  auto with_bursts = [&](int n) {
    std::vector<MigrationSnapshot> t(trace.begin(), trace.begin() + static_cast<long>(at) + 1);
    MigrationSnapshot s = trace[at];
    for (int k = 0; k < n; ++k) {
      s.total_ms += 100;
      s.transferred_bytes += 12'000'000;
      s.dirty_sync_count += 1;
      s.remaining_bytes = 4 * big;
      t.push_back(s);
    }
    for (size_t i = at + 1; i < trace.size(); ++i) {
      MigrationSnapshot x = trace[i];
      x.total_ms += 100.0 * n;
      x.transferred_bytes += 12'000'000ull * static_cast<uint64_t>(n);
      x.dirty_sync_count += static_cast<uint64_t>(n);
      t.push_back(x);
    }
    return t;
  };
  const SwitchoverTunerConfig given{.floor_ms = 20};
  EXPECT_EQ(limits(replay(with_bursts(1), given).report), std::vector<uint64_t>{20});
  EXPECT_EQ(limits(replay(with_bursts(2), given).report), (std::vector<uint64_t>{20, 40}));
  // The same from the default floor.
  EXPECT_EQ(limits(replay(with_bursts(1)).report), std::vector<uint64_t>{5});
  EXPECT_EQ(limits(replay(with_bursts(2)).report), (std::vector<uint64_t>{5, 10}));
}

// Built: what is left shrinks slowly (10% an iteration, less than kShrink asks) and never fits
// the limit: not converging in any useful time, so the limit is raised.
TEST(SwitchoverTuner, SlowShrinkIsAStall) {
  std::vector<MigrationSnapshot> t;
  double left = 50e6;
  for (int i = 0; i < 40; ++i) {
    MigrationSnapshot s;
    s.status = "active";
    s.total_ms = 100.0 * (i + 1);
    s.transferred_bytes = static_cast<uint64_t>(12e6 * (i + 1));  // 120 MB/s
    s.dirty_sync_count = 1 + static_cast<uint64_t>(i / 2);        // an iteration every 200 ms
    s.remaining_bytes = static_cast<uint64_t>(left);
    if (i % 2) left *= 0.9;
    t.push_back(s);
  }
  const SwitchoverTunerConfig given{.floor_ms = 20};
  const auto r = replay(t, given);
  EXPECT_GT(r.final_limit_ms, 20u);
  // And the same shrinking by half each iteration keeps the floor.
  left = 50e6;
  for (size_t i = 0; i < t.size(); ++i) {
    t[i].remaining_bytes = static_cast<uint64_t>(left);
    if (i % 2) left *= 0.5;
  }
  EXPECT_EQ(replay(t, given).final_limit_ms, 20u);
}

TEST(SwitchoverTuner, NothingHappensOutsidePreCopy) {
  SwitchoverTuner tuner({});
  MigrationSnapshot s;
  s.status = "setup";
  for (int i = 0; i < 30; ++i) {
    s.total_ms = 100.0 * i;
    s.transferred_bytes = static_cast<uint64_t>(i) * 10'000'000;
    EXPECT_TRUE(tuner.observe(s).empty());
  }
  // No iteration: the default floor or the one given, and no rates beside it.
  EXPECT_EQ(tuner.initial_downtime_limit_ms(), SwitchoverTuner::kFloorMs);
  EXPECT_EQ(tuner.report().floor_source, "fixed");
  EXPECT_FALSE(tuner.report().floor_link_rate);
  EXPECT_EQ(SwitchoverTuner({.floor_ms = 20}).initial_downtime_limit_ms(), 20u);
  // A ceiling under the floor wins.
  EXPECT_EQ(SwitchoverTuner({.floor_ms = 20, .ceiling_ms = 10}).initial_downtime_limit_ms(), 10u);
}

// The default floor is the same on every link: 1 Gbit/s, 100 Mbit/s, and a 10 Gbit/s tbf on
// which this host's 2 cores moved only ~150 MB/s (the traces' README), the guest at 20 MB/s in
// each; the reported rates follow the link. Where the guest converged the limit stayed at the
// floor; where it outran the link, the raising took it to the ceiling (the test above).
TEST(SwitchoverTuner, DefaultFloorOnEveryLink) {
  const auto gbit = replay(load_trace("qemu10_veth_1gbit_20M_converging.jsonl"));
  const auto fast = replay(load_trace("qemu10_veth_10gbit_20M_converging.jsonl"));
  const auto slow = replay(load_trace("qemu10_veth_100mbit_20M_stalling.jsonl"));
  for (const auto* r : {&gbit, &fast, &slow}) expect_default_floor(*r);
  EXPECT_GT(*fast.report.floor_link_rate, 1.2 * *gbit.report.floor_link_rate);
  EXPECT_LT(*slow.report.floor_link_rate, *gbit.report.floor_link_rate / 5);
  EXPECT_EQ(limits(fast.report), std::vector<uint64_t>{5});
  for (const auto* r : {&gbit, &fast, &slow})
    std::printf("link %.1f MB/s, dirtied %.1f MB/s; limits %s\n", *r->report.floor_link_rate / 1e6,
                *r->report.floor_dirty_rate / 1e6,
                fmt::format("{}", fmt::join(limits(r->report), " ")).c_str());
}

// A floor given (--tune-floor-ms) is kept as given, and no floor passes the ceiling.
TEST(SwitchoverTuner, GivenFloorAndCeilingBoundIt) {
  const auto trace = load_trace("qemu10_veth_1gbit_20M_converging.jsonl");
  const auto given = replay(trace, {.floor_ms = 40});
  EXPECT_EQ(limits(given.report), std::vector<uint64_t>{40});
  EXPECT_EQ(given.report.floor_source, "given");
  EXPECT_EQ(given.report.floor_ms, 40);
  // A ceiling under the default floor wins.
  const auto low = replay(trace, {.ceiling_ms = 3});
  EXPECT_EQ(low.report.floor_ms, 3);
  EXPECT_EQ(limits(low.report), std::vector<uint64_t>{3});
}

}  // namespace
}  // namespace ramshift::qemu
