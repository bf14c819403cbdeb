// The destination's control loop: the switch-over's device state and digest, the commit and
// the hand-off (or a switch-over the source aborted), and post-copy.
#include <fmt/format.h>

#include "destination_control.h"
#include "destination_run.h"
#include "frame_io.h"
#include "ramshift/base/clock.h"
#include "ramshift/base/log.h"
#include "test_hooks.h"
#include "verify.h"

namespace ramshift::migration {

using std::chrono::milliseconds;
using wire::FrameType;

Status DestinationRun::control_loop() {
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
        RS_ASSIGN_OR_RETURN(bool over, take_digest(f->body));
        if (over) return Status::ok();
        break;  // a repair round follows, or pre-copy again (an aborted switch-over)
      }
      default:
        return Status(ErrorCode::kProtocol, fmt::format("unexpected {} on the control queue",
                                                        wire::frame_type_name(f->type)));
    }
  }
}

// DIGEST: compare, then COMMIT and (a live guest) wait for the hand-off. True once the
// session is over; false when a repair round or, the switch-over aborted, pre-copy follows.
Result<bool> DestinationRun::take_digest(std::span<const std::byte> body) {
  // The hand-off window: no cancel, and no forced exit, until it resolves (cancel.h).
  HandOffWindow window(config_.cancel);
  RS_ASSIGN_OR_RETURN(auto digest, wire::decode_digest(body));
  RS_RETURN_IF_ERROR(session_.advance(DestinationEvent::kDigestReceived));
  if (verify_full_) {
    RS_ASSIGN_OR_RETURN(bool equal, check_memory(digest));
    if (!equal) return false;  // VERIFY_MISMATCH sent: a repair round, then DIGEST again
  } else {
    RS_RETURN_IF_ERROR(check_digest(digest));
  }
  // Every block reserved before the file is renamed into place.
  if (preparer_) RS_RETURN_IF_ERROR(preparer_->finish());
  RS_RETURN_IF_ERROR(memory_->commit());
  // Ready to run before COMMIT, so the hand-off costs only its round trip.
  if (config_.guest || !device_state_.empty()) RS_RETURN_IF_ERROR(adopt_guest());
  test_hold("destination-check");
  RS_RETURN_IF_ERROR(send_control(FrameType::kCommit, {}));
  RS_RETURN_IF_ERROR(session_.advance(DestinationEvent::kCommitSent));
  (void)conn_->flush(0, milliseconds(1000));
  // After COMMIT: the memory stays as verified until HANDOFF, and a diagnostic's time
  // (--dump-guest writes all of it) is not the check's, which the source's guard watches.
  if (config_.inspect_memory)
    config_.inspect_memory({memory_->regions().begin(), memory_->regions().end()});
  if (config_.test_drop_after_commit) {
    conn_->close();
    return Status(ErrorCode::kDisconnected, "test: dropped the connection after COMMIT");
  }
  if (session_.state() == DestinationState::kImageCommitted) {
    // An image: the source says bye (or just closes); either ends the session.
    auto bye = receive_frame(*conn_, 0, milliseconds(5000));
    if (bye && bye->type != FrameType::kBye)
      log::warn("source sent {} after commit", wire::frame_type_name(bye->type));
    RS_RETURN_IF_ERROR(session_.advance(DestinationEvent::kFinished));
    return true;
  }
  test_hold("destination-handoff");
  RS_ASSIGN_OR_RETURN(bool handed_over, await_hand_off(*conn_, session_));
  if (!handed_over) {
    RS_RETURN_IF_ERROR(drop_switchover());
    return false;
  }
  const auto handoff = Clock::now();
  if (guest_ && destination_may_run_guest(session_.state())) guest_->resume();
  if (config_.guest && destination_may_run_guest(session_.state())) config_.guest->resume();
  report_.downtime_detail =
      DowntimeDetail{.resume_ms = ms_since(handoff), .aborted_switchovers = aborted_switchovers_};
  (void)send_control(FrameType::kBye, {});
  (void)conn_->flush(0, milliseconds(1000));
  RS_RETURN_IF_ERROR(run_resumed_guest());
  RS_RETURN_IF_ERROR(session_.advance(DestinationEvent::kFinished));
  return true;
}

// The source resumed its guest instead of handing it over (its guard, switchover.h): the
// verified copy here never ran. The output file goes back to PATH.partial (a later failure
// removes it), the adopted guest and its device state are dropped, and rounds follow again.
Status DestinationRun::drop_switchover() {
  guest_.reset();
  device_state_.clear();
  RS_RETURN_IF_ERROR(memory_->uncommit());
  ++aborted_switchovers_;
  RS_RETURN_IF_ERROR(send_control(FrameType::kSwitchoverAborted, {}));
  log::warn(
      "the source aborted its switch-over ({} so far): its guest runs there again, the copy "
      "verified here was dropped, and pre-copy goes on",
      aborted_switchovers_);
  return Status::ok();
}

// Post-copy (postcopy_destination.h): the guest runs here at once while its pages follow;
// if this fails the guest is lost (stopped here, stale on the source).
Status DestinationRun::run_postcopy(std::span<const std::byte> body) {
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
  return s.with_context("post-copy failed, the guest is lost (it ran here without all its memory)");
}

// A live guest arrived: take it over, paused (its workload threads start with resume(),
// after the hand-off). An embedder's guest takes its device state.
Status DestinationRun::adopt_guest() {
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
Status DestinationRun::run_resumed_guest() {
  if (!guest_) return Status::ok();
  std::this_thread::sleep_for(config_.resume_for);
  guest_->pause();
  report_.resumed_writes = guest_->writes();
  Status s = guest_->verify().with_context("the guest after running on the destination");
  report_.resumed_verified = s.is_ok();
  return s;
}

Status DestinationRun::check_digest(const wire::Digest& digest) {
  const auto verify_start = Clock::now();
  RS_RETURN_IF_ERROR(await_final_round(digest));
  std::vector<std::string> names;
  for (const auto& r : table_.regions) names.push_back(r.name);
  Status s = digest_->compare(digest.regions, names);
  // Every switch-over's check, aborted ones included (as the source counts).
  VerifyReport& vr = report_.verify ? *report_.verify : report_.verify.emplace();
  vr.mode = "transfer";
  vr.pages_checked += total_pages_;
  vr.ms += ms_since(verify_start);
  return s;
}

// --verify full: this memory, hashed now, against the paused source's. True when equal;
// false once VERIFY_MISMATCH has asked for the differing chunks again.
Result<bool> DestinationRun::check_memory(const wire::Digest& digest) {
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
Status DestinationRun::await_final_round(const wire::Digest& digest) {
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

}  // namespace ramshift::migration
