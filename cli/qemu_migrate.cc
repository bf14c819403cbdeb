// `ramshift qemu-migrate`: flags to qemu::run_qemu_migration (ramshift/qemu/migrate_driver.h,
// which drives both QEMUs over QMP and the bridges), then QEMU's own figures next to the
// bridges', on stderr and as JSON.
#include <fmt/format.h>
#include <fmt/ranges.h>
#include <unistd.h>

#include <atomic>
#include <cstdio>
#include <fstream>

#include "commands.h"
#include "control.h"
#include "ramshift/base/log.h"
#include "ramshift/base/units.h"
#include "ramshift/qemu/migrate_driver.h"
#include "signals.h"

namespace ramshift::cli {
namespace {

struct MigrateOptions {
  std::string src_qmp, dst_qmp;
  std::string via;      // bridges in this process, joined over this transport URI
  std::string dst_uri;  // without --via: QEMU-to-QEMU (or externally bridged) URIs
  std::string src_uri;
  uint32_t multifd_channels = 0;
  std::string multifd_compression;  // QEMU's own (none|zlib|zstd); empty = QEMU's default
  std::string codec = "auto";
  bool passthrough = false;
  std::string max_bandwidth = "0";
  double downtime_limit_ms = 0;
  bool tune_switchover = true;
  std::optional<double> tune_floor_ms;
  std::string trace;
  std::optional<double> postcopy_after_s;
  bool postcopy_recover = true;
  bool postcopy_preempt = false;
  bool postcopy_blocktime = false;
  bool auto_converge = false;
  double timeout_s = 600;
  std::string json;
  std::string control;  // --control unix:PATH
  BackendFlags rdma;
};

// "qemu-migrate: active 312 MiB of 1 GiB left, 75.2 MB/s" on a terminal, from QEMU's figures.
class ProgressLine {
 public:
  ProgressLine() : show_(isatty(STDERR_FILENO) && log::level() <= log::Level::kWarn) {}
  void operator()(const migration::Progress& p) {
    if (!show_) return;
    if (migration::is_final(p.status)) {
      if (drawn_) std::fputc('\n', stderr);
      drawn_ = false;
      return;
    }
    fmt::print(stderr, "\rqemu-migrate: {} {} of {} left, {}   ",
               migration::migration_status_name(p.status), format_bytes(p.remaining_bytes()),
               format_bytes(p.total_bytes), format_rate(p.throughput_bytes_per_s()));
    drawn_ = true;
  }

