#include "ramshift/migration/source.h"

#include <fmt/format.h>

#include <algorithm>
#include <atomic>
#include <memory>
#include <thread>
#include <vector>

#include "frame_io.h"
#include "hybrid_discard.h"
#include "memory_preparer.h"
#include "postcopy_source.h"
#include "queue_stream.h"
#include "ramshift/base/clock.h"
#include "ramshift/base/log.h"
#include "ramshift/migration/convergence.h"
#include "ramshift/migration/session_state.h"
#include "ramshift/pipeline/batch_encoder.h"
#include "ramshift/pipeline/checksum.h"
#include "ramshift/pipeline/compression_governor.h"
#include "ramshift/transport/transport.h"
#include "rate_limiter.h"
#include "remote_memory.h"
#include "source_control.h"
#include "switchover.h"
#include "test_hooks.h"
#include "verify.h"

namespace ramshift::migration {
namespace {

using Clock = std::chrono::steady_clock;
using std::chrono::milliseconds;
using wire::FrameType;

class SourceRun {
 public:
  SourceRun(guest::SourceGuest& guest, const SourceConfig& config, const ProgressFn& progress)
      : guest_(guest),
        config_(config),
        progress_(progress),
        governor_(pipeline::codec_may_compress(config.codec.mode),
                  config.codec.mode != pipeline::CodecMode::kAuto),
        limiter_(config.bandwidth_limit, config.live_bandwidth_limit) {}

