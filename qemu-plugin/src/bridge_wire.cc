#include "ramshift/qemu/bridge_wire.h"

#include <fmt/format.h>

#include "ramshift/wire/codec_io.h"

namespace ramshift::qemu {
namespace {
using wire::BodyReader;
using wire::SpanWriter;

Status bad(const std::string& what) {
  return Status(ErrorCode::kProtocol, "bridge message: " + what);
}
}  // namespace

void encode_header(const BridgeHeader& h, std::byte* out) {
  SpanWriter w({out, kBridgeHeaderBytes});
  w.write<uint32_t>(kBridgeMagic);
  w.write<uint8_t>(static_cast<uint8_t>(h.kind));
  w.write<uint8_t>(h.flags);
  w.write<uint16_t>(h.channel);
  w.write<uint32_t>(h.length);
  w.write<uint32_t>(h.aux);
}

Result<BridgeHeader> decode_header(std::span<const std::byte> m) {
  if (m.size() < kBridgeHeaderBytes)
    return bad(
        fmt::format("{} bytes is shorter than the {}-byte header", m.size(), kBridgeHeaderBytes));
  // Only the header: the body after it is the kind's decoder's to read.
  BodyReader r(m.first(kBridgeHeaderBytes), "bridge header");
  uint32_t magic = r.read<uint32_t>("magic");
  if (magic != kBridgeMagic)
    return bad(
        fmt::format("magic {:#010x} is not a ramshift bridge's (is the peer a bridge?)", magic));
  BridgeHeader h;
  uint8_t kind = r.read<uint8_t>("kind");
  if (kind < 1 || kind > static_cast<uint8_t>(BridgeKind::kRelease))
    return bad(fmt::format("unknown kind {}", kind));
  h.kind = static_cast<BridgeKind>(kind);
  h.flags = r.read<uint8_t>("flags");
  h.channel = r.read<uint16_t>("channel");
  h.length = r.read<uint32_t>("length");
  h.aux = r.read<uint32_t>("aux");
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
  SpanWriter w({out, kHelloBytes});
  w.write<uint32_t>(h.version);
  w.write<uint32_t>(h.capabilities);
  w.write<uint32_t>(h.queues);
  w.write<uint32_t>(h.cache_bytes);
}

Result<BridgeHello> decode_hello(std::span<const std::byte> body) {
  if (body.size() != kHelloBytes)
    return bad(fmt::format("HELLO of {} bytes, expected {}", body.size(), kHelloBytes));
  BodyReader r(body, "HELLO");
  BridgeHello h;
  h.version = r.read<uint32_t>("version");
  h.capabilities = r.read<uint32_t>("capabilities");
  h.queues = r.read<uint32_t>("queues");
  h.cache_bytes = r.read<uint32_t>("cache_bytes");
  RS_RETURN_IF_ERROR(r.finish());
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
  SpanWriter w({out, kCloseBytes});
  w.write<uint64_t>(c.bytes);
  w.write<uint64_t>(c.hash);
}

Result<CloseInfo> decode_close(std::span<const std::byte> body) {
  if (body.size() != kCloseBytes)
    return bad(fmt::format("CLOSE of {} bytes, expected {}", body.size(), kCloseBytes));
  BodyReader r(body, "CLOSE");
  CloseInfo c;
  c.bytes = r.read<uint64_t>("bytes");
  c.hash = r.read<uint64_t>("hash");
  RS_RETURN_IF_ERROR(r.finish());
  return c;
}

std::vector<std::byte> encode_error(const Status& why) {
  wire::BodyWriter w;
  w.write<uint32_t>(static_cast<uint32_t>(why.code()));
  const std::string text = why.message().substr(0, 4000);
  w.write_bytes({reinterpret_cast<const std::byte*>(text.data()), text.size()});
  return w.take();
}

Status decode_error(std::span<const std::byte> body) {
  BodyReader r(body, "ERROR");
  uint32_t code = 0;
  std::string text;
  if (body.size() >= 4) {  // shorter: neither a code nor a text
    code = r.read<uint32_t>("code");
    auto rest = r.read_rest();
    text.assign(reinterpret_cast<const char*>(rest.data()), rest.size());
  }
  auto ec = code > 0 && code <= static_cast<uint32_t>(ErrorCode::kInternal)
                ? static_cast<ErrorCode>(code)
                : ErrorCode::kInternal;
  return Status(ec, "peer bridge: " + text);
}

void encode_keys(const SlotKeys& k, std::byte* out) {
  SpanWriter w({out, kKeysBytes});
  w.write<uint32_t>(k.slots);
  w.write<uint32_t>(k.slot_bytes);
  w.write<uint64_t>(k.address);
  w.write<uint32_t>(k.rkey);
  w.write<uint32_t>(0);  // reserved
}

Result<SlotKeys> decode_keys(std::span<const std::byte> body) {
  if (body.size() != kKeysBytes)
    return bad(fmt::format("KEYS of {} bytes, expected {}", body.size(), kKeysBytes));
  BodyReader r(body, "KEYS");
  SlotKeys k;
  k.slots = r.read<uint32_t>("slots");
  k.slot_bytes = r.read<uint32_t>("slot_bytes");
  k.address = r.read<uint64_t>("address");
  k.rkey = r.read<uint32_t>("rkey");
  const uint32_t reserved = r.read<uint32_t>("reserved");
  RS_RETURN_IF_ERROR(r.finish());
  if (reserved != 0) return bad("KEYS reserved field is not 0");
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
