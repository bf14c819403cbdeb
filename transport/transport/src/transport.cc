// What every backend shares: the post_write refusal and the RemoteWriter helper. Which
// backend serves a URI is registry.cc's business.
#include "ramshift/transport/transport.h"

#include <fmt/format.h>

namespace ramshift::transport {

Status no_remote_writes(const std::string& transport_name) {
  return Status(ErrorCode::kInvalidArgument,
                fmt::format("the {} transport has no one-sided writes (zero_copy_write is off)",
                            transport_name));
}

Status RemoteWriter::post() {
  for (;;) {
    Status s = conn_.post_write(queue_, std::span(pending_, count_));
    if (s.code() != ErrorCode::kWouldBlock) {
      count_ = 0;
      return s;
    }
    if (abort_ && abort_->load()) return Status(ErrorCode::kCancelled, "cancelled");
    RS_RETURN_IF_ERROR(conn_.wait_writable(queue_, wait_));
  }
}

}  // namespace ramshift::transport
