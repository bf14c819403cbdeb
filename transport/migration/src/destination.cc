#include "ramshift/migration/destination.h"

#include <fmt/format.h>

#include <algorithm>
#include <atomic>
#include <climits>
#include <condition_variable>
#include <memory>
#include <mutex>
#include <thread>
#include <vector>

#include "destination_control.h"
#include "destination_memory.h"
#include "discarded_pages.h"
#include "frame_io.h"
#include "memory_preparer.h"
#include "postcopy_destination.h"
#include "ramshift/base/clock.h"
#include "ramshift/base/log.h"
#include "ramshift/base/units.h"
#include "ramshift/guest/image.h"
#include "ramshift/guest/synthetic.h"
#include "ramshift/migration/session_state.h"
#include "ramshift/pipeline/batch_decoder.h"
#include "ramshift/pipeline/checksum.h"
#include "test_hooks.h"
#include "verify.h"

namespace ramshift::migration {
namespace {

using Clock = std::chrono::steady_clock;
using std::chrono::milliseconds;
using wire::FrameType;

struct alignas(64) QueueState {
  std::atomic<uint64_t> pages{0};
  std::atomic<uint64_t> wire_bytes{0};
  std::atomic<int64_t> rounds_done{0};  // rounds whose ROUND_END this queue has checked
  pipeline::PageCounts counts;          // read after join
};

class DestinationRun {
 public:
  DestinationRun(std::unique_ptr<transport::Connection> conn, const DestinationConfig& config,
                 const ProgressFn& progress)
      : conn_(std::move(conn)), config_(config), progress_(progress) {}

