#include "ramshift/qemu/bridge_wire.h"

#include <fmt/format.h>

#include "ramshift/base/byte_order.h"

namespace ramshift::qemu {
namespace {
Status bad(const std::string& what) {
  return Status(ErrorCode::kProtocol, "bridge message: " + what);
}
}  // namespace

void encode_header(const BridgeHeader& h, std::byte* out) {
  store_le<uint32_t>(out, kBridgeMagic);
  out[4] = static_cast<std::byte>(h.kind);
  out[5] = static_cast<std::byte>(h.flags);
  store_le<uint16_t>(out + 6, h.channel);
  store_le<uint32_t>(out + 8, h.length);
  store_le<uint32_t>(out + 12, h.aux);
}

Result<BridgeHeader> decode_header(std::span<const std::byte> m) {
  if (m.size() < kBridgeHeaderBytes)
    return bad(
        fmt::format("{} bytes is shorter than the {}-byte header", m.size(), kBridgeHeaderBytes));
  uint32_t magic = load_le<uint32_t>(m.data());
  if (magic != kBridgeMagic)
    return bad(
        fmt::format("magic {:#010x} is not a ramshift bridge's (is the peer a bridge?)", magic));
  BridgeHeader h;
  uint8_t kind = static_cast<uint8_t>(m[4]);
  if (kind < 1 || kind > static_cast<uint8_t>(BridgeKind::kRelease))
    return bad(fmt::format("unknown kind {}", kind));
  h.kind = static_cast<BridgeKind>(kind);
  h.flags = static_cast<uint8_t>(m[5]);
  h.channel = load_le<uint16_t>(m.data() + 6);
  h.length = load_le<uint32_t>(m.data() + 8);
  h.aux = load_le<uint32_t>(m.data() + 12);
  if (h.channel >= kMaxChannels)
    return bad(fmt::format("channel {} is beyond the limit of {}", h.channel, kMaxChannels));
  if (h.length > kMaxBridgeBody)
    return bad(fmt::format("length {} exceeds the {}-byte limit", h.length, kMaxBridgeBody));
  if (h.length != m.size() - kBridgeHeaderBytes)
    return bad(fmt::format("length {} but {} bytes follow the header", h.length,
                           m.size() - kBridgeHeaderBytes));
  const uint8_t allowed = h.kind == BridgeKind::kPages ? kPagesPlaced : 0;
  if (h.flags & ~allowed)
    return bad(fmt::format("flags {:#x} not defined for kind {}", h.flags, kind));
  return h;
}

void encode_hello(const BridgeHello& h, std::byte* out) {
  store_le<uint32_t>(out, h.version);
  store_le<uint32_t>(out + 4, h.capabilities);
  store_le<uint32_t>(out + 8, h.queues);
  store_le<uint32_t>(out + 12, h.cache_bytes);
}

Result<BridgeHello> decode_hello(std::span<const std::byte> body) {
  if (body.size() != kHelloBytes)
    return bad(fmt::format("HELLO of {} bytes, expected {}", body.size(), kHelloBytes));
  BridgeHello h;
  h.version = load_le<uint32_t>(body.data());
  h.capabilities = load_le<uint32_t>(body.data() + 4);
  h.queues = load_le<uint32_t>(body.data() + 8);
  h.cache_bytes = load_le<uint32_t>(body.data() + 12);
  if (h.version != kBridgeVersion)
    return Status(ErrorCode::kMismatch,
                  fmt::format("peer bridge speaks version {}, this one {}: run the same "
                              "ramshift release on both hosts",
                              h.version, kBridgeVersion));
  if (h.queues == 0 || h.queues > kMaxChannels)
    return bad(fmt::format("HELLO queues {} outside 1..{}", h.queues, kMaxChannels));
  if (h.cache_bytes > (1u << 30))
    return bad(fmt::format("HELLO cache of {} bytes per channel is above 1 GiB", h.cache_bytes));
  return h;
}

void encode_close(const CloseInfo& c, std::byte* out) {
  store_le<uint64_t>(out, c.bytes);
  store_le<uint64_t>(out + 8, c.hash);
}

Result<CloseInfo> decode_close(std::span<const std::byte> body) {
  if (body.size() != kCloseBytes)
    return bad(fmt::format("CLOSE of {} bytes, expected {}", body.size(), kCloseBytes));
  CloseInfo c;
  c.bytes = load_le<uint64_t>(body.data());
  c.hash = load_le<uint64_t>(body.data() + 8);
  return c;
}

void encode_keys(const SlotKeys& k, std::byte* out) {
  store_le<uint32_t>(out, k.slots);
  store_le<uint32_t>(out + 4, k.slot_bytes);
  store_le<uint64_t>(out + 8, k.address);
  store_le<uint32_t>(out + 16, k.rkey);
  store_le<uint32_t>(out + 20, 0);
}

Result<SlotKeys> decode_keys(std::span<const std::byte> body) {
  if (body.size() != kKeysBytes)
    return bad(fmt::format("KEYS of {} bytes, expected {}", body.size(), kKeysBytes));
  SlotKeys k;
  k.slots = load_le<uint32_t>(body.data());
  k.slot_bytes = load_le<uint32_t>(body.data() + 4);
  k.address = load_le<uint64_t>(body.data() + 8);
  k.rkey = load_le<uint32_t>(body.data() + 16);
  if (load_le<uint32_t>(body.data() + 20) != 0) return bad("KEYS reserved field is not 0");
  if (k.slots == 0 || k.slots > kMaxPlacementSlots)
    return bad(fmt::format("KEYS offers {} slots, outside 1..{}", k.slots, kMaxPlacementSlots));
  if (k.slot_bytes < 4096 || k.slot_bytes > kMaxSlotBytes || k.slot_bytes % 4096 != 0)
    return bad(fmt::format("KEYS slot of {} bytes is not whole pages within 4 KiB..{} MiB",
                           k.slot_bytes, kMaxSlotBytes >> 20));
  const uint64_t span = uint64_t{k.slots} * k.slot_bytes;
  if (k.address == 0 || k.address + span < k.address)
    return bad("KEYS slot range is empty or wraps");
  return k;
}

}  // namespace ramshift::qemu
