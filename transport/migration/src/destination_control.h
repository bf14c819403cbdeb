// The destination's side of the control queue (queue 0): the HELLO it checks and answers,
// and the waits that move its session.
#pragma once

#include <span>
#include <string>

#include "ramshift/migration/session_state.h"
#include "ramshift/transport/transport.h"
#include "ramshift/wire/frame.h"

namespace ramshift::migration {

// The source's HELLO checked: a protocol version in common (kMismatch naming both), no
// capability this end does not know, and its data queues matching the connection's.
Status check_source_hello(const wire::Hello& hello, uint32_t connection_queues);
// This end's answer: the session's parameters echoed, with the capabilities it accepts.
wire::Hello answer_hello(const wire::Hello& theirs, bool verify_full, bool postcopy);

// kProtocol naming both types unless `f` is of type `want`.
Status expect_frame(const wire::FrameView& f, wire::FrameType want);
// A DEVICE_STATE_ZSTD body decompressed: exactly its raw_bytes, or kCorrupt / kProtocol.
Result<std::string> inflate_device_state(std::span<const std::byte> body);

// A live guest is verified here and paused: it runs only once the source has let it go
// (HANDOFF, true), so it never runs on both hosts. A connection lost now leaves it paused here.
// False: the source resumed its guest instead (SWITCHOVER_ABORT): the copy here is to be dropped.
Result<bool> await_hand_off(transport::Connection& conn, DestinationSession& session);

}  // namespace ramshift::migration
