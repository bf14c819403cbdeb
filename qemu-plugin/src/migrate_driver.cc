#include "ramshift/qemu/migrate_driver.h"

#include <fmt/format.h>
#include <stdlib.h>

#include <algorithm>
#include <cerrno>
#include <filesystem>
#include <fstream>
#include <future>
#include <mutex>
#include <optional>
#include <thread>

#include <nlohmann/json.hpp>

#include "postcopy_recovery.h"
#include "ramshift/base/log.h"
#include "ramshift/base/provenance.h"
#include "ramshift/qemu/qmp.h"
#include "switchover_tuner.h"

namespace ramshift::qemu {
namespace {

using namespace std::chrono_literals;
using Clock = std::chrono::steady_clock;

// How long QEMU and the bridges get to reach each other before the driver gives up: the
// source bridge's connect, the destination bridge's accept.
constexpr auto kBridgeConnectTimeout = 30s;

// `downtime_limit_ms` (0 = leave QEMU's) is c.downtime_limit_ms, or the tuner's floor on the
// source.
Status configure(QmpClient& qmp, const MigrateDriverConfig& c, uint64_t downtime_limit_ms) {
  nlohmann::json caps = nlohmann::json::array();
  caps.push_back({{"capability", "multifd"}, {"state", c.multifd_channels > 0}});
  caps.push_back({{"capability", "postcopy-ram"}, {"state", c.postcopy_after.has_value()}});
  // Only when asked: a QEMU without the capability refuses the whole list.
  if (c.postcopy_preempt) caps.push_back({{"capability", "postcopy-preempt"}, {"state", true}});
  if (c.postcopy_blocktime) caps.push_back({{"capability", "postcopy-blocktime"}, {"state", true}});
  // Every QEMU this drives has auto-converge (2.0+); set either way, like multifd, so a
  // capability left on by an earlier run does not throttle this one.
  caps.push_back({{"capability", "auto-converge"}, {"state", c.auto_converge}});
  RS_ASSIGN_OR_RETURN(auto r, qmp.execute("migrate-set-capabilities", {{"capabilities", caps}}));
  // QEMU's default cap (128 MiB/s) would hide the transport: lift it unless asked.
  const uint64_t max_bw = c.max_bandwidth == 0 ? (1ull << 40) : c.max_bandwidth;
  nlohmann::json params = {{"max-bandwidth", max_bw}};
  if (c.multifd_channels > 0) params["multifd-channels"] = c.multifd_channels;
  if (!c.multifd_compression.empty()) params["multifd-compression"] = c.multifd_compression;
  if (downtime_limit_ms > 0) params["downtime-limit"] = downtime_limit_ms;
  RS_ASSIGN_OR_RETURN(r, qmp.execute("migrate-set-parameters", params));
  return Status::ok();
}

// The capabilities QEMU reports on (query-migrate-capabilities); empty if it would not say.
std::vector<std::string> capabilities_on(QmpClient& qmp) {
  std::vector<std::string> on;
  auto r = qmp.execute("query-migrate-capabilities");
  if (!r || !r->is_array()) return on;
  for (const auto& cap : *r)
    if (cap.value("state", false)) on.push_back(cap.value("capability", "?"));
  return on;
}

// The destination's post-copy blocktime (postcopy-blocktime capability), which QEMU fills in
// its query-migrate once the incoming migration completed.
void read_blocktime(QmpClient& dst, MigrateReport& report) {
  auto q = dst.execute("query-migrate");
  if (!q || !q->is_object() || !q->contains("postcopy-blocktime")) {
    log::warn("qemu-migrate: the destination QEMU reported no postcopy-blocktime");
    return;
  }
  if (const auto& bt = (*q)["postcopy-blocktime"]; bt.is_number_unsigned())
    report.postcopy_blocktime_ms = bt.get<uint64_t>();
  if (const auto it = q->find("postcopy-vcpu-blocktime"); it != q->end() && it->is_array())
    for (const auto& v : *it)
      if (v.is_number_unsigned()) report.postcopy_vcpu_blocktime_ms.push_back(v.get<uint64_t>());
}

// QEMU >= 8.2 lists avail-switchover-bandwidth among its migration parameters; asked, not
// inferred from a version string (distributions backport).
bool has_switchover_bandwidth(QmpClient& qmp) {
  auto p = qmp.execute("query-migrate-parameters");
  return p && p->is_object() && p->contains("avail-switchover-bandwidth");
}

// The tuner on the source QEMU: its floor before `migrate`, avail-switchover-bandwidth back to
// 0 (QEMU's own estimate) until the tuner has measured a rate.
Result<std::unique_ptr<SwitchoverTuner>> start_tuner(QmpClient& src, const MigrateDriverConfig& c) {
  SwitchoverTunerConfig tc;
  tc.floor_ms = c.tune_floor_ms;
  tc.ceiling_ms = c.downtime_limit_ms > 0 ? c.downtime_limit_ms : 300;  // QEMU's default
  tc.set_switchover_bandwidth = has_switchover_bandwidth(src);
  auto tuner = std::make_unique<SwitchoverTuner>(tc);
  if (tc.set_switchover_bandwidth) {
    auto r = src.execute("migrate-set-parameters", {{"avail-switchover-bandwidth", 0}});
    if (!r) return r.status();
  }
  return tuner;
}

// Sets what the tuner chose on the source QEMU. A refusal is warned, not fatal: QEMU goes on
// with the values it had.
void apply_tuning(QmpClient& src, const TunerAction& a) {
  nlohmann::json params = nlohmann::json::object();
  if (a.switchover_bandwidth) params["avail-switchover-bandwidth"] = *a.switchover_bandwidth;
  if (a.downtime_limit_ms) params["downtime-limit"] = *a.downtime_limit_ms;
  if (auto r = src.execute("migrate-set-parameters", params); !r)
    log::warn("qemu-migrate: tuning not applied ({}): {}", params.dump(), r.status().message());
  else if (a.downtime_limit_ms)
    log::info("qemu-migrate: downtime-limit raised to {} ms", *a.downtime_limit_ms);
}

// query-status's "status" ("running", "paused", "inmigrate", ...), "?" when QMP failed.
std::string vm_status(QmpClient& qmp) {
  auto st = qmp.execute("query-status");
  return st ? st->value("status", "?") : "?";
}

// The parts of query-migrate a reader compares.
QemuMigrationFigures qemu_figures(const nlohmann::json& q) {
  QemuMigrationFigures f;
  if (!q.is_object()) return f;  // QEMU never answered query-migrate
  f.status = q.value("status", "?");
  f.total_ms = q.value("total-time", uint64_t{0});
  f.downtime_ms = q.value("downtime", uint64_t{0});
  f.setup_ms = q.value("setup-time", uint64_t{0});
  if (q.contains("ram")) {
    const auto& r = q["ram"];
    f.ram = QemuMigrationFigures::Ram{
        .total_bytes = r.value("total", uint64_t{0}),
        .transferred_bytes = r.value("transferred", uint64_t{0}),
        .duplicate_pages = r.value("duplicate", uint64_t{0}),
        .normal_pages = r.value("normal", uint64_t{0}),
        .mbps = r.value("mbps", 0.0),
        .dirty_sync_count = r.value("dirty-sync-count", uint64_t{0}),
    };
  }
  if (q.contains("error-desc")) {
    const auto& e = q["error-desc"];
    f.error = e.is_string() ? e.get<std::string>() : e.dump();
  }
  return f;
}

// Both bridges in this process: the destination's accepts on a listener at `via`, the
// source's connects to it; QEMU meets them on unix sockets in a temporary directory, which
// goes with this object. Destroying it waits for both bridges to end.
class InProcessBridges {
 public:
  static Result<std::unique_ptr<InProcessBridges>> create(const MigrateDriverConfig& c) {
    auto b = std::unique_ptr<InProcessBridges>(new InProcessBridges);
    char tmpl[] = "/tmp/ramshift-qemu-migrate.XXXXXX";
    if (!mkdtemp(tmpl)) return errno_status(ErrorCode::kIo, "mkdtemp", errno);
    b->dir_ = tmpl;
    b->config_ = c.bridge;
    b->config_.queues = 1 + c.multifd_channels + (c.postcopy_preempt ? 1 : 0);
    b->config_.accept_timeout_ms = 60000;
    RS_ASSIGN_OR_RETURN(auto via, transport::parse_uri(c.via));
    RS_ASSIGN_OR_RETURN(b->listener_, transport::listen(via, b->config_.transport));
    return b;
  }
  ~InProcessBridges() {
    // The futures' destructors wait for the bridges, which use the listener and config.
    if (source_.valid()) source_.wait();
    if (destination_.valid()) destination_.wait();
    std::error_code ec;
    std::filesystem::remove_all(dir_, ec);
  }
  // Where the destination QEMU listens (migrate-incoming) and the source QEMU migrates to.
  std::string destination_uri() const { return "unix:" + dir_ + "/dst.sock"; }
  std::string source_uri() const { return "unix:" + dir_ + "/src.sock"; }

