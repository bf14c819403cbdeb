// The destination's waits on its control queue (queue 0) that move its session.
#pragma once

#include "ramshift/migration/session_state.h"
#include "ramshift/transport/transport.h"
#include "ramshift/wire/frame.h"

namespace ramshift::migration {

// kProtocol naming both types unless `f` is of type `want`.
Status expect_frame(const wire::FrameView& f, wire::FrameType want);

// A live guest is verified here and paused: it runs only once the source has let it go
// (HANDOFF), so it never runs on both hosts. A connection lost now leaves it paused here.
Status await_hand_off(transport::Connection& conn, DestinationSession& session);

}  // namespace ramshift::migration
