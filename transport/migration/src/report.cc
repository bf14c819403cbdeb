#include "ramshift/migration/report.h"

#include <nlohmann/json.hpp>

#include <algorithm>

#include "ramshift/base/provenance.h"
#include "report_json.h"

namespace ramshift::migration {

namespace {
nlohmann::ordered_json latency_json(const LatencyFigures& l) {
  return {{"p50", l.p50_us}, {"p99", l.p99_us}, {"max", l.max_us}};
}
}  // namespace

nlohmann::ordered_json downtime_detail_json(const DowntimeDetail& d, bool source) {
  if (!source) return {{"resume_ms", d.resume_ms}, {"aborted_switchovers", d.aborted_switchovers}};
  return {{"predicted_ms", d.predicted_ms},
          {"last_pages_ms", d.last_pages_ms},
          {"device_state_ms", d.device_state_ms},
          {"verify_ms", d.verify_ms},
          {"verify_full_ms", d.verify_full_ms},
          {"handoff_ms", d.handoff_ms},
          {"device_state_bytes", d.device_state_bytes},
          {"device_state_wire_bytes", d.device_state_wire_bytes},
          {"aborted_switchovers", d.aborted_switchovers},
          {"longest_aborted_pause_ms", d.longest_aborted_pause_ms}};
}

LatencyFigures latency_figures(std::vector<double> samples_us) {
  if (samples_us.empty()) return {};
  std::sort(samples_us.begin(), samples_us.end());
  auto at = [&](double q) {
    return samples_us[std::min(samples_us.size() - 1, static_cast<size_t>(q * samples_us.size()))];
  };
  return {at(0.5), at(0.99), samples_us.back()};
}

std::string MigrationReport::to_json() const {
  nlohmann::ordered_json j;
  j["status"] = completed                               ? "completed"
                : error.code() == ErrorCode::kCancelled ? "cancelled"
                                                        : "failed";
  j["role"] = role;
  j["mode"] = mode;
  const Provenance made = provenance(total_ms);
  j["version"] = made.version;
  j["host"] = made.host;
  j["started_at"] = made.started_at;
  j["verified"] = verified;
  j["total_ms"] = total_ms;
  j["setup_ms"] = setup_ms;
  j["downtime_ms"] =
      downtime_ms ? nlohmann::ordered_json(*downtime_ms) : nlohmann::ordered_json(nullptr);
  if (downtime_detail)
    j["downtime_detail"] = downtime_detail_json(*downtime_detail, role == "source");
  j["rounds"] = rounds;
  j["guest_bytes"] = guest_bytes;
  j["wire_bytes"] = wire_bytes;
  j["throughput_mbps"] = throughput_mbps();
  j["pages"] = {{"zero", pages.zero},
                {"xbzrle", pages.xbzrle},
                {"zstd", pages.zstd},
                {"raw", pages.raw},
                {"placed", pages.placed}};
  if (role == "source") j["pages"]["zero_unsent"] = pages.zero_unsent;  // only a source skips
  j["queues"] = queues;
  if (batch_pages != 0) {  // bridges have neither batches nor an XBZRLE cache of their own
    j["batch_pages"] = batch_pages;
    j["xbzrle_cache_bytes"] = xbzrle_cache_bytes;
  }
  j["transport"] = transport;
  j["codec"] = codec;
  if (!peer.empty()) j["peer"] = peer;
  j["throttle_pct"] = throttle_pct;
  auto rounds_json = nlohmann::ordered_json::array();
  for (const auto& r : rounds_detail)
    rounds_json.push_back(
        {{"round", r.round},
         {"pages", r.pages},
         {"guest_bytes", r.guest_bytes},
         {"wire_bytes", r.wire_bytes},
         {"ms", r.ms},
         {"bandwidth_bytes_per_s", r.ms > 0 ? r.guest_bytes / (r.ms / 1000) : 0},
         {"dirty_bytes_after", r.dirty_bytes_after},
         {"dirty_rate_bytes_per_s", r.ms > 0 ? r.dirty_bytes_after / (r.ms / 1000) : 0},
         {"expected_downtime_ms", r.expected_downtime_ms},
         {"throttle_pct", r.throttle_pct}});
  j["rounds_detail"] = rounds_json;
  if (verify)
    j["verify"] = {{"mode", verify->mode},
                   {"pages_checked", verify->pages_checked},
                   {"mismatches_repaired", verify->mismatches_repaired},
                   {"chunks_repaired", verify->chunks_repaired},
                   {"ms", verify->ms}};
  if (postcopy) {
    auto blocked = nlohmann::ordered_json::array();
    for (const auto& b : postcopy->blocked)
      blocked.push_back({{"thread", b.thread},
                         {"faults", b.faults},
                         {"total_ms", b.total_ms},
                         {"max_ms", b.max_ms}});
    j["postcopy"] = {
        {"postcopy_ms", postcopy->postcopy_ms},
        {"faults", postcopy->faults},
        {"requests", postcopy->requests},
        {"fault_latency_us", latency_json(postcopy->fault_latency)},
        {"service_latency_us", latency_json(postcopy->service_latency)},
        {"blocked_ms", blocked},
        {"pages",
         {{"pushed", postcopy->pages_pushed},
          {"faulted", postcopy->pages_faulted},
          {"zero_local", postcopy->pages_zero_local},
          {"duplicate", postcopy->pages_duplicate}}},
        {"discard", {{"rounds", postcopy->discard_rounds}, {"pages", postcopy->pages_discarded}}}};
    if (role == "destination") {
      j["postcopy"]["fault_path"] = postcopy->fault_path;
      j["postcopy"]["reads"] = postcopy->reads;
      j["postcopy"]["read_fault_latency_us"] = latency_json(postcopy->read_fault_latency);
      j["postcopy"]["read_latency_us"] = latency_json(postcopy->read_latency);
    } else {
      j["postcopy"]["read_exposed_bytes"] = postcopy->read_exposed_bytes;
      j["postcopy"]["read_released"] = postcopy->read_released;
    }
  }
  if (link.retransmitted_frames) j["retransmitted_frames"] = *link.retransmitted_frames;
  if (link.dropped_frames) j["dropped_frames"] = *link.dropped_frames;
  if (link.pacing_rate) j["pacing_rate"] = *link.pacing_rate;
  if (link.sent_copied_bytes) j["sent_copied_bytes"] = *link.sent_copied_bytes;
  if (link.sent_referenced_bytes) j["sent_referenced_bytes"] = *link.sent_referenced_bytes;
  if (link.received_bytes) j["received_bytes"] = *link.received_bytes;
  if (link.received_copied_bytes) j["received_copied_bytes"] = *link.received_copied_bytes;
  if (resumed_verified)
    j["resumed"] = {{"verified", *resumed_verified}, {"writes", resumed_writes}};
  if (source_guest) j["source_guest"] = *source_guest;
  if (auto_compressed_bytes_per_s || auto_raw_bytes_per_s)
    j["codec_auto"] = {{"compressed_bytes_per_s", auto_compressed_bytes_per_s.value_or(0)},
                       {"raw_bytes_per_s", auto_raw_bytes_per_s.value_or(0)}};
  if (error.is_ok()) {
    j["error"] = nullptr;
  } else {
    j["error"] = error.message();
    j["error_kind"] = error_code_name(error.code());
  }
  return j.dump(2);
}

}  // namespace ramshift::migration
