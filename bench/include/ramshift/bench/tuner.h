// `ramshift tune`: searches the settings that matter against a `bench --server` peer within a
// time budget, one dimension at a time (coordinate descent from the defaults): queues, then
// message size, then codec and zstd level, then — on rdma — send-queue depth, signaling
// interval, inline threshold and polling vs events. Each trial is one bench configuration
// (run_point), scored by guest GB/s, the figure a migration's duration follows.
#pragma once

#include <chrono>
#include <functional>
#include <string>
#include <vector>

#include "ramshift/bench/throughput.h"

namespace ramshift::bench {

struct TuneOptions {
  BenchSettings settings;           // settings.duration = one trial
  std::chrono::seconds budget{60};  // stop starting trials once this is spent
  BenchPoint start;                 // the defaults the search starts from
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
  BenchResult best;
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
