#include "ramshift/migration/convergence.h"

#include <fmt/format.h>

#include <algorithm>

#include "ramshift/base/units.h"

namespace ramshift::migration {

Decision ConvergencePolicy::after_round(const RoundMeasurement& m) {
  Decision d;
  d.bandwidth = m.seconds > 0 ? static_cast<double>(m.sent_guest_bytes) / m.seconds : 0;
  d.expected_downtime_ms = d.bandwidth > 0 ? m.dirty_bytes / d.bandwidth * 1000 : 1e12;
  const double limit_ms = static_cast<double>(config_.downtime_limit.count());
  if (d.expected_downtime_ms <= limit_ms) {
    d.kind = Decision::kSwitchover;
    d.reason = fmt::format("{} left fits {} ms at {}", format_bytes(m.dirty_bytes),
                           config_.downtime_limit.count(), format_rate(d.bandwidth));
    return d;
  }
  if (m.round + 1 >= config_.max_rounds) {
    d.kind = Decision::kSwitchover;
    d.reason = fmt::format("max-rounds {} reached with {} left (expected downtime {:.0f} ms)",
                           config_.max_rounds, format_bytes(m.dirty_bytes), d.expected_downtime_ms);
    return d;
  }
  // The round after round 0 is the first that measures the dirty rate against itself.
  const double dirty_rate = m.seconds > 0 ? m.dirty_bytes / m.seconds : 0;
  if (m.round > 0 && dirty_rate >= d.bandwidth)
    ++stalls_;
  else
    stalls_ = 0;
  if (stalls_ >= 2) {
    stalls_ = 0;
    if (!config_.auto_converge) {
      d.kind = Decision::kFail;
      d.reason = fmt::format(
          "not converging: the guest dirties {} while the link moves {} (two rounds in a row); "
          "use --auto-converge, raise --downtime-limit, or add bandwidth",
          format_rate(dirty_rate), format_rate(d.bandwidth));
      return d;
    }
    throttle_ = throttle_ == 0 ? config_.throttle_initial
                               : std::min(99, throttle_ + config_.throttle_increment);
    d.kind = Decision::kThrottle;
    d.throttle_pct = throttle_;
    d.reason = fmt::format("dirtying {} >= sending {}: throttling the guest to {}%",
                           format_rate(dirty_rate), format_rate(d.bandwidth), 100 - throttle_);
    return d;
  }
  d.reason = fmt::format("{} left, expected downtime {:.0f} ms", format_bytes(m.dirty_bytes),
                         d.expected_downtime_ms);
  return d;
}

}  // namespace ramshift::migration
