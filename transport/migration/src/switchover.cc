#include "switchover.h"

#include <algorithm>
#include <iterator>
#include <vector>

namespace ramshift::migration {

void merge_selection(PageSelection& into, const PageSelection& more) {
  for (size_t r = 0; r < into.size() && r < more.size(); ++r) {
    if (!into[r] || !more[r]) continue;  // a whole region is sent anyway
    std::vector<uint64_t> merged;
    std::set_union(into[r]->begin(), into[r]->end(), more[r]->begin(), more[r]->end(),
                   std::back_inserter(merged));
    into[r] = std::move(merged);
  }
}

double DowntimeClock::lap() {
  const auto now = Clock::now();
  const double ms = std::chrono::duration<double, std::milli>(now - lap_start_).count();
  lap_start_ = now;
  return ms;
}

double DowntimeClock::total_ms() const {
  return std::chrono::duration<double, std::milli>(lap_start_ - start_).count();
}

}  // namespace ramshift::migration
