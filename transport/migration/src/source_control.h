// The source's waits on its control queue (queue 0), each of which moves its session.
#pragma once

#include <chrono>
#include <cstddef>
#include <functional>
#include <span>
#include <vector>

#include "ramshift/migration/cancel.h"
#include "ramshift/migration/session_state.h"
#include "ramshift/transport/transport.h"
#include "ramshift/wire/frame.h"

namespace ramshift::migration {

// Called with the body of each MEMORY_KEYS frame taken while waiting.
using KeysFn = std::function<Status(std::span<const std::byte>)>;

// Waits up to `timeout` for a frame of type `want` from the destination and returns its body.
// MEMORY_KEYS may arrive at any time (rdma) and go to `on_keys` in passing. An ERROR frame
// becomes the error and ends `session` as the peer's failure; any other frame is a protocol
// error. `want` moves `session` only once valid (READY and COMMIT must be empty), so a bad
// COMMIT releases no guest. A cancel on `cancel` (may be null) is noticed within 100 ms and
// ends `session` as cancelled where its table allows (kCancelled); in the hand-off window
// the wait goes on.
Result<std::vector<std::byte>> await_control_frame(transport::Connection& conn,
                                                   SourceSession& session, wire::FrameType want,
                                                   std::chrono::milliseconds timeout,
                                                   const KeysFn& on_keys,
                                                   const CancelToken* cancel = nullptr);

}  // namespace ramshift::migration
