#include "destination_memory.h"

#include <fmt/format.h>

#include "ramshift/base/units.h"

namespace ramshift::migration {

Result<std::unique_ptr<guest::DestinationMemory>> destination_memory(
    const DestinationConfig& config, const std::vector<uint64_t>& region_bytes,
    uint32_t page_size) {
  uint64_t total = 0;
  for (uint64_t b : region_bytes) total += b;
  if (config.expect_bytes && total != config.expect_bytes)
    return Status(ErrorCode::kMismatch,
                  fmt::format("size mismatch: the destination expects a {} guest ({} bytes) but "
                              "the source offers {} ({} bytes)",
                              format_bytes(config.expect_bytes), config.expect_bytes,
                              format_bytes(total), total));
  if (config.guest) {
    RS_ASSIGN_OR_RETURN(auto spans, config.guest->memory_for(region_bytes, page_size));
    return guest::DestinationMemory::borrow(std::move(spans), region_bytes, page_size);
  }
  const guest::DestinationMemory::Options options{config.output_path, config.overwrite,
                                                  /*reserve_later=*/true};
  return guest::DestinationMemory::create(region_bytes, page_size, options);
}

}  // namespace ramshift::migration
