// What the C API's two handles share: the last error (code and message), the last report,
// option parsing, and the mapping of Status codes to ramshift_error values.
#pragma once

#include <chrono>
#include <cstdint>
#include <mutex>
#include <string>
#include <string_view>

#include "ramshift/base/status.h"
#include "ramshift/migration/cancel.h"
#include "ramshift/ramshift.h"

namespace ramshift::capi {

// The int a C caller gets for `s` (RAMSHIFT_OK for ok).
int error_code(const Status& s);

// The last outcome of a handle, kept so *_error() and *_report_json() can return pointers
// into it that stay valid until the next call on the handle.
class LastResult {
 public:
  // Records `s` and returns its C code.
  int set(const Status& s) {
    message_ = s.is_ok() ? "" : s.message();
    return error_code(s);
  }
  int invalid(std::string message) { return set(Status(ErrorCode::kInvalidArgument, message)); }
  const char* message() const { return message_.c_str(); }
  std::string report_json = "{}";

 private:
  std::string message_;
};

// The page the C API works in (its header says so).
inline constexpr uint32_t kPageSize = 4096;

// A region the caller hands over: named, page-aligned, whole pages (kInvalidArgument).
Status check_region(const char* name, const void* memory, uint64_t bytes);

// The cancel token of the run in progress, if any, for *_cancel() from another thread. A
// token cannot be reset, so each run has its own; a cancel between runs does nothing.
class RunningCancel {
 public:
  void start(migration::CancelToken* token) {
    std::lock_guard lock(mu_);
    token_ = token;
  }
  void stop() { start(nullptr); }
  void request() {
    std::lock_guard lock(mu_);
    if (token_) token_->request("cancelled by the VMM");
  }

 private:
  std::mutex mu_;
  migration::CancelToken* token_ = nullptr;
};

// Option values as the command line takes them.
Result<uint32_t> parse_count(std::string_view name, std::string_view value);
Result<bool> parse_switch(std::string_view name, std::string_view value);  // on|off|true|false|1|0
Result<std::chrono::milliseconds> parse_seconds(std::string_view name, std::string_view value);

}  // namespace ramshift::capi
