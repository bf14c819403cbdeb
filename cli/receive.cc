// `ramshift receive`: the destination end.
#include <fmt/format.h>

#include <unistd.h>

#include <cstdio>
#include <mutex>

#include "commands.h"
#include "control.h"
#include "daemon.h"
#include "progress_bar.h"
#include "ramshift/base/log.h"
#include "ramshift/base/units.h"
#include "ramshift/migration/destination.h"
#include "signals.h"

namespace ramshift::cli {
namespace {

struct ReceiveOptions {
  std::string listen;
  std::string guest_out;
  bool overwrite = false;
  std::string expect_size = "0";
  std::string json;
  std::string dump_guest;
  bool once = false;
  double accept_timeout_s = 0;
  double resume_seconds = 2;
  double peer_timeout_s = 5;  // migration::SourceConfig::peer_timeout says why
  std::string control;        // --control unix:PATH
  std::string cpus;           // --cpus
  BackendFlags rdma;
};

// "{id}" in a path becomes the number of the migration in this process (1, 2, ...), so one
// `receive` can keep each migration's output and report: --guest-out 'in/{id}.img'.
std::string with_id(std::string path, uint64_t id) {
  for (size_t at; (at = path.find("{id}")) != std::string::npos;)
    path.replace(at, 4, std::to_string(id));
  return path;
}

// The output file a second signal must remove before the process exits (signals.h): the
// current migration's PATH.partial. Set by the main thread, read by the signal watcher.
class PartialOutput {
 public:
  void set(const std::string& output) {
    std::lock_guard lock(mu_);
    partial_ = output.empty() ? "" : output + ".partial";
  }
  void remove() {
    std::lock_guard lock(mu_);
    if (!partial_.empty()) ::unlink(partial_.c_str());
  }

