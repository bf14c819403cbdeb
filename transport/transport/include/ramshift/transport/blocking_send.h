// Sending through back-pressure: post, and while the queue is full (kWouldBlock) wait for
// room and post again, until a deadline or an abort flag ends it. Every sender in the tree
// (engine frames, page batches and their one-sided writes, the bench, the bridge) goes
// through these two calls, so the retry rules live in one place.
#pragma once

#include <atomic>
#include <functional>
#include <span>

#include "ramshift/base/status.h"
#include "ramshift/transport/transport.h"

namespace ramshift::transport {

// How long, and how, a blocked post waits. The defaults wait forever in 100 ms steps.
struct SendWait {
  // The longest the queue may stay full: kTimeout once no room came for this long (a wait
  // that ends with room starts the count again). Millis::max(): no limit.
  Millis timeout = Millis::max();
  // One wait for room lasts at most this long; then `abort`, the deadline and
  // `while_blocked` are looked at again. Why 100 ms: an abort is noticed quickly while a
  // full queue costs ten wake-ups a second at most.
  Millis slice{100};
  // Set by another thread to give up: the post ends with kCancelled.
  const std::atomic<bool>* abort = nullptr;
  // Called each time the queue is found full, before waiting (the bench drains its
  // acknowledgements there, so the peer's replies never fill up while we wait). An error
  // ends the post with that error.
  std::function<Status()> while_blocked;
};

// post_send(queue, segments), waiting out kWouldBlock as `wait` says. Any other error of
// post_send or wait_writable is returned as it is.
Status send_blocking(Connection& conn, uint32_t queue, std::span<const ConstBuffer> segments,
                     const SendWait& wait = {});

// post_write(queue, writes), the same way.
Status write_blocking(Connection& conn, uint32_t queue, std::span<const RemoteWrite> writes,
                      const SendWait& wait = {});

}  // namespace ramshift::transport
