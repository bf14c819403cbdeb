// `ramshift qemu-bridge source|dest`: stock QEMU's migration channels over a ramshift
// transport (qemu-plugin/include/ramshift/qemu/bridge.h explains the design).
#include <fmt/format.h>
#include <poll.h>
#include <unistd.h>

#include <atomic>
#include <cstdio>
#include <fstream>
#include <thread>

#include "commands.h"
#include "control.h"
#include "daemon.h"
#include "ramshift/base/log.h"
#include "ramshift/base/units.h"
#include "ramshift/migration/config.h"
#include "ramshift/qemu/bridge.h"
#include "signals.h"

namespace ramshift::cli {
namespace {

struct BridgeOptions {
  std::string listen;
  bool stdio = false;
  std::string to;
  std::string qemu;
  std::string codec = "auto";
  std::string cache = "64M";
  bool passthrough = false;
  // QEMU opens 1 + multifd-channels; room for as many channels as this host has queues.
  uint32_t queues = 1 + migration::default_queues();
  std::string json;
  double accept_timeout_s = 0;
  double connect_retry_s = 5;
  double peer_timeout_s = 5;  // migration::SourceConfig::peer_timeout says why
  bool recover = false;
  double recover_wait_s = 600;
  std::string control;  // --control unix:PATH
  BackendFlags rdma;
};

// Turns the bridge's live counters into the progress snapshot (progress.h) four times a
// second: published for the control socket, and drawn as one status line on a terminal.
// A bridge sees QEMU's stream, not its rounds: round, remaining and dirty rate stay 0
// (QEMU's own are in `qemu-migrate`'s query).
class Watch {
 public:
  Watch(const char* label, qemu::BridgeProgress& p, migration::ProgressBoard& board)
      : label_(label),
        p_(p),
        board_(board),
        draw_(isatty(STDERR_FILENO) && log::level() <= log::Level::kWarn),
        thread_([this] { run(); }) {}
  ~Watch() {
    stop_ = true;
    thread_.join();
    if (drawn_) std::fputc('\n', stderr);
  }

