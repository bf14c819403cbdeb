#include "hybrid_discard.h"

#include <algorithm>
#include <iterator>
#include <limits>

#include "postcopy_source.h"
#include "ramshift/base/clock.h"
#include "ramshift/base/log.h"
#include "switchover.h"
#include "verify.h"

namespace ramshift::migration {

Result<DiscardFigures> discard_while_running(const DiscardLink& link,
                                             const std::vector<guest::Region>& regions,
                                             uint32_t page_size, PageSelection& dirty) {
  DiscardFigures fig;
  for (const auto& r : dirty)
    if (!r) return fig;  // a whole region: one run, cheap to drop in the downtime
  const auto start = std::chrono::steady_clock::now();
  const PageSelection none(regions.size(), std::vector<uint64_t>{});
  PageSelection next = dirty;
  uint64_t n = count_pages(next);
  double per_page_ms = std::numeric_limits<double>::infinity();
  while (n > 0 && fig.rounds < kMaxDiscardRounds) {
    const auto t0 = std::chrono::steady_clock::now();
    const wire::PostcopyStart discard{fig.rounds, postcopy_pages(regions, page_size, next, none)};
    RS_RETURN_IF_ERROR(link.send_control(wire::FrameType::kPostcopyDiscard, wire::encode(discard)));
    // Why 60 s: dropping a whole 64 GiB guest page by page at 6 us a page takes 100 s; a
    // guest that large and that dirty is not one hybrid can move within its budget anyway.
    RS_RETURN_IF_ERROR(
        link.await(wire::FrameType::kPostcopyDiscarded, std::chrono::milliseconds(60000)).status());
    const double ms = ms_since(t0);
    RS_ASSIGN_OR_RETURN(PageSelection dirtied, link.fetch_dirty());
    // A page dropped there stays absent until post-copy places it, however often it is
    // dirtied here: only pages named for the first time need dropping.
    for (size_t r = 0; r < dirty.size(); ++r) {
      next[r]->clear();
      std::set_difference(dirtied[r]->begin(), dirtied[r]->end(), dirty[r]->begin(),
                          dirty[r]->end(), std::back_inserter(*next[r]));
    }
    merge_selection(dirty, next);
    const uint64_t more = count_pages(next);
    ++fig.rounds;
    fig.pages += n;
    log::info(
        "post-copy discard {}: the destination dropped {} page(s) in {:.1f} ms; {} "
        "more dirtied meanwhile",
        fig.rounds - 1, n, ms, more);
    // The cost of a page from the largest round, where the round trip weighs least (on a
    // loaded host a small round is mostly the two wake-ups: 25-40 ms for 300 pages dropped
    // in 1-2 ms). But never below a scattered page's: a large round's pages lie in long runs
    // (1.7 us a page for 99,065 pages), the few left are single pages.
    per_page_ms = std::min(per_page_ms, ms / static_cast<double>(n));
    const double next_ms = std::max(per_page_ms, kScatteredDropMs) * static_cast<double>(more);
    const bool shrinking = more < n;
    n = more;
    if (next_ms <= kDiscardTargetMs || !shrinking) break;
  }
  fig.pages_left = n;
  fig.ms = ms_since(start);
  log::info(
      "post-copy discards: {} page(s) dropped there in {} round(s), {:.0f} ms, while the "
      "guest ran here; {} left for the pause",
      fig.pages, fig.rounds, fig.ms, fig.pages_left);
  return fig;
}

void record_discard(const DiscardFigures& figures, MigrationReport& report) {
  if (!report.postcopy) return;
  report.postcopy->discard_rounds = figures.rounds;
  report.postcopy->pages_discarded = figures.pages;
}

}  // namespace ramshift::migration
