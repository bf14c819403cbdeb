#include "ramshift/pipeline/zero_page.h"

#include <isa-l/mem_routines.h>

namespace ramshift::pipeline {

bool is_zero(const std::byte* data, size_t len) {
  return isal_zero_detect(const_cast<std::byte*>(data), len) == 0;
}

}  // namespace ramshift::pipeline
