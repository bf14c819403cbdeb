// The source's switch-over round, the pieces it does not share with the rounds before it:
// the last dirty pages merged in once the guest is paused, and the downtime's clock.
#pragma once

#include <chrono>

#include "queue_stream.h"
#include "ramshift/migration/report.h"

namespace ramshift::migration {

// `into` gains the pages of `more` (both sorted per region, as the dirty log gives them).
void merge_selection(PageSelection& into, const PageSelection& more);

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
