// The outcome of one migration, as both ends report it (JSON keys in docs/user-guide.md).
#pragma once

#include <cstdint>
#include <optional>
#include <string>

#include "ramshift/base/status.h"
#include "ramshift/pipeline/batch_format.h"

namespace ramshift::migration {

struct MigrationReport {
  std::string role;  // "source" or "destination"
  bool completed = false;
  bool verified = false;
  double total_ms = 0;
  double setup_ms = 0;
  std::optional<double> downtime_ms;  // none for an offline image: no guest was running
  uint32_t rounds = 0;
  uint64_t guest_bytes = 0;
  uint64_t wire_bytes = 0;
  pipeline::PageCounts pages;
  uint32_t queues = 0;
  std::string transport;
  std::string codec;
  std::string peer;
  // --codec auto: guest bytes/s measured while compressing and while raw (0 = not measured).
  std::optional<double> auto_compressed_bytes_per_s;
  std::optional<double> auto_raw_bytes_per_s;
  Status error;  // ok when completed

  double throughput_mbps() const {
    return total_ms > 0 ? static_cast<double>(guest_bytes) * 8 / (total_ms / 1000) / 1e6 : 0;
  }
  std::string to_json() const;  // one JSON object, pretty-printed
};

}  // namespace ramshift::migration