  // Starts both bridges; returns once the source bridge is connected (QEMU may migrate).
  Status start() {
    QemuEndpoint dep{dir_ + "/dst.sock"}, sep{dir_ + "/src.sock"};
    destination_ = std::async(std::launch::async, [this, dep] {
      auto conn = listener_->accept(kBridgeConnectTimeout);
      if (!conn) {
        BridgeReport r;
        r.role = "bridge-destination";
        r.error = conn.status();
        return r;
      }
      return run_bridge_dest(std::move(conn).value(), dep, config_, nullptr);
    });
    auto ready = ready_.get_future();
    source_ = std::async(std::launch::async, [this, sep] {
      auto r = run_bridge_source(listener_->address(), sep, config_, nullptr, [this] {
        std::call_once(ready_once_, [this] { ready_.set_value(); });
      });
      std::call_once(ready_once_, [this] { ready_.set_value(); });  // it ended before ready
      return r;
    });
    // Ready, or ended: a source bridge that ended first could not connect; its report
    // says why.
    if (ready.wait_for(kBridgeConnectTimeout) == std::future_status::ready &&
        source_.wait_for(0s) != std::future_status::ready)
      return Status::ok();
    return source_.get().error.with_context("source bridge");
  }
  // Waits for both bridges to end: {source, destination}.
  std::pair<BridgeReport, BridgeReport> finish() { return {source_.get(), destination_.get()}; }

