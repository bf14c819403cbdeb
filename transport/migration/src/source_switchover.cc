// The rounds' policy, the switch-over round (or post-copy), the verification and the hand-off.
#include <fmt/format.h>

#include <utility>

#include "frame_io.h"
#include "hybrid_discard.h"
#include "postcopy_source.h"
#include "ramshift/base/clock.h"
#include "ramshift/base/log.h"
#include "ramshift/migration/convergence.h"
#include "source_control.h"
#include "source_run.h"
#include "test_hooks.h"
#include "verify.h"

namespace ramshift::migration {

using std::chrono::milliseconds;
using wire::FrameType;

// Rounds 1..n while the guest runs, then the switchover round with it paused.
Status SourceRun::precopy_rounds() {
  ConvergencePolicy policy(config_.convergence);
  RoundDetail last = report_.rounds_detail.back();
  bool aborted = false;  // the last round was a switch-over the guard aborted
  for (uint32_t round = 1;; ++round) {
    RS_ASSIGN_OR_RETURN(Selection dirty, fetch_dirty_pages(guest_));
    const uint64_t dirty_bytes = count_pages(dirty) * config_.page_size;
    // The round's rate counts only pages that travelled: zero pages skipped in round 0 cost
    // nothing and would make the link look faster than it is for the dirty pages to come.
    RoundMeasurement m{round - 1,
                       last.ms / 1000,
                       last.sent_bytes,
                       dirty_bytes,
                       last.wire_bytes,
                       guest_.device_state_bytes(),
                       std::exchange(aborted, false)};
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
      RS_RETURN_IF_ERROR(switchover(round, std::move(dirty), d));
      if (source_guest_paused(session_.state())) RS_RETURN_IF_ERROR(verify());
      if (session_.state() != SourceState::kStreaming) return Status::ok();
      // The guard resumed the guest: the round ran live (a late verdict: the destination
      // dropped its copy), and the policy times it. Rounds go on after the last one sent.
      RS_RETURN_IF_ERROR(too_many_aborted_switchovers());
      last = report_.rounds_detail.back();
      round = report_.rounds - 1;
      aborted = true;
      continue;
    }
    RS_RETURN_IF_ERROR(stream_round(round, dirty));
    last = report_.rounds_detail.back();
  }
}

// Pause, send what is still dirty and the device state (verify() and hand_off() follow).
// A switch-over whose prediction fits the limit is guarded (switchover.h): if its pages are
// not placed in time the guest runs again, and the caller finds it no longer paused.
Status SourceRun::switchover(uint32_t round, Selection dirty, const Decision& decision) {
  RS_RETURN_IF_ERROR(cancel_if_asked());
  RS_RETURN_IF_ERROR(session_.advance(SourceEvent::kGuestPaused));
  // Each switch-over times its own parts; the aborted ones before it are counted.
  downtime_ = DowntimeDetail{.predicted_ms = decision.expected_downtime_ms,
                             .aborted_switchovers = downtime_.aborted_switchovers,
                             .longest_aborted_pause_ms = downtime_.longest_aborted_pause_ms};
  pause_time_ = Clock::now();
  downtime_clock_.start();
  guest_.pause();
  const double limit_ms = static_cast<double>(config_.convergence.downtime_limit.count());
  guard_ = SwitchoverGuard(pause_time_, limit_ms, decision);
  test_hold("source-switchover");
  RS_ASSIGN_OR_RETURN(Selection more, fetch_dirty_pages(guest_));
  merge_selection(dirty, more);
  // The paused guest's device state is final: it is read (and compressed, on a slow link)
  // while the last pages go, and sent once they are placed.
  device_state_ = prepare_device_state(
      guest_, compress_device_state(peer_capabilities_, config_.codec.mode, link_rate_));
  Status pages = stream_round(round, dirty);
  downtime_.last_pages_ms = downtime_clock_.lap();
  DeviceStateFrame frame = device_state_.get();  // joined before any return
  RS_RETURN_IF_ERROR(pages);
  // Placed, but too late for what follows to fit: still the source's pause alone.
  RS_RETURN_IF_ERROR(resume_if_overdue());
  if (!source_guest_paused(session_.state())) return Status::ok();
  // --verify full hashes all of memory on both ends from here, a cost the policy does not
  // predict: only its pages are guarded (switchover.h).
  guard_.watch_verdict((peer_capabilities_ & wire::kCapSwitchoverAbort) != 0 &&
                       config_.verify != VerifyMode::kFull);
  RS_RETURN_IF_ERROR(send_device_state(frame));
  downtime_.device_state_ms = downtime_clock_.lap();
  return Status::ok();
}

Status SourceRun::send_device_state(const DeviceStateFrame& frame) {
  if (!frame.status) return frame.status;
  downtime_.device_state_bytes = frame.raw_bytes;
  downtime_.device_state_wire_bytes = frame.body.size();
  return send_control(frame.type, frame.body);
}

// Post-copy (postcopy_source.h): pause, hand the guest over now, then its pages.
Status SourceRun::go_postcopy(uint32_t rounds, Selection dirty) {
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
  const wire::PostcopyStart start{rounds,
                                  postcopy_pages(guest_.regions(), config_.page_size, dirty, more)};
  const bool compress = compress_device_state(peer_capabilities_, config_.codec.mode, link_rate_);
  RS_RETURN_IF_ERROR(send_device_state(read_device_state(guest_, compress)));
  HandOffWindow window(config_.cancel);  // from here a forced exit would lose the guest
  RS_RETURN_IF_ERROR(send_control(FrameType::kPostcopyStart, wire::encode(start)));
  Status s = serve_postcopy({*conn_, session_, guest_.regions(), config_, *digest_, progress_},
                            start, pause_time_, report_);
  record_discard(discard, report_);
  return s;
}

