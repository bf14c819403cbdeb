// The source's side of the control queue (queue 0): its settings and the destination's
// HELLO checked, and the waits, each of which moves its session.
#pragma once

#include <chrono>
#include <cstddef>
#include <functional>
#include <span>
#include <vector>

#include "ramshift/migration/cancel.h"
#include "ramshift/migration/config.h"
#include "ramshift/migration/session_state.h"
#include "ramshift/transport/transport.h"
#include "ramshift/wire/frame.h"

namespace ramshift::migration {

// Queues and batch size within what the wire carries (kInvalidArgument naming the flag),
// checked before anything connects.
Status check_source_config(const SourceConfig& config);
// This source's HELLO: the session's shape from `config`, a fresh session id, and an XBZRLE
// cache only when pages are sent again (`resends`: a running guest, not an image).
wire::Hello source_hello(const SourceConfig& config, bool resends);
// The destination's HELLO: a protocol version in common, and the capabilities this source
// asks for (--verify full, post-copy) offered; kMismatch naming the peer's software.
Status check_destination_hello(const wire::Hello& peer, const SourceConfig& config);

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
