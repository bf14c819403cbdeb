// Status and Result<T>: how every ramshift function reports failure.
//
// No exceptions cross a ramshift interface or run on the data path. A failing call returns
// a Status with a category (ErrorCode), the errno it saw (0 if none) and a message written
// for the person who will read it: what was wrong and, where there is one, what to do.
// The message is composed once, where the error is first seen; callers add context with
// Status::with_context() rather than logging again.
#pragma once

#include <cassert>
#include <string>
#include <utility>
#include <variant>

namespace ramshift {

// Categories a caller can act on. Keep in sync with wire::ErrorFrame (the code travels).
enum class ErrorCode : int {
  kOk = 0,
  kInvalidArgument = 1,  // bad user input: URI, codec, size, option value
  kNotFound = 2,         // file, device or peer that does not exist
  kIo = 3,               // read/write/mmap failed
  kNoSpace = 4,          // destination disk or memory full
  kAddressInUse = 5,     // listen port taken
  kUnreachable = 6,      // connect refused / host unreachable / resolve failed
  kDisconnected = 7,     // peer closed or reset the connection
  kProtocol = 8,         // peer sent something that breaks the wire protocol
  kCorrupt = 9,          // checksum or digest mismatch
  kTimeout = 10,
  kWouldBlock = 11,  // back-pressure: retry after progress
  kMismatch = 12,    // both sides valid but disagree (size, version, capabilities)
  kCancelled = 13,
  kInternal = 14,
};

// Short lower-case name of a code, for logs and JSON ("protocol", "disconnected", ...).
const char* error_code_name(ErrorCode code);

class [[nodiscard]] Status {
 public:
  Status() = default;
  Status(ErrorCode code, std::string message, int sys_errno = 0)
      : code_(code), errno_(sys_errno), message_(std::move(message)) {}

  static Status ok() { return {}; }

  bool is_ok() const { return code_ == ErrorCode::kOk; }
  explicit operator bool() const { return is_ok(); }
  ErrorCode code() const { return code_; }
  int sys_errno() const { return errno_; }
  const std::string& message() const { return message_; }

  // "context: message" — for adding where it happened without losing what happened.
  Status with_context(const std::string& context) const {
    if (is_ok()) return *this;
    return Status(code_, context + ": " + message_, errno_);
  }

 private:
  ErrorCode code_ = ErrorCode::kOk;
  int errno_ = 0;
  std::string message_;
};

// Status from errno: message is "what: strerror(err)".
Status errno_status(ErrorCode code, const std::string& what, int err);

template <typename T>
class [[nodiscard]] Result {
 public:
  Result(T value) : v_(std::move(value)) {}  // NOLINT: implicit by design
  Result(Status status) : v_(std::move(status)) { assert(!std::get<Status>(v_).is_ok()); }

  bool is_ok() const { return std::holds_alternative<T>(v_); }
  explicit operator bool() const { return is_ok(); }

  T& value() & { return std::get<T>(v_); }
  const T& value() const& { return std::get<T>(v_); }
  T&& value() && { return std::get<T>(std::move(v_)); }
  T* operator->() { return &value(); }
  const T* operator->() const { return &value(); }
  T& operator*() & { return value(); }

  Status status() const { return is_ok() ? Status::ok() : std::get<Status>(v_); }

 private:
  std::variant<T, Status> v_;
};

}  // namespace ramshift

// Propagate a failed Status from an expression returning Status.
#define RS_RETURN_IF_ERROR(expr)                \
  do {                                          \
    ::ramshift::Status rs_status_ = (expr);     \
    if (!rs_status_.is_ok()) return rs_status_; \
  } while (0)

#define RS_CONCAT_INNER(a, b) a##b
#define RS_CONCAT(a, b) RS_CONCAT_INNER(a, b)
// `RS_ASSIGN_OR_RETURN(auto x, make_x());` — unwrap a Result or return its Status.
#define RS_ASSIGN_OR_RETURN(decl, expr) \
  RS_ASSIGN_OR_RETURN_IMPL(RS_CONCAT(rs_result_, __LINE__), decl, expr)
#define RS_ASSIGN_OR_RETURN_IMPL(tmp, decl, expr) \
  auto tmp = (expr);                              \
  if (!tmp.is_ok()) return tmp.status();          \
  decl = std::move(tmp).value()
