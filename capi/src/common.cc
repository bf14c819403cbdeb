// The C API's functions that belong to no handle, and what the handles share.
#include <fmt/format.h>

#include <charconv>
#include <cmath>

#include "handle.h"
#include "ramshift/base/log.h"
#include "ramshift/base/version.h"

namespace ramshift::capi {

int error_code(const Status& s) {
  switch (s.code()) {
    case ErrorCode::kOk:
      return RAMSHIFT_OK;
    case ErrorCode::kInvalidArgument:
      return RAMSHIFT_E_INVALID;
    case ErrorCode::kNotFound:
      return RAMSHIFT_E_NOT_FOUND;
    case ErrorCode::kIo:
      return RAMSHIFT_E_IO;
    case ErrorCode::kNoSpace:
      return RAMSHIFT_E_NO_SPACE;
    case ErrorCode::kAddressInUse:
      return RAMSHIFT_E_ADDRESS_IN_USE;
    case ErrorCode::kUnreachable:
      return RAMSHIFT_E_UNREACHABLE;
    case ErrorCode::kDisconnected:
      return RAMSHIFT_E_DISCONNECTED;
    case ErrorCode::kProtocol:
      return RAMSHIFT_E_PROTOCOL;
    case ErrorCode::kCorrupt:
      return RAMSHIFT_E_CORRUPT;
    case ErrorCode::kTimeout:
      return RAMSHIFT_E_TIMEOUT;
    case ErrorCode::kMismatch:
      return RAMSHIFT_E_MISMATCH;
    case ErrorCode::kCancelled:
      return RAMSHIFT_E_CANCELLED;
    case ErrorCode::kWouldBlock:
    case ErrorCode::kInternal:
      break;
  }
  return RAMSHIFT_E_INTERNAL;
}

Result<uint32_t> parse_count(std::string_view name, std::string_view value) {
  uint32_t n = 0;
  auto [end, ec] = std::from_chars(value.data(), value.data() + value.size(), n);
  if (ec != std::errc() || end != value.data() + value.size())
    return Status(ErrorCode::kInvalidArgument,
                  fmt::format("option {}: '{}' is not a whole number", name, value));
  return n;
}

Result<bool> parse_switch(std::string_view name, std::string_view value) {
  if (value == "on" || value == "true" || value == "1") return true;
  if (value == "off" || value == "false" || value == "0") return false;
  return Status(ErrorCode::kInvalidArgument,
                fmt::format("option {}: '{}' is not on or off", name, value));
}

Result<std::chrono::milliseconds> parse_seconds(std::string_view name, std::string_view value) {
  double s = 0;
  auto [end, ec] = std::from_chars(value.data(), value.data() + value.size(), s);
  if (ec != std::errc() || end != value.data() + value.size() || !std::isfinite(s) || s < 0)
    return Status(ErrorCode::kInvalidArgument,
                  fmt::format("option {}: '{}' is not a number of seconds", name, value));
  return std::chrono::milliseconds(static_cast<int64_t>(s * 1000));
}

}  // namespace ramshift::capi

extern "C" {

const char* ramshift_version(void) { return ramshift::kVersion; }

const char* ramshift_error_name(int error) {
  switch (error) {
    case RAMSHIFT_OK:
      return "ok";
    case RAMSHIFT_E_INVALID:
      return "invalid";
    case RAMSHIFT_E_NOT_FOUND:
      return "not-found";
    case RAMSHIFT_E_IO:
      return "io";
    case RAMSHIFT_E_NO_SPACE:
      return "no-space";
    case RAMSHIFT_E_ADDRESS_IN_USE:
      return "address-in-use";
    case RAMSHIFT_E_UNREACHABLE:
      return "unreachable";
    case RAMSHIFT_E_DISCONNECTED:
      return "disconnected";
    case RAMSHIFT_E_PROTOCOL:
      return "protocol";
    case RAMSHIFT_E_CORRUPT:
      return "corrupt";
    case RAMSHIFT_E_TIMEOUT:
      return "timeout";
    case RAMSHIFT_E_MISMATCH:
      return "mismatch";
    case RAMSHIFT_E_CANCELLED:
      return "cancelled";
    case RAMSHIFT_E_CALLBACK:
      return "callback";
    case RAMSHIFT_E_INTERNAL:
      return "internal";
    default:
      return "unknown";
  }
}

void ramshift_set_log_level(int level) {
  using ramshift::log::Level;
  if (level < RAMSHIFT_LOG_DEBUG) level = RAMSHIFT_LOG_DEBUG;
  if (level > RAMSHIFT_LOG_OFF) level = RAMSHIFT_LOG_OFF;
  ramshift::log::set_level(static_cast<Level>(level));
}

}  // extern "C"
