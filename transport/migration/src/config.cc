#include "ramshift/migration/config.h"

#include <algorithm>

#include "ramshift/pipeline/batch_format.h"

namespace ramshift::migration {

uint32_t default_batch_pages(std::string_view scheme, uint32_t page_size) {
  if (scheme != "rdma" || page_size == 0) return 64;
  const uint32_t pages = (1u << 20) / page_size;
  return std::clamp<uint32_t>(pages, 1, static_cast<uint32_t>(pipeline::kMaxBatchPages));
}

}  // namespace ramshift::migration
