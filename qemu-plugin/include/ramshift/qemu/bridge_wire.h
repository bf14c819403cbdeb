// The bridge's messages over a ramshift transport (docs/protocol.md, "QEMU bridge stream").
//
// Every message starts with a 16-byte little-endian header:
//   u32 magic "RSBG", u8 kind, u8 flags, u16 channel, u32 length (bytes after the header),
//   u32 aux (kind-specific; 0 where unused)
// Kinds:
//   HELLO  source -> dest on queue 0, then dest -> source: u32 version, u32 capabilities,
//          u32 queues, u32 XBZRLE cache bytes per channel (the source's; the destination
//          mirrors it, so both caches have the same slots). Either side refuses another version.
//   OPEN   source -> dest: QEMU opened channel `channel` (the n-th connection, 0 = main).
//          The destination opens its QEMU connections in channel order.
//   DATA   `length` bytes of the channel's stream, verbatim.
//   PAGES  one multifd packet, re-encoded (multifd-aware mode): u32 header_len, then the
//          packet header (verbatim, header_len bytes), then one page batch (page pipeline
//          format) whose page i is the packet's i-th normal page. Flag PLACED (1): the
//          packet is rebuilt in reassembly slot `aux` of the channel (see KEYS), where the
//          sender already wrote its kPlaced pages, each at its final offset in the packet
//          (header_len + i * page size), by one-sided writes ordered before this message.
//   KEYS   dest -> source, once per channel, only when both HELLOs offered PLACEMENT: the
//          channel's reassembly slots: u32 slot count, u32 slot bytes, u64 address, u32
//          rkey, u32 0. The source owns every slot until it sends a PLACED packet into it.
//   RELEASE dest -> source: slot `aux` was delivered to QEMU and may be written again.
//   CLOSE  the sender's QEMU end of the channel reached end of stream: u64 bytes, u64 XXH3
//          of every byte of the stream in that direction (version 1: u32 CRC32C, u32 0; XXH3
//          is 7x faster where CRC instructions are emulated). The receiver checks
//          both against what it delivered before it passes the end of stream on to QEMU.
//   ERROR  the sender failed: u32 error code, then a UTF-8 message (length - 4 bytes).
// Version 3 added KEYS, RELEASE and PLACED pages (rdma:// only).
// Channel c always travels on queue c, so each channel's bytes stay in order and a channel
// that QEMU stops reading can never hold up another (QEMU's main channel waits for the
// multifd channels' SYNC packets: sharing a queue would deadlock).
#pragma once

#include <cstddef>
#include <cstdint>
#include <span>
#include <string>
#include <vector>

#include "ramshift/base/status.h"

namespace ramshift::qemu {

inline constexpr uint32_t kBridgeMagic = 0x47425352;  // "RSBG" little-endian
inline constexpr uint32_t kBridgeVersion = 3;
inline constexpr size_t kBridgeHeaderBytes = 16;
inline constexpr size_t kHelloBytes = 16;
inline constexpr size_t kCloseBytes = 16;
inline constexpr size_t kKeysBytes = 24;
// Largest body either side sends or accepts: a DATA chunk is at most 1 MiB and a PAGES
// message one multifd packet (≤ 4096 pages of 4 KiB plus its header), encoded.
inline constexpr uint32_t kMaxBridgeBody = 20u << 20;
inline constexpr uint16_t kMaxChannels = 256;

enum class BridgeKind : uint8_t {
  kHello = 1,
  kOpen = 2,
  kData = 3,
  kPages = 4,
  kClose = 5,
  kError = 6,
  kKeys = 7,
  kRelease = 8
};
// HELLO capability bits.
inline constexpr uint32_t kCapMultifdPages = 1 << 0;  // sender may send PAGES
// Source: can place pages by one-sided writes. Destination: takes them (both: rdma://).
inline constexpr uint32_t kCapPlacement = 1 << 1;
// PAGES flag: rebuilt in reassembly slot `aux`, its kPlaced pages already there.
inline constexpr uint8_t kPagesPlaced = 1 << 0;
// Reassembly slots a destination may offer per channel, and their largest size.
inline constexpr uint32_t kMaxPlacementSlots = 64;
inline constexpr uint32_t kMaxSlotBytes = 32u << 20;

struct BridgeHeader {
  BridgeKind kind = BridgeKind::kData;
  uint8_t flags = 0;
  uint16_t channel = 0;
  uint32_t length = 0;
  uint32_t aux = 0;
};

struct BridgeHello {
  uint32_t version = kBridgeVersion;
  uint32_t capabilities = 0;
  uint32_t queues = 0;
  uint32_t cache_bytes = 0;
};

struct CloseInfo {
  uint64_t bytes = 0;
  uint64_t hash = 0;  // pipeline::StreamHash of the stream
};

void encode_header(const BridgeHeader& h, std::byte* out);
// Validates magic, kind, channel (< kMaxChannels) and length (≤ kMaxBridgeBody, and equal
// to `message.size() - kBridgeHeaderBytes`): kProtocol naming the field.
Result<BridgeHeader> decode_header(std::span<const std::byte> message);

void encode_hello(const BridgeHello& h, std::byte* out);
Result<BridgeHello> decode_hello(std::span<const std::byte> body);
void encode_close(const CloseInfo& c, std::byte* out);
Result<CloseInfo> decode_close(std::span<const std::byte> body);

// ERROR body: u32 error code, then the message (its first 4000 bytes).
std::vector<std::byte> encode_error(const Status& why);
// The failure an ERROR body reports, as "peer bridge: <message>"; a code this side does not
// know (or none) reads as kInternal. Never fails: any body is some error.
Status decode_error(std::span<const std::byte> body);

// A channel's reassembly slots on the destination (KEYS).
struct SlotKeys {
  uint32_t slots = 0;
  uint32_t slot_bytes = 0;
  uint64_t address = 0;
  uint32_t rkey = 0;
};
void encode_keys(const SlotKeys& k, std::byte* out);
// Validates counts (1..kMaxPlacementSlots), size (4 KiB..kMaxSlotBytes, whole pages), that
// the range does not wrap, and the reserved field.
Result<SlotKeys> decode_keys(std::span<const std::byte> body);

}  // namespace ramshift::qemu
