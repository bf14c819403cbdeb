// The destination's run: the handshake, memory prepared chunk by chunk, the data queues'
// threads and the run's outcome (destination_run.h says where the rest is).
#include "ramshift/migration/destination.h"

#include <fmt/format.h>

#include <algorithm>
#include <climits>

#include "destination_control.h"
#include "destination_memory.h"
#include "destination_run.h"
#include "frame_io.h"
#include "ramshift/base/clock.h"
#include "ramshift/base/log.h"
#include "ramshift/base/units.h"
#include "test_hooks.h"
#include "verify.h"

namespace ramshift::migration {

using std::chrono::milliseconds;
using wire::FrameType;

MigrationReport DestinationRun::run() {
  report_.role = "destination";
  report_.transport = conn_->transport_name();
  report_.peer = conn_->describe();
  start_ = Clock::now();
  Status s = migrate();
  if (!s) session_.fail();
  if (!s && !session_.peer_failed() && s.code() != ErrorCode::kDisconnected)
    send_error_frame(*conn_, s);
  fail(s);
  stop_ = true;
  conn_->close();  // wakes data queue threads blocked in poll
  for (auto& t : threads_) t.join();
  for (uint32_t q = 0; q < queues_; ++q) {
    report_.pages += state_[q].counts;
    report_.wire_bytes += state_[q].wire_bytes.load();
  }
  report_.total_ms = ms_since(start_);
  report_.link = conn_->link_stats();
  report_.error = s;
  report_.completed = s.is_ok();
  report_.verified = s.is_ok();
  preparer_.reset();  // its threads use the connection and the memory
  guest_.reset();     // stops its threads before its memory goes
  memory_.reset();    // removes a partial output file
  return report_;
}

// Records the first failure and wakes everyone.
void DestinationRun::fail(const Status& s) {
  if (s.is_ok()) return;
  {
    std::lock_guard lock(mu_);
    if (first_error_.is_ok()) first_error_ = s;
  }
  stop_ = true;
  cv_.notify_all();
}

Result<wire::FrameView> DestinationRun::next_control(milliseconds timeout,
                                                     const char* waiting_for) {
  // Slices of 100 ms, so a cancel is noticed while the source takes its time.
  const auto deadline = Clock::now() + timeout;
  Result<wire::FrameView> f = Status(ErrorCode::kTimeout, "");
  for (;;) {
    RS_RETURN_IF_ERROR(cancel_if_asked());
    auto left = std::chrono::duration_cast<milliseconds>(deadline - Clock::now());
    f = receive_frame(*conn_, 0, std::clamp(left, milliseconds(0), milliseconds(100)));
    if (f || f.status().code() != ErrorCode::kTimeout || left <= milliseconds(100)) break;
  }
  if (!f) {
    if (f.status().code() == ErrorCode::kTimeout)
      return Status(ErrorCode::kTimeout, fmt::format("source sent no {} within {} s", waiting_for,
                                                     timeout.count() / 1000));
    return f.status().with_context(fmt::format("source, while waiting for {}", waiting_for));
  }
  if (f->type == FrameType::kError) {
    session_.fail(DestinationEvent::kErrorReceived);
    return peer_error(f->body, "source");
  }
  return f;
}

Status DestinationRun::send_control(FrameType type, std::span<const std::byte> body) {
  std::lock_guard lock(send_mu_);
  auto n = send_frame(*conn_, 0, type, body, milliseconds(10000));
  if (!n) return n.status();
  // The source waits for every control frame (a ROUND_END, a PAGE_REQUEST's page, COMMIT):
  // none may stay in the transport for a later send to push out (transport.h, post_send).
  return conn_->flush(0, milliseconds(10000));
}

Status DestinationRun::migrate() {
  RS_RETURN_IF_ERROR(handshake());
  // Before the queue threads start: their decoders accept placed pages only with this.
  placing_ = conn_->capabilities().zero_copy_write && !postcopy_;  // pinning fills pages
  if (placing_)
    RS_RETURN_IF_ERROR(
        conn_->can_register(report_.guest_bytes).with_context("destination guest memory"));
  if (!postcopy_) start_preparing();  // post-copy: anonymous memory, nothing to prepare
  queues_ = hello_.data_queues;
  state_ = std::make_unique<QueueState[]>(queues_);
  for (uint32_t q = 0; q < queues_; ++q) threads_.emplace_back([this, q] { queue_main(q); });
  test_hold("destination-setup");
  RS_RETURN_IF_ERROR(send_control(FrameType::kReady, {}));
  RS_RETURN_IF_ERROR(session_.advance(DestinationEvent::kReadySent));
  report_.setup_ms = ms_since(start_);
  return control_loop();
}

Status DestinationRun::handshake() {
  RS_ASSIGN_OR_RETURN(auto f, next_control(config_.handshake_timeout, "hello"));
  RS_RETURN_IF_ERROR(expect_frame(f, FrameType::kHello));
  RS_ASSIGN_OR_RETURN(hello_, wire::decode_hello(f.body));
  RS_RETURN_IF_ERROR(check_source_hello(hello_, conn_->queue_count()));
  verify_full_ = (hello_.capabilities & wire::kCapVerifyFull) != 0;
  postcopy_ = (hello_.capabilities & wire::kCapPostcopy) != 0;
  if (postcopy_) RS_RETURN_IF_ERROR(postcopy_possible(config_, hello_.page_size));
  RS_RETURN_IF_ERROR(session_.advance(DestinationEvent::kHelloReceived));
  report_.queues = hello_.data_queues;
  report_.batch_pages = hello_.batch_pages;
  report_.xbzrle_cache_bytes = hello_.xbzrle_cache_per_queue * hello_.data_queues;
  report_.codec = pipeline::codec_name(static_cast<pipeline::CodecMode>(hello_.codec));
  const wire::Hello mine = answer_hello(hello_, verify_full_, postcopy_);
  RS_RETURN_IF_ERROR(send_control(FrameType::kHello, wire::encode(test_protocol_version(mine))));
  RS_RETURN_IF_ERROR(session_.advance(DestinationEvent::kHelloSent));

  RS_ASSIGN_OR_RETURN(auto t, next_control(config_.handshake_timeout, "region table"));
  RS_RETURN_IF_ERROR(expect_frame(t, FrameType::kRegionTable));
  RS_ASSIGN_OR_RETURN(table_, wire::decode_region_table(t.body));
  RS_RETURN_IF_ERROR(session_.advance(DestinationEvent::kRegionTableReceived));
  std::vector<uint64_t> sizes;
  uint64_t total = 0;
  for (const auto& r : table_.regions) {
    sizes.push_back(r.bytes);
    total += r.bytes;
  }
  report_.guest_bytes = total;
  RS_ASSIGN_OR_RETURN(memory_, destination_memory(config_, sizes, hello_.page_size));
  for (const auto& span : memory_->regions()) total_pages_ += span.size() / hello_.page_size;
  digest_ = std::make_unique<pipeline::MemoryDigest>(sizes, hello_.page_size, hello_.batch_pages,
                                                     /*zero_filled=*/true);
  return Status::ok();
}

// Prepares guest memory chunk by chunk while pages already arrive: reserves the output
// file's blocks and (rdma) registers the chunk for the source's one-sided writes, then
// tells the source where it is (MEMORY_KEYS). Batches wait for their chunk's reservation
// (the write gate); placed pages can only target chunks the source has keys for.
void DestinationRun::start_preparing() {
  preparer_ = std::make_unique<MemoryPreparer>(
      memory_->regions(), [this](uint32_t r, uint64_t offset, std::span<std::byte> chunk) {
        Status s = prepare_chunk(r, offset, chunk);
        if (!s) fail(s);
        return s;
      });
}

Status DestinationRun::prepare_chunk(uint32_t r, uint64_t offset, std::span<std::byte> chunk) {
  // Registering for remote writes pins every page of the chunk, which allocates its file
  // blocks (a full disk fails the registration, never a later write): a reservation too.
  // Reserving first as well would walk the chunk twice (measured 0.1-0.3 s more per
  // 128 MiB in the soft-RoCE VM).
  if (placing_ && memory_->borrowed())  // zeroed before the source may write into it
    RS_RETURN_IF_ERROR(memory_->reserve(r, offset, chunk.size()));
  if (!placing_) {
    RS_RETURN_IF_ERROR(memory_->reserve(r, offset, chunk.size()));
    // Faulting the chunk in here, ahead of its pages, spares the queue threads one page
    // fault per page (23% of the receiver's time on loopback tcp, by perf).
    memory_->populate(r, offset, chunk.size());
  }
  if (placing_) {
    RS_ASSIGN_OR_RETURN(auto keys, register_for_writes(*conn_, r, offset, chunk));
    RS_RETURN_IF_ERROR(send_control(FrameType::kMemoryKeys, wire::encode(keys)));
  }
  if (prepared_bytes_.fetch_add(chunk.size()) + chunk.size() == total_pages_ * hello_.page_size)
    log::info("guest memory {} after {:.0f} ms",
              placing_ ? "reserved and registered for remote writes" : "reserved",
              ms_since(start_));
  return Status::ok();
}

void DestinationRun::queue_main(uint32_t q) {
  pin_queue_thread(config_.queue_cpus, q);
  Status s = receive_queue(q);
  if (!s) fail(s);
}

Status DestinationRun::receive_queue(uint32_t q) {
  QueueState& st = state_[q];
  pipeline::BatchDecoder decoder(hello_.page_size, hello_.batch_pages,
                                 hello_.xbzrle_cache_per_queue);
  decoder.allow_placed(placing_);
  if (memory_->reserves_later()) {  // a write to unreserved blocks could be SIGBUS
    const uint64_t chunk_bytes = uint64_t{hello_.batch_pages} * hello_.page_size;
    decoder.set_write_gate([this, chunk_bytes](uint32_t r, uint64_t chunk) {
      return preparer_->wait_ready(r, chunk * chunk_bytes, (chunk + 1) * chunk_bytes, stop_);
    });
  }
  const auto& regions = memory_->regions();
  uint32_t round = 0;
  uint64_t batches = 0;
  // Why 16: enough messages per poll to amortise the call, few enough to keep the views
  // within one receive buffer.
  transport::ConstBuffer msgs[16];
  while (!stop_.load(std::memory_order_relaxed)) {
    auto got = conn_->poll(q + 1, msgs, milliseconds(100));
    if (!got) {
      if (stop_.load()) return Status::ok();
      if (got.status().code() == ErrorCode::kDisconnected)  // killed, or its host went down
        return Status(ErrorCode::kDisconnected,
                      fmt::format("the source went away during round {} ({})", round,
                                  got.status().message()));
      return got.status().with_context(fmt::format("data queue {} in round {}", q, round));
    }
    for (size_t i = 0; i < *got; ++i) {
      st.wire_bytes.fetch_add(msgs[i].size(), std::memory_order_relaxed);
      RS_ASSIGN_OR_RETURN(auto f, wire::parse_frame(msgs[i]));
      if (f.type == FrameType::kPageBatch) {
        RS_ASSIGN_OR_RETURN(auto b, decoder.apply(f.body, regions, digest_.get()));
        if (b.round != round)
          return Status(
              ErrorCode::kProtocol,
              fmt::format("data queue {}: batch of round {} while in round {}", q, b.round, round));
        ++batches;
        st.counts += b.counts;
        st.pages.fetch_add(b.counts.total(), std::memory_order_relaxed);
      } else if (f.type == FrameType::kPostcopyPages) {  // pushed: the placer's (post-copy)
        RS_RETURN_IF_ERROR(postcopy_slot_.place(f.body, stop_));
      } else if (f.type == FrameType::kRoundEnd) {
        RS_ASSIGN_OR_RETURN(auto end, wire::decode_round_end(f.body));
        if (end.round != round || end.queue != q || end.batches != batches)
          return Status(
              ErrorCode::kProtocol,
              fmt::format("data queue {}: round_end says round {} queue {} with {} batches; "
                          "this queue is in round {} and received {}",
                          q, end.round, end.queue, end.batches, round, batches));
        ++round;
        batches = 0;
        {
          std::lock_guard lock(mu_);  // so a waiter cannot miss this between check and wait
          st.rounds_done.store(round);
        }
        cv_.notify_all();
        RS_RETURN_IF_ERROR(ack_finished_rounds());
      } else {
        return Status(ErrorCode::kProtocol, fmt::format("data queue {}: unexpected {} frame", q,
                                                        wire::frame_type_name(f.type)));
      }
    }
  }
  return Status::ok();
}

// Tells the source, on the control queue, each round that every data queue has finished
// placing: ROUND_END {round, queue = data_queues (all), batches = 0}. The source times its
// rounds by these, so the destination's own pace (decompression, placement) is counted,
// and it never pauses the guest while a backlog is still in flight.
Status DestinationRun::ack_finished_rounds() {
  std::vector<uint32_t> to_ack;
  {
    std::lock_guard lock(ack_mu_);
    int64_t all = INT64_MAX;
    for (uint32_t q = 0; q < queues_; ++q) all = std::min(all, state_[q].rounds_done.load());
    while (acked_rounds_ < all) to_ack.push_back(static_cast<uint32_t>(acked_rounds_++));
  }
  for (uint32_t r : to_ack)
    RS_RETURN_IF_ERROR(
        send_control(FrameType::kRoundEnd, wire::encode(wire::RoundEnd{r, queues_, 0})));
  return Status::ok();
}

// A cancel asked for (cancel.h) ends the session here, where its table allows.
Status DestinationRun::cancel_if_asked() {
  if (cancel_requested(config_.cancel) && session_.cancel().is_ok())
    return config_.cancel->status("destination");
  return Status::ok();
}

// A source that fails (or is cancelled) sends ERROR on the control queue and then closes
// every queue; a data queue may see the close first. The ERROR says why.
Status DestinationRun::error_after_stop() {
  auto f = receive_frame(*conn_, 0, milliseconds(200));
  if (!f || f->type != FrameType::kError) return current_error();
  session_.fail(DestinationEvent::kErrorReceived);
  return peer_error(f->body, "source");
}

Status DestinationRun::current_error() {
  std::lock_guard lock(mu_);
  return first_error_.is_ok() ? Status(ErrorCode::kCancelled, "stopped") : first_error_;
}

void DestinationRun::report_progress() {
  if (!progress_ || Clock::now() - last_progress_ < milliseconds(100)) return;
  last_progress_ = Clock::now();
  uint64_t pages = 0, wire = 0;
  for (uint32_t q = 0; q < queues_; ++q) {
    pages += state_[q].pages.load(std::memory_order_relaxed);
    wire += state_[q].wire_bytes.load(std::memory_order_relaxed);
  }
  Progress p;
  {
    std::lock_guard lock(ack_mu_);
    p.round = static_cast<uint32_t>(acked_rounds_);  // rounds every queue has placed
  }
  p.total_bytes = total_pages_ * hello_.page_size;
  p.done_bytes = std::min(pages, total_pages_) * hello_.page_size;
  p.transferred_bytes = pages * hello_.page_size;  // every round's placed pages
  p.wire_bytes = wire;
  p.setup_ms = report_.setup_ms;
  p.elapsed_s = ms_since(start_) / 1000;
  progress_(p);
}

MigrationReport run_destination(std::unique_ptr<transport::Connection> conn,
                                const DestinationConfig& config, const ProgressFn& progress) {
  return DestinationRun(std::move(conn), config, progress).run();
}

}  // namespace ramshift::migration
