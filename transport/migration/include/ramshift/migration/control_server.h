// A running migration's control socket (`--control unix:PATH` on send, receive, both
// qemu-bridge ends and qemu-migrate): one JSON object per line each way, in QMP's vocabulary.
//
//   -> {"execute": "query"}
//   <- {"return": {"role": "source", "status": "active", "round": 2, ...}}   (progress_json)
//   -> {"execute": "set-bandwidth", "arguments": {"bytes-per-second": 4194304}}
//   <- {"return": {}}
//   -> {"execute": "cancel"}
//   <- {"return": {}}
//   -> {"execute": "start-postcopy"}          (QMP's migrate-start-postcopy)
//   <- {"return": {}}
//   -> {"execute": "metrics"}
//   <- {"return": {"text": "# HELP ramshift_migration_round ..."}}           (Prometheus text)
//   -> anything else
//   <- {"error": {"class": "GenericError", "desc": "..."}}
//
// The socket file is removed when the server goes. start() refuses a path where another
// process still answers (kAddressInUse) and replaces a stale socket (nobody listening: a
// process that was killed). Mode 0600: whoever may cancel the migration is its owner.
//
// Bad input never crashes the server: a line that is not a JSON object, an unknown command,
// or a line over 64 KiB is answered with an error (the long line's client is disconnected).
#pragma once

#include <chrono>
#include <cstdint>
#include <functional>
#include <memory>
#include <mutex>
#include <string>
#include <thread>

#include "ramshift/base/status.h"
#include "ramshift/base/unique_fd.h"
#include "ramshift/migration/progress.h"

namespace ramshift::migration {

// The latest snapshot of a run, published by its progress callback and read by the server.
// Thread-safe.
class ProgressBoard {
 public:
  void publish(const Progress& p) {
    std::lock_guard lock(mu_);
    latest_ = p;
  }
  Progress snapshot() const {
    std::lock_guard lock(mu_);
    return latest_;
  }

 private:
  mutable std::mutex mu_;
  Progress latest_{.status = MigrationStatus::kNone};
};

// What the commands do; called on the server's thread, so each must be quick and
// thread-safe (set a flag, read a snapshot).
struct ControlHandlers {
  std::string role;                                // "source", "destination", "bridge-dest", ...
  std::function<Progress()> query;                 // required
  std::function<void(const std::string&)> cancel;  // required; the reason
  std::function<Status(uint64_t)> set_bandwidth;   // bytes/s, 0 = unlimited; null: refused
  // Switches a running pre-copy to post-copy; an error (why not) is the answer; null: refused.
  std::function<Status()> start_postcopy;
};

class ControlServer {
 public:
  // Listens at `path` (the part after "unix:"); kInvalidArgument for a path too long for a
  // socket, kAddressInUse where a live socket answers or a file that is not a socket sits.
  static Result<std::unique_ptr<ControlServer>> start(const std::string& path,
                                                      ControlHandlers handlers);
  ~ControlServer();  // stops the thread, removes the socket file
  ControlServer(const ControlServer&) = delete;
  ControlServer& operator=(const ControlServer&) = delete;

  // One request line (without its newline) to its answer line: what the server replies.
  std::string answer(const std::string& line) const;

 private:
  ControlServer(std::string path, ControlHandlers handlers, UniqueFd listener, UniqueFd wake,
                uint64_t inode);
  void serve();

  std::string path_;
  ControlHandlers handlers_;
  UniqueFd listener_;
  UniqueFd wake_;       // eventfd: the destructor's "stop"
  uint64_t inode_ = 0;  // of our socket file: removed at exit only if it is still ours
  std::thread thread_;
};

// "unix:PATH" -> PATH (a bare path is taken as it is).
Result<std::string> control_socket_path(const std::string& uri);

// Client: sends `request` (one JSON object) to the socket at `path` and returns the answer
// line. kNotFound when nothing listens there (the migration is over, or never started).
Result<std::string> control_call(const std::string& path, const std::string& request,
                                 std::chrono::milliseconds timeout);

}  // namespace ramshift::migration
