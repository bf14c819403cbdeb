#include "ramshift/bench/tuner.h"

#include <fmt/format.h>

#include <algorithm>
#include <nlohmann/json.hpp>

#include "ramshift/base/cpu_affinity.h"
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
    std::vector<uint32_t> queues, too_many;
    const std::vector<uint32_t> usable = usable_cpus();
    const auto cpus = static_cast<uint32_t>(usable.size());
    for (uint32_t q : o_.queues) (q <= cpus ? queues : too_many).push_back(q);
    if (!too_many.empty())
      out_.skipped.push_back(fmt::format("queues {}: more than the {} CPUs this host gives us",
                                         fmt::join(too_many, ","), cpus));
    sweep("queues", queues, [](BenchPoint& p, uint32_t v) { p.queues = v; });
    // Where the queue threads run, for the queue count just chosen: where the scheduler puts
    // them, one CPU each (spread), or all on one (packed: leaves the other cores to the
    // guest). Queue counts above the CPUs are not tried, so a spread always fits.
    if (cpus > 1) {
      sweep("queue placement", std::vector<Placement>{kUnpinned, kSpread, kPacked},
            [&usable](BenchPoint& p, Placement v) { p.cpus = place(usable, p.queues, v); });
    } else {
      out_.skipped.push_back("queue placement: this host gives us one CPU");
    }
    sweep("batch size", o_.message_bytes, [](BenchPoint& p, uint32_t v) { p.message_bytes = v; });
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

  static std::vector<uint32_t> usable_cpus() {
    auto list = parse_cpu_list(allowed_cpu_list(), "cpus");
    return list && !list->empty() ? std::move(list).value() : std::vector<uint32_t>{0};
  }

  enum Placement { kUnpinned, kSpread, kPacked };
  static std::vector<uint32_t> place(const std::vector<uint32_t>& usable, uint32_t queues,
                                     Placement how) {
    switch (how) {
      case kUnpinned:
        return {};
      case kSpread:
        return {usable.begin(), usable.begin() + std::min<size_t>(queues, usable.size())};
      case kPacked:
        return {usable.front()};
    }
    return {};
  }

  Result<BenchResult> trial(const std::string& dimension, const BenchPoint& p) {
    if (progress_) progress_(dimension, p, used());
    TuneTrial t{dimension, run_point(o_.settings, p)};
    auto r = t.result;
    out_.trials.push_back(std::move(t));
    if (!r) log::warn("tune: {} trial failed: {}", dimension, r.status().message());
    return r;
  }

  // `repeats` runs of one configuration (fewer if the budget runs out): the median run and
  // the spread. Fails with the first run's error.
  struct Measured {
    BenchResult median;
    double spread = 0;
  };
  Result<Measured> measure(const std::string& dimension, const BenchPoint& p) {
    std::vector<BenchResult> runs;
    for (uint32_t i = 0; i < std::max(1u, o_.repeats); ++i) {
      if (i > 0 && !budget_left()) break;
      auto r = trial(dimension, p);
      if (!r) {
        if (runs.empty()) return r.status();
        continue;
      }
      runs.push_back(*r);
    }
    if (runs.empty()) return Status(ErrorCode::kCancelled, "no run");
    std::sort(runs.begin(), runs.end(),
              [](const auto& a, const auto& b) { return a.gbytes_per_s < b.gbytes_per_s; });
    Measured m{runs[runs.size() / 2], 0};
    if (m.median.gbytes_per_s > 0)
      m.spread = (runs.back().gbytes_per_s - runs.front().gbytes_per_s) / m.median.gbytes_per_s;
    return m;
  }

  Status first() {
    auto m = measure("defaults", best_point_);
    if (!m) return m.status();
    transport_ = m->median.transport;
    out_.best = m->median;
    out_.noise = m->spread;
    return Status::ok();
  }

  template <typename T, typename Apply>
  void sweep(const std::string& dimension, const std::vector<T>& values, Apply apply) {
    const BenchPoint base = best_point_;
    std::vector<BenchPoint> tried{base};  // the current best is measured already
    for (const T& v : values) {
      BenchPoint p = base;
      apply(p, v);
      // Two values can make one configuration (one queue spread or packed): measure it once.
      if (std::any_of(tried.begin(), tried.end(), [&](const auto& t) { return same(p, t); }))
        continue;
      tried.push_back(p);
      if (!budget_left()) {
        out_.skipped.push_back(dimension + " (and later): the time budget ran out");
        return;
      }
      auto m = measure(dimension, p);
      // A win must clear the noise of both measurements (and 2%, below which no repeat
      // count here tells two settings apart).
      const double margin = std::max({out_.noise, m ? m->spread : 0.0, 0.02});
      if (m && m->median.gbytes_per_s > out_.best.gbytes_per_s * (1 + margin)) {
        out_.best = m->median;
        out_.noise = m->spread;
        best_point_ = p;
      }
    }
  }

  static bool same(const BenchPoint& a, const BenchPoint& b) {
    return a.queues == b.queues && a.message_bytes == b.message_bytes && a.codec == b.codec &&
           a.zstd_level == b.zstd_level && a.backend_settings == b.backend_settings &&
           a.cpus == b.cpus;
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
  // One name for one setting: `send`, `bench` and `tune` all take --batch-size in bytes.
  nlohmann::json opts = {
      {"queues", p.queues},
      {"batch-size", size_option(p.message_bytes)},
      {"codec", pipeline::codec_name(p.codec)},
      {"zstd-level", p.zstd_level},
  };
  // As send's --cpus takes it; measured on the sending host, so `receive` skips it.
  if (!p.cpus.empty()) opts["cpus"] = fmt::format("{}", fmt::join(p.cpus, ","));
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
        {"noise", outcome.noise},
        {"repeats", options.repeats},
        {"trials", outcome.trials.size()}}},
  };
  return j.dump(2) + "\n";
}

}  // namespace ramshift::bench
