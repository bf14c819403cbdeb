#include "cm_private_data.h"

#include <fmt/format.h>

#include "ramshift/base/byte_order.h"
#include "ring_protocol.h"

namespace ramshift::transport::rdma {

void encode_private(std::byte* out, const PrivateData& p) {
  store_le<uint32_t>(out, kCmMagic);
  store_le<uint16_t>(out + 4, kProtocolVersion);
  store_le<uint16_t>(out + 6, static_cast<uint16_t>((p.authenticated ? kCapAuthenticated : 0) |
                                                    (p.queue_keys ? kCapQueueKeys : 0)));
  store_le<uint64_t>(out + 8, p.token);
  store_le<uint16_t>(out + 16, p.queue);
  store_le<uint16_t>(out + 18, p.queue_count);
}

Result<PrivateData> decode_private(const std::vector<std::byte>& in) {
  if (in.size() < kPrivateBytes || load_le<uint32_t>(in.data()) != kCmMagic)
    return Status(ErrorCode::kProtocol, "connect request is not from ramshift");
  if (load_le<uint16_t>(in.data() + 4) != kProtocolVersion)
    return Status(ErrorCode::kMismatch,
                  fmt::format("peer speaks rdma protocol {}, this build {}",
                              load_le<uint16_t>(in.data() + 4), kProtocolVersion));
  if (load_le<uint16_t>(in.data() + 6) & ~kCapabilities)
    return Status(ErrorCode::kMismatch, "peer asks for rdma capabilities this build lacks");
  PrivateData p;
  p.authenticated = (load_le<uint16_t>(in.data() + 6) & kCapAuthenticated) != 0;
  p.queue_keys = (load_le<uint16_t>(in.data() + 6) & kCapQueueKeys) != 0;
  p.token = load_le<uint64_t>(in.data() + 8);
  p.queue = load_le<uint16_t>(in.data() + 16);
  p.queue_count = load_le<uint16_t>(in.data() + 18);
  if (p.queue_count == 0 || p.queue_count > kMaxQueues || p.queue >= p.queue_count)
    return Status(ErrorCode::kProtocol,
                  fmt::format("connect request for queue {} of {}", p.queue, p.queue_count));
  return p;
}

}  // namespace ramshift::transport::rdma