 private:
  void run() {
    const auto t0 = std::chrono::steady_clock::now();
    while (!stop_) {
      std::this_thread::sleep_for(std::chrono::milliseconds(250));
      migration::Progress s;
      const double setup = p_.setup_ms.load();
      s.status =
          setup > 0 ? migration::MigrationStatus::kActive : migration::MigrationStatus::kSetup;
      s.transferred_bytes = p_.bytes_to_dest.load();
      s.wire_bytes = p_.wire_bytes.load();
      s.setup_ms = setup;
      s.elapsed_s = std::chrono::duration<double>(std::chrono::steady_clock::now() - t0).count();
      board_.publish(s);
      if (!draw_) continue;
      fmt::print(stderr, "\r{}: {} channel(s), {} of QEMU stream, {} on the wire, {}   ", label_,
                 p_.channels.load(), format_bytes(s.transferred_bytes), format_bytes(s.wire_bytes),
                 format_rate(s.throughput_bytes_per_s()));
      std::fflush(stderr);
      drawn_ = true;
    }
  }
  const char* label_;
  qemu::BridgeProgress& p_;
  migration::ProgressBoard& board_;
  const bool draw_;
  bool drawn_ = false;
  std::atomic<bool> stop_{false};
  std::thread thread_;  // last: started once the rest is set
};

Result<qemu::BridgeConfig> resolve(const BridgeOptions& o) {
  qemu::BridgeConfig c;
  RS_ASSIGN_OR_RETURN(c.codec.mode, pipeline::parse_codec(o.codec));
  RS_ASSIGN_OR_RETURN(c.codec.xbzrle_cache_bytes, parse_size(o.cache));
  c.multifd_aware = !o.passthrough;
  if (o.queues < 1 || o.queues > 64)
    return Status(ErrorCode::kInvalidArgument, "--queues must be 1..64");
  c.queues = o.queues;
  RS_ASSIGN_OR_RETURN(c.transport.settings, o.rdma.resolve());
  c.accept_timeout_ms = static_cast<int>(o.accept_timeout_s * 1000);
  c.connect_retry_ms = static_cast<int>(o.connect_retry_s * 1000);
  c.transport.peer_timeout =
      std::chrono::milliseconds(static_cast<int64_t>(o.peer_timeout_s * 1000));
  c.recover = o.recover;
  c.recover_wait_ms = static_cast<int>(o.recover_wait_s * 1000);
  return c;
}

void finish(const qemu::BridgeReport& r, const std::string& json) {
  write_json_text(r.to_json(), json);
  if (log::level() > log::Level::kWarn) return;
  if (!r.completed) {
    fmt::print(stderr, "ramshift: {} failed: {}\n", r.role, r.error.message());
    return;
  }
  uint64_t multifd = 0;
  for (auto& c : r.channels) multifd += c.packets;
  fmt::print(
      stderr,
      "ramshift: {} done: {} channel(s), {} of QEMU stream in {:.2f} s, {} on the wire "
      "over {}; {} multifd packets re-encoded (pages zero {} xbzrle {} zstd {} raw {} placed "
      "{}); every channel verified (bytes + XXH3)\n",
      r.role, r.channels.size(), format_bytes(r.guest_bytes), r.total_ms / 1000,
      format_bytes(r.wire_bytes), r.transport, multifd, r.pages.zero, r.pages.xbzrle, r.pages.zstd,
      r.pages.raw, r.pages.placed);
}

int run_source(const BridgeOptions& o) {
  auto config = resolve(o);
  if (!config) return fail_with(config.status());
  auto to = transport::parse_uri(o.to);
  if (!to) return fail_with(to.status());
  qemu::QemuEndpoint ep;
  if (!o.stdio) {
    auto path = qemu::parse_unix_uri(o.listen);
    if (!path) return fail_with(path.status());
    ep.unix_path = *path;
  }
  // SIGINT/SIGTERM and the control socket's cancel cut QEMU's channels (bridge.h): QEMU's
  // migration fails and the source VM keeps running. Started before any thread.
  migration::CancelToken cancel;
  auto signals = SignalWatcher::start(cancel);
  if (!signals) return fail_with(signals.status());
  config->cancel = &cancel;
  migration::ProgressBoard board;
  board.publish({.status = migration::MigrationStatus::kSetup});
  auto control = start_control(o.control, "bridge-source", board, cancel);
  if (!control) return fail_with(control.status());
  qemu::BridgeProgress progress;
  qemu::BridgeReport report;
  {
    Watch watch("qemu-bridge source", progress, board);
    report = qemu::run_bridge_source(*to, ep, *config, &progress, [&] {
      // Scripts wait for this line before they tell QEMU to migrate.
      if (!o.stdio) {
        fmt::print("listening on {}\n", o.listen);
        std::fflush(stdout);
      }
      notify_ready(
          fmt::format("joined to {}; QEMU may migrate to {}", o.to, o.stdio ? "exec:" : o.listen));
    });
  }
  board.publish(migration::final_progress(report));
  finish(report, o.json);
  return report.completed ? 0 : exit_code_for(report.error);
}

int run_dest(const BridgeOptions& o) {
  auto config = resolve(o);
  if (!config) return fail_with(config.status());
  auto uri = transport::parse_uri(o.listen);
  if (!uri) return fail_with(uri.status());
  qemu::QemuEndpoint ep;
  if (!o.stdio) {
    if (o.qemu.empty())
      return fail_with(Status(ErrorCode::kInvalidArgument,
                              "qemu-bridge dest needs --qemu unix:PATH or --stdio"));
    auto path = qemu::parse_unix_uri(o.qemu);
    if (!path) return fail_with(path.status());
    ep.unix_path = *path;
  }
  migration::CancelToken cancel;
  auto signals = SignalWatcher::start(cancel);
  if (!signals) return fail_with(signals.status());
  config->cancel = &cancel;
  migration::ProgressBoard board;
  auto control = start_control(o.control, "bridge-destination", board, cancel);
  if (!control) return fail_with(control.status());
  auto listener = transport::listen(*uri, config->transport);
  if (!listener) return fail_with(listener.status());
  const std::string address = (*listener)->address().to_string();
  // With --stdio, stdout is QEMU's migration stream: announce on stderr.
  fmt::print(o.stdio ? stderr : stdout, "listening on {}\n", address);
  std::fflush(o.stdio ? stderr : stdout);
  notify_ready(fmt::format("listening on {}", address));
  if (cancel.requested()) {  // no migration ran: nothing to cancel
    log::warn("stopped ({}) while no source bridge was connected", cancel.reason());
    return 1;
  }
  qemu::BridgeProgress progress;
  qemu::BridgeReport report;
  {
    Watch watch("qemu-bridge dest", progress, board);
    report = qemu::serve_bridge_dest(
        **listener, ep, *config, &progress, static_cast<int>(o.accept_timeout_s * 1000),
        [](const std::string& peer) {
          notify_status(fmt::format("bridging a migration from {}", peer));
        });
  }
  if (report.channels.empty() && report.failed_sessions.empty() && cancel.requested()) {
    log::warn("stopped ({}) while no source bridge was connected", cancel.reason());
    return 1;
  }
  board.publish(migration::final_progress(report));
  finish(report, o.json);
  return report.completed ? 0 : exit_code_for(report.error);
}

// Both sides: when the link counts as cut, and whether to carry QEMU's post-copy recovery.
void add_link_options(CLI::App* cmd, BridgeOptions& o) {
  cmd->add_option("--peer-timeout", o.peer_timeout_s,
                  "seconds without an answer from the other bridge before the link counts as "
                  "cut and QEMU's channels are closed (0 = the OS's, minutes)")
      ->capture_default_str();
  cmd->add_flag("--recover", o.recover,
                "after a failed session keep serving: carry the channels of QEMU's post-copy "
                "recovery (migrate-recover / migrate resume=true) over a new connection");
  cmd->add_option("--recover-wait", o.recover_wait_s,
                  "with --recover: seconds to wait for QEMU, and for the link, after a failure")
      ->capture_default_str();
}

}  // namespace

Runner add_qemu_bridge(CLI::App& app) {
  auto* cmd = app.add_subcommand("qemu-bridge",
                                 "carry stock QEMU's migration channels over a ramshift transport");
  cmd->require_subcommand(1);
  auto src = std::make_shared<BridgeOptions>();
  auto* s = cmd->add_subcommand(
      "source", "the source host's end: QEMU migrates to --listen unix:PATH (or exec: --stdio)");
  auto* s_listen =
      s->add_option("--listen", src->listen, "unix:PATH for QEMU's `migrate unix:PATH`");
  auto* s_stdio = s->add_flag("--stdio", src->stdio,
                              "one channel on stdin/stdout, for `migrate \"exec:ramshift ...\"`");
  s_listen->excludes(s_stdio);
  s->add_option("--to", src->to, "the destination bridge, e.g. rdma://10.0.0.2:7100")->required();
  s->add_option("--codec", src->codec, "multifd pages: auto|none|zero|xbzrle|zstd|xbzrle+zstd")
      ->capture_default_str();
  s->add_option("--xbzrle-cache", src->cache, "XBZRLE cache, shared over the channels")
      ->capture_default_str();
  s->add_flag("--passthrough", src->passthrough,
              "carry every channel byte for byte (no multifd re-encoding)");
  s->add_option("--queues", src->queues,
                "transport queues = the most channels QEMU may open (1 + multifd-channels)")
      ->capture_default_str();
  s->add_option("--json", src->json,
                "write the report as JSON to FILE ('-' = stdout, not with --stdio)");
  add_control_option(s, src->control);
  s->add_option("--accept-timeout", src->accept_timeout_s,
                "seconds to wait for QEMU's first connection (0 = forever)");
  s->add_option("--connect-retry", src->connect_retry_s,
                "seconds to keep retrying while the destination bridge refuses (not up yet)")
      ->capture_default_str();
  add_link_options(s, *src);
  src->rdma.add_to(s);

  auto dst = std::make_shared<BridgeOptions>();
  auto* d = cmd->add_subcommand(
      "dest", "the destination host's end: connects to QEMU's -incoming unix:PATH (or --stdio)");
  d->add_option("--listen", dst->listen,
                "URI the source bridge connects to, e.g. tcp://0.0.0.0:7100")
      ->required();
  auto* d_qemu = d->add_option("--qemu", dst->qemu, "unix:PATH where the destination QEMU listens");
  auto* d_stdio = d->add_flag("--stdio", dst->stdio,
                              "one channel on stdout/stdin, for `-incoming \"exec:ramshift ...\"`");
  d_qemu->excludes(d_stdio);
  d->add_option("--json", dst->json,
                "write the report as JSON to FILE ('-' = stdout, not with --stdio)");
  add_control_option(d, dst->control);
  d->add_option("--accept-timeout", dst->accept_timeout_s,
                "seconds to wait for the source bridge (0 = forever)");
  add_link_options(d, *dst);
  dst->rdma.add_to(d);

  return [cmd, s, src, dst]() -> int {
    for (const auto* o : {src.get(), dst.get()})
      if (o->stdio && o->json == "-")
        return fail_with(Status(ErrorCode::kInvalidArgument,
                                "--json - cannot be used with --stdio (stdout carries QEMU's "
                                "stream); give --json FILE"));
    if (cmd->got_subcommand(s)) {
      if (src->listen.empty() && !src->stdio)
        return fail_with(Status(ErrorCode::kInvalidArgument,
                                "qemu-bridge source needs --listen unix:PATH or --stdio"));
      return run_source(*src);
    }
    return run_dest(*dst);
  };
}

}  // namespace ramshift::cli
