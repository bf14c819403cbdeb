// Fuzzes what a destination bridge accepts from the network: the message header, HELLO,
// CLOSE and, above all, a PAGES body (multifd header + page batch) rebuilt into a packet.
// Any input must be rejected or rebuild a packet of exactly the size its header declares.
#include <cstddef>
#include <cstdint>
#include <cstdlib>

#include "packet_codec.h"
#include "ramshift/qemu/bridge_wire.h"

using namespace ramshift::qemu;

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  static PacketDecoder decoder(64 * 4096);  // state carries over, like a real channel
  std::span<const std::byte> in(reinterpret_cast<const std::byte*>(data), size);
  if (auto h = decode_header(in); h) {
    auto body = in.subspan(kBridgeHeaderBytes);
    (void)decode_hello(body);
    (void)decode_close(body);
  }
  if (auto packet = decoder.decode(in); packet) {
    ParseResult r = parse_multifd_packet(*packet, 0);
    if (r.outcome != ParseOutcome::kPacket || r.packet.total_bytes() != packet->size()) abort();
  }
  return 0;
}
