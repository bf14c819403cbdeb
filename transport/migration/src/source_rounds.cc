// One round of pages over every queue, and the control thread's watch while it runs.
#include <fmt/format.h>

#include <algorithm>
#include <thread>

#include "frame_io.h"
#include "ramshift/base/clock.h"
#include "source_control.h"
#include "source_run.h"
#include "test_hooks.h"

namespace ramshift::migration {

using std::chrono::milliseconds;
using wire::FrameType;

namespace {
// How long the control thread waits on the control queue between looks at the queue
// threads, `done` of `total` pages handled `elapsed` into the round. A frame from the
// destination ends the wait at once; only the end of the round must be seen by looking, and
// each look is a recv and a poll. Looking every 1 ms took a seventh of a core on the sender
// (2.3 CPU-s of a 16.6 s send of real-files over 1 Gbit/s under perf, as much as either
// queue thread: system calls are dear on a virtual machine). So the wait is a quarter of
// what the round still needs at its pace so far, from 1 ms to 50 ms (progress is reported
// every 100 ms); while the guest is paused (downtime), 1 ms.
milliseconds control_wait(bool paused, uint64_t done, uint64_t total,
                          std::chrono::steady_clock::duration elapsed) {
  constexpr milliseconds kShort{1}, kLong{50};
  if (paused || done == 0 || done >= total) return kShort;
  const double left = std::chrono::duration<double, std::milli>(elapsed).count() *
                      static_cast<double>(total - done) / static_cast<double>(done);
  return milliseconds(
      std::clamp<int64_t>(static_cast<int64_t>(left / 4), kShort.count(), kLong.count()));
}
}  // namespace

Status SourceRun::stream_round(uint32_t round, const Selection& selection) {
  const uint32_t n = config_.queues;
  const auto round_start = Clock::now();
  stats_ = std::make_unique<QueueStats[]>(n);
  finished_ = 0;
  uint64_t total_pages = 0;
  for (uint32_t r = 0; r < guest_.regions().size(); ++r)
    total_pages +=
        selection[r] ? selection[r]->size() : guest_.regions()[r].memory.size() / config_.page_size;
  const uint64_t wire_before = report_.wire_bytes;
  round_paused_ = source_guest_paused(session_.state());  // before the threads read it
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
    control = resume_if_overdue();  // a guarded switch-over whose pages run late
    if (control) control = cancel_if_asked();
    if (!control) {
      // Tell the destination now, before the data queues close under it.
      send_error_frame(*conn_, control);
      error_sent_ = true;
      break;
    }
    transport::ConstBuffer msg[1];
    auto got = conn_->poll(
        0, msg, control_wait(round_paused_, done, total_pages, Clock::now() - round_start));
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
Progress SourceRun::snapshot(uint32_t round, uint64_t total, uint64_t done, uint64_t wire) const {
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
Status SourceRun::peer_error_or(Status lost) {
  auto f = receive_frame(*conn_, 0, milliseconds(200));
  while (f && f->type == FrameType::kMemoryKeys) f = receive_frame(*conn_, 0, milliseconds(200));
  if (!f || f->type != FrameType::kError) return lost;
  session_.fail(SourceEvent::kErrorReceived);
  return peer_error(f->body, "destination");
}

Status SourceRun::await_round_ack(uint32_t round) {
  if (early_ack_ == round + 1) return Status::ok();
  // A guarded switch-over waits until its deadline first: if the acknowledgement is late the
  // guest runs again while the round ends live (a timeout consumes no frame).
  if (guard_.armed()) {
    const auto left = std::chrono::ceil<milliseconds>(guard_.deadline() - Clock::now());
    auto early = await(FrameType::kRoundEnd, std::max(left, milliseconds(0)));
    if (!early && early.status().code() != ErrorCode::kTimeout) return early.status();
    if (early) return check_round_ack(*early, round);
    RS_RETURN_IF_ERROR(resume_if_overdue());
  }
  RS_ASSIGN_OR_RETURN(auto body, await(FrameType::kRoundEnd, config_.verdict_timeout));
  return check_round_ack(body, round);
}

Status SourceRun::check_round_ack(std::span<const std::byte> body, uint32_t round) {
  RS_ASSIGN_OR_RETURN(auto ack, wire::decode_round_end(body));
  if (ack.round != round || ack.queue != config_.queues)
    return Status(ErrorCode::kProtocol,
                  fmt::format("destination acknowledged round {} (queue {}) while round {} ended",
                              ack.round, ack.queue, round));
  return Status::ok();
}

void SourceRun::queue_main(uint32_t q, uint32_t round, const Selection& selection) {
  pin_queue_thread(config_.queue_cpus, q);
  if (q == 0 && round_paused_) test_hold("source-paused-round");
  // One encoder per queue for the whole migration: its XBZRLE cache must outlive rounds.
  if (!encoders_[q])
    encoders_[q] = std::make_unique<pipeline::BatchEncoder>(config_.codec, config_.page_size,
                                                            config_.batch_pages, cache_per_queue_);
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

}  // namespace ramshift::migration
