// Zero-page detection (ISA-L's isal_zero_detect, vectorised).
#pragma once

#include <cstddef>

namespace ramshift::pipeline {

// True when all `len` bytes at `data` are zero.
bool is_zero(const std::byte* data, size_t len);

}  // namespace ramshift::pipeline
