// A small QMP client (QEMU Machine Protocol: JSON lines over a unix socket) for
// the qemu-migrate driver (migrate_driver.h) and the tests: negotiate, run a command, skip
// events.
#pragma once

#include <chrono>
#include <string>

#include <nlohmann/json.hpp>

#include "ramshift/base/status.h"
#include "ramshift/base/unique_fd.h"

namespace ramshift::qemu {

class QmpClient {
 public:
  // Connects to `path`, reads the greeting and enters command mode (qmp_capabilities), with
  // out-of-band execution enabled when QEMU offers it (a socket monitor does).
  static Result<QmpClient> connect(const std::string& path, std::chrono::milliseconds timeout);
  // Runs `command` with `arguments` (null = none). Returns "return"; QEMU's "error" becomes
  // kInvalidArgument with its description. Asynchronous events on the way are dropped, and so
  // is a late answer to an earlier command that timed out (each request carries an id).
  Result<nlohmann::json> execute(const std::string& command,
                                 const nlohmann::json& arguments = nullptr,
                                 std::chrono::milliseconds timeout = std::chrono::seconds(30));
  // The same out of band (`exec-oob`), when QEMU allows it for `command` and offered OOB:
  // answered by the monitor's own thread even while QEMU's main thread is blocked (a
  // post-copy destination waiting for a page, for `migrate-recover`). Else as execute().
  Result<nlohmann::json> execute_oob(const std::string& command,
                                     const nlohmann::json& arguments = nullptr,
                                     std::chrono::milliseconds timeout = std::chrono::seconds(30));
  bool has_oob() const { return oob_; }
  const std::string& path() const { return path_; }

 private:
  Result<nlohmann::json> read_message(std::chrono::steady_clock::time_point deadline);
  Result<nlohmann::json> run(const char* verb, const std::string& command,
                             const nlohmann::json& arguments, std::chrono::milliseconds timeout);
  bool oob_ = false;
  uint64_t next_id_ = 1;
  UniqueFd fd_;
  std::string path_;
  std::string pending_;  // bytes read past the last complete line
};

}  // namespace ramshift::qemu
