#include "destination_control.h"

#include <fmt/format.h>

#include "frame_io.h"

namespace ramshift::migration {

Status expect_frame(const wire::FrameView& f, wire::FrameType want) {
  if (f.type == want) return Status::ok();
  return Status(ErrorCode::kProtocol,
                fmt::format("expected {} from the source, got {}", wire::frame_type_name(want),
                            wire::frame_type_name(f.type)));
}

Status await_hand_off(transport::Connection& conn, DestinationSession& session) {
  auto f = receive_frame(conn, 0, std::chrono::milliseconds(10000));
  if (f && f->type == wire::FrameType::kHandOff) {
    RS_RETURN_IF_ERROR(wire::expect_empty(wire::FrameType::kHandOff, f->body));
    return session.advance(DestinationEvent::kHandOffReceived);  // now it may run here
  }
  if (f && f->type == wire::FrameType::kError) {
    session.fail(DestinationEvent::kErrorReceived);
    return peer_error(f->body, "source");
  }
  if (f)
    return Status(ErrorCode::kProtocol, fmt::format("expected handoff from the source, got {}",
                                                    wire::frame_type_name(f->type)));
  return Status(ErrorCode::kDisconnected,
                fmt::format("the source went away before handing the guest over ({}); the "
                            "verified guest was not started here and the source may still "
                            "hold it, paused: check the source before resuming either",
                            f.status().message()));
}

}  // namespace ramshift::migration
