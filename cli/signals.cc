#include "signals.h"

#include <poll.h>
#include <pthread.h>
#include <signal.h>
#include <sys/eventfd.h>
#include <sys/signalfd.h>
#include <unistd.h>

#include <cerrno>
#include <cstring>

#include "ramshift/base/log.h"

namespace ramshift::cli {
namespace {

sigset_t cancel_signals() {
  sigset_t set;
  sigemptyset(&set);
  sigaddset(&set, SIGINT);
  sigaddset(&set, SIGTERM);
  return set;
}

}  // namespace

Result<std::unique_ptr<SignalWatcher>> SignalWatcher::start(migration::CancelToken& token,
                                                            ExitNow on_exit_now) {
  sigset_t set = cancel_signals();
  if (int err = pthread_sigmask(SIG_BLOCK, &set, nullptr); err != 0)
    return errno_status(ErrorCode::kInternal, "blocking SIGINT and SIGTERM", err);
  UniqueFd signals(::signalfd(-1, &set, SFD_CLOEXEC | SFD_NONBLOCK));
  if (!signals.valid()) return errno_status(ErrorCode::kInternal, "signalfd", errno);
  UniqueFd wake(::eventfd(0, EFD_CLOEXEC | EFD_NONBLOCK));
  if (!wake.valid()) return errno_status(ErrorCode::kInternal, "eventfd", errno);
  return std::unique_ptr<SignalWatcher>(
      new SignalWatcher(token, std::move(on_exit_now), std::move(signals), std::move(wake)));
}

SignalWatcher::SignalWatcher(migration::CancelToken& token, ExitNow on_exit_now, UniqueFd signals,
                             UniqueFd wake)
    : token_(token),
      on_exit_now_(std::move(on_exit_now)),
      signals_(std::move(signals)),
      wake_(std::move(wake)),
      thread_([this] { watch(); }) {}

SignalWatcher::~SignalWatcher() {
  const uint64_t one = 1;
  if (::write(wake_.get(), &one, sizeof one) < 0) log::warn("signal watcher: {}", strerror(errno));
  thread_.join();
  signalfd_siginfo info;
  while (::read(signals_.get(), &info, sizeof info) == sizeof info) {
  }
  sigset_t set = cancel_signals();
  pthread_sigmask(SIG_UNBLOCK, &set, nullptr);
}

void SignalWatcher::watch() {
  int seen = 0;
  for (;;) {
    pollfd fds[2] = {{signals_.get(), POLLIN, 0}, {wake_.get(), POLLIN, 0}};
    if (::poll(fds, 2, -1) < 0) {
      if (errno == EINTR) continue;
      log::error("signal watcher: poll: {}", strerror(errno));
      return;
    }
    if (fds[1].revents) return;
    signalfd_siginfo info;
    if (::read(signals_.get(), &info, sizeof info) != sizeof info) continue;
    const char* name = info.ssi_signo == SIGINT ? "SIGINT" : "SIGTERM";
    if (++seen == 1) {
      log::warn("{}: cancelling the migration (a second signal exits at once)", name);
      token_.request(std::string("interrupted by ") + name);
      continue;
    }
    if (token_.in_hand_off()) {
      log::warn(
          "{}: the hand-off is under way; exiting when it resolves, so the guest runs on "
          "exactly one host",
          name);
      continue;
    }
    log::warn("{} again: exiting now", name);
    if (on_exit_now_) on_exit_now_();
    std::fflush(stdout);
    ::_exit(1);
  }
}

}  // namespace ramshift::cli
