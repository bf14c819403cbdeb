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
