// A hybrid's last step before the pause (source side): the destination drops the pages
// dirtied since they were sent while the guest still runs here (POSTCOPY_DISCARD, answered
// by POSTCOPY_DISCARDED), round after round, each naming the pages dirtied during the one
// before that no round named yet (a dropped page stays absent). Dropping a page takes
// 1.4-5.8 us, sending one over 1 Gbit/s 34 us, so these rounds shrink where pre-copy's could
// not, and the downtime drops only what the last left: on the 1 Gbit/s bench, 2-3 rounds left
// 33-276 of ~110,000 pages, and hybrid's downtime fell from 194 to 21 ms (median,
// docs/benchmarks). discarded_pages.h has the destination's side.
#pragma once

#include <chrono>
#include <functional>
#include <span>
#include <vector>

#include "queue_stream.h"
#include "ramshift/base/status.h"
#include "ramshift/guest/guest.h"
#include "ramshift/migration/report.h"
#include "ramshift/wire/frame.h"

namespace ramshift::migration {

struct DiscardLink {
  std::function<Status(wire::FrameType, std::span<const std::byte>)> send_control;
  std::function<Result<std::vector<std::byte>>(wire::FrameType, std::chrono::milliseconds)> await;
  std::function<Result<PageSelection>()> fetch_dirty;  // the guest's dirty log since the last
};

// What the discard rounds did (for the log and the report's reader).
struct DiscardFigures {
  uint32_t rounds = 0;
  uint64_t pages = 0;       // dropped on the destination while the guest ran here
  uint64_t pages_left = 0;  // dirtied during the last round: dropped in the downtime
  double ms = 0;
};

// Runs the discard rounds for `dirty` (the pages dirtied since they were sent, as the dirty
// log gives them), and adds to it every page dirtied meanwhile: the pages POSTCOPY_START must
// name, with those the pause's own dirty log adds. Stops when the pages left would be
// dropped within kDiscardTargetMs, stop shrinking, or after kMaxDiscardRounds.
Result<DiscardFigures> discard_while_running(const DiscardLink& link,
                                             const std::vector<guest::Region>& regions,
                                             uint32_t page_size, PageSelection& dirty);

// Into the report's postcopy figures (when it has them).
void record_discard(const DiscardFigures& figures, MigrationReport& report);

// Why 5 ms: a tenth of the 50 ms downtime goal (issue 23) for the drop left in it.
inline constexpr double kDiscardTargetMs = 5;
inline constexpr uint32_t kMaxDiscardRounds = 8;
// Dropping one scattered page, batched (missing_pages.h: 4.7-5.8 us on this 2-core host).
inline constexpr double kScatteredDropMs = 0.005;

}  // namespace ramshift::migration