// DIGEST, then COMMIT; with --verify full, of the paused guest's memory hashed anew, and
// each VERIFY_MISMATCH answered by a repair round of the chunks it lists.
Status SourceRun::verify() {
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
  // Every switch-over's checks and repairs, aborted ones included (as the destination counts).
  VerifyReport& vr = report_.verify ? *report_.verify : report_.verify.emplace();
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
    digest_sent_ = Clock::now();
    RS_ASSIGN_OR_RETURN(
        auto verdict,
        await_verdict(
            *conn_, session_, config_.verdict_timeout,
            [this](std::span<const std::byte> b) { return absorb_keys(b); }, config_.cancel,
            guard_.watching_verdict() ? std::optional(guard_.deadline()) : std::nullopt));
    if (verdict.overdue) return abort_switchover();
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
  guard_.disarm();
  vr.ms += ms_since(verify_start);
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
Status SourceRun::hand_off() {
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

// The guard's deadline passed with the guest still paused and nothing of the switch-over
// sent but pages: the guest runs again, and the round in flight finishes as a live round
// (dirty tracking never stopped, so what the guest writes now is sent again later).
Status SourceRun::resume_if_overdue() {
  if (guard_.watching_verdict() || !guard_.overdue(Clock::now())) return Status::ok();
  guard_.disarm();
  // The device state is read from the paused guest on another thread: done first.
  if (device_state_.valid()) device_state_.wait();
  const double paused_ms = ms_since(pause_time_);
  guest_.resume();
  RS_RETURN_IF_ERROR(session_.advance(SourceEvent::kGuestResumed));
  count_aborted_switchover(paused_ms, "its last pages were not placed",
                           "the device state and hand-off");
  return Status::ok();
}

// The guard's second stage (switchover.h): no COMMIT on the DIGEST by its deadline. The
// guest runs here again, and the destination, which never ran it (no HANDOFF was sent),
// drops its copy; a COMMIT it sent before it read the abort is dropped here. The guest is
// resumed before the abort is sent: nothing the destination does can run it without a
// HANDOFF, and sending first kept it paused for the send and its flush, past the
// guard's deadline on a starved host.
Status SourceRun::abort_switchover() {
  guard_.disarm();  // its tail_ms() stays for the log
  const double paused_ms = ms_since(pause_time_);
  guest_.resume();
  RS_RETURN_IF_ERROR(session_.advance(SourceEvent::kGuestResumed));
  count_aborted_switchover(paused_ms, "the destination's COMMIT had not come", "the hand-off");
  RS_RETURN_IF_ERROR(send_control(FrameType::kSwitchoverAbort, {}));
  // At most one COMMIT can have crossed the abort; a second is the peer's error, not a loop.
  for (int crossed = 0;; ++crossed) {
    RS_ASSIGN_OR_RETURN(auto v, await_verdict(
                                    *conn_, session_, config_.verdict_timeout,
                                    [this](std::span<const std::byte> b) { return absorb_keys(b); },
                                    config_.cancel));
    if (v.type == FrameType::kSwitchoverAborted) break;
    if (crossed > 0)
      return Status(ErrorCode::kProtocol,
                    "the destination sent a second commit after the switch-over was aborted");
    log::info("the destination's {} came {:.0f} ms after its digest, too late: dropped",
              wire::frame_type_name(v.type), ms_since(digest_sent_));
  }
  log::info("the destination dropped its copy {:.0f} ms after the digest; pre-copy goes on",
            ms_since(digest_sent_));
  return Status::ok();
}

void SourceRun::count_aborted_switchover(double paused_ms, const char* what, const char* kept_for) {
  ++downtime_.aborted_switchovers;
  downtime_.longest_aborted_pause_ms = std::max(downtime_.longest_aborted_pause_ms, paused_ms);
  aborted_pauses_ms_.push_back(paused_ms);
  log::warn(
      "switch-over aborted: {} {:.0f} ms after the pause (predicted {:.0f} ms; {:.0f} ms of "
      "--downtime-limit {} ms kept for {}); the guest runs again and pre-copy goes on",
      what, paused_ms, downtime_.predicted_ms, guard_.tail_ms(),
      config_.convergence.downtime_limit.count(), kept_for);
}

// Each abort costs the guest a pause under the limit and the migration a round. Why three:
// a prediction that missed three times is not a measurement of this link and guest any more,
// and the choice between a longer limit and no migration is the operator's.
Status SourceRun::too_many_aborted_switchovers() const {
  constexpr size_t kMaxAbortedSwitchovers = 3;
  if (aborted_pauses_ms_.size() < kMaxAbortedSwitchovers) return Status::ok();
  std::string pauses;
  for (double ms : aborted_pauses_ms_)
    pauses += fmt::format("{}{:.0f}", pauses.empty() ? "" : ", ", ms);
  return Status(
      ErrorCode::kTimeout,
      fmt::format("the switch-over would have run past --downtime-limit {} ms {} times "
                  "(paused {} ms before the guest was resumed each time); the guest "
                  "keeps running here: raise --downtime-limit, or find what slows the "
                  "link or the destination",
                  config_.convergence.downtime_limit.count(), aborted_pauses_ms_.size(), pauses));
}

}  // namespace ramshift::migration
