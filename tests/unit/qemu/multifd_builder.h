// Builds QEMU-format multifd byte streams for the bridge tests (big-endian, 7.2 .. 10.x layout).
#pragma once

#include <cstdint>
#include <cstring>
#include <random>
#include <string>
#include <vector>

namespace ramshift::qemu::testing {

inline void put_be32(std::vector<std::byte>& v, size_t at, uint32_t x) {
  for (int i = 0; i < 4; ++i) v[at + i] = std::byte(x >> (24 - 8 * i));
}
inline void put_be64(std::vector<std::byte>& v, size_t at, uint64_t x) {
  for (int i = 0; i < 8; ++i) v[at + i] = std::byte(x >> (56 - 8 * i));
}

inline std::vector<std::byte> multifd_init(uint8_t id) {
  std::vector<std::byte> v(64);
  put_be32(v, 0, 0x11223344);
  put_be32(v, 4, 1);
  v[24] = std::byte{id};
  return v;
}

// A packet with `offsets.size()` normal pages taken from `pages` (4 KiB each).
inline std::vector<std::byte> multifd_packet(const std::vector<uint64_t>& offsets,
                                             const std::vector<std::byte>& pages,
                                             uint32_t flags = 0, uint32_t pages_alloc = 128,
                                             const std::string& block = "pc.ram",
                                             uint32_t stale_next_size = 0) {
  size_t header = 320 + 8 * size_t{pages_alloc};
  std::vector<std::byte> v(header);
  put_be32(v, 0, 0x11223344);
  put_be32(v, 4, 1);
  put_be32(v, 8, flags);
  put_be32(v, 12, pages_alloc);
  put_be32(v, 16, static_cast<uint32_t>(offsets.size()));
  put_be32(v, 20, offsets.empty() ? stale_next_size : static_cast<uint32_t>(offsets.size() * 4096));
  put_be64(v, 24, 7);
  std::memcpy(v.data() + 64, block.data(), block.size());
  for (size_t i = 0; i < offsets.size(); ++i) put_be64(v, 320 + 8 * i, offsets[i]);
  v.insert(v.end(), pages.begin(), pages.end());
  return v;
}

// A SYNC packet as QEMU 9.0+ sends it: cleared (pages_alloc 0, no ramblock), but as long as
// a full packet's header: 128 zero offsets for 4 KiB pages (captured from QEMU 10.0).
inline std::vector<std::byte> multifd_cleared_sync(uint64_t packet_num) {
  std::vector<std::byte> v(320 + 8 * 128);
  put_be32(v, 0, 0x11223344);
  put_be32(v, 4, 1);
  put_be32(v, 8, 1);  // MULTIFD_FLAG_SYNC
  put_be64(v, 24, packet_num);
  return v;
}

// `n` pages of mixed content: zero, random, text-like, seeded.
inline std::vector<std::byte> mixed_pages(size_t n, uint32_t seed) {
  std::vector<std::byte> v(n * 4096);
  std::mt19937_64 rng(seed);
  for (size_t p = 0; p < n; ++p) {
    std::byte* page = v.data() + p * 4096;
    switch (p % 4) {
      case 0:
        break;  // zero
      case 1:
        for (size_t i = 0; i < 4096; i += 8) {
          uint64_t x = rng();
          std::memcpy(page + i, &x, 8);
        }
        break;
      default:
        for (size_t i = 0; i < 4096; ++i) page[i] = std::byte("the quick brown fox "[(i + p) % 20]);
    }
  }
  return v;
}

}  // namespace ramshift::qemu::testing
