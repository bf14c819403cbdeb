// `ramshift qemu-migrate`: drives a whole QEMU migration over QMP — capabilities and
// parameters on both QEMUs, the two bridges (in this process, joined by --via), the
// migration itself — and prints QEMU's own figures next to the bridges'.
#include <fmt/format.h>
#include <stdlib.h>
#include <unistd.h>

#include <cstdio>
#include <filesystem>
#include <fstream>
#include <future>
#include <thread>

#include <nlohmann/json.hpp>

#include "commands.h"
#include "ramshift/base/log.h"
#include "ramshift/base/units.h"
#include "ramshift/qemu/bridge.h"
#include "ramshift/qemu/qmp.h"

namespace ramshift::cli {
namespace {

using namespace std::chrono_literals;
using Clock = std::chrono::steady_clock;

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
  double timeout_s = 600;
  std::string json;
  RdmaFlags rdma;
};

// The parts of query-migrate a reader compares.
nlohmann::ordered_json qemu_figures(const nlohmann::json& q) {
  nlohmann::ordered_json f;
  f["status"] = q.value("status", "?");
  f["total_ms"] = q.value("total-time", 0);
  f["downtime_ms"] = q.value("downtime", 0);
  f["setup_ms"] = q.value("setup-time", 0);
  if (q.contains("ram")) {
    const auto& r = q["ram"];
    f["ram_total_bytes"] = r.value("total", 0);
    f["ram_transferred_bytes"] = r.value("transferred", 0);
    f["ram_duplicate_pages"] = r.value("duplicate", 0);
    f["ram_normal_pages"] = r.value("normal", 0);
    f["ram_mbps"] = r.value("mbps", 0.0);
    f["dirty_sync_count"] = r.value("dirty-sync-count", 0);
  }
  if (q.contains("error-desc")) f["error"] = q["error-desc"];
  return f;
}

Status configure(qemu::QmpClient& qmp, const MigrateOptions& o, uint64_t max_bw) {
  nlohmann::json caps = nlohmann::json::array();
  caps.push_back({{"capability", "multifd"}, {"state", o.multifd_channels > 0}});
  RS_ASSIGN_OR_RETURN(auto r, qmp.execute("migrate-set-capabilities", {{"capabilities", caps}}));
  nlohmann::json params = {{"max-bandwidth", max_bw}};
  if (o.multifd_channels > 0) params["multifd-channels"] = o.multifd_channels;
  if (!o.multifd_compression.empty()) params["multifd-compression"] = o.multifd_compression;
  if (o.downtime_limit_ms > 0)
    params["downtime-limit"] = static_cast<uint64_t>(o.downtime_limit_ms);
  RS_ASSIGN_OR_RETURN(r, qmp.execute("migrate-set-parameters", params));
  return Status::ok();
}

int run(const MigrateOptions& o) {
  if (o.via.empty() == o.dst_uri.empty())
    return fail_with(Status(ErrorCode::kInvalidArgument,
                            "give --via URI (bridged through ramshift) or --dst-uri URI "
                            "(QEMU to QEMU, or to bridges you started)"));
  auto bw = parse_size(o.max_bandwidth);
  if (!bw) return fail_with(bw.status());
  // QEMU's default cap (128 MiB/s) would hide the transport: lift it unless asked.
  uint64_t max_bw = *bw == 0 ? (1ull << 40) : *bw;
  auto src = qemu::QmpClient::connect(o.src_qmp, 10s);
  if (!src) return fail_with(src.status());
  auto dst = qemu::QmpClient::connect(o.dst_qmp, 10s);
  if (!dst) return fail_with(dst.status());
  if (Status st = configure(*src, o, max_bw); !st) return fail_with(st.with_context("source QEMU"));
  if (Status st = configure(*dst, o, max_bw); !st)
    return fail_with(st.with_context("destination QEMU"));

  std::string dst_uri = o.dst_uri, src_uri = o.src_uri.empty() ? o.dst_uri : o.src_uri;
  std::string tmpdir;
  std::unique_ptr<transport::Listener> listener;
  std::future<qemu::BridgeReport> dest_report, source_report;
  std::promise<void> ready;
  qemu::BridgeConfig config;
  if (!o.via.empty()) {
    char tmpl[] = "/tmp/ramshift-qemu-migrate.XXXXXX";
    if (!mkdtemp(tmpl)) return fail_with(errno_status(ErrorCode::kIo, "mkdtemp", errno));
    tmpdir = tmpl;
    dst_uri = "unix:" + tmpdir + "/dst.sock";
    src_uri = "unix:" + tmpdir + "/src.sock";
    auto mode = pipeline::parse_codec(o.codec);
    if (!mode) return fail_with(mode.status());
    config.codec.mode = *mode;
    config.multifd_aware = !o.passthrough;
    config.queues = 1 + std::max<uint32_t>(o.multifd_channels, 0);
    config.accept_timeout_ms = 60000;
    auto tuning = o.rdma.resolve();
    if (!tuning) return fail_with(tuning.status());
    config.transport.rdma = *tuning;
    auto via = transport::parse_uri(o.via);
    if (!via) return fail_with(via.status());
    auto l = transport::listen(*via, config.transport);
    if (!l) return fail_with(l.status());
    listener = std::move(l).value();
  }
  auto cleanup = [&] {
    if (!tmpdir.empty()) std::filesystem::remove_all(tmpdir);
  };

  auto in = dst->execute("migrate-incoming", {{"uri", dst_uri}});
  if (!in) {
    cleanup();
    return fail_with(in.status().with_context("destination QEMU (started with -incoming defer?)"));
  }
  if (listener) {
    qemu::QemuEndpoint dep{dst_uri.substr(5)}, sep{src_uri.substr(5)};
    dest_report = std::async(std::launch::async, [&, dep] {
      auto conn = listener->accept(30s);
      if (!conn) {
        qemu::BridgeReport r;
        r.role = "bridge-destination";
        r.error = conn.status();
        return r;
      }
      return qemu::run_bridge_dest(std::move(conn).value(), dep, config, nullptr);
    });
    source_report = std::async(std::launch::async, [&, sep] {
      return qemu::run_bridge_source(listener->address(), sep, config, nullptr,
                                     [&] { ready.set_value(); });
    });
    if (ready.get_future().wait_for(30s) != std::future_status::ready) {
      // The source bridge could not connect; its report says why.
      auto r = source_report.get();
      cleanup();
      return fail_with(r.error.with_context("source bridge"));
    }
  }
  // A running source must end running on the destination; a paused one (QEMU -S, or
  // stopped) arrives in the same state, as QEMU carries the run state across.
  std::string src_before = "?";
  if (auto st = src->execute("query-status"); st) src_before = st->value("status", "?");
  auto t0 = Clock::now();
  auto mig = src->execute("migrate", {{"uri", src_uri}});
  nlohmann::json last;
  Status outcome;
  if (!mig) {
    outcome = mig.status().with_context("source QEMU");
  } else {
    bool tty = isatty(STDERR_FILENO) && log::level() <= log::Level::kWarn;
    int settle = 0;
    for (;;) {
      auto q = src->execute("query-migrate");
      if (!q) {
        outcome = q.status();
        break;
      }
      last = *q;
      std::string status = last.value("status", "");
      if (tty && last.contains("ram")) {
        uint64_t total = last["ram"].value("total", 0), rem = last["ram"].value("remaining", 0);
        fmt::print(stderr, "\rqemu-migrate: {} {} of {} left, {:.0f} Mbit/s   ", status,
                   format_bytes(rem), format_bytes(total), last["ram"].value("mbps", 0.0));
      }
      // QEMU 7.2 flips the status to completed a moment before it fills in total-time.
      if (status == "completed" && last.value("total-time", 0) == 0 && ++settle < 20) {
        std::this_thread::sleep_for(50ms);
        continue;
      }
      if (status == "completed") break;
      if (status == "failed" || status == "cancelled") {
        outcome =
            Status(ErrorCode::kIo, "QEMU migration " + status + ": " +
                                       last.value("error-desc", std::string("no reason given")));
        break;
      }
      if (Clock::now() - t0 > std::chrono::duration<double>(o.timeout_s)) {
        (void)src->execute("migrate_cancel");
        outcome =
            Status(ErrorCode::kTimeout, fmt::format("migration not done in {} s", o.timeout_s));
        break;
      }
      std::this_thread::sleep_for(100ms);
    }
    if (tty) std::fputc('\n', stderr);
  }
  std::string dst_status = "?";
  if (outcome) {
    // The destination starts the guest right after it loaded the last state.
    const bool want_running = src_before == "running";
    for (int i = 0; i < 50; ++i) {
      auto st = dst->execute("query-status");
      if (st) dst_status = st->value("status", "?");
      if ((dst_status == "running") == want_running && dst_status != "inmigrate") break;
      std::this_thread::sleep_for(100ms);
    }
    if (want_running && dst_status != "running")
      outcome = Status(ErrorCode::kIo, "destination QEMU is " + dst_status + ", not running");
    if (!want_running && (dst_status == "running" || dst_status == "inmigrate"))
      outcome = Status(ErrorCode::kIo,
                       "the source was " + src_before + " but the destination is " + dst_status);
  }
  // After a failure QEMU resumes the source VM; say so (or that it did not).
  std::string src_status = "?";
  if (auto st = src->execute("query-status"); st) src_status = st->value("status", "?");
  nlohmann::ordered_json report;
  report["qemu"] = qemu_figures(last);
  report["source_status_before"] = src_before;
  report["source_status"] = src_status;
  report["destination_status"] = dst_status;
  report["multifd_channels"] = o.multifd_channels;
  report["path"] = o.via.empty() ? "direct " + src_uri : "bridge " + o.via;
  if (listener) {
    auto s = source_report.get(), d = dest_report.get();
    if (outcome && d.qemu_closed_early) {
      // QEMU completed and the destination is in the right state, so the destination QEMU
      // had what it needed before it closed the channel: the bridges' failure is only
      // that their last bytes found no reader. Say so rather than fail a good migration.
      report["bridge_note"] =
          "the destination QEMU closed a channel before the bridge had delivered its last "
          "bytes, after the migration had completed: " +
          d.error.message();
      log::warn("qemu-migrate: {}", report["bridge_note"].get<std::string>());
    } else {
      if (outcome && !s.completed) outcome = s.error.with_context("source bridge");
      if (outcome && !d.completed) outcome = d.error.with_context("destination bridge");
    }
    report["bridge_source"] = nlohmann::ordered_json::parse(s.to_json());
    report["bridge_destination"] = nlohmann::ordered_json::parse(d.to_json());
  }
  report["status"] = outcome ? "completed" : "failed";
  report["error"] =
      outcome ? nlohmann::ordered_json(nullptr) : nlohmann::ordered_json(outcome.message());
  cleanup();
  if (!o.json.empty()) {
    std::string text = report.dump(2) + "\n";
    if (o.json == "-") {
      std::fputs(text.c_str(), stdout);
    } else {
      std::ofstream f(o.json);
      f << text;
    }
  }
  if (log::level() <= log::Level::kWarn) {
    auto f = report["qemu"];
    fmt::print(stderr,
               "qemu-migrate: QEMU {}: total {} ms, downtime {} ms, setup {} ms, {} transferred "
               "of {} RAM; destination {}\n",
               f.value("status", "?"), f.value("total_ms", 0), f.value("downtime_ms", 0),
               f.value("setup_ms", 0), format_bytes(f.value("ram_transferred_bytes", 0ull)),
               format_bytes(f.value("ram_total_bytes", 0ull)), dst_status);
    if (report.contains("bridge_source")) {
      auto b = report["bridge_source"];
      fmt::print(stderr,
                 "qemu-migrate: bridge over {}: {} of QEMU stream, {} on the wire, pages zero {} "
                 "xbzrle {} zstd {} raw {} placed {}, verified {}\n",
                 o.via, format_bytes(b.value("guest_bytes", 0ull)),
                 format_bytes(b.value("wire_bytes", 0ull)), b["pages"].value("zero", 0),
                 b["pages"].value("xbzrle", 0), b["pages"].value("zstd", 0),
                 b["pages"].value("raw", 0), b["pages"].value("placed", 0),
                 b.value("verified", false));
    }
    if (!outcome)
      fmt::print(stderr, "qemu-migrate: failed: {} (the source VM is {})\n", outcome.message(),
                 src_status);
  }
  return outcome ? 0 : (exit_code_for(outcome) == 2 ? 2 : 1);
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
  cmd->add_option("--downtime-limit", o->downtime_limit_ms,
                  "QEMU downtime-limit in ms (0 = QEMU's)");
  cmd->add_option("--timeout", o->timeout_s, "cancel the migration after this many seconds")
      ->capture_default_str();
  cmd->add_option("--json", o->json,
                  "write QEMU's and the bridges' figures as JSON ('-' = stdout)");
  o->rdma.add_to(cmd);
  return [o]() -> int { return run(*o); };
}

}  // namespace ramshift::cli
