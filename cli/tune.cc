// `ramshift tune`: search settings against a bench server and write a profile.
#include <unistd.h>

#include <fmt/format.h>

#include <algorithm>
#include <fstream>

#include "bench_options.h"
#include "commands.h"
#include "ramshift/base/log.h"
#include "ramshift/base/units.h"
#include "ramshift/bench/tuner.h"

namespace ramshift::cli {

Runner add_tune(CLI::App& app) {
  struct Options {
    BenchCommon common;
    double budget_s = 60;
    uint32_t top = 5;
    uint32_t repeats = bench::kTuneRepeats;
    std::string profile_out;
    std::string json;
    BackendFlags rdma;
  };
  auto o = std::make_shared<Options>();
  o->common.seconds = 1;
  auto* cmd =
      app.add_subcommand("tune",
                         "find the best queues, queue-thread CPUs, batch size, codec and verbs "
                         "settings against a `ramshift bench --server` peer, and write a profile");
  cmd->footer(
      "--rdma-tos and --rdma-gid-index are used as given, never explored: they pick the "
      "network's QoS class and path (set them as the fabric requires), not speed.");
  o->common.add_to(cmd);
  cmd->get_option("--to")->required();
  cmd->add_option("--budget", o->budget_s, "seconds the whole search may take")
      ->capture_default_str()
      ->check(CLI::Range(1.0, 86400.0));
  cmd->add_option("--top", o->top, "configurations to list")->capture_default_str();
  cmd->add_option("--repeats", o->repeats,
                  "runs per configuration: the median decides, the spread is the noise a "
                  "better setting must beat")
      ->capture_default_str()
      ->check(CLI::Range(1, 15));
  cmd->add_option("--profile-out", o->profile_out,
                  "write the best settings as a profile for --profile");
  cmd->add_option("--json", o->json, "write every trial as JSON to FILE ('-' = stdout)");
  o->rdma.add_to(cmd);
  return [o]() -> int {
    bench::TuneOptions t;
    if (Status s = o->common.resolve(t.settings); !s) return fail_with(s);
    auto rdma = o->rdma.resolve();
    if (!rdma) return fail_with(rdma.status());
    t.start.backend_settings = *rdma;
    t.budget = std::chrono::seconds(static_cast<int64_t>(o->budget_s));
    t.repeats = o->repeats;
    // The progress line rewrites itself with escapes: only on a terminal.
    const bool show = log::level() <= log::Level::kWarn && ::isatty(STDERR_FILENO);
    auto outcome =
        bench::tune(t, [&](const std::string& dim, const bench::BenchPoint& p, double used) {
          if (show)
            std::fprintf(
                stderr, "\rtune: %-22s queues=%u cpus=%s batch=%s codec=%s  [budget %3.0f%%]\033[K",
                dim.c_str(), p.queues,
                p.cpus.empty() ? "any" : fmt::format("{}", fmt::join(p.cpus, ",")).c_str(),
                format_bytes(p.message_bytes).c_str(), pipeline::codec_name(p.codec),
                std::min(1.0, used) * 100);
        });
    if (show) std::fprintf(stderr, "\r\033[K");
    if (!outcome) return fail_with(outcome.status());
    std::vector<bench::BenchResult> ok;
    for (auto& trial : outcome->trials)
      if (trial.result) ok.push_back(*trial.result);
    std::sort(ok.begin(), ok.end(),
              [](const auto& a, const auto& b) { return a.gbytes_per_s > b.gbytes_per_s; });
    if (ok.size() > o->top) ok.resize(o->top);
    FILE* out = o->json == "-" ? stderr : stdout;
    std::fprintf(out,
                 "%zu trials; the best %zu by guest GB/s (runs of the chosen setting differed "
                 "by %.0f%%):\n",
                 outcome->trials.size(), ok.size(), outcome->noise * 100);
    std::fputs(bench::results_table(ok).c_str(), out);
    // Each dimension explored and its runs (repeats included), in the order tried.
    std::vector<std::pair<std::string, size_t>> dims;
    for (const auto& trial : outcome->trials) {
      if (dims.empty() || dims.back().first != trial.dimension)
        dims.emplace_back(trial.dimension, 0);
      ++dims.back().second;
    }
    std::string tried;
    for (const auto& [dim, runs] : dims)
      tried += fmt::format("{}{} ({} runs)", tried.empty() ? "" : ", ", dim, runs);
    std::fprintf(out, "tried: %s\n", tried.c_str());
    for (const auto& s : outcome->skipped) std::fprintf(out, "not tried: %s\n", s.c_str());
    if (!o->json.empty()) {
      std::vector<bench::BenchResult> all;
      for (auto& trial : outcome->trials)
        if (trial.result) all.push_back(*trial.result);
      std::string text = bench::results_json(t.settings, all) + "\n";
      if (o->json == "-")
        std::fputs(text.c_str(), stdout);
      else
        std::ofstream(o->json) << text;
    }
    if (!o->profile_out.empty()) {
      std::ofstream f(o->profile_out);
      f << bench::profile_json(t, *outcome);
      if (!f) return fail_with(Status(ErrorCode::kIo, "cannot write " + o->profile_out));
      std::fprintf(out, "profile written to %s (use it with --profile %s)\n",
                   o->profile_out.c_str(), o->profile_out.c_str());
    }
    return 0;
  };
}

}  // namespace ramshift::cli