 private:
  bool show_;
  bool drawn_ = false;
};

// Flags to the driver's config. The bridges' settings matter only with --via.
Result<qemu::MigrateDriverConfig> make_config(const MigrateOptions& o) {
  qemu::MigrateDriverConfig c;
  c.source_qmp = o.src_qmp;
  c.destination_qmp = o.dst_qmp;
  c.via = o.via;
  c.destination_uri = o.dst_uri;
  c.source_uri = o.src_uri;
  c.multifd_channels = o.multifd_channels;
  c.multifd_compression = o.multifd_compression;
  RS_ASSIGN_OR_RETURN(c.max_bandwidth, parse_size(o.max_bandwidth));
  c.downtime_limit_ms = o.downtime_limit_ms;
  c.tune = o.tune_switchover;
  c.tune_floor_ms = o.tune_floor_ms;
  if (c.tune_floor_ms && !c.tune)
    return Status(ErrorCode::kInvalidArgument, "--tune-floor-ms needs --tune-switchover true");
  c.trace_path = o.trace;
  if (o.postcopy_after_s) c.postcopy_after = std::chrono::duration<double>(*o.postcopy_after_s);
  c.postcopy_recover = o.postcopy_recover;
  c.postcopy_preempt = o.postcopy_preempt;
  if (c.postcopy_preempt && !c.postcopy_after)
    return Status(ErrorCode::kInvalidArgument, "--postcopy-preempt needs --postcopy-after");
  c.postcopy_blocktime = o.postcopy_blocktime;
  if (c.postcopy_blocktime && !c.postcopy_after)
    return Status(ErrorCode::kInvalidArgument, "--postcopy-blocktime needs --postcopy-after");
  c.auto_converge = o.auto_converge;
  c.timeout = std::chrono::duration<double>(o.timeout_s);
  if (!o.via.empty()) {
    RS_ASSIGN_OR_RETURN(c.bridge.codec.mode, pipeline::parse_codec(o.codec));
    c.bridge.multifd_aware = !o.passthrough;
    auto tuning = o.rdma.resolve();
    if (!tuning) return tuning.status();
    c.bridge.transport.settings = *tuning;
  }
  return c;
}

void print_report(const qemu::MigrateReport& r, const std::string& via) {
  if (log::level() > log::Level::kWarn) return;
  const auto& q = r.qemu;
  const auto ram = q.ram.value_or(qemu::QemuMigrationFigures::Ram{});
  fmt::print(stderr,
             "qemu-migrate: QEMU {}: total {} ms, downtime {} ms, setup {} ms, {} transferred "
             "of {} RAM; destination {}\n",
             q.status, q.total_ms, q.downtime_ms, q.setup_ms, format_bytes(ram.transferred_bytes),
             format_bytes(ram.total_bytes), r.destination_status);
  if (r.bridge_source) {
    const auto& b = *r.bridge_source;
    fmt::print(stderr,
               "qemu-migrate: bridge over {}: {} of QEMU stream, {} on the wire, pages zero {} "
               "xbzrle {} zstd {} raw {} placed {}, verified {}\n",
               via, format_bytes(b.guest_bytes), format_bytes(b.wire_bytes), b.pages.zero,
               b.pages.xbzrle, b.pages.zstd, b.pages.raw, b.pages.placed, b.verified);
  }
  if (r.tuning) {
    const auto& t = *r.tuning;
    std::string steps;
    for (const auto& st : t.downtime_limit_steps)
      steps += fmt::format("{}{}", steps.empty() ? "" : " -> ", st.downtime_limit_ms);
    fmt::print(stderr, "qemu-migrate: tuning: downtime-limit {} ms (ceiling {:.0f}), {}\n", steps,
               t.ceiling_ms,
               !t.switchover_bandwidth_supported ? "avail-switchover-bandwidth: not in this QEMU"
               : t.switchover_bandwidth
                   ? fmt::format("avail-switchover-bandwidth {} (set {}x)",
                                 format_rate(static_cast<double>(*t.switchover_bandwidth)),
                                 t.switchover_bandwidth_updates)
                   : std::string("avail-switchover-bandwidth: no rate measured yet"));
    fmt::print(stderr, "qemu-migrate: tuning: floor {:.0f} ms{}{}\n", t.floor_ms,
               t.floor_source == "given" ? " as given (--tune-floor-ms)" : "",
               t.floor_link_rate ? fmt::format(", at the last iteration {} moved, {} dirtied",
                                               format_rate(*t.floor_link_rate),
                                               format_rate(t.floor_dirty_rate.value_or(0)))
                                 : std::string());
    if (const auto& last = t.downtime_limit_steps.back();
        static_cast<double>(last.downtime_limit_ms) > t.floor_ms)
      fmt::print(stderr, "qemu-migrate: tuning: last raise at {:.0f} ms: {}\n", last.at_ms,
                 last.reason);
  }
  if (r.throttle_pct_max > 0)
    fmt::print(stderr, "qemu-migrate: auto-converge throttled the guest up to {}%\n",
               r.throttle_pct_max);
  if (r.postcopy_blocktime_ms)
    fmt::print(stderr, "qemu-migrate: post-copy blocktime {} ms (vCPUs: {} ms)\n",
               *r.postcopy_blocktime_ms, fmt::join(r.postcopy_vcpu_blocktime_ms, ", "));
  for (const auto& e : r.postcopy_recoveries)
    fmt::print(stderr, "qemu-migrate: post-copy paused at {:.0f} ms: {}\n", e.paused_at_ms,
               e.recovered_at_ms
                   ? fmt::format("recovered {:.0f} ms later ({} resume(s))",
                                 *e.recovered_at_ms - e.paused_at_ms, e.attempts)
                   : fmt::format("not recovered ({} resume(s); last refusal: {})", e.attempts,
                                 e.last_error.empty() ? "none" : e.last_error));
  if (!r.outcome)
    fmt::print(stderr, "qemu-migrate: failed: {} (the source VM is {})\n", r.outcome.message(),
               r.source_status);
}

int run(const MigrateOptions& o) {
  // SIGINT/SIGTERM and the control socket's cancel: migrate_cancel to the source QEMU
  // (migrate_driver.h). Started before the bridges' threads.
  migration::CancelToken cancel;
  auto signals = SignalWatcher::start(cancel);
  if (!signals) return fail_with(signals.status());
  auto config = make_config(o);
  if (!config) return fail_with(config.status());
  config->cancel = &cancel;
  std::atomic<uint64_t> max_bandwidth{config->max_bandwidth};
  config->live_max_bandwidth = &max_bandwidth;
  migration::ProgressBoard board;
  board.publish(
      {.status = migration::MigrationStatus::kSetup, .bandwidth_limit = config->max_bandwidth});
  auto control = start_control(o.control, "qemu-migrate", board, cancel, [&](uint64_t bps) {
    max_bandwidth.store(bps);
    return Status::ok();
  });
  if (!control) return fail_with(control.status());
  ProgressLine line;
  auto report = qemu::run_qemu_migration(*config, [&](const migration::Progress& p) {
    board.publish(p);
    line(p);
  });
  if (!report) return fail_with(report.status());
  write_json_text(report->to_json(), o.json);
  print_report(*report, o.via);
  return exit_code_for(report->outcome);
}

}  // namespace

Runner add_qemu_migrate(CLI::App& app) {
  auto o = std::make_shared<MigrateOptions>();
  auto* cmd = app.add_subcommand(
      "qemu-migrate",
      "migrate a QEMU VM to another QEMU through ramshift bridges, driving both over QMP");
  cmd->add_option("--src-qmp", o->src_qmp, "source QEMU's QMP socket path")->required();
  cmd->add_option("--dst-qmp", o->dst_qmp,
                  "destination QEMU's QMP socket path (QEMU started with -incoming defer)")
      ->required();
  cmd->add_option("--via", o->via,
                  "bridge the migration over this ramshift URI (bridges run in this process), "
                  "e.g. tcp://127.0.0.1:0 or rdma://10.0.0.2:0");
  cmd->add_option("--dst-uri", o->dst_uri,
                  "without --via: the URI the destination QEMU listens on (QEMU direct, or a "
                  "qemu-bridge dest you started)");
  cmd->add_option("--src-uri", o->src_uri,
                  "without --via: the URI the source QEMU migrates to (default --dst-uri)");
  cmd->add_option("--multifd-channels", o->multifd_channels,
                  "QEMU multifd channels (0 = single-channel migration)")
      ->capture_default_str();
  cmd->add_option("--multifd-compression", o->multifd_compression,
                  "QEMU's own multifd compression (none|zlib|zstd), for direct comparisons; a "
                  "bridge passes compressed multifd through untouched");
  cmd->add_option("--codec", o->codec, "bridge codec for multifd pages")->capture_default_str();
  cmd->add_flag("--passthrough", o->passthrough, "bridges carry every byte untouched");
  cmd->add_option("--max-bandwidth", o->max_bandwidth,
                  "QEMU max-bandwidth per second (0 = unlimited; QEMU's own default is 128M)")
      ->capture_default_str();
  cmd->add_option(
      "--downtime-limit", o->downtime_limit_ms,
      "QEMU downtime-limit in ms (0 = QEMU's, 300); tuned (--tune-switchover), the ceiling");
  cmd->add_option("--tune-switchover", o->tune_switchover,
                  "true: keep QEMU's downtime-limit at a floor (--tune-floor-ms) while "
                  "iterations shrink what is left, raise it toward the ceiling when they stop, "
                  "and set avail-switchover-bandwidth (QEMU >= 8.2) to the measured rate; "
                  "false: set QEMU's parameters once, as given")
      ->capture_default_str();
  cmd->add_option("--tune-floor-ms", o->tune_floor_ms,
                  "the tuner's floor in ms (default 5: a switch-over's fixed part; a guest that "
                  "outruns the link gets the limit raised from it)")
      ->check(CLI::PositiveNumber);
  cmd->add_option("--trace", o->trace,
                  "write each query-migrate answer (its switch-over figures) to FILE, one JSON "
                  "object a line");
  cmd->add_option("--postcopy-after", o->postcopy_after_s,
                  "QEMU post-copy: switch to it after this many seconds of pre-copy (0 = at once); "
                  "the guest then runs on the destination, which fetches what it touches")
      ->check(CLI::NonNegativeNumber);
  cmd->add_option("--postcopy-recover", o->postcopy_recover,
                  "true: when post-copy pauses (a cut link), recover it (migrate-recover on the "
                  "destination, migrate resume=true on the source) until --timeout; needs "
                  "--dst-uri/--src-uri bridges started with --recover; false: stop with an error")
      ->capture_default_str();
  cmd->add_flag("--postcopy-preempt", o->postcopy_preempt,
                "with --postcopy-after: QEMU's postcopy-preempt (a second channel for the pages "
                "faults ask for; bridges you start need --queues 1 + multifd + 1)");
  cmd->add_flag("--postcopy-blocktime", o->postcopy_blocktime,
                "with --postcopy-after: QEMU's postcopy-blocktime on the destination; the report "
                "gives how long the vCPUs waited for faulted pages (postcopy_blocktime_ms)");
  cmd->add_flag("--auto-converge", o->auto_converge,
                "QEMU's auto-converge capability: when pre-copy stops converging QEMU throttles "
                "the source's vCPUs (20%, then +10% per stalled iteration, up to 99%: its "
                "defaults); the report's throttle_pct_max says how far");
  cmd->add_option("--timeout", o->timeout_s, "cancel the migration after this many seconds")
      ->capture_default_str();
  cmd->add_option("--json", o->json,
                  "write QEMU's and the bridges' figures as JSON ('-' = stdout)");
  add_control_option(cmd, o->control);
  o->rdma.add_to(cmd);
  return [o]() -> int { return run(*o); };
}

}  // namespace ramshift::cli
