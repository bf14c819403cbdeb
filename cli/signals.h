// SIGINT and SIGTERM for the long-running commands (send, receive, qemu-bridge,
// qemu-migrate): the first cancels, the second exits at once (docs/user-guide.md, "Signals
// and cancel").
//
// Signal-safe by construction: the two signals are blocked in every thread and read from a
// signalfd by a watcher thread, so no code runs in a signal handler. The first one asks the
// command's CancelToken to stop (the run ends cleanly at its next check, tells the peer and
// writes its report). A second one runs `on_exit_now` (remove what must not be left behind,
// e.g. PATH.partial) and ends the process with exit code 1, unless the run is inside the
// hand-off window (CancelToken::in_hand_off): then it is held, because exiting there could
// leave the guest running on neither host or on both.
#pragma once

#include <functional>
#include <memory>
#include <thread>

#include "ramshift/base/status.h"
#include "ramshift/base/unique_fd.h"
#include "ramshift/migration/cancel.h"

namespace ramshift::cli {

class SignalWatcher {
 public:
  using ExitNow = std::function<void()>;

  // Blocks SIGINT and SIGTERM and starts watching. Create it before the command starts any
  // thread: a thread inherits the mask of the thread that starts it.
  static Result<std::unique_ptr<SignalWatcher>> start(migration::CancelToken& token,
                                                      ExitNow on_exit_now = {});
  // Stops the watcher; a signal that came meanwhile is dropped (the command is ending with
  // its report written), then the old mask is restored.
  ~SignalWatcher();
  SignalWatcher(const SignalWatcher&) = delete;
  SignalWatcher& operator=(const SignalWatcher&) = delete;

 private:
  SignalWatcher(migration::CancelToken& token, ExitNow on_exit_now, UniqueFd signals,
                UniqueFd wake);
  void watch();

  migration::CancelToken& token_;
  ExitNow on_exit_now_;
  UniqueFd signals_;  // signalfd for SIGINT, SIGTERM
  UniqueFd wake_;     // eventfd: the destructor's "stop"
  std::thread thread_;
};

}  // namespace ramshift::cli
