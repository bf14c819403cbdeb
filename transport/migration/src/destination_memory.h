// The memory a destination receives a guest into, for the region table the source sent.
#pragma once

#include <cstdint>
#include <memory>
#include <vector>

#include "ramshift/base/status.h"
#include "ramshift/guest/image.h"
#include "ramshift/migration/config.h"

namespace ramshift::migration {

// The embedder's guest's memory (config.guest), else memory of the engine's own: anonymous,
// or the --guest-out file. kMismatch when the regions' total is not config.expect_bytes.
Result<std::unique_ptr<guest::DestinationMemory>> destination_memory(
    const DestinationConfig& config, const std::vector<uint64_t>& region_bytes, uint32_t page_size);

}  // namespace ramshift::migration
