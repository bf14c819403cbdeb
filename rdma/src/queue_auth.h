// Authenticating an rdma queue before its ring (address, rkey) is announced, when --tls-dir
// or --tls-psk is given (docs/security.md, *rdma://*).
//
// Why two-sided messages: until the hello, neither side has given the other any key, so the
// only way to talk is SEND into a receive the other side posted. Each side posts kAuthSlots
// receives (kAuthSlotBytes each, LOCAL_WRITE only) ahead of everything else on the queue;
// receives complete in the order they were posted, so the peer's first kAuthSlots SENDs land
// in them. The TLS 1.3 handshake (security/, the same as tcp://'s) runs over those messages,
// then, inside the session, the accepting side's verdict and both sides' 32-byte ring hellos.
// Each side then pads with empty SENDs to exactly kAuthSlots, so that the next receive in
// line is the plain hello's, as on an unsecured queue; the plain hello must equal the one
// the session carried, or the queue is refused.
//
// A TLS 1.3 handshake with certificates takes 2 or 3 messages each way (a ~1 KiB EC chain
// fits one); 16 slots of 4 KiB leave room for chains of several RSA certificates.
#pragma once

#include <cstddef>
#include <cstdint>

#include "ramshift/transport/channel_security.h"

namespace ramshift::transport::rdma {

inline constexpr uint32_t kAuthSlots = 16;
inline constexpr uint32_t kAuthSlotBytes = 4096;
// Receive slots, then send slots.
inline constexpr size_t kAuthBufferBytes = 2ull * kAuthSlots * kAuthSlotBytes;

// Work request ids (rdma_queue.cc numbers the rest): receives carry bit 63 there too.
inline constexpr uint64_t kAuthRecvId = (1ull << 63) | (1ull << 61);
inline constexpr uint64_t kAuthSendId = (1ull << 62) | (1ull << 61);

// What the accepting side answers inside the session: u32 kAuthAccepted and its hello, or
// u32 kAuthRefused and the reason (printable text, at most 512 bytes).
inline constexpr uint32_t kAuthAccepted = 0x4b4f5352;  // "RSOK"
inline constexpr uint32_t kAuthRefused = 0x4a525352;   // "RSRJ"

}  // namespace ramshift::transport::rdma
