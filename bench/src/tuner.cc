#include "ramshift/bench/tuner.h"

#include <fmt/format.h>

#include <nlohmann/json.hpp>

#include "ramshift/base/log.h"

namespace ramshift::bench {
namespace {

using Clock = std::chrono::steady_clock;

std::string size_option(uint32_t bytes) {
  return bytes % (1u << 20) == 0 ? fmt::format("{}M", bytes >> 20)
                                 : fmt::format("{}K", bytes >> 10);
}

// A numeric backend setting of `p` (the command passes every --rdma-* flag; `fallback` is
// the backend's default, for a caller that did not).
uint64_t setting(const BenchPoint& p, std::string_view name, uint64_t fallback) {
  auto v = p.backend_settings.number(name, fallback);
  return v ? v.value() : fallback;
}

bool setting_flag(const BenchPoint& p, std::string_view name) {
  auto v = p.backend_settings.flag(name, false);
  return v && v.value();
}

class Search {
 public:
  Search(const TuneOptions& o, const TuneProgress& p)
      : o_(o), progress_(p), start_(Clock::now()), best_point_(o.start) {}

  Result<TuneOutcome> run() {
    // The first trial is the defaults: it proves the peer answers and sets the bar.
    RS_RETURN_IF_ERROR(first());
    sweep("queues", o_.queues, [](BenchPoint& p, uint32_t v) { p.queues = v; });
    sweep("message size", o_.message_bytes, [](BenchPoint& p, uint32_t v) { p.message_bytes = v; });
    sweep("codec", o_.codecs, [](BenchPoint& p, pipeline::CodecMode v) { p.codec = v; });
    if (pipeline::codec_may_compress(best_point_.codec))
      sweep("zstd level", o_.zstd_levels, [](BenchPoint& p, int v) { p.zstd_level = v; });
    else
      out_.skipped.push_back("zstd level: the best codec does not compress");
    if (transport_ == "rdma") {
      sweep("rdma send-queue depth", std::vector<uint32_t>{64, 128, 256},
            [](BenchPoint& p, uint32_t v) {
              p.backend_settings.set_number("rdma-sq-depth", v);
              p.backend_settings.set_number(
                  "rdma-signal-every",
                  std::min<uint64_t>(setting(p, "rdma-signal-every", 16), v / 2));
            });
      sweep("rdma signal interval", std::vector<uint32_t>{4, 16, 32},
            [](BenchPoint& p, uint32_t v) {
              p.backend_settings.set_number(
                  "rdma-signal-every", std::min<uint64_t>(v, setting(p, "rdma-sq-depth", 128) / 2));
            });
      sweep("rdma inline threshold", std::vector<uint32_t>{0, 64, 256},
            [](BenchPoint& p, uint32_t v) { p.backend_settings.set_number("rdma-inline", v); });
      sweep("rdma polling", std::vector<bool>{false, true},
            [](BenchPoint& p, bool v) { p.backend_settings.set_flag("rdma-busy-poll", v); });
    } else {
      out_.skipped.push_back(fmt::format(
          "send-queue depth, signaling, inline, polling: rdma settings ({} has none)", transport_));
    }
    return std::move(out_);
  }

 private:
  double used() const {
    return std::chrono::duration<double>(Clock::now() - start_).count() /
           std::chrono::duration<double>(o_.budget).count();
  }
  // A trial takes its duration plus set-up; do not start one that would overrun the budget.
  bool budget_left() {
    auto trial = o_.settings.duration + std::chrono::milliseconds(500);
    if (Clock::now() + trial <= start_ + o_.budget) return true;
    out_.budget_ran_out = true;
    return false;
  }

  Result<BenchResult> trial(const std::string& dimension, const BenchPoint& p) {
    if (progress_) progress_(dimension, p, used());
    TuneTrial t{dimension, run_point(o_.settings, p)};
    auto r = t.result;
    out_.trials.push_back(std::move(t));
    if (!r) log::warn("tune: {} trial failed: {}", dimension, r.status().message());
    return r;
  }

  Status first() {
    auto r = trial("defaults", best_point_);
    if (!r) return r.status();
    transport_ = r->transport;
    out_.best = *r;
    return Status::ok();
  }

  template <typename T, typename Apply>
  void sweep(const std::string& dimension, const std::vector<T>& values, Apply apply) {
    const BenchPoint base = best_point_;
    for (const T& v : values) {
      BenchPoint p = base;
      apply(p, v);
      if (same(p, base)) continue;  // measured already (it is the current best)
      if (!budget_left()) {
        out_.skipped.push_back(dimension + " (and later): the time budget ran out");
        return;
      }
      auto r = trial(dimension, p);
      if (r && r->gbytes_per_s > out_.best.gbytes_per_s) {
        out_.best = *r;
        best_point_ = p;
      }
    }
  }

  static bool same(const BenchPoint& a, const BenchPoint& b) {
    return a.queues == b.queues && a.message_bytes == b.message_bytes && a.codec == b.codec &&
           a.zstd_level == b.zstd_level && a.backend_settings == b.backend_settings;
  }

  const TuneOptions& o_;
  const TuneProgress& progress_;
  Clock::time_point start_;
  BenchPoint best_point_;
  std::string transport_;
  TuneOutcome out_;
};

}  // namespace

Result<TuneOutcome> tune(const TuneOptions& options, const TuneProgress& progress) {
  Search search(options, progress);
  return search.run();
}

std::string profile_json(const TuneOptions& options, const TuneOutcome& outcome) {
  const BenchPoint& p = outcome.best.point;
  const uint32_t batch_pages = p.message_bytes / options.settings.page_size;
  nlohmann::json opts = {
      {"queues", p.queues},         {"message-size", size_option(p.message_bytes)},
      {"batch-pages", batch_pages}, {"codec", pipeline::codec_name(p.codec)},
      {"zstd-level", p.zstd_level},
  };
  if (outcome.best.transport == "rdma") {
    opts["rdma-sq-depth"] = setting(p, "rdma-sq-depth", 128);
    opts["rdma-signal-every"] = setting(p, "rdma-signal-every", 16);
    opts["rdma-inline"] = setting(p, "rdma-inline", 64);
    opts["rdma-busy-poll"] = setting_flag(p, "rdma-busy-poll");
  }
  nlohmann::json j = {
      {"ramshift_profile", 1},
      {"peer", options.settings.to.to_string()},
      {"transport", outcome.best.transport},
      {"pattern", guest::pattern_name(options.settings.pattern)},
      {"options", opts},
      {"measured",
       {{"gbytes_per_s", outcome.best.gbytes_per_s},
        {"gbit_per_s", outcome.best.gbit_per_s},
        {"trials", outcome.trials.size()}}},
  };
  return j.dump(2) + "\n";
}

}  // namespace ramshift::bench
