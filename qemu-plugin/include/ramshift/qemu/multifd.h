// QEMU's multifd channel format, as far as the bridge needs it (big-endian, packed):
//
//   MultiFDInit_t (64 bytes, once per channel): u32 magic 0x11223344, u32 version 1,
//     u8 uuid[16], u8 id, u8 unused[7], u64 unused[4]
//   MultiFDPacket_t (320 bytes + 8 x pages_alloc): u32 magic, u32 version 1, u32 flags,
//     u32 pages_alloc, u32 normal_pages, u32 next_packet_size, u64 packet_num,
//     u32 zero_pages (9.0+; 0 before), u32 skipped (reserved), u64 unused[3],
//     char ramblock[256], u64 offset[pages_alloc] (normal pages first, then zero pages),
//   followed by the normal pages, in offset order: normal_pages x page size bytes. That is
//   next_packet_size when the packet has pages; a SYNC packet without pages keeps the
//   previous packet's next_packet_size (QEMU 7.2 does not reset it) and carries no payload.
//   QEMU 9.0+ clears a SYNC packet instead (pages_alloc, sizes, ramblock and offsets all
//   zero) but still sends the offsets table of a full packet: MULTIFD_PACKET_SIZE (512 KiB)
//   / page size entries — 1344 bytes in all for 4 KiB pages, whatever pages_alloc says.
//
// The parser recognises QEMU 7.2 .. 10.x RAM packets without compression (tested with
// 7.2 and with 10.0 from bookworm-backports). Anything else —
// another version, a compression or device-state flag, sizes that do not add up — is a
// "doubt": the bridge then passes the rest of the channel through untouched.
#pragma once

#include <cstddef>
#include <cstdint>
#include <span>
#include <string>
#include <string_view>

namespace ramshift::qemu {

inline constexpr uint32_t kMultifdMagic = 0x11223344;
inline constexpr uint32_t kMultifdVersion = 1;
inline constexpr size_t kMultifdInitBytes = 64;
inline constexpr size_t kMultifdPacketFixedBytes = 320;
inline constexpr uint32_t kMultifdFlagSync = 1u << 0;
// QEMU's MULTIFD_PACKET_SIZE: the pages one packet can carry, in bytes.
inline constexpr size_t kMultifdPacketPayloadBytes = 512 * 1024;
// Largest pages_alloc the bridge parses (QEMU 7.2..9.x use 128 for 4 KiB pages).
inline constexpr uint32_t kMultifdMaxPagesAlloc = 1024;

// True when `first4` (big-endian) is the multifd magic: a multifd channel, not the main one.
bool is_multifd_magic(std::span<const std::byte> first4);

struct MultifdPacket {
  uint32_t flags = 0;
  uint32_t pages_alloc = 0;
  uint32_t normal_pages = 0;
  uint32_t zero_pages = 0;
  uint32_t next_packet_size = 0;
  uint64_t packet_num = 0;
  std::string_view ramblock;  // into the parsed bytes
  size_t header_bytes = 0;    // fixed part + offsets
  size_t page_size = 0;       // next_packet_size / normal_pages (0 without normal pages)
  size_t payload_bytes = 0;   // normal_pages x page_size
  size_t total_bytes() const { return header_bytes + payload_bytes; }
  // Offset of normal page i (i < normal_pages), read from the header bytes `h`.
  static uint64_t offset(std::span<const std::byte> h, uint32_t i);
};

enum class ParseOutcome { kPacket, kNeedMore, kDoubt };

struct ParseResult {
  ParseOutcome outcome = ParseOutcome::kNeedMore;
  MultifdPacket packet;  // kPacket: the header (the payload may still need bytes)
  std::string doubt;     // kDoubt: why, for the one-time log line
};

// Parses the packet header at the start of `data`. kNeedMore until the whole header
// (fixed part and offsets) is present; the payload is not required. `page_size` is the one
// seen earlier on the channel (0 = not yet known), to which every packet must agree.
ParseResult parse_multifd_packet(std::span<const std::byte> data, size_t page_size);

}  // namespace ramshift::qemu