  MigrationReport run() {
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

 private:
  // Records the first failure and wakes everyone.
  void fail(const Status& s) {
    if (s.is_ok()) return;
    {
      std::lock_guard lock(mu_);
      if (first_error_.is_ok()) first_error_ = s;
    }
    stop_ = true;
    cv_.notify_all();
  }

  Result<wire::FrameView> next_control(milliseconds timeout, const char* waiting_for) {
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

  Status send_control(FrameType type, std::span<const std::byte> body) {
    std::lock_guard lock(send_mu_);
    auto n = send_frame(*conn_, 0, type, body, milliseconds(10000));
    return n ? Status::ok() : n.status();
  }

  Status migrate() {
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

  Status handshake() {
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
  void start_preparing() {
    preparer_ = std::make_unique<MemoryPreparer>(
        memory_->regions(), [this](uint32_t r, uint64_t offset, std::span<std::byte> chunk) {
          Status s = prepare_chunk(r, offset, chunk);
          if (!s) fail(s);
          return s;
        });
  }

  Status prepare_chunk(uint32_t r, uint64_t offset, std::span<std::byte> chunk) {
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

  void queue_main(uint32_t q) {
    pin_queue_thread(config_.queue_cpus, q);
    Status s = receive_queue(q);
    if (!s) fail(s);
  }

  Status receive_queue(uint32_t q) {
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
            return Status(ErrorCode::kProtocol,
                          fmt::format("data queue {}: batch of round {} while in round {}", q,
                                      b.round, round));
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
  Status ack_finished_rounds() {
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
  Status cancel_if_asked() {
    if (cancel_requested(config_.cancel) && session_.cancel().is_ok())
      return config_.cancel->status("destination");
    return Status::ok();
  }

  // A source that fails (or is cancelled) sends ERROR on the control queue and then closes
  // every queue; a data queue may see the close first. The ERROR says why.
  Status error_after_stop() {
    auto f = receive_frame(*conn_, 0, milliseconds(200));
    if (!f || f->type != FrameType::kError) return current_error();
    session_.fail(DestinationEvent::kErrorReceived);
    return peer_error(f->body, "source");
  }

  Status control_loop() {
    for (;;) {
      if (stop_.load()) return error_after_stop();
      RS_RETURN_IF_ERROR(cancel_if_asked());
      report_progress();
      auto f = receive_frame(*conn_, 0, milliseconds(100));
      if (!f) {
        if (f.status().code() == ErrorCode::kTimeout) continue;
        if (stop_.load()) return error_after_stop();
        return f.status().with_context("source");
      }
      switch (f->type) {
        case FrameType::kError:
          session_.fail(DestinationEvent::kErrorReceived);
          return peer_error(f->body, "source");
        case FrameType::kPostcopyStart:
          return run_postcopy(f->body);
        case FrameType::kPostcopyDiscard:  // hybrid: pages to drop while the guest runs there
          RS_RETURN_IF_ERROR(
              take_discard(f->body,
                           {session_, postcopy_, memory_->regions(), table_, hello_.page_size,
                            [this](FrameType t, auto b) { return send_control(t, b); }},
                           discarded_));
          break;
        case FrameType::kDeviceState:
        case FrameType::kDeviceStateZstd: {
          // A guest that ran on the source, now paused there: a hand-off follows the commit.
          RS_RETURN_IF_ERROR(session_.advance(DestinationEvent::kDeviceStateReceived));
          if (f->type == FrameType::kDeviceState)
            device_state_.assign(reinterpret_cast<const char*>(f->body.data()), f->body.size());
          else {
            RS_ASSIGN_OR_RETURN(device_state_, inflate_device_state(f->body));
          }
          break;
        }
        case FrameType::kDigest: {
          // The hand-off window: no cancel, and no forced exit, until it resolves (cancel.h).
          HandOffWindow window(config_.cancel);
          RS_ASSIGN_OR_RETURN(auto digest, wire::decode_digest(f->body));
          RS_RETURN_IF_ERROR(session_.advance(DestinationEvent::kDigestReceived));
          if (verify_full_) {
            RS_ASSIGN_OR_RETURN(bool equal, check_memory(digest));
            if (!equal) break;  // VERIFY_MISMATCH sent: a repair round, then DIGEST again
          } else {
            RS_RETURN_IF_ERROR(check_digest(digest));
          }
          // Every block reserved before the file is renamed into place.
          if (preparer_) RS_RETURN_IF_ERROR(preparer_->finish());
          RS_RETURN_IF_ERROR(memory_->commit());
          if (config_.inspect_memory)
            config_.inspect_memory({memory_->regions().begin(), memory_->regions().end()});
          // Ready to run before COMMIT, so the hand-off costs only its round trip.
          if (config_.guest || !device_state_.empty()) RS_RETURN_IF_ERROR(adopt_guest());
          RS_RETURN_IF_ERROR(send_control(FrameType::kCommit, {}));
          RS_RETURN_IF_ERROR(session_.advance(DestinationEvent::kCommitSent));
          (void)conn_->flush(0, milliseconds(1000));
          if (config_.test_drop_after_commit) {
            conn_->close();
            return Status(ErrorCode::kDisconnected, "test: dropped the connection after COMMIT");
          }
          if (session_.state() == DestinationState::kImageCommitted) {
            // An image: the source says bye (or just closes); either ends the session.
            auto bye = receive_frame(*conn_, 0, milliseconds(5000));
            if (bye && bye->type != FrameType::kBye)
              log::warn("source sent {} after commit", wire::frame_type_name(bye->type));
            return session_.advance(DestinationEvent::kFinished);
          }
          test_hold("destination-handoff");
          RS_RETURN_IF_ERROR(await_hand_off(*conn_, session_));
          const auto handoff = Clock::now();
          if (guest_ && destination_may_run_guest(session_.state())) guest_->resume();
          if (config_.guest && destination_may_run_guest(session_.state())) config_.guest->resume();
          report_.downtime_detail = DowntimeDetail{.resume_ms = ms_since(handoff)};
          (void)send_control(FrameType::kBye, {});
          (void)conn_->flush(0, milliseconds(1000));
          RS_RETURN_IF_ERROR(run_resumed_guest());
          return session_.advance(DestinationEvent::kFinished);
        }
        default:
          return Status(ErrorCode::kProtocol, fmt::format("unexpected {} on the control queue",
                                                          wire::frame_type_name(f->type)));
      }
    }
  }

  // Post-copy (postcopy_destination.h): the guest runs here at once while its pages follow;
  // if this fails the guest is lost (stopped here, stale on the source).
  Status run_postcopy(std::span<const std::byte> body) {
    HandOffWindow window(config_.cancel);  // no forced exit: the guest would be lost
    RS_RETURN_IF_ERROR(session_.advance(DestinationEvent::kPostcopyStartReceived));
    if (preparer_) RS_RETURN_IF_ERROR(preparer_->finish());  // nothing populates it after
    report_.mode = "postcopy";
    const uint32_t discards = discarded_ ? discarded_->drops() : 0;
    const uint64_t discarded = discarded_ ? discarded_->dropped() : 0;
    PostcopyReceiver pc({*conn_, session_, table_, hello_.page_size, *digest_, postcopy_slot_,
                         [this](FrameType t, auto b) { return send_control(t, b); }, progress_,
                         stop_});
    // Its threads start parked before placing pages competes for the CPU (after: up to 307 ms).
    Status s = adopt_guest();
    if (s)
      s = pc.start(body, memory_->regions(), std::move(discarded_), [this] {
        guest_->resume();
        return Status::ok();
      });
    if (s) s = pc.run();
    report_.postcopy = pc.figures();
    report_.postcopy->discard_rounds = discards;
    report_.postcopy->pages_discarded = discarded;
    report_.rounds = pc.rounds();
    if (s) report_.verify = VerifyReport{"transfer", total_pages_, 0, 0, pc.verify_ms()};
    if (s) s = run_resumed_guest();
    if (s && config_.inspect_memory)  // after it ran here: post-copy never waits paused
      config_.inspect_memory({memory_->regions().begin(), memory_->regions().end()});
    if (s) return session_.advance(DestinationEvent::kFinished);
    if (stop_.load()) s = error_after_stop();
    return s.with_context(
        "post-copy failed, the guest is lost (it ran here without all its memory)");
  }

  // A live guest arrived: take it over, paused (its workload threads start with resume(),
  // after the hand-off). An embedder's guest takes its device state.
  Status adopt_guest() {
    if (config_.guest) return config_.guest->load_device_state(device_state_);
    if (memory_->regions().size() != 1)
      return Status(ErrorCode::kMismatch,
                    "device state is a synthetic guest but the table has several regions");
    RS_ASSIGN_OR_RETURN(
        guest_, guest::SyntheticGuest::adopt_device_state(device_state_, memory_->regions()[0]));
    // No page check here, to keep it off the downtime: the digest proved the memory equals
    // what the source sent (--verify full: the paused source's memory itself), and every
    // page is checked against the guest's generation table after it has run here.
    report_.resumed_verified = false;
    return Status::ok();
  }

  // After the commit: the guest keeps running here for resume_for, then is checked again.
  Status run_resumed_guest() {
    if (!guest_) return Status::ok();
    std::this_thread::sleep_for(config_.resume_for);
    guest_->pause();
    report_.resumed_writes = guest_->writes();
    Status s = guest_->verify().with_context("the guest after running on the destination");
    report_.resumed_verified = s.is_ok();
    return s;
  }

  Status current_error() {
    std::lock_guard lock(mu_);
    return first_error_.is_ok() ? Status(ErrorCode::kCancelled, "stopped") : first_error_;
  }

  void report_progress() {
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

  Status check_digest(const wire::Digest& digest) {
    const auto verify_start = Clock::now();
    RS_RETURN_IF_ERROR(await_final_round(digest));
    std::vector<std::string> names;
    for (const auto& r : table_.regions) names.push_back(r.name);
    Status s = digest_->compare(digest.regions, names);
    report_.verify = VerifyReport{"transfer", total_pages_, 0, 0, ms_since(verify_start)};
    return s;
  }

  // --verify full: this memory, hashed now, against the paused source's. True when equal;
  // false once VERIFY_MISMATCH has asked for the differing chunks again.
  Result<bool> check_memory(const wire::Digest& digest) {
    const auto verify_start = Clock::now();
    RS_RETURN_IF_ERROR(await_final_round(digest));
    std::vector<uint64_t> sizes;
    std::vector<std::span<const std::byte>> memory;
    for (size_t r = 0; r < table_.regions.size(); ++r) {
      sizes.push_back(table_.regions[r].bytes);
      memory.emplace_back(memory_->regions()[r]);
    }
    RS_ASSIGN_OR_RETURN(auto compared, compare_guest_memory(memory, sizes, digest, hello_.page_size,
                                                            hello_.batch_pages));
    const auto& bad = compared.differing;
    VerifyReport& vr = report_.verify ? *report_.verify : report_.verify.emplace();
    vr.mode = "full";
    vr.pages_checked += compared.pages;
    vr.ms += ms_since(verify_start);
    if (bad.empty()) return true;
    if (verify_repairs_ >= kMaxVerifyRepairs)
      return Status(
          ErrorCode::kCorrupt,
          fmt::format("verify full: {} chunk(s) of {} bytes still differ from the "
                      "source's memory after {} repair(s), the first in region '{}' at "
                      "offset {}",
                      bad.size(), digest.chunk_bytes, verify_repairs_,
                      table_.regions[bad[0].region_id].name, bad[0].chunk * digest.chunk_bytes));
    vr.chunks_repaired += bad.size();
    vr.mismatches_repaired +=
        count_pages(pages_of_chunks(bad, sizes, hello_.page_size, hello_.batch_pages));
    log::warn("verify: {} chunk(s) differ from the source's memory; asking for them again",
              bad.size());
    RS_RETURN_IF_ERROR(send_control(FrameType::kVerifyMismatch,
                                    wire::encode(wire::VerifyMismatch{verify_repairs_++, bad})));
    RS_RETURN_IF_ERROR(session_.advance(DestinationEvent::kVerifyMismatchSent));
    return false;
  }

  // Every queue must have finished the final round before memory is compared.
  Status await_final_round(const wire::Digest& digest) {
    {
      std::unique_lock lock(mu_);
      bool all = cv_.wait_for(lock, std::chrono::seconds(600), [&] {
        if (stop_.load()) return true;
        for (uint32_t q = 0; q < queues_; ++q)
          if (state_[q].rounds_done.load() <= digest.final_round) return false;
        return true;
      });
      if (stop_.load()) return first_error_;
      if (!all) return Status(ErrorCode::kTimeout, "data queues did not finish the final round");
    }
    report_.rounds = digest.final_round + 1;
    if (digest.chunk_bytes != digest_->chunk_bytes())
      return Status(ErrorCode::kProtocol,
                    fmt::format("digest chunks of {} bytes; this session's are {}",
                                digest.chunk_bytes, digest_->chunk_bytes()));
    return Status::ok();
  }

  std::unique_ptr<transport::Connection> conn_;
  const DestinationConfig& config_;
  const ProgressFn& progress_;
  wire::Hello hello_;
  wire::RegionTable table_;
  std::unique_ptr<guest::DestinationMemory> memory_;
  std::unique_ptr<pipeline::MemoryDigest> digest_;
  std::string device_state_;
  // Where the protocol stands: image or live guest, whether the guest may run here.
  DestinationSession session_{DestinationState::kAccepted};
  std::unique_ptr<guest::SyntheticGuest> guest_;  // declared after memory_: destroyed first
  uint32_t queues_ = 0;
  uint64_t total_pages_ = 0;
  std::unique_ptr<QueueState[]> state_;
  std::vector<std::thread> threads_;
  std::atomic<bool> stop_{false};
  std::mutex mu_;
  std::condition_variable cv_;
  std::mutex send_mu_;
  std::mutex ack_mu_;
  int64_t acked_rounds_ = 0;
  Status first_error_;
  bool verify_full_ = false;     // --verify full: the source asked for it in HELLO
  uint32_t verify_repairs_ = 0;  // VERIFY_MISMATCH frames sent
  bool placing_ = false;         // guest memory registered for the source's remote writes
  bool postcopy_ = false;        // the source may switch to post-copy (HELLO)
  PlacerSlot postcopy_slot_;     // the post-copy placer, for the data queues
  std::unique_ptr<DiscardedPages> discarded_;  // hybrid: pages dropped before POSTCOPY_START
  std::unique_ptr<MemoryPreparer> preparer_;
  std::atomic<uint64_t> prepared_bytes_{0};
  Clock::time_point start_;
  Clock::time_point last_progress_{};
  MigrationReport report_;
};

}  // namespace

MigrationReport run_destination(std::unique_ptr<transport::Connection> conn,
                                const DestinationConfig& config, const ProgressFn& progress) {
  return DestinationRun(std::move(conn), config, progress).run();
}

}  // namespace ramshift::migration