 private:
  std::mutex mu_;
  std::string partial_;
};

}  // namespace

Runner add_receive(CLI::App& app) {
  auto o = std::make_shared<ReceiveOptions>();
  auto* cmd = app.add_subcommand("receive", "accept migrations from `ramshift send`");
  o->rdma.add_to(cmd);
  cmd->add_option("--listen", o->listen, "URI to listen on, e.g. tcp://0.0.0.0:7000 (port 0 = any)")
      ->required();
  cmd->add_option(
      "--guest-out", o->guest_out,
      "write the received memory to PATH (written as PATH.partial, renamed when verified); "
      "{id} in PATH, --json and --dump-guest is the migration's number here (1, 2, ...)");
  cmd->add_flag("--overwrite", o->overwrite, "replace an existing --guest-out file");
  cmd->add_option("--expect-size", o->expect_size, "refuse a guest of any other size, e.g. 1G");
  cmd->add_option("--json", o->json, "write the report as JSON to FILE ('-' = stdout)");
  cmd->add_option("--dump-guest", o->dump_guest,
                  "write the guest's memory to FILE once verified, before it runs here (to "
                  "compare with `send --dump-guest`; the write adds to the downtime)");
  cmd->add_flag("--once", o->once, "exit after one migration (exit code = its outcome)");
  cmd->add_option("--resume-seconds", o->resume_seconds,
                  "a live guest runs here this long after the commit, then is verified again")
      ->capture_default_str();
  cmd->add_option("--peer-timeout", o->peer_timeout_s,
                  "seconds a source may stop answering (host down, link cut) before the "
                  "migration is given up and the partial output removed; 0 = the OS's minutes")
      ->capture_default_str()
      ->check(CLI::Range(0.0, 3600.0));
  cmd->add_option("--accept-timeout", o->accept_timeout_s,
                  "seconds to wait for a source before giving up (0 = forever)");
  add_control_option(cmd, o->control);
  add_cpus_option(cmd, o->cpus);
  return [o]() -> int {
    auto uri = transport::parse_uri(o->listen);
    if (!uri) return fail_with(uri.status());
    std::vector<uint32_t> cpus;
    if (!o->cpus.empty()) {
      auto parsed = parse_cpu_list(o->cpus, "cpus");
      if (!parsed) return fail_with(parsed.status());
      cpus = std::move(parsed).value();
    }
    auto expect = parse_size(o->expect_size);
    if (!expect) return fail_with(expect.status());
    auto tuning = o->rdma.resolve();
    if (!tuning) return fail_with(tuning.status());
    transport::TransportOptions topts;
    topts.settings = *tuning;
    topts.peer_timeout = std::chrono::milliseconds(static_cast<int64_t>(o->peer_timeout_s * 1000));
    // SIGINT/SIGTERM cancel (signals.h); a second one exits at once, removing the partial
    // output first (the file the run would have removed: PATH.partial).
    migration::CancelToken cancel;
    PartialOutput partial;
    auto watcher = SignalWatcher::start(cancel, [&partial] { partial.remove(); });
    if (!watcher) return fail_with(watcher.status());
    // Between migrations `query` says "none", then the last one's final state.
    migration::ProgressBoard board;
    auto control = start_control(o->control, "destination", board, cancel);
    if (!control) return fail_with(control.status());
    auto listener = transport::listen(*uri, topts);
    if (!listener) return fail_with(listener.status());
    const std::string address = (*listener)->address().to_string();
    // Scripts (and `ramshift demo`) read this line to learn the port chosen for port 0.
    fmt::print("listening on {}\n", address);
    std::fflush(stdout);
    notify_ready(fmt::format("listening on {}", address));

    migration::DestinationConfig config;
    config.overwrite = o->overwrite;
    config.queue_cpus = cpus;
    config.expect_bytes = *expect;
    config.resume_for = std::chrono::milliseconds(static_cast<int64_t>(o->resume_seconds * 1000));
    config.cancel = &cancel;
    Status dump_status;
    std::string dump_path;
    if (!o->dump_guest.empty())
      config.inspect_memory = [&](const std::vector<std::span<const std::byte>>& memory) {
        dump_status = write_memory_dump(dump_path, memory);
      };
    uint64_t served = 0;
    auto deadline = std::chrono::steady_clock::now() +
                    std::chrono::milliseconds(static_cast<int64_t>(o->accept_timeout_s * 1000));
    for (;;) {
      // Waiting for a source: a signal just stops the command (exit 0, or 1 with --once:
      // the one migration asked for did not happen).
      if (cancel.requested()) {
        log::warn("stopped ({}) while no migration ran", cancel.reason());
        return o->once ? 1 : 0;
      }
      auto wait = std::chrono::milliseconds(200);
      auto conn = (*listener)->accept(wait);
      if (!conn) {
        if (conn.status().code() != ErrorCode::kTimeout) return fail_with(conn.status());
        if (o->accept_timeout_s > 0 && std::chrono::steady_clock::now() >= deadline)
          return fail_with(
              Status(ErrorCode::kTimeout,
                     fmt::format("no source connected within {} s", o->accept_timeout_s)));
        continue;
      }
      const std::string peer = (*conn)->describe();
      log::info("accepted {}", peer);
      ++served;
      config.output_path = with_id(o->guest_out, served);
      dump_path = with_id(o->dump_guest, served);
      partial.set(config.output_path);
      notify_status(fmt::format("migrating from {}", peer));
      board.publish({.status = migration::MigrationStatus::kSetup});
      ProgressBar bar("receive", log::level() <= log::Level::kWarn);
      auto report = migration::run_destination(std::move(conn).value(), config,
                                               [&](const migration::Progress& p) {
                                                 board.publish(p);
                                                 bar.update(p);
                                               });
      bar.finish();
      board.publish(migration::final_progress(report));
      notify_status(fmt::format("listening on {}; the last migration (from {}) {}", address, peer,
                                migration::migration_status_name(board.snapshot().status)));
      write_json(report, with_id(o->json, served));
      print_summary(report);
      int dump_rc = 0;
      if (!dump_status) {
        dump_rc = fail_with(dump_status);
        dump_status = Status::ok();
      }
      if (o->once || cancel.requested())
        return report.completed ? dump_rc : exit_code_for(report.error);
    }
  };
}

}  // namespace ramshift::cli
