// `ramshift send`: the source end.
#include <fmt/format.h>

#include "commands.h"
#include "control.h"
#include "progress_bar.h"
#include "ramshift/base/log.h"
#include "ramshift/base/units.h"
#include "ramshift/guest/image.h"
#include "ramshift/guest/synthetic.h"
#include "ramshift/migration/source.h"
#include "signals.h"

namespace ramshift::cli {
namespace {

struct SendOptions {
  std::string to;
  std::string guest;
  uint32_t queues = migration::SourceConfig{}.queues;
  std::string cpus;  // --cpus
  std::string codec = "auto";
  std::string max_bandwidth = "0";
  std::string json;
  uint32_t page_size = 4096;
  std::string batch_size = "0";
  uint32_t batch_pages = 0;  // the older spelling, in pages (hidden)
  int zstd_level = pipeline::CodecConfig{}.zstd_level;
  std::string xbzrle_cache = "64M";
  double connect_timeout_s = 10;
  double peer_timeout_s = 5;  // migration::SourceConfig::peer_timeout says why
  double downtime_limit_ms = 100;
  uint32_t max_rounds = 30;
  bool auto_converge = false;
  std::string verify = "transfer";
  std::string dump_guest;
  std::string control;  // --control unix:PATH
  std::string mode = "precopy";
  uint32_t postcopy_after = 0;
  // The source receives only replies; the destination's ring, set on `receive`, carries
  // the pages.
  BackendFlags rdma{.slot_size = "64K"};
};

Result<migration::SourceConfig> make_config(const SendOptions& o) {
  migration::SourceConfig c;
  if (o.page_size < 1024 || o.page_size > 65536 || (o.page_size & (o.page_size - 1)))
    return Status(ErrorCode::kInvalidArgument,
                  fmt::format("--page-size {} is not a power of two in 1024..65536", o.page_size));
  RS_ASSIGN_OR_RETURN(c.to, transport::parse_uri(o.to));
  RS_ASSIGN_OR_RETURN(c.codec.mode, pipeline::parse_codec(o.codec));
  RS_ASSIGN_OR_RETURN(c.bandwidth_limit, parse_rate(o.max_bandwidth));
  RS_ASSIGN_OR_RETURN(c.codec.xbzrle_cache_bytes, parse_size(o.xbzrle_cache));
  c.codec.zstd_level = o.zstd_level;
  c.queues = o.queues;
  if (!o.cpus.empty()) {
    RS_ASSIGN_OR_RETURN(c.queue_cpus, parse_cpu_list(o.cpus, "cpus"));
  }
  c.page_size = o.page_size;
  RS_ASSIGN_OR_RETURN(uint64_t batch_bytes, parse_size(o.batch_size));
  if (batch_bytes % o.page_size != 0 || batch_bytes / o.page_size > 1024)
    return Status(ErrorCode::kInvalidArgument,
                  fmt::format("--batch-size {} must be 0 or 1..1024 pages of {} bytes",
                              o.batch_size, o.page_size));
  c.batch_pages =
      o.batch_pages != 0 ? o.batch_pages : static_cast<uint32_t>(batch_bytes / o.page_size);
  c.connect_timeout = std::chrono::milliseconds(static_cast<int64_t>(o.connect_timeout_s * 1000));
  c.peer_timeout = std::chrono::milliseconds(static_cast<int64_t>(o.peer_timeout_s * 1000));
  c.convergence.downtime_limit =
      std::chrono::milliseconds(static_cast<int64_t>(o.downtime_limit_ms));
  c.convergence.max_rounds = o.max_rounds;
  c.convergence.auto_converge = o.auto_converge;
  RS_ASSIGN_OR_RETURN(c.transport_settings, o.rdma.resolve());
  RS_ASSIGN_OR_RETURN(c.verify, migration::parse_verify_mode(o.verify));
  RS_ASSIGN_OR_RETURN(c.mode, migration::parse_migration_mode(o.mode));
  c.postcopy_after = o.postcopy_after;
  if (c.postcopy_after && c.mode != migration::MigrationMode::kHybrid)
    return Status(ErrorCode::kInvalidArgument, "--postcopy-after needs --mode hybrid");
  return c;
}

// Why start-postcopy cannot be taken now (ok: it can). Like QEMU, which needs postcopy-ram
// set before the migration starts: only a hybrid run has the destination ready for post-copy
// (it said so in its HELLO, or the run failed there).
Status postcopy_refusal(migration::MigrationMode mode, migration::MigrationStatus status) {
  using migration::MigrationStatus;
  if (mode == migration::MigrationMode::kPrecopy)
    return Status(ErrorCode::kInvalidArgument,
                  "this send runs --mode precopy; post-copy must be allowed from the start: "
                  "run it with --mode hybrid (it then switches when asked or when pre-copy "
                  "stops converging)");
  if (mode == migration::MigrationMode::kPostcopy || status == MigrationStatus::kPostcopyActive)
    return Status(ErrorCode::kInvalidArgument, "the migration is already in post-copy");
  if (migration::is_final(status))
    return Status(ErrorCode::kInvalidArgument,
                  fmt::format("the migration has ended ({})", migration_status_name(status)));
  return Status::ok();
}

}  // namespace

Result<std::unique_ptr<guest::SourceGuest>> open_guest(const std::string& spec,
                                                       uint32_t page_size) {
  if (spec.rfind("file:", 0) == 0) {
    RS_ASSIGN_OR_RETURN(auto g, guest::ImageGuest::open(spec.substr(5), page_size));
    return std::unique_ptr<guest::SourceGuest>(std::move(g));
  }
  if (spec.rfind("synthetic:", 0) == 0) {
    if (page_size != host_page_size())
      return Status(ErrorCode::kInvalidArgument,
                    fmt::format("a synthetic guest needs --page-size {} (the host page size)",
                                host_page_size()));
    RS_ASSIGN_OR_RETURN(auto s, guest::SyntheticSpec::parse(spec.substr(10)));
    RS_ASSIGN_OR_RETURN(auto g, guest::SyntheticGuest::create(s));
    return std::unique_ptr<guest::SourceGuest>(std::move(g));
  }
  return Status(
      ErrorCode::kInvalidArgument,
      fmt::format("--guest '{}' is not understood; use file:PATH or synthetic:size=SIZE,...",
                  spec));
}

Runner add_send(CLI::App& app) {
  auto o = std::make_shared<SendOptions>();
  auto* cmd = app.add_subcommand("send", "migrate a guest to a `ramshift receive` peer");
  o->rdma.add_to(cmd);
  cmd->add_option("--to", o->to, "destination URI, e.g. tcp://10.0.0.2:7000")->required();
  cmd->add_option(
         "--guest", o->guest,
         "what to migrate: file:PATH (a memory image) or synthetic:size=1G[,dirty-rate=20M]"
         "[,pattern=mixed|random|delta|zero][,threads=N] (a running guest)")
      ->required();
  cmd->add_option("--queues", o->queues, "parallel data queues (1..64)")
      ->capture_default_str()
      ->check(CLI::Range(1, 64));
  add_cpus_option(cmd, o->cpus);
  cmd->add_option("--codec", o->codec, "auto|none|zero|xbzrle|zstd|xbzrle+zstd")
      ->capture_default_str();
  cmd->add_option("--max-bandwidth", o->max_bandwidth,
                  "cap on wire traffic, e.g. 100M (MiB/s) or 1Gbit; 0 = none")
      ->capture_default_str();
  // The names before the vocabulary was unified; kept working, not shown.
  cmd->add_option("--bandwidth-limit", o->max_bandwidth)->group("");
  cmd->add_option("--json", o->json, "write the report as JSON to FILE ('-' = stdout)");
  cmd->add_option("--page-size", o->page_size, "page size in bytes (power of two, 1024..65536)")
      ->capture_default_str();
  cmd->add_option("--batch-size", o->batch_size,
                  "bytes of pages per batch, e.g. 256K (<= 1024 pages); 0 = per transport: "
                  "1M over rdma://, 64 pages otherwise")
      ->capture_default_str();
  cmd->add_option("--batch-pages", o->batch_pages)->check(CLI::Range(0, 1024))->group("");
  cmd->add_option("--zstd-level", o->zstd_level, "zstd level (negative = faster)")
      ->capture_default_str()
      ->check(CLI::Range(-7, 19));
  cmd->add_option("--xbzrle-cache", o->xbzrle_cache, "XBZRLE cache per side, all queues")
      ->capture_default_str();
  cmd->add_option("--connect-timeout", o->connect_timeout_s, "seconds to wait for the destination")
      ->capture_default_str();
  cmd->add_option("--peer-timeout", o->peer_timeout_s,
                  "seconds a destination may stop answering (host down, link cut) before the "
                  "migration is given up and a live guest resumes here; 0 = the OS's minutes")
      ->capture_default_str()
      ->check(CLI::Range(0.0, 3600.0));
  cmd->add_option(
         "--downtime-limit", o->downtime_limit_ms,
         "live guests: the most the pause may last, in ms; rounds go on while one still pays")
      ->capture_default_str();
  cmd->add_option("--max-rounds", o->max_rounds, "live guests: switch over after this many rounds")
      ->capture_default_str()
      ->check(CLI::Range(1, 10000));
  cmd->add_flag(
      "--auto-converge", o->auto_converge,
      "live guests: throttle the guest (20%, +10%...) when it dirties faster than the link");
  cmd->add_option("--verify", o->verify,
                  "transfer: the destination holds every page sent, intact (no pass over "
                  "memory; a page the dirty tracker missed is not caught); full: with the guest "
                  "paused both ends hash all memory and differing pages are resent, so the "
                  "destination equals the paused source (costs a pass over memory per side in "
                  "the downtime)")
      ->capture_default_str();
  cmd->add_option("--dump-guest", o->dump_guest,
                  "after a completed migration, write the source guest's memory as it was "
                  "handed over (paused) to FILE, to compare with `receive --dump-guest`");
  add_control_option(cmd, o->control);
  cmd->add_option("--mode", o->mode,
                  "live guests: precopy (rounds, then a short pause), postcopy (the guest runs "
                  "on the destination at once; pages it touches are fetched, the rest pushed) "
                  "or hybrid (pre-copy until a round fails to halve what is left, or it would "
                  "throttle or fail, then post-copy). After "
                  "post-copy starts a failure loses the guest")
      ->capture_default_str();
  cmd->add_option("--postcopy-after", o->postcopy_after,
                  "--mode hybrid: switch to post-copy after exactly this many pre-copy rounds")
      ->check(CLI::Range(1, 10000));
  return [o]() -> int {
    // SIGINT/SIGTERM cancel (signals.h); a second one exits at once: nothing of the source
    // was changed (an image is only read, a live guest dies with this process). Started
    // first: the guest's threads must inherit the blocked mask.
    migration::CancelToken cancel;
    auto watcher = SignalWatcher::start(cancel);
    if (!watcher) return fail_with(watcher.status());
    auto config = make_config(*o);
    if (!config) return fail_with(config.status());
    auto guest = open_guest(o->guest, o->page_size);
    if (!guest) {
      log::error("{}", guest.status().message());
      return 2;  // a guest that cannot be opened is a usage error, whatever errno said
    }
    config->cancel = &cancel;
    // The control socket's set-bandwidth changes the limit the run reads at every batch.
    std::atomic<uint64_t> bandwidth{config->bandwidth_limit};
    config->live_bandwidth_limit = &bandwidth;
    migration::ProgressBoard board;
    board.publish(
        {.status = migration::MigrationStatus::kSetup, .bandwidth_limit = config->bandwidth_limit});
    // start-postcopy: a hybrid run goes post-copy at the end of the round under way.
    std::atomic<bool> postcopy_now{false};
    config->postcopy_request = &postcopy_now;
    auto set_bandwidth = [&bandwidth](uint64_t bps) {
      bandwidth.store(bps);
      log::info("bandwidth limit set to {} over the control socket",
                bps ? format_rate(static_cast<double>(bps)) : "none");
      return Status::ok();
    };
    auto start_postcopy = [&board, &postcopy_now, mode = config->mode]() {
      Status why = postcopy_refusal(mode, board.snapshot().status);
      if (!why) return why;
      if (!postcopy_now.exchange(true))
        log::warn(
            "post-copy requested over the control socket: switching when this round ends; "
            "from then on a failure loses the guest");
      return Status::ok();
    };
    auto control =
        start_control(o->control, "source", board, cancel, set_bandwidth, start_postcopy);
    if (!control) return fail_with(control.status());
    log::info("sending {} to {}", (*guest)->describe(), config->to.to_string());
    ProgressBar bar("send", log::level() <= log::Level::kWarn);
    auto report = migration::run_source(**guest, *config, [&](const migration::Progress& p) {
      board.publish(p);
      bar.update(p);
    });
    bar.finish();
    board.publish(migration::final_progress(report));
    write_json(report, o->json);
    print_summary(report);
    if (report.completed && !o->dump_guest.empty()) {
      // The guest stays paused here once handed over (or is an image): this is what the
      // destination verified against.
      std::vector<std::span<const std::byte>> memory;
      for (const auto& r : (*guest)->regions()) memory.emplace_back(r.memory);
      if (Status s = write_memory_dump(o->dump_guest, memory); !s) return fail_with(s);
    }
    if (report.completed && cancel.requested())
      log::warn(
          "the signal came during the hand-off, which completed: the guest runs on the "
          "destination");
    return report.completed ? 0 : exit_code_for(report.error);
  };
}

}  // namespace ramshift::cli
