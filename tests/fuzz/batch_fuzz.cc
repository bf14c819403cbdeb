// Fuzzes the page batch decoder against a small two-region memory with an XBZRLE cache.
// Any input must be rejected or applied inside the regions (ASan checks every access).
#include <cstddef>
#include <cstdint>
#include <vector>

#include "ramshift/pipeline/batch_decoder.h"

using namespace ramshift::pipeline;

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  static std::vector<std::byte> region0(16 * 4096), region1(3 * 4096);
  static BatchDecoder decoder(4096, 16, 8 * 4096);  // state carries over, like a real queue
  std::span<std::byte> regions[] = {region0, region1};
  (void)decoder.apply({reinterpret_cast<const std::byte*>(data), size}, regions);
  return 0;
}
