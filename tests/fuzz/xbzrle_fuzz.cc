// Fuzzes the XBZRLE decoder (any delta onto a page: no out-of-bounds access) and checks the
// encoder differentially: for two pages taken from the input, decode(encode(a, b)) on a == b.
#include <cstddef>
#include <cstdint>
#include <cstring>
#include <vector>

#include "ramshift/pipeline/xbzrle.h"

using namespace ramshift::pipeline;

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  constexpr size_t kPage = 4096;
  std::vector<std::byte> page(kPage, std::byte{0x11});
  (void)xbzrle::decode({reinterpret_cast<const std::byte*>(data), size}, page);

  std::vector<std::byte> a(kPage), b(kPage), delta(kPage);
  for (size_t i = 0; i < kPage; ++i) {
    a[i] = static_cast<std::byte>(size ? data[i % size] : 0);
    b[i] = a[i];
  }
  // The second half of the input says where b differs from a.
  for (size_t i = 0; i + 2 < size; i += 3)
    b[(data[i] | (data[i + 1] << 8)) % kPage] = static_cast<std::byte>(data[i + 2]);
  int64_t n = xbzrle::encode(a.data(), b.data(), kPage, delta);
  if (n >= 0) {
    std::vector<std::byte> out = a;
    if (!xbzrle::decode({delta.data(), static_cast<size_t>(n)}, out).is_ok()) __builtin_trap();
    if (std::memcmp(out.data(), b.data(), kPage) != 0) __builtin_trap();
  }
  return 0;
}