 private:
  InProcessBridges() = default;
  std::string dir_;
  BridgeConfig config_;
  std::unique_ptr<transport::Listener> listener_;
  std::promise<void> ready_;
  std::once_flag ready_once_;
  std::future<BridgeReport> source_, destination_;  // after what they use: destroyed first
};

// QEMU's query-migrate as the shared snapshot (progress.h).
migration::Progress progress_of(const nlohmann::json& q, uint64_t max_bandwidth) {
  using migration::MigrationStatus;
  migration::Progress p;
  const std::string st = q.value("status", "");
  p.status = st == "setup" || st == "none" ? MigrationStatus::kSetup
             : is_postcopy_status(st)      ? MigrationStatus::kPostcopyActive
             : st == "completed"           ? MigrationStatus::kCompleted
             : st == "failed"              ? MigrationStatus::kFailed
             : st == "cancelled"           ? MigrationStatus::kCancelled
                                 : MigrationStatus::kActive;  // active, device, cancelling...
  p.setup_ms = q.value("setup-time", 0.0);
  p.elapsed_s = q.value("total-time", 0.0) / 1000;
  p.expected_downtime_ms = q.value("expected-downtime", 0.0);
  p.bandwidth_limit = max_bandwidth;
  if (q.contains("ram")) {
    const auto& ram = q["ram"];
    const uint64_t syncs = ram.value("dirty-sync-count", uint64_t{0});
    p.round = syncs > 0 ? static_cast<uint32_t>(syncs - 1) : 0;
    p.total_bytes = ram.value("total", uint64_t{0});
    p.done_bytes = p.total_bytes - std::min(p.total_bytes, ram.value("remaining", uint64_t{0}));
    p.transferred_bytes = ram.value("transferred", uint64_t{0});
    p.wire_bytes = p.transferred_bytes;
    p.dirty_rate_bytes_per_s = ram.value("dirty-pages-rate", 0.0) * ram.value("page-size", 4096.0);
  }
  return p;
}

// Polls query-migrate until QEMU's migration ends, `timeout` passes or the caller cancels
// (then cancels it and waits for QEMU to say so).
struct PollOutcome {
  Status status;
  nlohmann::json last;  // the last query-migrate answer (null if none)
  std::optional<double> postcopy_started_ms;
  uint32_t throttle_pct_max = 0;  // the highest cpu-throttle-percentage seen
};

// With --postcopy-after: switches an active pre-copy to post-copy once it has run that long.
// A refusal leaves QEMU in pre-copy, which may still finish: warned, not fatal.
void maybe_start_postcopy(QmpClient& src, const MigrateDriverConfig& c, const std::string& status,
                          Clock::time_point t0, PollOutcome& out) {
  if (!c.postcopy_after || out.postcopy_started_ms || status != "active") return;
  const std::chrono::duration<double> ran = Clock::now() - t0;
  if (ran < *c.postcopy_after) return;
  out.postcopy_started_ms = ran.count() * 1000;
  if (auto r = src.execute("migrate-start-postcopy"); !r)
    log::warn("qemu-migrate: migrate-start-postcopy refused ({}); pre-copy goes on",
              r.status().message());
  else
    log::info("qemu-migrate: post-copy started after {:.0f} ms of pre-copy",
              *out.postcopy_started_ms);
}
PollOutcome poll_migration(QmpClient& src, const MigrateDriverConfig& c,
                           const migration::ProgressFn& progress, SwitchoverTuner* tuner,
                           PostcopyRecovery* recovery) {
  PollOutcome out;
  std::string status;  // the last one QEMU gave
  std::ofstream trace;
  if (!c.trace_path.empty()) {
    trace.open(c.trace_path, std::ios::trunc);
    if (!trace) log::warn("qemu-migrate: cannot write the trace to {}", c.trace_path);
  }
  const auto t0 = Clock::now();
  int settle = 0;
  uint64_t max_bw = c.max_bandwidth;
  std::optional<Status> cancelled;  // why migrate_cancel was sent
  Clock::time_point cancelled_at;
  for (;;) {
    if (c.live_max_bandwidth && c.live_max_bandwidth->load() != max_bw) {
      max_bw = c.live_max_bandwidth->load();
      const uint64_t qemu_bw = max_bw == 0 ? (1ull << 40) : max_bw;
      auto r = src.execute("migrate-set-parameters", {{"max-bandwidth", qemu_bw}});
      if (!r)
        log::warn("qemu-migrate: max-bandwidth not changed: {}", r.status().message());
      else
        log::info("qemu-migrate: source QEMU max-bandwidth set to {} bytes/s", qemu_bw);
    }
    if (!cancelled && (migration::cancel_requested(c.cancel) || Clock::now() - t0 > c.timeout)) {
      cancelled = migration::cancel_requested(c.cancel)
                      ? c.cancel->status("qemu-migrate")
                      : Status(ErrorCode::kTimeout,
                               fmt::format("migration not done in {} s", c.timeout.count()));
      if (is_postcopy_status(status)) {
        // The guest already runs on the destination: a cancel would lose it. Leave QEMU
        // as it is (QEMU goes on, or stays paused for a recovery by hand).
        out.status = cancelled->with_context("QEMU is in " + status +
                                             ", which cannot be cancelled; left as it is");
        return out;
      }
      cancelled_at = Clock::now();
      log::warn("qemu-migrate: {}: sending migrate_cancel to the source QEMU",
                cancelled->message());
      if (auto r = src.execute("migrate_cancel"); !r) {
        out.status = r.status().with_context("migrate_cancel");
        return out;
      }
    }
    auto q = src.execute("query-migrate");
    if (!q) {
      out.status = q.status();
      return out;
    }
    out.last = *q;
    status = out.last.value("status", "");
    out.throttle_pct_max =
        std::max(out.throttle_pct_max, out.last.value("cpu-throttle-percentage", uint32_t{0}));
    if (!cancelled) maybe_start_postcopy(src, c, status, t0, out);
    if (recovery)
      recovery->observe(status,
                        std::chrono::duration<double, std::milli>(Clock::now() - t0).count());
    if (!recovery && status == "postcopy-paused") {
      out.status = Status(ErrorCode::kDisconnected,
                          "QEMU post-copy paused (its channels broke); the guest waits on the "
                          "destination: recover with QMP migrate-recover on the destination, then "
                          "migrate resume=true on the source (bridges started with --recover)");
      return out;
    }
    const auto snapshot = MigrationSnapshot::from_query_migrate(out.last);
    if (trace.is_open()) trace << snapshot.to_json().dump() << '\n' << std::flush;
    if (tuner && !cancelled) {
      if (auto action = tuner->observe(snapshot); !action.empty()) apply_tuning(src, action);
    }
    if (progress && out.last.contains("ram")) progress(progress_of(out.last, max_bw));
    // QEMU 7.2 flips the status to completed a moment before it fills in total-time.
    if (status == "completed" && out.last.value("total-time", 0) == 0 && ++settle < 20) {
      std::this_thread::sleep_for(50ms);
      continue;
    }
    if (status == "completed") return out;  // a cancel that came too late: it is done
    if (cancelled && (status == "cancelled" || status == "failed")) {
      out.status = *cancelled;
      return out;
    }
    if (cancelled && Clock::now() - cancelled_at > 30s) {  // QEMU never confirmed
      out.status = cancelled->with_context("QEMU did not confirm the cancel within 30 s");
      return out;
    }
    if (status == "failed" || status == "cancelled") {
      out.status =
          Status(ErrorCode::kIo, "QEMU migration " + status + ": " +
                                     out.last.value("error-desc", std::string("no reason given")));
      return out;
    }
    std::this_thread::sleep_for(100ms);
  }
}

// A running source must end running on the destination; a paused one (QEMU -S, or stopped)
// arrives in the same state, as QEMU carries the run state across. Waits up to 5 s for the
// destination to start the guest (it does right after loading the last state).
Status check_destination_state(QmpClient& dst, const std::string& src_before,
                               std::string& dst_status) {
  const bool want_running = src_before == "running";
  for (int i = 0; i < 50; ++i) {
    if (auto st = dst.execute("query-status"); st) dst_status = st->value("status", "?");
    if ((dst_status == "running") == want_running && dst_status != "inmigrate") break;
    std::this_thread::sleep_for(100ms);
  }
  if (want_running && dst_status != "running")
    return Status(ErrorCode::kIo, "destination QEMU is " + dst_status + ", not running");
  if (!want_running && (dst_status == "running" || dst_status == "inmigrate"))
    return Status(ErrorCode::kIo,
                  "the source was " + src_before + " but the destination is " + dst_status);
  return Status::ok();
}

// Folds the bridges' reports into `report`: a bridge failure fails the migration, unless
// QEMU completed and only the destination QEMU's early close stopped the last bytes.
void add_bridge_reports(MigrateReport& report, BridgeReport s, BridgeReport d) {
  if (report.outcome && d.qemu_closed_early) {
    // QEMU completed and the destination is in the right state, so the destination QEMU
    // had what it needed before it closed the channel: the bridges' failure is only
    // that their last bytes found no reader. Say so rather than fail a good migration.
    report.bridge_note =
        "the destination QEMU closed a channel before the bridge had delivered its last "
        "bytes, after the migration had completed: " +
        d.error.message();
    log::warn("qemu-migrate: {}", report.bridge_note);
  } else {
    if (report.outcome && !s.completed) report.outcome = s.error.with_context("source bridge");
    if (report.outcome && !d.completed) report.outcome = d.error.with_context("destination bridge");
  }
  report.bridge_source = std::move(s);
  report.bridge_destination = std::move(d);
}

}  // namespace

Result<MigrateReport> run_qemu_migration(const MigrateDriverConfig& c,
                                         const migration::ProgressFn& progress) {
  if (c.via.empty() == c.destination_uri.empty())
    return Status(ErrorCode::kInvalidArgument,
                  "give --via URI (bridged through ramshift) or --dst-uri URI "
                  "(QEMU to QEMU, or to bridges you started)");
  // Each side's error names its side: a wrong --src-qmp must not read as the destination's fault.
  auto src_qmp = QmpClient::connect(c.source_qmp, 10s);
  if (!src_qmp) return src_qmp.status().with_context("source QEMU (--src-qmp)");
  auto dst_qmp = QmpClient::connect(c.destination_qmp, 10s);
  if (!dst_qmp) return dst_qmp.status().with_context("destination QEMU (--dst-qmp)");
  QmpClient src = std::move(src_qmp).value();
  QmpClient dst = std::move(dst_qmp).value();
  const auto limit = static_cast<uint64_t>(c.downtime_limit_ms);
  std::unique_ptr<SwitchoverTuner> tuner;
  if (c.tune) {
    auto t = start_tuner(src, c);
    if (!t) return t.status().with_context("source QEMU");
    tuner = std::move(t).value();
  }
  RS_RETURN_IF_ERROR(configure(src, c, tuner ? tuner->initial_downtime_limit_ms() : limit)
                         .with_context("source QEMU"));
  RS_RETURN_IF_ERROR(configure(dst, c, limit).with_context("destination QEMU"));
  MigrateReport report;
  report.source_capabilities = capabilities_on(src);
  report.destination_capabilities = capabilities_on(dst);

  std::string dst_uri = c.destination_uri;
  std::string src_uri = c.source_uri.empty() ? c.destination_uri : c.source_uri;
  std::unique_ptr<InProcessBridges> bridges;
  if (!c.via.empty()) {
    RS_ASSIGN_OR_RETURN(bridges, InProcessBridges::create(c));
    dst_uri = bridges->destination_uri();
    src_uri = bridges->source_uri();
  }
  auto in = dst.execute("migrate-incoming", {{"uri", dst_uri}});
  if (!in) return in.status().with_context("destination QEMU (started with -incoming defer?)");
  if (bridges) RS_RETURN_IF_ERROR(bridges->start());

  report.source_status_before = vm_status(src);
  if (auto mig = src.execute("migrate", {{"uri", src_uri}}); !mig) {
    report.outcome = mig.status().with_context("source QEMU");
  } else {
    std::optional<PostcopyRecovery> recovery;
    // With `via` the bridges are one session each, in this process: nothing to recover
    // through (a link cut happens between bridges on two hosts).
    if (c.postcopy_after && c.postcopy_recover && c.via.empty())
      recovery.emplace(src, dst, src_uri, dst_uri);
    auto polled = poll_migration(src, c, progress, tuner.get(), recovery ? &*recovery : nullptr);
    if (recovery) report.postcopy_recoveries = recovery->events();
    report.outcome = polled.status;
    report.qemu = qemu_figures(polled.last);
    report.postcopy_started_ms = polled.postcopy_started_ms;
    report.throttle_pct_max = polled.throttle_pct_max;
    if (progress) {
      auto last = progress_of(polled.last, c.max_bandwidth);
      if (!report.outcome)
        last.status = report.outcome.code() == ErrorCode::kCancelled
                          ? migration::MigrationStatus::kCancelled
                          : migration::MigrationStatus::kFailed;
      progress(last);
    }
  }
  if (report.outcome)
    report.outcome =
        check_destination_state(dst, report.source_status_before, report.destination_status);
  if (report.outcome && c.postcopy_blocktime && report.postcopy_started_ms)
    read_blocktime(dst, report);
  // After a failure QEMU resumes the source VM; say so (or that it did not).
  report.source_status = vm_status(src);
  report.multifd_channels = c.multifd_channels;
  report.path = c.via.empty() ? "direct " + src_uri : "bridge " + c.via;
  if (tuner) report.tuning = tuner->report();
  if (bridges) {
    auto [s, d] = bridges->finish();
    add_bridge_reports(report, std::move(s), std::move(d));
  }
  return report;
}

std::string MigrateReport::to_json() const {
  nlohmann::ordered_json f;
  f["status"] = qemu.status;
  f["total_ms"] = qemu.total_ms;
  f["downtime_ms"] = qemu.downtime_ms;
  f["setup_ms"] = qemu.setup_ms;
  if (qemu.ram) {
    f["ram_total_bytes"] = qemu.ram->total_bytes;
    f["ram_transferred_bytes"] = qemu.ram->transferred_bytes;
    f["ram_duplicate_pages"] = qemu.ram->duplicate_pages;
    f["ram_normal_pages"] = qemu.ram->normal_pages;
    f["ram_mbps"] = qemu.ram->mbps;
    f["dirty_sync_count"] = qemu.ram->dirty_sync_count;
  }
  if (qemu.error) f["error"] = *qemu.error;
  nlohmann::ordered_json j;
  const Provenance made = provenance(static_cast<double>(qemu.total_ms));
  j["version"] = made.version;
  j["host"] = made.host;
  j["started_at"] = made.started_at;
  j["qemu"] = f;
  j["source_status_before"] = source_status_before;
  j["source_status"] = source_status;
  j["destination_status"] = destination_status;
  j["multifd_channels"] = multifd_channels;
  j["postcopy_started_ms"] =
      postcopy_started_ms ? nlohmann::ordered_json(*postcopy_started_ms) : nlohmann::ordered_json();
  j["postcopy_recoveries"] = nlohmann::ordered_json::array();
  for (const auto& e : postcopy_recoveries)
    j["postcopy_recoveries"].push_back(
        {{"paused_at_ms", e.paused_at_ms},
         {"recovered_at_ms", e.recovered_at_ms ? nlohmann::ordered_json(*e.recovered_at_ms)
                                               : nlohmann::ordered_json()},
         {"attempts", e.attempts},
         {"error",
          e.last_error.empty() ? nlohmann::ordered_json() : nlohmann::ordered_json(e.last_error)}});
  j["source_capabilities"] = source_capabilities;
  j["destination_capabilities"] = destination_capabilities;
  j["throttle_pct_max"] = throttle_pct_max;
  j["postcopy_blocktime_ms"] = postcopy_blocktime_ms
                                   ? nlohmann::ordered_json(*postcopy_blocktime_ms)
                                   : nlohmann::ordered_json();
  j["postcopy_vcpu_blocktime_ms"] = postcopy_vcpu_blocktime_ms;
  j["path"] = path;
  if (!bridge_note.empty()) j["bridge_note"] = bridge_note;
  if (tuning) {
    nlohmann::ordered_json t;
    t["floor_ms"] = tuning->floor_ms;
    t["floor_source"] = tuning->floor_source;
    auto opt = [](const std::optional<double>& v) {
      return v ? nlohmann::ordered_json(*v) : nlohmann::ordered_json();
    };
    t["floor_link_rate"] = opt(tuning->floor_link_rate);
    t["floor_dirty_rate"] = opt(tuning->floor_dirty_rate);
    t["ceiling_ms"] = tuning->ceiling_ms;
    t["switchover_bandwidth_supported"] = tuning->switchover_bandwidth_supported;
    t["switchover_bandwidth"] = tuning->switchover_bandwidth
                                    ? nlohmann::ordered_json(*tuning->switchover_bandwidth)
                                    : nlohmann::ordered_json();
    t["switchover_bandwidth_updates"] = tuning->switchover_bandwidth_updates;
    t["downtime_limit_steps"] = nlohmann::ordered_json::array();
    for (const auto& st : tuning->downtime_limit_steps)
      t["downtime_limit_steps"].push_back({{"at_ms", st.at_ms},
                                           {"downtime_limit_ms", st.downtime_limit_ms},
                                           {"remaining_bytes", st.remaining_bytes},
                                           {"dirty_sync_count", st.dirty_sync_count},
                                           {"reason", st.reason}});
    j["tuning"] = t;
  } else {
    j["tuning"] = nullptr;
  }
  if (bridge_source) j["bridge_source"] = nlohmann::ordered_json::parse(bridge_source->to_json());
  if (bridge_destination)
    j["bridge_destination"] = nlohmann::ordered_json::parse(bridge_destination->to_json());
  j["status"] = outcome                                   ? "completed"
                : outcome.code() == ErrorCode::kCancelled ? "cancelled"
                                                          : "failed";
  j["error"] =
      outcome ? nlohmann::ordered_json(nullptr) : nlohmann::ordered_json(outcome.message());
  return j.dump(2);
}

}  // namespace ramshift::qemu
