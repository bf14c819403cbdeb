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
  // Connects to `path`, reads the greeting and enters command mode (qmp_capabilities).
  static Result<QmpClient> connect(const std::string& path, std::chrono::milliseconds timeout);
  // Runs `command` with `arguments` (null = none). Returns "return"; QEMU's "error" becomes
  // kInvalidArgument with its description. Asynchronous events on the way are dropped.
  Result<nlohmann::json> execute(const std::string& command,
                                 const nlohmann::json& arguments = nullptr,
                                 std::chrono::milliseconds timeout = std::chrono::seconds(30));
  const std::string& path() const { return path_; }

 private:
  Result<nlohmann::json> read_message(std::chrono::steady_clock::time_point deadline);
  UniqueFd fd_;
  std::string path_;
  std::string pending_;  // bytes read past the last complete line
};

}  // namespace ramshift::qemu
