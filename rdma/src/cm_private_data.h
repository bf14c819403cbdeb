// The rdma_cm private data of ramshift's connect requests and rejects: the wire format (see
// the comment below) and its parser, which refuses anything malformed.
#pragma once

#include <cstddef>
#include <cstdint>
#include <vector>

#include "ramshift/base/status.h"

namespace ramshift::transport::rdma {

// CM private data (≤ 56 bytes on RDMA_PS_TCP): version and capabilities, plus what groups
// queues into one connection. Ring addresses and keys travel in each queue's hello instead.
//   u32 magic, u16 version, u16 capabilities, u64 session token, u16 queue, u16 queue count
inline constexpr uint32_t kCmMagic = 0x4d435352;  // "RSCM"
inline constexpr size_t kPrivateBytes = 20;
// Capability bits; unknown ones are refused. kCapAuthenticated: the connecting side runs
// the TLS handshake on every queue before its hello (--tls-*, queue_auth.h). Each side
// decides from its own flags whether to authenticate, never from this bit: it only lets a
// mismatch be refused with a reason instead of a failed hello.
inline constexpr uint16_t kCapAuthenticated = 1;
// kCapQueueKeys: this side takes a key per queue for the peer's one-sided memory
// (Capabilities::keys_per_queue), which memory windows need: a type-2 window is reachable
// through the one queue pair it was bound on. A connector always sets it, so a listener that
// accepts (and echoes it) takes them too; an older connector's request lacks it, and then
// neither side hands out keys per queue.
inline constexpr uint16_t kCapQueueKeys = 2;
inline constexpr uint16_t kCapabilities = kCapAuthenticated | kCapQueueKeys;
// A reject's private data (up to 148 bytes on IB/RoCE): u32 magic and the reason's text.
inline constexpr uint32_t kRejectMagic = 0x4a435352;  // "RSCJ"
inline constexpr size_t kRejectBytes = 140;
inline constexpr uint32_t kMaxQueues = 256;

struct PrivateData {
  uint64_t token = 0;
  uint16_t queue = 0;
  uint16_t queue_count = 0;
  bool authenticated = false;
  bool queue_keys = false;  // kCapQueueKeys
};

void encode_private(std::byte* out, const PrivateData& p);
Result<PrivateData> decode_private(const std::vector<std::byte>& in);

}  // namespace ramshift::transport::rdma
