#include "ramshift/migration/progress.h"

#include <fmt/format.h>

#include <nlohmann/json.hpp>

#include "ramshift/migration/report.h"
#include "report_json.h"

namespace ramshift::migration {

const char* migration_status_name(MigrationStatus status) {
  switch (status) {
    case MigrationStatus::kNone:
      return "none";
    case MigrationStatus::kSetup:
      return "setup";
    case MigrationStatus::kActive:
      return "active";
    case MigrationStatus::kPostcopyActive:
      return "postcopy-active";
    case MigrationStatus::kCompleted:
      return "completed";
    case MigrationStatus::kFailed:
      return "failed";
    case MigrationStatus::kCancelled:
      return "cancelled";
  }
  return "?";
}

bool is_final(MigrationStatus status) {
  return status == MigrationStatus::kCompleted || status == MigrationStatus::kFailed ||
         status == MigrationStatus::kCancelled;
}

Progress final_progress(const MigrationReport& r) {
  Progress p;
  p.status = r.completed                               ? MigrationStatus::kCompleted
             : r.error.code() == ErrorCode::kCancelled ? MigrationStatus::kCancelled
                                                       : MigrationStatus::kFailed;
  p.round = r.rounds > 0 ? r.rounds - 1 : 0;
  p.wire_bytes = r.wire_bytes;
  p.setup_ms = r.setup_ms;
  p.elapsed_s = r.total_ms / 1000;
  p.downtime_ms = r.downtime_ms;
  p.downtime_detail = r.downtime_detail;
  if (r.rounds_detail.empty()) {  // the destination, a bridge: the guest (or stream) as counted
    p.transferred_bytes = r.completed ? r.guest_bytes : 0;
    p.total_bytes = p.done_bytes = p.transferred_bytes;
    return p;
  }
  for (const auto& d : r.rounds_detail) p.transferred_bytes += d.guest_bytes;
  const RoundDetail& last = r.rounds_detail.back();
  p.total_bytes = last.guest_bytes;
  p.done_bytes = r.completed ? last.guest_bytes : 0;
  p.dirty_rate_bytes_per_s = last.ms > 0 ? last.dirty_bytes_after / (last.ms / 1000) : 0;
  p.expected_downtime_ms = last.expected_downtime_ms;
  return p;
}

std::string progress_json(const Progress& p) {
  nlohmann::ordered_json j;
  j["status"] = migration_status_name(p.status);
  j["round"] = p.round;
  j["transferred_bytes"] = p.transferred_bytes;
  j["remaining_bytes"] = p.remaining_bytes();
  j["round_total_bytes"] = p.total_bytes;
  j["wire_bytes"] = p.wire_bytes;
  j["dirty_rate_bytes_per_s"] = p.dirty_rate_bytes_per_s;
  j["expected_downtime_ms"] = p.expected_downtime_ms;
  if (p.downtime_ms) j["downtime_ms"] = *p.downtime_ms;
  if (p.downtime_detail)
    j["downtime_detail"] = downtime_detail_json(*p.downtime_detail, p.downtime_ms.has_value());
  j["throughput_bytes_per_s"] = p.throughput_bytes_per_s();
  j["bandwidth_limit_bytes_per_s"] = p.bandwidth_limit;
  j["paused"] = p.paused;
  j["setup_ms"] = p.setup_ms;
  j["total_ms"] = p.elapsed_s * 1000;
  return j.dump();
}

std::string progress_metrics(const Progress& p, const std::string& role) {
  std::string out;
  auto metric = [&](const char* name, const char* type, const char* help, double value) {
    out +=
        fmt::format("# HELP ramshift_{} {}\n# TYPE ramshift_{} {}\nramshift_{}{{role=\"{}\"}} {}\n",
                    name, help, name, type, name, role, value);
  };
  // One gauge per status, 1 for the current one: Prometheus's way to export an enum.
  out += "# HELP ramshift_migration_status The migration's status (1 = current).\n";
  out += "# TYPE ramshift_migration_status gauge\n";
  for (auto s : {MigrationStatus::kNone, MigrationStatus::kSetup, MigrationStatus::kActive,
                 MigrationStatus::kPostcopyActive, MigrationStatus::kCompleted,
                 MigrationStatus::kFailed, MigrationStatus::kCancelled})
    out += fmt::format("ramshift_migration_status{{role=\"{}\",status=\"{}\"}} {}\n", role,
                       migration_status_name(s), s == p.status ? 1 : 0);
  metric("migration_round", "gauge", "Pre-copy round under way.", p.round);
  metric("migration_transferred_bytes", "gauge", "Guest bytes handled, all rounds.",
         static_cast<double>(p.transferred_bytes));
  metric("migration_remaining_bytes", "gauge", "Guest bytes left in this round.",
         static_cast<double>(p.remaining_bytes()));
  metric("migration_wire_bytes", "gauge", "Bytes put on the link.",
         static_cast<double>(p.wire_bytes));
  metric("migration_dirty_rate_bytes_per_second", "gauge",
         "Guest bytes dirtied per second in the last round.", p.dirty_rate_bytes_per_s);
  metric("migration_expected_downtime_seconds", "gauge",
         "Downtime the convergence policy predicts.", p.expected_downtime_ms / 1000);
  if (p.downtime_ms)
    metric("migration_downtime_seconds", "gauge", "Downtime measured (pause to the guest running).",
           *p.downtime_ms / 1000);
  metric("migration_throughput_bytes_per_second", "gauge",
         "Guest bytes per second since the start.", p.throughput_bytes_per_s());
  metric("migration_bandwidth_limit_bytes_per_second", "gauge",
         "Wire bytes per second the sender may use (0 = unlimited).",
         static_cast<double>(p.bandwidth_limit));
  metric("migration_setup_seconds", "gauge", "Set-up time.", p.setup_ms / 1000);
  metric("migration_elapsed_seconds", "gauge", "Time since the migration started.", p.elapsed_s);
  return out;
}

}  // namespace ramshift::migration
