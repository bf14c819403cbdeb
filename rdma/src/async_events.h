// Asynchronous verbs events (ibv_get_async_event): the only way a queue hears of failures
// that complete no work request of its own — the peer wrote outside the memory it was given
// (the responder's QP goes to the error state, with no completion to say why), a QP or CQ
// the device declared fatal, a port that went down, a device that died.
//
// Events arrive per device context, not per queue, and several connections of one process
// share a context (librdmacm opens each device once). So one watcher thread per context
// reads them and routes each to the queue it names; the thread runs while at least one
// queue on that context is watched. Every event is acknowledged (destroying a QP or CQ
// waits for its unacknowledged events).
#pragma once

#include <infiniband/verbs.h>

#include <cstdint>
#include <functional>

#include "ramshift/base/status.h"

namespace ramshift::transport::rdma {

// What a queue is told: the first fatal event that concerns it, as a Status to fail with.
using AsyncFailure = std::function<void(Status)>;
// Its port went down (false) or came back (true). A watch with this callback hears port
// events through it instead of failing on a port going down: the queue gives the port its
// peer timeout to come back (peer_liveness.h), so a short link flap costs a pause.
using PortChange = std::function<void(bool up)>;

// Watches one queue's QP and CQ (and its port and device) until destroyed. The callback runs
// on the watcher thread; once the destructor returns it never runs again. Destroy the watch
// before the QP and CQ it names.
class AsyncEventWatch {
 public:
  AsyncEventWatch() = default;
  AsyncEventWatch(ibv_context* ctx, ibv_qp* qp, ibv_cq* cq, uint8_t port, uint32_t queue_index,
                  AsyncFailure on_failure, PortChange on_port = nullptr);
  ~AsyncEventWatch();
  AsyncEventWatch(const AsyncEventWatch&) = delete;
  AsyncEventWatch& operator=(const AsyncEventWatch&) = delete;

 private:
  ibv_context* ctx_ = nullptr;
  uint64_t id_ = 0;
};

// The Status a queue fails with for `event`, or ok for events that need no action
// (communication established, path migration, port active, ...). Exposed for tests.
Status describe_async_event(ibv_event_type event, uint32_t queue_index, uint8_t port);

}  // namespace ramshift::transport::rdma
