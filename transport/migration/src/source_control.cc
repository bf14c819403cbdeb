#include "source_control.h"

#include <fmt/format.h>

#include <algorithm>
#include <random>

#include "frame_io.h"
#include "ramshift/base/version.h"
#include "ramshift/pipeline/batch_format.h"
#include "ramshift/pipeline/codec.h"

namespace ramshift::migration {

using Clock = std::chrono::steady_clock;
using std::chrono::milliseconds;
using wire::FrameType;

Status check_source_config(const SourceConfig& config) {
  if (config.queues < 1 || config.queues > wire::kMaxDataQueues)
    return Status(ErrorCode::kInvalidArgument,
                  fmt::format("--queues {} is outside 1..{}", config.queues, wire::kMaxDataQueues));
  if (config.batch_pages < 1 || config.batch_pages > pipeline::kMaxBatchPages)
    return Status(ErrorCode::kInvalidArgument,
                  fmt::format("--batch-size of {} pages is outside 1..{} pages", config.batch_pages,
                              pipeline::kMaxBatchPages));
  if (uint64_t{config.batch_pages} * config.page_size > (16u << 20))
    return Status(ErrorCode::kInvalidArgument,
                  fmt::format("--batch-size of {} pages of {} bytes is over the 16 MiB a batch "
                              "may hold",
                              config.batch_pages, config.page_size));
  return Status::ok();
}

wire::Hello source_hello(const SourceConfig& config, bool resends) {
  wire::Hello hello;
  hello.page_size = config.page_size;
  hello.data_queues = config.queues;
  hello.batch_pages = config.batch_pages;
  hello.codec = static_cast<uint8_t>(config.codec.mode);
  // An image is sent in one round, and XBZRLE only helps a page sent again: no cache at
  // either end then. Each would be zero-filled at set-up, 64 MiB per side by default,
  // which a slow host pays for in the migration's time.
  hello.xbzrle_cache_per_queue = pipeline::codec_uses_xbzrle(config.codec.mode) && resends
                                     ? config.codec.xbzrle_cache_bytes / config.queues
                                     : 0;
  std::random_device rd;
  hello.session_id = (uint64_t{rd()} << 32) ^ rd();
  hello.software = kSoftware;
  if (config.verify == VerifyMode::kFull) hello.capabilities |= wire::kCapVerifyFull;
  if (config.mode != MigrationMode::kPrecopy) hello.capabilities |= wire::kCapPostcopy;
  return hello;
}

Status check_destination_hello(const wire::Hello& peer, const SourceConfig& config) {
  if (peer.version_max < wire::kProtocolVersion || peer.version_min > wire::kProtocolVersion)
    return Status(ErrorCode::kMismatch,
                  fmt::format("destination speaks protocol {}..{}, this source speaks {}",
                              peer.version_min, peer.version_max, wire::kProtocolVersion));
  if (config.verify == VerifyMode::kFull && !(peer.capabilities & wire::kCapVerifyFull))
    return Status(ErrorCode::kMismatch,
                  fmt::format("the destination ({}) does not offer --verify full; upgrade it "
                              "or use --verify transfer",
                              peer.software));
  if (config.mode != MigrationMode::kPrecopy && !(peer.capabilities & wire::kCapPostcopy))
    return Status(ErrorCode::kMismatch,
                  fmt::format("the destination ({}) does not offer post-copy; upgrade it or use "
                              "--mode precopy",
                              peer.software));
  return Status::ok();
}

Result<std::vector<std::byte>> await_control_frame(transport::Connection& conn,
                                                   SourceSession& session, FrameType want,
                                                   milliseconds timeout, const KeysFn& on_keys,
                                                   const CancelToken* cancel) {
  const auto deadline = Clock::now() + timeout;
  // Slices of 100 ms, so a cancel is noticed while the destination takes its time.
  auto next = [&]() -> Result<wire::FrameView> {
    for (;;) {
      if (cancel_requested(cancel) && session.cancel().is_ok()) return cancel->status("source");
      auto left = std::chrono::duration_cast<milliseconds>(deadline - Clock::now());
      auto f = receive_frame(conn, 0, std::clamp(left, milliseconds(0), milliseconds(100)));
      if (f || f.status().code() != ErrorCode::kTimeout || left <= milliseconds(100)) return f;
    }
  };
  auto f = next();
  while (f && f->type == FrameType::kMemoryKeys) {
    RS_RETURN_IF_ERROR(on_keys(f->body));
    f = next();
  }
  if (!f && f.status().code() == ErrorCode::kCancelled) return f.status();
  if (!f) {
    if (f.status().code() == ErrorCode::kTimeout)
      return Status(ErrorCode::kTimeout,
                    fmt::format("destination sent no {} within {} s", wire::frame_type_name(want),
                                timeout.count() / 1000));
    return f.status().with_context(fmt::format("waiting for {}", wire::frame_type_name(want)));
  }
  if (f->type == FrameType::kError) {
    session.fail(SourceEvent::kErrorReceived);
    return peer_error(f->body, "destination");
  }
  if (f->type != want)
    return Status(ErrorCode::kProtocol,
                  fmt::format("expected {} from the destination, got {}",
                              wire::frame_type_name(want), wire::frame_type_name(f->type)));
  if (want == FrameType::kReady || want == FrameType::kCommit ||
      want == FrameType::kPostcopyDiscarded)
    RS_RETURN_IF_ERROR(wire::expect_empty(want, f->body));
  auto event = source_received_event(want);
  if (!event)
    return Status(ErrorCode::kInternal,
                  fmt::format("the source never waits for {}", wire::frame_type_name(want)));
  RS_RETURN_IF_ERROR(session.advance(*event));
  return std::vector<std::byte>(f->body.begin(), f->body.end());
}

}  // namespace ramshift::migration
