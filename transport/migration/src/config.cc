#include "ramshift/migration/config.h"

#include <fmt/format.h>

#include <sched.h>

#include <algorithm>

#include "ramshift/pipeline/batch_format.h"
#include "ramshift/transport/registry.h"

namespace ramshift::migration {

uint32_t default_queues() {
  // The cores this process may run on (taskset, cgroups' cpusets), not all the host has.
  cpu_set_t set;
  CPU_ZERO(&set);
  const int cores = sched_getaffinity(0, sizeof set, &set) == 0 ? CPU_COUNT(&set) : 1;
  return static_cast<uint32_t>(std::clamp(cores, 1, 8));
}

uint32_t default_batch_pages(std::string_view scheme, uint32_t page_size) {
  const transport::Backend* backend = transport::backends().find(scheme);
  const uint32_t bytes = backend ? backend->traits.preferred_batch_bytes : 0;
  if (bytes == 0 || page_size == 0) return 64;
  const uint32_t pages = bytes / page_size;
  return std::clamp<uint32_t>(pages, 1, static_cast<uint32_t>(pipeline::kMaxBatchPages));
}

const char* verify_mode_name(VerifyMode mode) {
  return mode == VerifyMode::kFull ? "full" : "transfer";
}

Result<VerifyMode> parse_verify_mode(std::string_view text) {
  if (text == "transfer") return VerifyMode::kTransfer;
  if (text == "full") return VerifyMode::kFull;
  return Status(ErrorCode::kInvalidArgument,
                fmt::format("--verify {}: expected transfer (the default) or full", text));
}

const char* migration_mode_name(MigrationMode mode) {
  switch (mode) {
    case MigrationMode::kPostcopy:
      return "postcopy";
    case MigrationMode::kHybrid:
      return "hybrid";
    default:
      return "precopy";
  }
}

Result<MigrationMode> parse_migration_mode(std::string_view text) {
  if (text == "precopy") return MigrationMode::kPrecopy;
  if (text == "postcopy") return MigrationMode::kPostcopy;
  if (text == "hybrid") return MigrationMode::kHybrid;
  return Status(ErrorCode::kInvalidArgument,
                fmt::format("--mode {}: expected precopy (the default), postcopy or hybrid", text));
}

}  // namespace ramshift::migration
