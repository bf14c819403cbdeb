#include "ramshift/migration/report.h"

#include <nlohmann/json.hpp>

namespace ramshift::migration {

std::string MigrationReport::to_json() const {
  nlohmann::ordered_json j;
  j["status"] = completed ? "completed" : "failed";
  j["role"] = role;
  j["verified"] = verified;
  j["total_ms"] = total_ms;
  j["setup_ms"] = setup_ms;
  j["downtime_ms"] =
      downtime_ms ? nlohmann::ordered_json(*downtime_ms) : nlohmann::ordered_json(nullptr);
  j["rounds"] = rounds;
  j["guest_bytes"] = guest_bytes;
  j["wire_bytes"] = wire_bytes;
  j["throughput_mbps"] = throughput_mbps();
  j["pages"] = {
      {"zero", pages.zero}, {"xbzrle", pages.xbzrle}, {"zstd", pages.zstd}, {"raw", pages.raw}};
  j["queues"] = queues;
  j["transport"] = transport;
  j["codec"] = codec;
  if (!peer.empty()) j["peer"] = peer;
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
