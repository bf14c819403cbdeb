#include "wire.h"

#include <cstdlib>

#include "ramshift/base/byte_order.h"

namespace ramshift::qemu::preload {

uint16_t wire_version() {
  static const uint16_t version = [] {
    const char* v = std::getenv("RAMSHIFT_QEMU_TEST_WIRE_VERSION");
    return v && *v ? static_cast<uint16_t>(std::strtoul(v, nullptr, 10)) : kWireVersion;
  }();
  return version;
}

std::optional<uint16_t> stamp_version(std::span<const std::byte> init) {
  if (init.size() < kStampOffset + kStampBytes) return std::nullopt;
  const std::byte* p = init.data() + kStampOffset;
  if (load_le<uint32_t>(p) != kStampMagic) return std::nullopt;
  return load_le<uint16_t>(p + 4);
}

bool has_stamp(std::span<const std::byte> init) { return stamp_version(init) == wire_version(); }

void put_stamp(std::span<std::byte> init) {
  std::byte* p = init.data() + kStampOffset;
  store_le<uint32_t>(p, kStampMagic);
  store_le<uint16_t>(p + 4, wire_version());
  store_le<uint16_t>(p + 6, 0);
}

void encode_offer(std::byte* out, const Offer& o) {
  store_le<uint32_t>(out, kOfferMagic);
  store_le<uint16_t>(out + 4, wire_version());
  store_le<uint16_t>(out + 6, o.port);
  store_le<uint64_t>(out + 8, o.nonce);
}

std::optional<Offer> decode_offer(std::span<const std::byte> in) {
  if (in.size() < kOfferBytes || load_le<uint32_t>(in.data()) != kOfferMagic ||
      load_le<uint16_t>(in.data() + 4) != wire_version())
    return std::nullopt;
  return Offer{load_le<uint16_t>(in.data() + 6), load_le<uint64_t>(in.data() + 8)};
}

void encode_connect(std::byte* out, const ConnectRequest& c) {
  store_le<uint32_t>(out, kConnectMagic);
  store_le<uint16_t>(out + 4, wire_version());
  store_le<uint16_t>(out + 6, c.authenticates ? kConnectAuthenticates : uint16_t{0});
  store_le<uint64_t>(out + 8, c.nonce);
  store_le<uint64_t>(out + 16, c.switch_offset);
  store_le<uint64_t>(out + 24, 0);
}

std::optional<ConnectRequest> decode_connect(std::span<const std::byte> in) {
  if (in.size() < kConnectBytes || load_le<uint32_t>(in.data()) != kConnectMagic ||
      load_le<uint16_t>(in.data() + 4) != wire_version())
    return std::nullopt;
  return ConnectRequest{load_le<uint64_t>(in.data() + 8), load_le<uint64_t>(in.data() + 16),
                        (load_le<uint16_t>(in.data() + 6) & kConnectAuthenticates) != 0};
}

std::vector<std::byte> encode_frame(uint32_t inline_bytes, std::span<const FrameRead> reads) {
  std::vector<std::byte> out(kFrameHeaderBytes + kFrameReadBytes * reads.size());
  store_le<uint32_t>(out.data(), kFrameMagic);
  store_le<uint32_t>(out.data() + 4, inline_bytes);
  store_le<uint32_t>(out.data() + 8, static_cast<uint32_t>(reads.size()));
  store_le<uint32_t>(out.data() + 12, 0);
  std::byte* p = out.data() + kFrameHeaderBytes;
  for (const FrameRead& r : reads) {
    store_le<uint64_t>(p, r.addr);
    store_le<uint32_t>(p + 8, r.len);
    store_le<uint32_t>(p + 12, 0);
    p += kFrameReadBytes;
  }
  return out;
}

std::optional<FrameHeader> decode_frame_header(std::span<const std::byte> in) {
  if (in.size() < kFrameHeaderBytes || load_le<uint32_t>(in.data()) != kFrameMagic ||
      load_le<uint32_t>(in.data() + 12) != 0)
    return std::nullopt;
  FrameHeader h{load_le<uint32_t>(in.data() + 4), load_le<uint32_t>(in.data() + 8)};
  if (h.inline_bytes > kMaxFrameInline || h.reads > kMaxFrameReads) return std::nullopt;
  return h;
}

std::optional<FrameRead> decode_frame_read(const std::byte* in) {
  FrameRead r{load_le<uint64_t>(in), load_le<uint32_t>(in + 8)};
  if (r.len == 0 || r.len > kMaxFrameInline || load_le<uint32_t>(in + 12) != 0) return std::nullopt;
  return r;
}

}  // namespace ramshift::qemu::preload
