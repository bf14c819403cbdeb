#include "ramshift/qemu/multifd.h"

#include <fmt/format.h>

#include <bit>
#include <cstring>

namespace ramshift::qemu {
namespace {

uint32_t be32(const std::byte* p) {
  uint32_t v;
  std::memcpy(&v, p, 4);
  return std::endian::native == std::endian::little ? __builtin_bswap32(v) : v;
}
uint64_t be64(const std::byte* p) {
  uint64_t v;
  std::memcpy(&v, p, 8);
  return std::endian::native == std::endian::little ? __builtin_bswap64(v) : v;
}

ParseResult doubt(std::string why) {
  ParseResult r;
  r.outcome = ParseOutcome::kDoubt;
  r.doubt = std::move(why);
  return r;
}

}  // namespace

bool is_multifd_magic(std::span<const std::byte> first4) {
  return first4.size() >= 4 && be32(first4.data()) == kMultifdMagic;
}

uint64_t MultifdPacket::offset(std::span<const std::byte> h, uint32_t i) {
  return be64(h.data() + kMultifdPacketFixedBytes + 8 * size_t{i});
}

ParseResult parse_multifd_packet(std::span<const std::byte> d, size_t page_size) {
  if (d.size() < kMultifdPacketFixedBytes) return {};
  const std::byte* p = d.data();
  MultifdPacket k;
  uint32_t magic = be32(p), version = be32(p + 4);
  if (magic != kMultifdMagic) return doubt(fmt::format("packet magic {:#x}", magic));
  if (version != kMultifdVersion) return doubt(fmt::format("multifd version {}", version));
  k.flags = be32(p + 8);
  if ((k.flags & ~kMultifdFlagSync) != 0)
    return doubt(fmt::format("packet flags {:#x} (compressed or not RAM)", k.flags));
  k.pages_alloc = be32(p + 12);
  k.normal_pages = be32(p + 16);
  k.next_packet_size = be32(p + 20);
  k.packet_num = be64(p + 24);
  k.zero_pages = be32(p + 32);
  if (be32(p + 36) != 0) return doubt("a reserved header field is in use (newer QEMU)");
  if (k.pages_alloc > kMultifdMaxPagesAlloc)
    return doubt(fmt::format("pages_alloc {} above {}", k.pages_alloc, kMultifdMaxPagesAlloc));
  if (uint64_t{k.normal_pages} + k.zero_pages > k.pages_alloc)
    return doubt(fmt::format("{} normal + {} zero pages exceed pages_alloc {}", k.normal_pages,
                             k.zero_pages, k.pages_alloc));
  const char* name = reinterpret_cast<const char*>(p + 64);
  size_t name_len = strnlen(name, 256);
  if (name_len == 256) return doubt("ramblock name not terminated");
  k.ramblock = std::string_view(name, name_len);
  if (k.normal_pages > 0) {
    if (k.next_packet_size % k.normal_pages != 0)
      return doubt("payload is not a whole number of pages");
    k.page_size = k.next_packet_size / k.normal_pages;
    if (!std::has_single_bit(k.page_size) || k.page_size < 4096 || k.page_size > 65536)
      return doubt(fmt::format("page size {}", k.page_size));
    if (page_size != 0 && k.page_size != page_size)
      return doubt(fmt::format("page size changed from {} to {}", page_size, k.page_size));
    k.payload_bytes = k.next_packet_size;
  }
  k.header_bytes = kMultifdPacketFixedBytes + 8 * size_t{k.pages_alloc};
  // QEMU 9.0+ clears a SYNC packet before filling it, pages_alloc included, yet still sends
  // its full length: the offsets table of a packet of MULTIFD_PACKET_SIZE, all zero. Take
  // that length only when the table is indeed zero; a wrong guess then ends in a doubt at
  // the next packet, never in a changed byte (every PAGES message rebuilds what it read).
  const bool cleared_sync = (k.flags & kMultifdFlagSync) && k.pages_alloc == 0 &&
                            k.normal_pages == 0 && k.zero_pages == 0;
  if (cleared_sync) {
    size_t offsets = kMultifdPacketPayloadBytes / (page_size != 0 ? page_size : 4096);
    k.header_bytes = kMultifdPacketFixedBytes + 8 * offsets;
    if (d.size() < k.header_bytes) return {};
    for (size_t i = kMultifdPacketFixedBytes; i < k.header_bytes; ++i)
      if (p[i] != std::byte{0}) return doubt("a SYNC packet without pages has offsets");
  }
  if (d.size() < k.header_bytes) return {};
  ParseResult r;
  r.outcome = ParseOutcome::kPacket;
  r.packet = k;
  return r;
}

}  // namespace ramshift::qemu
