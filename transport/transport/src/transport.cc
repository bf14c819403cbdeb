// What every backend shares: the post_write and read refusals. Which backend serves a URI is
// registry.cc's business; waiting out a full queue is blocking_send.cc's.
#include "ramshift/transport/transport.h"

#include <fmt/format.h>

namespace ramshift::transport {

Status no_remote_writes(const std::string& transport_name) {
  return Status(ErrorCode::kInvalidArgument,
                fmt::format("the {} transport has no one-sided writes (zero_copy_write is off)",
                            transport_name));
}

Status no_remote_reads(const std::string& transport_name) {
  return Status(
      ErrorCode::kInvalidArgument,
      fmt::format("the {} transport has no one-sided reads (remote_read is off)", transport_name));
}

Status Connection::read(uint32_t /*queue*/, std::span<const RemoteRead> /*reads*/,
                        Millis /*timeout*/) {
  return no_remote_reads(transport_name());
}

}  // namespace ramshift::transport
