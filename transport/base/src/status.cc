#include "ramshift/base/status.h"

#include <cstring>

namespace ramshift {

const char* error_code_name(ErrorCode code) {
  switch (code) {
    case ErrorCode::kOk:
      return "ok";
    case ErrorCode::kInvalidArgument:
      return "invalid_argument";
    case ErrorCode::kNotFound:
      return "not_found";
    case ErrorCode::kIo:
      return "io";
    case ErrorCode::kNoSpace:
      return "no_space";
    case ErrorCode::kAddressInUse:
      return "address_in_use";
    case ErrorCode::kUnreachable:
      return "unreachable";
    case ErrorCode::kDisconnected:
      return "disconnected";
    case ErrorCode::kProtocol:
      return "protocol";
    case ErrorCode::kCorrupt:
      return "corrupt";
    case ErrorCode::kTimeout:
      return "timeout";
    case ErrorCode::kWouldBlock:
      return "would_block";
    case ErrorCode::kMismatch:
      return "mismatch";
    case ErrorCode::kCancelled:
      return "cancelled";
    case ErrorCode::kInternal:
      return "internal";
  }
  return "unknown";
}

Status errno_status(ErrorCode code, const std::string& what, int err) {
  return Status(code, what + ": " + std::strerror(err), err);
}

}  // namespace ramshift
