#include "destination_control.h"

#include <fmt/format.h>

#include "frame_io.h"
#include "ramshift/base/version.h"
#include "ramshift/pipeline/zstd_context.h"

namespace ramshift::migration {

Status check_source_hello(const wire::Hello& hello, uint32_t connection_queues) {
  if (hello.version_max < wire::kProtocolVersion || hello.version_min > wire::kProtocolVersion)
    return Status(ErrorCode::kMismatch,
                  fmt::format("source speaks protocol {}..{}, this destination speaks {}",
                              hello.version_min, hello.version_max, wire::kProtocolVersion));
  if (const uint64_t unknown = hello.capabilities & ~wire::kCapKnown)
    return Status(ErrorCode::kMismatch,
                  fmt::format("the source ({}) asks for capabilities 0x{:x} this destination "
                              "does not know; upgrade the destination",
                              hello.software, unknown));
  if (hello.data_queues + 1 != connection_queues)
    return Status(ErrorCode::kProtocol,
                  fmt::format("hello announces {} data queues but the connection has {} queues",
                              hello.data_queues, connection_queues));
  return Status::ok();
}

wire::Hello answer_hello(const wire::Hello& theirs, bool verify_full, bool postcopy) {
  wire::Hello mine;
  mine.page_size = theirs.page_size;
  mine.data_queues = theirs.data_queues;
  mine.batch_pages = theirs.batch_pages;
  mine.codec = theirs.codec;
  mine.xbzrle_cache_per_queue = theirs.xbzrle_cache_per_queue;
  mine.session_id = theirs.session_id;
  mine.software = kSoftware;
  if (verify_full) mine.capabilities |= wire::kCapVerifyFull;
  if (postcopy) mine.capabilities |= wire::kCapPostcopy | wire::kCapPostcopyDiscard;
  // Offered to any source (frame.h).
  mine.capabilities |= wire::kCapDeviceStateZstd | wire::kCapSwitchoverAbort;
  return mine;
}

Result<std::string> inflate_device_state(std::span<const std::byte> body) {
  RS_ASSIGN_OR_RETURN(auto m, wire::decode_device_state_zstd(body));
  std::string state(m.raw_bytes, '\0');
  Status s = pipeline::ZstdDecompressor().decompress(
      m.zstd, {reinterpret_cast<std::byte*>(state.data()), state.size()});
  if (!s) return s.with_context("device_state_zstd");
  return state;
}

Status expect_frame(const wire::FrameView& f, wire::FrameType want) {
  if (f.type == want) return Status::ok();
  return Status(ErrorCode::kProtocol,
                fmt::format("expected {} from the source, got {}", wire::frame_type_name(want),
                            wire::frame_type_name(f.type)));
}

Result<bool> await_hand_off(transport::Connection& conn, DestinationSession& session) {
  auto f = receive_frame(conn, 0, std::chrono::milliseconds(10000));
  if (f && f->type == wire::FrameType::kHandOff) {
    RS_RETURN_IF_ERROR(wire::expect_empty(wire::FrameType::kHandOff, f->body));
    RS_RETURN_IF_ERROR(session.advance(DestinationEvent::kHandOffReceived));  // may run here
    return true;
  }
  if (f && f->type == wire::FrameType::kSwitchoverAbort) {
    RS_RETURN_IF_ERROR(wire::expect_empty(wire::FrameType::kSwitchoverAbort, f->body));
    RS_RETURN_IF_ERROR(session.advance(DestinationEvent::kSwitchoverAbortReceived));
    return false;
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
