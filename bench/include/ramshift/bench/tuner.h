// `ramshift tune`: searches the settings that matter against a `bench --server` peer within a
// time budget, one dimension at a time (coordinate descent from the defaults): queues, then
// where the queue threads run (unpinned, one CPU each, all on one; on hosts with more than one
// usable CPU), then message size, then codec and zstd level, then — on rdma — send-queue
// depth, signaling interval, inline threshold and polling vs events. Traffic class and GID
// index are not explored: they choose the network's QoS class and path, not speed. Each
// configuration is measured `repeats` times (run_point), scored by the median guest GB/s, the
// figure a migration's duration follows; a configuration replaces the best only when its median
// beats the best's by more than the noise seen between the best's own repeats, so one lucky run
// decides nothing.
#pragma once

#include <chrono>
#include <functional>
#include <string>
#include <vector>

#include "ramshift/bench/throughput.h"

namespace ramshift::bench {

inline constexpr uint32_t kTuneRepeats = 3;

struct TuneOptions {
  BenchSettings settings;           // settings.duration = one trial
  std::chrono::seconds budget{60};  // stop starting trials once this is spent
  BenchPoint start;                 // the defaults the search starts from
  uint32_t repeats = 3;             // runs per configuration (median; spread = noise)
  // Queue counts above the CPUs this process may use are not tried: their threads would
  // share cores (doctor warns about it) and a short trial can still flatter them.
  std::vector<uint32_t> queues{1, 2, 4, 8};
  std::vector<uint32_t> message_bytes{64u << 10, 256u << 10, 1u << 20, 4u << 20};
  std::vector<pipeline::CodecMode> codecs{pipeline::CodecMode::kNone, pipeline::CodecMode::kZstd,
                                          pipeline::CodecMode::kAuto};
  std::vector<int> zstd_levels{-3, 1, 3};
};

struct TuneTrial {
  std::string dimension;  // "queues", "message size", ...
  Result<BenchResult> result = Status(ErrorCode::kCancelled, "not run");
};

struct TuneOutcome {
  std::vector<TuneTrial> trials;
  BenchResult best;  // the median run of the best configuration
  // The best configuration's spread between its repeats, (max - min) / median: what a
  // difference must exceed to count.
  double noise = 0;
  bool budget_ran_out = false;
  std::vector<std::string> skipped;  // dimensions not tried and why
};

// Called before each trial with its dimension and settings, and the budget fraction used.
using TuneProgress =
    std::function<void(const std::string& dimension, const BenchPoint& point, double budget_used)>;

// kUnreachable etc. when the first trial fails (no peer); later failed trials are recorded
// and skipped.
Result<TuneOutcome> tune(const TuneOptions& options, const TuneProgress& progress = {});

// The profile for `--profile`: {"ramshift_profile": 1, "options": {...}, "measured": {...}}.
std::string profile_json(const TuneOptions& options, const TuneOutcome& outcome);

}  // namespace ramshift::bench
