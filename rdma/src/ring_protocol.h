// The wire format of one rdma queue, without verbs: the tuning's limits, the hello each side
// sends once to describe its receive ring, and the 32-bit immediate every ring write carries
// (docs/protocol.md, *rdma queues*). Pure functions, so that everything a peer can send is
// validated here and unit-tested without a NIC.
//
// Immediate (host order; the verbs shell converts with htonl/ntohl):
//   bit 31 = 0 data:   bit 30 last fragment, bits 24..29 zero, bits 0..23 length
//   bit 31 = 1 credit: bits 0..29 slots released so far (mod 2^30)
#pragma once

#include <cstddef>
#include <cstdint>
#include <span>

#include "peer_liveness.h"
#include "ramshift/base/status.h"
#include "ramshift/transport/transport.h"
#include "rdma_tuning.h"

namespace ramshift::transport::rdma {

inline constexpr uint16_t kProtocolVersion = 1;
// Largest slot the 24-bit length of the immediate can describe.
inline constexpr uint32_t kMaxSlotBytes = 8u << 20;
// Ring sizes either side may announce: 2 slots is the least that lets one be written while
// the other is read; 1024 bounds the pinned ring and the receive queue (2 x slots + 8).
inline constexpr uint32_t kMinRingSlots = 2;
inline constexpr uint32_t kMaxRingSlots = 1024;
// The smallest slot is one page: anything smaller only multiplies work requests.
inline constexpr uint32_t kMinSlotBytes = 4096;
// The largest message a queue carries: the same limit as tcp (a 32 MiB frame body + header).
inline constexpr size_t kMaxRingMessage = (32u << 20) + 64;

inline constexpr uint32_t kImmCredit = 1u << 31;
inline constexpr uint32_t kImmLast = 1u << 30;
inline constexpr uint32_t kImmReserved = 0x3f000000u;
inline constexpr uint32_t kImmLenMask = 0x00ffffffu;
inline constexpr uint32_t kCreditMask = 0x3fffffffu;

// The immediate of a data fragment of `len` (<= kMaxSlotBytes) bytes.
constexpr uint32_t fragment_imm(uint32_t len, bool last) { return len | (last ? kImmLast : 0); }
// The immediate of a credit: `released` slots freed so far, sent modulo 2^30.
constexpr uint32_t credit_imm(uint64_t released) {
  return kImmCredit | static_cast<uint32_t>(released & kCreditMask);
}
constexpr bool is_credit_imm(uint32_t imm) { return (imm & kImmCredit) != 0; }
constexpr uint32_t credit_value(uint32_t imm) { return imm & kCreditMask; }

// Refuses tuning a queue cannot be built with (ring, slot and send-queue sizes), with the
// message the user sees.
Status validate_tuning(const RdmaTuning& tuning);

// One side's receive ring as its hello announces it.
struct RingHello {
  uint64_t ring_address = 0;  // where the ring starts in the announcer's address space
  uint32_t rkey = 0;          // the REMOTE_WRITE key that covers it
  uint32_t slots = 0;
  uint32_t slot_bytes = 0;
  uint32_t queue = 0;         // the queue's index in its connection
  LivenessAnnounce liveness;  // heartbeats this side sends, silence it tolerates
};

// The hello is 32 bytes: u32 magic "RSRQ", u16 version, u16 liveness (peer_liveness.h; 0 from
// builds before heartbeats), u64 ring address, u32 rkey, u32 slots, u32 slot_bytes, u32 queue
// (little endian).
inline constexpr size_t kHelloBytes = 32;

// Writes `hello` into the first kHelloBytes of `out` (which must hold that many).
void encode_hello(const RingHello& hello, std::span<std::byte> out);

// Reads the hello that arrived (`in` is exactly the bytes received) for queue `queue`: a short
// or foreign message, another protocol version, a ring out of range or another queue's hello
// are errors, never trusted.
Result<RingHello> decode_hello(std::span<const std::byte> in, uint32_t queue);

}  // namespace ramshift::transport::rdma
