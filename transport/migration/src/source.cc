#include "ramshift/migration/source.h"

#include <fmt/format.h>

#include "frame_io.h"
#include "postcopy_source.h"
#include "ramshift/base/clock.h"
#include "ramshift/base/log.h"
#include "source_control.h"
#include "source_run.h"
#include "test_hooks.h"

namespace ramshift::migration {

using std::chrono::milliseconds;
using wire::FrameType;

MigrationReport SourceRun::run() {
  report_.role = "source";
  report_.queues = config_.queues;
  report_.batch_pages = config_.batch_pages;
  report_.transport = config_.to.scheme;
  report_.codec = pipeline::codec_name(config_.codec.mode);
  for (const auto& r : guest_.regions()) report_.guest_bytes += r.bytes;
  start_ = Clock::now();
  Status s = migrate();
  report_.total_ms = ms_since(start_);
  report_.wire_bytes += wire_control_;
  if (conn_) report_.link = conn_->link_stats();
  report_.error = s;
  report_.completed = report_.verified = s.is_ok();
  if (config_.codec.mode == pipeline::CodecMode::kAuto) {
    auto e = governor_.estimate();
    report_.auto_compressed_bytes_per_s = e.compressed_bytes_per_s;
    report_.auto_raw_bytes_per_s = e.raw_bytes_per_s;
  }
  return report_;
}

Status SourceRun::migrate() {
  RS_RETURN_IF_ERROR(check_source_config(config_));
  RS_RETURN_IF_ERROR(postcopy_allowed(config_, guest_));
  const transport::TransportOptions topts{.connect_timeout = config_.connect_timeout,
                                          .receive_load = transport::ReceiveLoad::kReplies,
                                          .peer_timeout = config_.peer_timeout,
                                          .settings = config_.transport_settings};
  auto conn = transport::connect(config_.to, config_.queues + 1, topts);
  if (!conn) return conn.status();
  conn_ = std::move(conn).value();
  report_.peer = conn_->describe();
  log::info("connected: {} after {:.0f} ms", report_.peer, ms_since(start_));
  Status s = cancel_if_asked();
  if (s) s = handshake();
  // A guest under dirty tracking cannot be pinned any more: userfaultfd write-protection
  // makes the registration's long-term pin fail (EFAULT, seen on Linux 6.1). So a running
  // guest's memory is registered before tracking starts; only an image's overlaps round 0.
  if (s && local_prep_ && !guest_.immutable())
    s = local_prep_->finish().with_context("registering the guest before dirty tracking");
  // Tracking starts before round 0 reads anything, so no write can fall between the two.
  if (s) s = guest_.start_dirty_log().with_context("dirty tracking");
  if (s)
    s = config_.mode == MigrationMode::kPostcopy ? go_postcopy(0, all_pages())
                                                 : stream_round(0, all_pages());
  if (s && !guest_.immutable() && !source_in_postcopy(session_.state())) s = precopy_rounds();
  if (s && session_.state() != SourceState::kDone) s = verify();  // pre-copy verified its own
  if (!s && source_in_postcopy(session_.state())) s = postcopy_lost(s);
  if (!s) session_.fail();
  if (!s && !error_sent_ && s.code() != ErrorCode::kDisconnected && !session_.peer_failed())
    send_error_frame(*conn_, s);
  conn_->close();
  if (!s && source_may_resume_guest(session_.failed_in())) {
    guest_.resume();  // nothing was committed: the source keeps the guest
    log::info("source guest resumed after the {}",
              session_.cancelled() ? "cancel" : "failed switchover");
  }
  if (!s && !guest_.immutable())
    report_.source_guest = source_may_resume_guest(session_.failed_in()) ? "resumed"
                           : source_guest_paused(session_.failed_in())   ? "paused (handed over)"
                                                                         : "running";
  return s;
}

// A cancel asked for (cancel.h) ends the session here, where its table allows.
Status SourceRun::cancel_if_asked() {
  if (cancel_requested(config_.cancel) && session_.cancel().is_ok())
    return config_.cancel->status("source");
  return Status::ok();
}

Status SourceRun::send_control(FrameType type, std::span<const std::byte> body) {
  auto n = send_frame(*conn_, 0, type, body, milliseconds(10000));
  if (!n) return n.status();
  wire_control_ += *n;
  // A control frame is answered (or ends the session): it must leave whole, not wait in the
  // transport for a later send (transport.h, post_send). DEVICE_STATE is not waited for: the
  // frame behind it (DIGEST, POSTCOPY_START) flushes both, so on rdma it does not wait for
  // its completion first.
  if (type != FrameType::kDeviceState && type != FrameType::kDeviceStateZstd)
    RS_RETURN_IF_ERROR(conn_->flush(0, milliseconds(10000)));
  auto event = source_sent_event(type);  // none for the courtesy BYE after an image's COMMIT
  return event ? session_.advance(*event) : Status::ok();
}

// The next control frame of type `want`; MEMORY_KEYS are taken in passing.
Result<std::vector<std::byte>> SourceRun::await(FrameType want, milliseconds timeout) {
  return await_control_frame(
      *conn_, session_, want, timeout,
      [this](std::span<const std::byte> body) { return absorb_keys(body); }, config_.cancel);
}

Status SourceRun::handshake() {
  const wire::Hello hello = source_hello(config_, !guest_.immutable());
  cache_per_queue_ = hello.xbzrle_cache_per_queue;
  report_.xbzrle_cache_bytes = cache_per_queue_ * config_.queues;
  encoders_.resize(config_.queues);
  std::vector<uint64_t> sizes;
  for (const auto& r : guest_.regions()) sizes.push_back(r.bytes);
  digest_ = std::make_unique<pipeline::MemoryDigest>(sizes, config_.page_size, config_.batch_pages,
                                                     false);
  RS_RETURN_IF_ERROR(send_control(FrameType::kHello, wire::encode(test_protocol_version(hello))));
  RS_ASSIGN_OR_RETURN(auto body, await(FrameType::kHello, milliseconds(10000)));
  RS_ASSIGN_OR_RETURN(wire::Hello peer, wire::decode_hello(body));
  test_hold("source-setup");
  RS_RETURN_IF_ERROR(check_destination_hello(peer, config_));
  peer_capabilities_ = peer.capabilities;
  wire::RegionTable table;
  for (uint32_t i = 0; i < guest_.regions().size(); ++i)
    table.regions.push_back({i, guest_.regions()[i].bytes, guest_.regions()[i].name});
  RS_RETURN_IF_ERROR(send_control(FrameType::kRegionTable, wire::encode(table)));
  table_ = table;
  if (conn_->capabilities().zero_copy_write) RS_RETURN_IF_ERROR(start_placement());
  RS_RETURN_IF_ERROR(await(FrameType::kReady, milliseconds(60000)).status());
  report_.setup_ms = ms_since(start_);
  return Status::ok();
}

// rdma: raw pages go guest to guest by one-sided writes. Our memory is registered (for
// local reads only) chunk by chunk in the background while round 0 already runs; the
// destination does the same with its memory and sends MEMORY_KEYS as chunks become
// writable. A batch is placed once both ends of its pages are registered; until then its
// pages travel inside the batch, so set-up never waits for the whole guest to be pinned.
Status SourceRun::start_placement() {
  uint64_t total = 0;
  std::vector<std::span<std::byte>> spans;
  for (const auto& r : guest_.regions()) {
    spans.push_back(r.memory);
    total += r.memory.size();
  }
  RS_RETURN_IF_ERROR(conn_->can_register(total).with_context("source guest memory"));
  remote_.reset(spans.size());
  local_prep_ = std::make_unique<MemoryPreparer>(
      std::move(spans), [this](uint32_t, uint64_t, std::span<std::byte> chunk) -> Status {
        auto key = conn_->register_memory(chunk, transport::MemoryAccess::kLocal);
        return key ? Status::ok() : key.status().with_context("source guest memory");
      });
  placing_ = true;
  return Status::ok();
}

// A MEMORY_KEYS frame from the destination, whenever it arrives on the control queue.
Status SourceRun::absorb_keys(std::span<const std::byte> body) {
  if (!placing_)
    return Status(ErrorCode::kProtocol, "memory_keys on a connection without one-sided writes");
  RS_ASSIGN_OR_RETURN(auto keys, decode_memory_keys(*conn_, body, table_, config_.page_size));
  RS_RETURN_IF_ERROR(session_.advance(SourceEvent::kMemoryKeysReceived));
  RS_RETURN_IF_ERROR(remote_.add(keys));
  if (!keys_logged_ && remote_.keyed_bytes() >= report_.guest_bytes) {
    keys_logged_ = true;
    log::info("all destination memory writable directly after {:.0f} ms", ms_since(start_));
  }
  return Status::ok();
}

MigrationReport run_source(guest::SourceGuest& guest, const SourceConfig& config,
                           const ProgressFn& progress) {
  SourceConfig resolved = config;
  if (resolved.batch_pages == 0)
    resolved.batch_pages = default_batch_pages(resolved.to.scheme, resolved.page_size);
  return SourceRun(guest, resolved, progress).run();
}

}  // namespace ramshift::migration
