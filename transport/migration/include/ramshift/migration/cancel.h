// Cancelling a running migration from outside its threads: the CLI's signal watcher
// (cli/signals.h) or a test asks; the run notices at its next check and ends cleanly.
//
// What a cancel does (docs/user-guide.md, "Signals and cancel"):
//   - the run stops within ~100 ms of its next check, sends ERROR ("source cancelled" /
//     "destination cancelled") so the peer ends too, and returns kCancelled;
//   - the source resumes a guest it paused but still owns; an image is only ever read;
//   - the destination removes its partial output.
// Inside the hand-off window (source: DIGEST sent until HANDOFF resolves; destination:
// DIGEST received until the guest runs here or the hand-off failed) a cancel is held: the
// run finishes the hand-off first, so a cancel never leaves the guest running on neither
// host or on both. in_hand_off() tells the watcher not to force an exit meanwhile.
//
// Thread-safe: request() and the queries may be called from any thread.
#pragma once

#include <atomic>
#include <mutex>
#include <string>

#include "ramshift/base/status.h"

namespace ramshift::migration {

class CancelToken {
 public:
  // Asks the run to stop; `reason` says why ("interrupted by SIGINT"). The first one counts.
  void request(std::string reason);
  bool requested() const { return requested_.load(std::memory_order_acquire); }
  std::string reason() const;
  // The run is inside the hand-off window (see above).
  bool in_hand_off() const { return hand_off_.load(std::memory_order_acquire) > 0; }

  // kCancelled: "<end> cancelled (<reason>)", e.g. "source cancelled (interrupted by SIGINT)".
  // The peer reads it in the ERROR frame.
  Status status(const char* end) const;

 private:
  friend class HandOffWindow;
  std::atomic<bool> requested_{false};
  std::atomic<int> hand_off_{0};
  mutable std::mutex mu_;
  std::string reason_;
};

// Marks the hand-off window for its lifetime (a null token: nothing to mark).
class HandOffWindow {
 public:
  explicit HandOffWindow(CancelToken* token) : token_(token) {
    if (token_) token_->hand_off_.fetch_add(1, std::memory_order_acq_rel);
  }
  ~HandOffWindow() {
    if (token_) token_->hand_off_.fetch_sub(1, std::memory_order_acq_rel);
  }
  HandOffWindow(const HandOffWindow&) = delete;
  HandOffWindow& operator=(const HandOffWindow&) = delete;

 private:
  CancelToken* token_;
};

// Whether `token` (may be null) asks the run to stop.
inline bool cancel_requested(const CancelToken* token) { return token && token->requested(); }

}  // namespace ramshift::migration
