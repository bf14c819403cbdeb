// `ramshift bench`: a throughput server, or a client sweeping configurations against one.
#include <fmt/format.h>
#include <unistd.h>

#include <csignal>
#include <fstream>

#include "bench_options.h"
#include "commands.h"
#include "profile.h"
#include "ramshift/base/cpu_affinity.h"
#include "ramshift/base/log.h"
#include "ramshift/base/units.h"
#include "ramshift/bench/throughput.h"

namespace ramshift::cli {
namespace {

std::atomic<bool> g_stop{false};
void on_signal(int) { g_stop = true; }

// Where `bench` writes its results besides the table (--json, --csv, --plot).
struct BenchOutputs {
  std::string json, csv, plot;
};

Status write_text(const std::string& path, const std::string& text) {
  if (path.empty()) return Status::ok();
  if (path == "-") {
    std::fputs(text.c_str(), stdout);
    return Status::ok();
  }
  std::ofstream out(path);
  out << text;
  if (!out) return Status(ErrorCode::kIo, fmt::format("cannot write {}", path));
  return Status::ok();
}

// Runs every configuration against the server: a table row as each ends, then the files.
int run_sweep(const bench::BenchSettings& settings, const std::vector<bench::BenchPoint>& points,
              const BenchOutputs& out) {
  std::vector<bench::BenchResult> results;
  int rc = 0;
  PointProgress progress;
  bool header = false;
  FILE* table_out = (out.json == "-" || out.csv == "-") ? stderr : stdout;  // keep stdout parseable
  for (size_t i = 0; i < points.size(); ++i) {
    progress.start(i, points.size(), points[i]);
    auto r = bench::run_point(settings, points[i], [&](double f) { progress.update(f); });
    progress.done();
    if (!r) {
      log::error("queues={} batch={} codec={}: {}", points[i].queues,
                 format_bytes(points[i].message_bytes), pipeline::codec_name(points[i].codec),
                 r.status().message());
      rc = exit_code_for(r.status());
      if (r.status().code() == ErrorCode::kUnreachable) break;  // no server: stop at once
      continue;
    }
    results.push_back(*r);
    if (log::level() <= log::Level::kWarn) {  // one row as each configuration ends
      std::string table = bench::results_table({*r});
      std::fputs(header ? table.substr(table.find('\n') + 1).c_str() : table.c_str(), table_out);
      std::fflush(table_out);
      header = true;
    }
  }
  for (auto [path, text] : {std::pair{out.json, bench::results_json(settings, results)},
                            std::pair{out.csv, bench::results_csv(results)}}) {
    if (Status s = write_text(path, text); !s) {
      log::error("{}", s.message());
      rc = rc ? rc : 1;
    }
  }
  if (!out.plot.empty() && !results.empty()) {
    if (Status s = bench::plot_results(results, out.plot); !s) {
      log::error("{}", s.message());
      rc = rc ? rc : 1;
    }
  }
  return rc;
}

}  // namespace

Result<std::vector<bench::BenchPoint>> BenchSweep::points(
    const transport::BackendSettings& backend_settings, uint32_t page_size) const {
  std::vector<bench::BenchPoint> out;
  std::vector<uint32_t> cpu_list;
  if (!cpus.empty()) {
    RS_ASSIGN_OR_RETURN(cpu_list, parse_cpu_list(cpus, "cpus"));
  }
  for (const auto& codec_name : codecs) {
    RS_ASSIGN_OR_RETURN(auto codec, pipeline::parse_codec(codec_name));
    for (const auto& size_text : message_sizes) {
      RS_ASSIGN_OR_RETURN(uint64_t size, parse_size(size_text));
      if (size < page_size || size % page_size != 0 || size / page_size > 1024)
        return Status(
            ErrorCode::kInvalidArgument,
            fmt::format("--batch-size {} must be 1..1024 pages of {} bytes", size_text, page_size));
      for (uint32_t q : queues) {
        if (q < 1 || q > 64)
          return Status(ErrorCode::kInvalidArgument,
                        fmt::format("--queues {} is outside 1..64", q));
        out.push_back(
            {q, static_cast<uint32_t>(size), codec, zstd_level, backend_settings, cpu_list});
      }
    }
  }
  return out;
}

void BenchSweep::add_to(CLI::App* cmd) {
  cmd->add_option("--queues", queues, "data queues, a list: 1,2,4,8")
      ->delimiter(',')
      ->capture_default_str();
  cmd->add_option("--batch-size", message_sizes,
                  "bytes of pages per batch, a list: 64K,1M,4M (<= 1024 pages)")
      ->delimiter(',')
      ->capture_default_str();
  // The name before the vocabulary was unified; kept working, not shown.
  cmd->add_option("--message-size", message_sizes)->delimiter(',')->group("");
  cmd->add_option("--codec", codecs, "codecs, a list: none,zstd,auto")
      ->delimiter(',')
      ->capture_default_str();
  cmd->add_option("--zstd-level", zstd_level, "zstd level (negative = faster)")
      ->capture_default_str()
      ->check(CLI::Range(-7, 19));
  add_cpus_option(cmd, cpus);
}

Status BenchCommon::resolve(bench::BenchSettings& s) const {
  RS_ASSIGN_OR_RETURN(s.to, transport::parse_uri(to));
  RS_ASSIGN_OR_RETURN(s.pattern, bench::parse_bench_pattern(pattern));
  RS_ASSIGN_OR_RETURN(s.working_set_bytes, parse_size(working_set));
  RS_ASSIGN_OR_RETURN(s.xbzrle_cache_bytes, parse_size(xbzrle_cache));
  if (seconds <= 0 || seconds > 3600)
    return Status(ErrorCode::kInvalidArgument, "--seconds must be in (0, 3600]");
  s.duration = std::chrono::milliseconds(static_cast<int64_t>(seconds * 1000));
  s.connect_timeout = std::chrono::milliseconds(static_cast<int64_t>(connect_timeout_s * 1000));
  if (s.working_set_bytes < (1u << 20) || s.working_set_bytes > (4ull << 30))
    return Status(ErrorCode::kInvalidArgument, "--working-set must be 1M..4G");
  return Status::ok();
}

void BenchCommon::add_to(CLI::App* cmd) {
  cmd->add_option("--to", to, "the `ramshift bench --server` peer, e.g. tcp://10.0.0.2:7100");
  cmd->add_option("--pattern", pattern, "memory contents: mixed|random|zero|text|delta")
      ->capture_default_str();
  cmd->add_option("--seconds", seconds, "seconds per configuration")->capture_default_str();
  cmd->add_option("--working-set", working_set,
                  "guest memory cycled through per generation (two generations on the client)")
      ->capture_default_str();
  cmd->add_option("--xbzrle-cache", xbzrle_cache, "XBZRLE cache per side, all queues")
      ->capture_default_str();
  cmd->add_option("--connect-timeout", connect_timeout_s, "seconds to wait for the server")
      ->capture_default_str();
}

void PointProgress::start(size_t index, size_t total, const bench::BenchPoint& p) {
  label_ = fmt::format("[{}/{}] queues={} batch={} codec={}", index + 1, total, p.queues,
                       format_bytes(p.message_bytes), pipeline::codec_name(p.codec));
  update(0);
}

void PointProgress::update(double fraction) {
  if (!show_) return;
  std::fprintf(stderr, "\r%s  %3.0f%%\033[K", label_.c_str(), std::min(1.0, fraction) * 100);
  std::fflush(stderr);
}

void PointProgress::done() {
  if (show_) std::fprintf(stderr, "\r\033[K");
}

PointProgress::PointProgress() : show_(log::level() <= log::Level::kWarn && ::isatty(2)) {}

Runner add_bench(CLI::App& app) {
  struct Options {
    bool server = false;
    std::string listen;
    bool once = false;
    bool raw = false;
    std::string frame_size;
    BenchCommon common;
    BenchSweep sweep;
    BackendFlags rdma;
    BenchOutputs out;
  };
  auto o = std::make_shared<Options>();
  auto* cmd = app.add_subcommand(
      "bench",
      "measure throughput over a transport: `bench --server --listen URI` on one host, "
      "`bench --to URI` on the other");
  cmd->add_flag("--server", o->server, "serve configurations (with --listen)");
  cmd->add_option("--listen", o->listen, "server: where to listen, e.g. tcp://0.0.0.0:7100");
  cmd->add_flag("--once", o->once, "server: exit after one configuration");
  cmd->add_flag("--raw", o->raw,
                "dpdk:// only: the port's raw ceiling, frames blasted and counted with no "
                "protocol (as testpmd txonly/rxonly), for --seconds");
  cmd->add_option("--frame-size", o->frame_size,
                  "--raw: payload bytes per frame after the Ethernet, IPv4, UDP and ramshift "
                  "headers (default and maximum: the port's MTU less 48, 1452 at 1500)");
  o->common.add_to(cmd);
  o->sweep.add_to(cmd);
  o->rdma.add_to(cmd);
  cmd->add_option("--json", o->out.json, "write results as JSON to FILE ('-' = stdout)");
  cmd->add_option("--csv", o->out.csv, "write results as CSV to FILE ('-' = stdout)");
  cmd->add_option("--plot", o->out.plot,
                  "draw throughput charts to FILE.svg or FILE.png (gnuplot)");
  add_profile_option(cmd);
  return [o, cmd]() -> int {
    auto rdma = o->rdma.resolve();
    if (!rdma) return fail_with(rdma.status());
    if (o->raw) {
      // The protocol's knobs mean nothing to a raw run: refused rather than ignored.
      for (const char* flag : {"--queues", "--batch-size", "--codec", "--zstd-level", "--cpus",
                               "--pattern", "--working-set", "--csv", "--plot", "--once"})
        if (cmd->count(flag) > 0)
          return fail_with(
              Status(ErrorCode::kInvalidArgument, fmt::format("{} does not go with --raw", flag)));
      if (o->server ? (o->listen.empty() || !o->common.to.empty()) : o->common.to.empty())
        return fail_with(Status(ErrorCode::kInvalidArgument,
                                "bench --raw needs --to URI (sender) or --server --listen URI "
                                "(receiver)"));
      RawBenchRun run{.server = o->server,
                      .address = o->server ? o->listen : o->common.to,
                      .seconds = o->common.seconds,
                      .connect_timeout_s = o->common.connect_timeout_s,
                      .frame_size = o->frame_size,
                      .settings = *rdma,
                      .json = o->out.json};
      std::signal(SIGINT, on_signal);
      std::signal(SIGTERM, on_signal);
      return run_raw_bench(run, g_stop);
    }
    if (!o->frame_size.empty())
      return fail_with(Status(ErrorCode::kInvalidArgument, "--frame-size goes with --raw"));
    if (o->server) {
      if (o->listen.empty() || !o->common.to.empty())
        return fail_with(
            Status(ErrorCode::kInvalidArgument, "--server takes --listen URI, not --to"));
      bench::ServerOptions so;
      auto uri = transport::parse_uri(o->listen);
      if (!uri) return fail_with(uri.status());
      so.listen = *uri;
      so.backend_settings = *rdma;
      so.once = o->once;
      so.on_served = [](const std::string& line) {
        // A served run is news, not a problem: shown unless -q, like the summary of `receive`.
        if (log::level() <= log::Level::kWarn) fmt::print(stderr, "ramshift: {}\n", line);
      };
      so.on_listening = [](const transport::Uri& at) {  // like `receive`: scripts read it
        std::printf("listening on %s\n", at.to_string().c_str());
        std::fflush(stdout);
      };
      std::signal(SIGINT, on_signal);
      std::signal(SIGTERM, on_signal);
      Status s = bench::serve(so, g_stop);
      return s ? 0 : fail_with(s);
    }
    if (o->common.to.empty())
      return fail_with(Status(ErrorCode::kInvalidArgument,
                              "bench needs --to URI (client) or --server --listen URI"));
    bench::BenchSettings settings;
    if (Status s = o->common.resolve(settings); !s) return fail_with(s);
    auto points = o->sweep.points(*rdma, settings.page_size);
    if (!points) return fail_with(points.status());
    return run_sweep(settings, *points, o->out);
  };
}

}  // namespace ramshift::cli