  MigrationReport run() {
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

 private:
  Status migrate() {
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
    if (s) s = verify();
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
  Status cancel_if_asked() {
    if (cancel_requested(config_.cancel) && session_.cancel().is_ok())
      return config_.cancel->status("source");
    return Status::ok();
  }

  using Selection = PageSelection;
  Selection all_pages() const { return Selection(guest_.regions().size()); }

  // Rounds 1..n while the guest runs, then the switchover round with it paused.
  Status precopy_rounds() {
    ConvergencePolicy policy(config_.convergence);
    RoundDetail last = report_.rounds_detail.back();
    for (uint32_t round = 1;; ++round) {
      RS_ASSIGN_OR_RETURN(Selection dirty, fetch_dirty_pages(guest_));
      const uint64_t dirty_bytes = count_pages(dirty) * config_.page_size;
      // The round's rate counts only pages that travelled: zero pages skipped in round 0 cost
      // nothing and would make the link look faster than it is for the dirty pages to come.
      RoundMeasurement m{round - 1,   last.ms / 1000,  last.sent_bytes,
                         dirty_bytes, last.wire_bytes, guest_.device_state_bytes()};
      Decision d = policy.after_round(m);
      auto& detail = report_.rounds_detail.back();
      detail.dirty_bytes_after = dirty_bytes;
      detail.expected_downtime_ms = d.expected_downtime_ms;
      log::info("round {}: {}", round - 1, d.reason);
      link_rate_ = policy.bulk_rate();
      if (hybrid_switches(config_, d, m, round)) return go_postcopy(round, std::move(dirty));
      if (d.kind == Decision::kFail) return Status(ErrorCode::kTimeout, d.reason);
      if (d.kind == Decision::kThrottle) {
        guest_.set_throttle(d.throttle_pct);
        report_.throttle_pct = d.throttle_pct;
      }
      if (d.kind == Decision::kSwitchover) {
        downtime_.predicted_ms = d.expected_downtime_ms;
        return switchover(round, std::move(dirty));
      }
      RS_RETURN_IF_ERROR(stream_round(round, dirty));
      last = report_.rounds_detail.back();
    }
  }

  // Pause, send what is still dirty, the device state and the digest; wait for the commit.
  Status switchover(uint32_t round, Selection dirty) {
    RS_RETURN_IF_ERROR(cancel_if_asked());
    RS_RETURN_IF_ERROR(session_.advance(SourceEvent::kGuestPaused));
    pause_time_ = Clock::now();
    downtime_clock_.start();
    guest_.pause();
    test_hold("source-switchover");
    RS_ASSIGN_OR_RETURN(Selection more, fetch_dirty_pages(guest_));
    merge_selection(dirty, more);
    // The paused guest's device state is final: it is read (and compressed, on a slow link)
    // while the last pages go, and sent once they are placed.
    auto state = prepare_device_state(
        guest_, compress_device_state(peer_capabilities_, config_.codec.mode, link_rate_));
    Status pages = stream_round(round, dirty);
    downtime_.last_pages_ms = downtime_clock_.lap();
    DeviceStateFrame frame = state.get();  // joined before any return
    RS_RETURN_IF_ERROR(pages);
    RS_RETURN_IF_ERROR(send_device_state(frame));
    downtime_.device_state_ms = downtime_clock_.lap();
    return Status::ok();
  }

  Status send_device_state(const DeviceStateFrame& frame) {
    if (!frame.status) return frame.status;
    downtime_.device_state_bytes = frame.raw_bytes;
    downtime_.device_state_wire_bytes = frame.body.size();
    return send_control(frame.type, frame.body);
  }

  // Post-copy (postcopy_source.h): pause, hand the guest over now, then its pages.
  Status go_postcopy(uint32_t rounds, Selection dirty) {
    RS_RETURN_IF_ERROR(cancel_if_asked());
    DiscardFigures discard;
    if (rounds > 0 && (peer_capabilities_ & wire::kCapPostcopyDiscard)) {  // hybrid_discard.h
      DiscardLink link{[this](FrameType t, auto b) { return send_control(t, b); },
                       [this](FrameType t, milliseconds ms) { return await(t, ms); },
                       [this] { return fetch_dirty_pages(guest_); }};
      RS_ASSIGN_OR_RETURN(discard,
                          discard_while_running(link, guest_.regions(), config_.page_size, dirty));
    }
    RS_RETURN_IF_ERROR(session_.advance(SourceEvent::kGuestPaused));
    pause_time_ = Clock::now();
    guest_.pause();
    RS_ASSIGN_OR_RETURN(Selection more, fetch_dirty_pages(guest_));
    guest_.stop_dirty_log();  // paused for good: post-copy pins the memory for reads
    const wire::PostcopyStart start{
        rounds, postcopy_pages(guest_.regions(), config_.page_size, dirty, more)};
    const bool compress = compress_device_state(peer_capabilities_, config_.codec.mode, link_rate_);
    RS_RETURN_IF_ERROR(send_device_state(read_device_state(guest_, compress)));
    HandOffWindow window(config_.cancel);  // from here a forced exit would lose the guest
    RS_RETURN_IF_ERROR(send_control(FrameType::kPostcopyStart, wire::encode(start)));
    Status s = serve_postcopy({*conn_, session_, guest_.regions(), config_, *digest_, progress_},
                              start, pause_time_, report_);
    record_discard(discard, report_);
    return s;
  }

  Status send_control(FrameType type, std::span<const std::byte> body) {
    auto n = send_frame(*conn_, 0, type, body, milliseconds(10000));
    if (!n) return n.status();
    wire_control_ += *n;
    auto event = source_sent_event(type);  // none for the courtesy BYE after an image's COMMIT
    return event ? session_.advance(*event) : Status::ok();
  }

  // The next control frame of type `want`; MEMORY_KEYS are taken in passing.
  Result<std::vector<std::byte>> await(FrameType want, milliseconds timeout) {
    return await_control_frame(
        *conn_, session_, want, timeout,
        [this](std::span<const std::byte> body) { return absorb_keys(body); }, config_.cancel);
  }

  Status handshake() {
    const wire::Hello hello = source_hello(config_, !guest_.immutable());
    cache_per_queue_ = hello.xbzrle_cache_per_queue;
    report_.xbzrle_cache_bytes = cache_per_queue_ * config_.queues;
    encoders_.resize(config_.queues);
    std::vector<uint64_t> sizes;
    for (const auto& r : guest_.regions()) sizes.push_back(r.bytes);
    digest_ = std::make_unique<pipeline::MemoryDigest>(sizes, config_.page_size,
                                                       config_.batch_pages, false);
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
  Status start_placement() {
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
  Status absorb_keys(std::span<const std::byte> body) {
    if (!placing_)
      return Status(ErrorCode::kProtocol, "memory_keys on a connection without one-sided writes");
    RS_ASSIGN_OR_RETURN(auto keys, wire::decode_memory_keys(body, table_, config_.page_size));
    RS_RETURN_IF_ERROR(session_.advance(SourceEvent::kMemoryKeysReceived));
    RS_RETURN_IF_ERROR(remote_.add(keys));
    if (!keys_logged_ && remote_.keyed_bytes() >= report_.guest_bytes) {
      keys_logged_ = true;
      log::info("all destination memory writable directly after {:.0f} ms", ms_since(start_));
    }
    return Status::ok();
  }

  Status stream_round(uint32_t round, const Selection& selection) {
    const uint32_t n = config_.queues;
    const auto round_start = Clock::now();
    stats_ = std::make_unique<QueueStats[]>(n);
    finished_ = 0;
    uint64_t total_pages = 0;
    for (uint32_t r = 0; r < guest_.regions().size(); ++r)
      total_pages += selection[r] ? selection[r]->size()
                                  : guest_.regions()[r].memory.size() / config_.page_size;
    const uint64_t wire_before = report_.wire_bytes;
    std::vector<std::thread> threads;
    for (uint32_t q = 0; q < n; ++q)
      threads.emplace_back([this, q, round, &selection] { queue_main(q, round, selection); });

    // Control thread: watch for an early ERROR from the destination and report progress.
    Status control;
    auto last_progress = Clock::now() - milliseconds(1000);
    for (;;) {
      uint64_t done = 0, wire = 0;
      for (uint32_t q = 0; q < n; ++q) {
        done += stats_[q].pages_done.load(std::memory_order_relaxed);
        wire += stats_[q].wire_bytes.load(std::memory_order_relaxed);
      }
      if (progress_ && Clock::now() - last_progress >= milliseconds(100)) {
        progress_(snapshot(round, total_pages, done, report_.wire_bytes + wire));
        last_progress = Clock::now();
      }
      if (finished_.load() == n) break;
      control = cancel_if_asked();
      if (!control) {
        // Tell the destination now, before the data queues close under it.
        send_error_frame(*conn_, control);
        error_sent_ = true;
        break;
      }
      transport::ConstBuffer msg[1];
      // Short waits: the end of the round is noticed within 1 ms (it is part of downtime in
      // the final round).
      auto got = conn_->poll(0, msg, milliseconds(1));
      if (!got) {
        if (!abort_.load()) control = got.status().with_context("destination");
        break;
      }
      if (*got == 1) {
        auto f = wire::parse_frame(msg[0]);
        if (!f)
          control = f.status();
        else if (f->type == FrameType::kError) {
          session_.fail(SourceEvent::kErrorReceived);
          control = peer_error(f->body, "destination");
        } else if (f->type == FrameType::kMemoryKeys) {
          control = absorb_keys(f->body);
          if (control.is_ok()) continue;
        } else if (f->type == FrameType::kRoundEnd) {
          // The destination finished this round before our threads noticed: keep it.
          auto ack = wire::decode_round_end(f->body);
          if (ack && ack->round == round && ack->queue == config_.queues) {
            early_ack_ = round + 1;
            control = session_.advance(SourceEvent::kRoundEndReceived);
            if (control.is_ok()) continue;
            break;
          }
          control =
              ack ? Status(ErrorCode::kProtocol, "unexpected round acknowledgement") : ack.status();
        } else {
          control = Status(ErrorCode::kProtocol,
                           fmt::format("unexpected {} from the destination during round {}",
                                       wire::frame_type_name(f->type), round));
        }
        break;
      }
    }
    if (!control) {
      abort_ = true;
      conn_->close();
    }
    for (auto& t : threads) t.join();
    Status first = control;
    for (uint32_t q = 0; q < n; ++q) {
      report_.pages += stats_[q].counts;
      report_.wire_bytes += stats_[q].wire_bytes.load();
      if (control.is_ok()) keep_first_cause(first, stats_[q].status);
    }
    report_.rounds = round + 1;
    RoundDetail detail;
    detail.round = round;
    detail.pages = total_pages;
    detail.guest_bytes = total_pages * config_.page_size;
    uint64_t skipped = 0;
    for (uint32_t q = 0; q < n; ++q) skipped += stats_[q].counts.zero_unsent;
    detail.sent_bytes = (total_pages - std::min(total_pages, skipped)) * config_.page_size;
    detail.wire_bytes = report_.wire_bytes - wire_before;
    if (control.is_ok() && first.code() == ErrorCode::kDisconnected) first = peer_error_or(first);
    // The round ends when the destination has placed all of it (its ROUND_END on queue 0).
    if (first.is_ok()) first = await_round_ack(round);
    detail.ms = std::chrono::duration<double, std::milli>(Clock::now() - round_start).count();
    detail.throttle_pct = report_.throttle_pct;
    report_.rounds_detail.push_back(detail);
    if (progress_ && first.is_ok())
      progress_(snapshot(round, total_pages, total_pages, report_.wire_bytes));
    if (!first.is_ok() && first.code() == ErrorCode::kDisconnected)
      return Status(ErrorCode::kDisconnected,
                    fmt::format("the destination went away during round {} ({}); nothing on the "
                                "source was changed",
                                round, first.message()));
    return first;
  }

  // The progress snapshot (progress.h) during round `round`, `done` of its `total` pages
  // handled: the numbers the report keeps, plus this round's so far.
  Progress snapshot(uint32_t round, uint64_t total, uint64_t done, uint64_t wire) const {
    Progress p;
    p.status = MigrationStatus::kActive;
    p.round = round;
    p.total_bytes = total * config_.page_size;
    p.done_bytes = done * config_.page_size;
    p.transferred_bytes = p.done_bytes;
    for (const auto& d : report_.rounds_detail)
      if (d.round < round) p.transferred_bytes += d.guest_bytes;
    p.wire_bytes = wire + wire_control_;
    if (!report_.rounds_detail.empty()) {
      const RoundDetail& last = report_.rounds_detail.back();
      p.dirty_rate_bytes_per_s = last.ms > 0 ? last.dirty_bytes_after / (last.ms / 1000) : 0;
      p.expected_downtime_ms = last.expected_downtime_ms;
    }
    p.setup_ms = report_.setup_ms;
    p.elapsed_s = ms_since(start_) / 1000;
    p.paused = source_guest_paused(session_.state());
    p.bandwidth_limit = limiter_.rate();
    return p;
  }

  // A destination that fails (or is cancelled) sends ERROR on the control queue and then
  // closes every queue; a data queue may see the close first. The ERROR says why.
  Status peer_error_or(Status lost) {
    auto f = receive_frame(*conn_, 0, milliseconds(200));
    while (f && f->type == FrameType::kMemoryKeys) f = receive_frame(*conn_, 0, milliseconds(200));
    if (!f || f->type != FrameType::kError) return lost;
    session_.fail(SourceEvent::kErrorReceived);
    return peer_error(f->body, "destination");
  }

  Status await_round_ack(uint32_t round) {
    if (early_ack_ == round + 1) return Status::ok();
    RS_ASSIGN_OR_RETURN(auto body, await(FrameType::kRoundEnd, config_.verdict_timeout));
    RS_ASSIGN_OR_RETURN(auto ack, wire::decode_round_end(body));
    if (ack.round != round || ack.queue != config_.queues)
      return Status(ErrorCode::kProtocol,
                    fmt::format("destination acknowledged round {} (queue {}) while round {} ended",
                                ack.round, ack.queue, round));
    return Status::ok();
  }

  void queue_main(uint32_t q, uint32_t round, const Selection& selection) {
    pin_queue_thread(config_.queue_cpus, q);
    // One encoder per queue for the whole migration: its XBZRLE cache must outlive rounds.
    if (!encoders_[q])
      encoders_[q] = std::make_unique<pipeline::BatchEncoder>(
          config_.codec, config_.page_size, config_.batch_pages, cache_per_queue_);
    const StreamShared shared{*conn_,
                              config_,
                              guest_.regions(),
                              guest_.immutable(),
                              governor_,
                              limiter_,
                              *digest_,
                              abort_,
                              placing_ ? local_prep_.get() : nullptr,
                              &remote_};
    Status s = stream_queue(shared, q, round, selection, *encoders_[q], stats_[q]);
    // A closed peer leaves the control queue open: the ERROR it sent before closing may be
    // there (stream_round reads it); other failures close everything to wake the other queues.
    if (!s && !abort_.exchange(true) && s.code() != ErrorCode::kDisconnected) conn_->close();
    if (!s) stats_[q].status = s;
    finished_.fetch_add(1);
  }

  // DIGEST, then COMMIT; with --verify full, of the paused guest's memory hashed anew, and
  // each VERIFY_MISMATCH answered by a repair round of the chunks it lists.
  Status verify() {
    if (source_in_postcopy(session_.state())) {  // memory as at the pause, all of it hashed
      const wire::Digest digest{report_.rounds, static_cast<uint32_t>(digest_->chunk_bytes()),
                                digest_->chunk_hashes()};
      RS_RETURN_IF_ERROR(send_control(FrameType::kDigest, wire::encode(digest)));
      return await(FrameType::kCommit, config_.verdict_timeout).status();
    }
    // From DIGEST on the hand-off may start (COMMIT releases the guest): a second signal must
    // not end the process before it resolves (cancel.h). A cancel before COMMIT still counts.
    HandOffWindow window(guest_.immutable() ? nullptr : config_.cancel);
    const auto verify_start = Clock::now();
    VerifyReport& vr = report_.verify.emplace();
    vr.mode = verify_mode_name(config_.verify);
    std::vector<uint64_t> sizes;
    std::vector<std::span<const std::byte>> memory;
    for (const auto& r : guest_.regions()) {
      sizes.push_back(r.bytes);
      memory.emplace_back(r.memory);
    }
    for (uint32_t attempt = 0;; ++attempt) {
      wire::Digest digest;
      digest.final_round = report_.rounds - 1;
      digest.chunk_bytes = static_cast<uint32_t>(digest_->chunk_bytes());
      if (config_.verify == VerifyMode::kFull) {
        const auto hash_start = Clock::now();
        auto full = hash_guest_memory(memory, sizes, config_.page_size, config_.batch_pages);
        downtime_.verify_full_ms += ms_since(hash_start);
        digest.regions = std::move(full.chunks);
        vr.pages_checked += full.pages;
      } else {
        digest.regions = digest_->chunk_hashes();
        vr.pages_checked += report_.guest_bytes / config_.page_size;
      }
      RS_RETURN_IF_ERROR(send_control(FrameType::kDigest, wire::encode(digest)));
      RS_ASSIGN_OR_RETURN(
          auto verdict,
          await_verdict(
              *conn_, session_, config_.verdict_timeout,
              [this](std::span<const std::byte> b) { return absorb_keys(b); }, config_.cancel));
      if (verdict.type == FrameType::kCommit) break;
      std::vector<uint64_t> chunk_counts;
      for (const auto& r : digest.regions) chunk_counts.push_back(r.size());
      RS_ASSIGN_OR_RETURN(auto mismatch, wire::decode_verify_mismatch(verdict.body, chunk_counts));
      if (attempt >= kMaxVerifyRepairs)
        return Status(ErrorCode::kProtocol, "the destination asked for more repairs than allowed");
      auto resend = pages_of_chunks(mismatch.chunks, sizes, config_.page_size, config_.batch_pages);
      vr.chunks_repaired += mismatch.chunks.size();
      vr.mismatches_repaired += count_pages(resend);
      log::warn(
          "verify: the destination's memory differs in {} chunk(s); resending their {} "
          "page(s)",
          mismatch.chunks.size(), count_pages(resend));
      RS_RETURN_IF_ERROR(stream_round(report_.rounds, resend));
    }
    vr.ms = ms_since(verify_start);
    downtime_.verify_ms = downtime_clock_.lap();
    if (session_.state() == SourceState::kDone) {  // an image: nothing runs on either side
      (void)send_control(FrameType::kBye, {});
      (void)conn_->flush(0, milliseconds(1000));
      return Status::ok();
    }
    return hand_off();
  }

  // The destination holds a verified copy of the paused guest and waits. From the moment
  // HANDOFF may leave, the guest belongs to the destination: the source never resumes it
  // again, even if the connection breaks now. So the guest can never run on both hosts; if
  // the connection breaks before HANDOFF arrives, it runs on neither until an operator
  // decides (both commands say so) — the one outcome no protocol between two hosts can rule
  // out, and the safe one: the guest is intact and paused on both sides.
  Status hand_off() {
    const char* limbo =
        "the destination verified its copy but the connection broke during the hand-off, so "
        "it may not have started the guest; the source guest stays paused (it was handed "
        "over): check the destination before resuming either";
    test_hold("source-handoff");
    if (!send_control(FrameType::kHandOff, {}).is_ok() ||
        !conn_->flush(0, milliseconds(5000)).is_ok())
      return Status(ErrorCode::kDisconnected, limbo);
    // Downtime ends when the guest runs there: the destination's BYE says it does.
    auto bye = await(FrameType::kBye, milliseconds(10000));
    if (!bye) return Status(ErrorCode::kDisconnected, limbo);
    downtime_.handoff_ms = downtime_clock_.lap();
    report_.downtime_ms = downtime_clock_.total_ms();
    report_.downtime_detail = downtime_;
    return Status::ok();
  }

  guest::SourceGuest& guest_;
  const SourceConfig& config_;
  const ProgressFn& progress_;
  pipeline::CompressionGovernor governor_;
  RateLimiter limiter_;
  std::unique_ptr<transport::Connection> conn_;
  std::unique_ptr<QueueStats[]> stats_;
  std::unique_ptr<pipeline::MemoryDigest> digest_;
  std::vector<std::unique_ptr<pipeline::BatchEncoder>> encoders_;  // per data queue
  std::atomic<bool> abort_{false};
  std::atomic<uint32_t> finished_{0};
  SourceSession session_{SourceState::kConnecting};  // whether the guest may be resumed, too
  uint32_t early_ack_ = 0;  // round + 1 of an acknowledgement taken during the round
  Clock::time_point pause_time_;
  DowntimeClock downtime_clock_;    // from the switch-over's pause
  uint64_t peer_capabilities_ = 0;  // the destination's HELLO
  double link_rate_ = 0;            // the rounds' bulk rate when the switch-over began
  DowntimeDetail downtime_;         // its parts so far
  uint64_t cache_per_queue_ = 0;
  bool placing_ = false;  // raw pages travel as one-sided writes (rdma)
  bool keys_logged_ = false;
  wire::RegionTable table_;
  RemoteMemory remote_;                         // destination memory keyed so far
  std::unique_ptr<MemoryPreparer> local_prep_;  // after conn_: its threads use it
  uint64_t wire_control_ = 0;
  bool error_sent_ = false;  // the ERROR frame went out already (a cancel during a round)
  Clock::time_point start_;
  MigrationReport report_;
};

}  // namespace

MigrationReport run_source(guest::SourceGuest& guest, const SourceConfig& config,
                           const ProgressFn& progress) {
  SourceConfig resolved = config;
  if (resolved.batch_pages == 0)
    resolved.batch_pages = default_batch_pages(resolved.to.scheme, resolved.page_size);
  return SourceRun(guest, resolved, progress).run();
}

}  // namespace ramshift::migration
