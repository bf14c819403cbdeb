// The source's switch-over round, the pieces it does not share with the rounds before it:
// the last dirty pages merged in once the guest is paused, and the downtime's clock.
#pragma once

#include <chrono>

#include <cstdint>
#include <future>
#include <string>
#include <vector>

#include "queue_stream.h"
#include "ramshift/guest/guest.h"
#include "ramshift/migration/convergence.h"
#include "ramshift/migration/report.h"
#include "ramshift/pipeline/codec.h"
#include "ramshift/wire/frame.h"

namespace ramshift::migration {

// The dirty log of every region of `guest` since the last fetch.
Result<PageSelection> fetch_dirty_pages(guest::SourceGuest& guest);

// `into` gains the pages of `more` (both sorted per region, as the dirty log gives them).
void merge_selection(PageSelection& into, const PageSelection& more);

// Whether the device state goes compressed: the destination takes DEVICE_STATE_ZSTD, the
// codec may compress, and the link (`link_bytes_per_s`, the rounds' bulk rate; 0 = unknown)
// is slower than compressing it is.
bool compress_device_state(uint64_t peer_capabilities, pipeline::CodecMode mode,
                           double link_bytes_per_s);

// The device state as the switch-over sends it: DEVICE_STATE, or DEVICE_STATE_ZSTD when
// `compress` and the compressed form is smaller.
struct DeviceStateFrame {
  Status status;  // reading it from the guest failed
  wire::FrameType type = wire::FrameType::kDeviceState;
  std::vector<std::byte> body;
  uint64_t raw_bytes = 0;
};
DeviceStateFrame encode_device_state(std::string state, bool compress);
// Reads the paused guest's device state and encodes it.
DeviceStateFrame read_device_state(const guest::SourceGuest& guest, bool compress);
// The same on another thread, so that it is ready when the last pages are placed.
std::future<DeviceStateFrame> prepare_device_state(const guest::SourceGuest& guest, bool compress);

// A wrong prediction must not push the downtime past --downtime-limit. So a switch-over the
// convergence policy predicted to fit it is guarded, in two stages:
//  - its last pages must be placed at the destination by the limit less what still follows
//    them (the tail: the device state at the bulk rate, times the slowdown the rounds showed,
//    and the commit exchange and hand-off, half of the policy's fixed part). If they are not,
//    the source resumes its guest before anything but pages was sent, so the destination never
//    learns of the pause: the round in flight ends as an ordinary live round;
//  - then (watch_verdict) the destination's COMMIT on the DIGEST must arrive by the limit less
//    the hand-off (HANDOFF -> BYE: one round trip and the resume, a quarter of the fixed part).
//    If it does not, the source resumes its guest and sends SWITCHOVER_ABORT; the destination,
//    which runs the guest only after HANDOFF, drops the copy it holds and answers
//    SWITCHOVER_ABORTED (docs/protocol.md). Only towards a destination that offers it
//    (kCapSwitchoverAbort), and not with --verify full, whose check hashes all of memory on
//    both ends (a cost the policy does not predict; aborting would only repeat it): otherwise
//    the guard ends with the pages.
// Either way pre-copy goes on. What the guard cannot cover is the hand-off itself: once
// HANDOFF leaves, the guest is the destination's.
// A switch-over predicted over the limit (max-rounds, nothing left to copy) is not guarded:
// no round could lower it.
class SwitchoverGuard {
 public:
  using Clock = std::chrono::steady_clock;
  SwitchoverGuard() = default;  // disarmed
  SwitchoverGuard(Clock::time_point pause, double limit_ms, const Decision& decision);
  bool overdue(Clock::time_point now) const { return armed_ && now >= deadline_; }
  bool armed() const { return armed_; }
  Clock::time_point deadline() const { return deadline_; }
  // The time kept for what follows the stage being watched.
  double tail_ms() const { return tail_ms_; }
  // From the pages to the verdict; disarms unless `destination_can_abort`.
  void watch_verdict(bool destination_can_abort);
  bool watching_verdict() const { return armed_ && verdict_stage_; }
  void disarm() { armed_ = false; }

 private:
  bool armed_ = false;
  bool verdict_stage_ = false;
  double tail_ms_ = 0;
  double handoff_tail_ms_ = 0;
  double limit_ms_ = 0;
  Clock::time_point pause_;
  Clock::time_point deadline_;
};

// Times the downtime from the pause, part after part (DowntimeDetail): each lap ends where
// the next begins, so the parts add up to the total.
class DowntimeClock {
 public:
  using Clock = std::chrono::steady_clock;
  void start() { start_ = lap_start_ = Clock::now(); }
  // ms since the previous lap (or the start), and a new lap begins.
  double lap();
  // ms from the start to the end of the last lap.
  double total_ms() const;

 private:
  Clock::time_point start_;
  Clock::time_point lap_start_;
};

}  // namespace ramshift::migration
