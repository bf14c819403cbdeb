#include "ring_protocol.h"

#include <fmt/format.h>

#include <cstring>

#include "ramshift/base/byte_order.h"
#include "ramshift/base/units.h"

namespace ramshift::transport::rdma {
namespace {

constexpr uint32_t kHelloMagic = 0x51525352;  // "RSRQ"

}  // namespace

Status validate_tuning(const RdmaTuning& tuning) {
  if (tuning.ring_slots < kMinRingSlots || tuning.ring_slots > kMaxRingSlots)
    return Status(ErrorCode::kInvalidArgument, "rdma ring slots must be 2..1024");
  if (tuning.slot_bytes < kMinSlotBytes || tuning.slot_bytes > kMaxSlotBytes)
    return Status(ErrorCode::kInvalidArgument,
                  fmt::format("rdma slot size must be 4 KiB..{}", format_bytes(kMaxSlotBytes)));
  if (tuning.send_queue_depth < 8 || tuning.signal_every < 1 ||
      tuning.signal_every > tuning.send_queue_depth / 2)
    return Status(
        ErrorCode::kInvalidArgument,
        "rdma send queue depth must be >= 8 and the signaling interval at most half of it");
  return Status::ok();
}

void encode_hello(const RingHello& hello, std::span<std::byte> out) {
  std::byte* p = out.first(kHelloBytes).data();
  std::memset(p, 0, kHelloBytes);
  store_le<uint32_t>(p, kHelloMagic);
  store_le<uint16_t>(p + 4, kProtocolVersion);
  store_le<uint16_t>(p + 6, encode_liveness(hello.liveness));
  store_le<uint64_t>(p + 8, hello.ring_address);
  store_le<uint32_t>(p + 16, hello.rkey);
  store_le<uint32_t>(p + 20, hello.slots);
  store_le<uint32_t>(p + 24, hello.slot_bytes);
  store_le<uint32_t>(p + 28, hello.queue);
}

Result<RingHello> decode_hello(std::span<const std::byte> in, uint32_t queue) {
  if (in.size() < kHelloBytes || load_le<uint32_t>(in.data()) != kHelloMagic)
    return Status(ErrorCode::kProtocol, "rdma peer sent a malformed queue hello");
  const std::byte* p = in.data();
  if (load_le<uint16_t>(p + 4) != kProtocolVersion)
    return Status(ErrorCode::kMismatch,
                  fmt::format("rdma peer speaks queue protocol {}, this build {}",
                              load_le<uint16_t>(p + 4), kProtocolVersion));
  RingHello h;
  h.ring_address = load_le<uint64_t>(p + 8);
  h.rkey = load_le<uint32_t>(p + 16);
  h.slots = load_le<uint32_t>(p + 20);
  h.slot_bytes = load_le<uint32_t>(p + 24);
  h.queue = load_le<uint32_t>(p + 28);
  h.liveness = decode_liveness(load_le<uint16_t>(p + 6));
  if (h.slots < kMinRingSlots || h.slots > kMaxRingSlots || h.slot_bytes < kMinSlotBytes ||
      h.slot_bytes > kMaxSlotBytes || h.queue != queue)
    return Status(ErrorCode::kProtocol,
                  fmt::format("rdma peer's ring for queue {} is out of range ({} slots of "
                              "{} bytes, queue {})",
                              queue, h.slots, h.slot_bytes, h.queue));
  return h;
}

}  // namespace ramshift::transport::rdma
