#include "ramshift/migration/convergence.h"

#include <fmt/format.h>

#include <algorithm>

#include "ramshift/base/units.h"

namespace ramshift::migration {
namespace {

double per_second(double bytes, double seconds) { return seconds > 0 ? bytes / seconds : 0; }

// The guard's inputs. Rounds predicted under 5 ms are not timed: their length is mostly the
// fixed part, off by 0.5-2x on the traces (0.9-3.5 ms for rounds of 15-65 pages), which the
// switch-over's own fixed part already covers. Why at most 3x: the slowest round on the
// traces ran 3.1x its prediction (a CPU-starved host); beyond that the host, not the policy,
// is the problem, and a guard larger than that would only stop a migration converging.
constexpr double kMinTimedRound = 0.005;
// A round of at least this many bytes measures the link's bulk rate (rounds of 1.6-6.8 MB
// ran at 110-121 MB/s on the 1 Gbit/s veth; rounds of a few hundred pages at 18-140 MB/s).
constexpr uint64_t kBulkBytes = 1'000'000;
constexpr double kMaxSlowdown = 3;

// The codec chooses per batch: pages that compressed in this round may go raw in the
// switch-over round (measured: round 1 at 145 MB/s of guest bytes, the last round at 118).
// A page is therefore costed at the larger of its guest and wire size: the guest bytes
// moved at min(guest, wire) bytes / seconds at the least.
double raw_rate(const RoundMeasurement& m) {
  const uint64_t bytes =
      m.wire_bytes > 0 ? std::min(m.sent_guest_bytes, m.wire_bytes) : m.sent_guest_bytes;
  return per_second(static_cast<double>(bytes), m.seconds);
}

}  // namespace

double ConvergencePolicy::safe_rate(const RoundMeasurement& m) const {
  // The slower of two rounds: one round's rate swings by a fifth on a shared host
  // (docs/design.md).
  // A round that sent nothing (an idle guest) measured no rate: the previous one stands.
  const double rate = raw_rate(m);
  if (!have_previous_) return rate;
  return rate > 0 ? std::min(rate, previous_rate_) : previous_rate_;
}

Decision ConvergencePolicy::after_round(const RoundMeasurement& m) {
  Decision d;
  d.bandwidth = per_second(static_cast<double>(m.sent_guest_bytes), m.seconds);
  const double rate = safe_rate(m);
  const double dirty_rate = per_second(static_cast<double>(m.dirty_bytes), m.seconds);
  // The next round's dirtying at the lower of two rates: one burst must not stop the copying.
  const double next_dirty_rate =
      have_previous_ ? std::min(dirty_rate, previous_dirty_rate_) : dirty_rate;
  constexpr double kNever = 1e12;
  // The device state moves in bulk: at the rate of the last large round, not at a small
  // round's, which is mostly its fixed cost (1 MB of state took 8.4 ms at 1 Gbit/s).
  if (std::min(m.sent_guest_bytes, m.wire_bytes > 0 ? m.wire_bytes : m.sent_guest_bytes) >=
      kBulkBytes)
    bulk_rate_ = raw_rate(m);
  const double state_rate = bulk_rate_ > 0 ? bulk_rate_ : rate;
  const double state_ms = m.device_state_bytes == 0 ? 0
                          : state_rate > 0
                              ? static_cast<double>(m.device_state_bytes) / state_rate * 1000
                              : kNever;
  auto downtime_ms = [&](double rest) {
    if (rest <= 0) return config_.switchover_overhead_ms + state_ms;
    return rate > 0 ? config_.switchover_overhead_ms + state_ms + rest / rate * 1000 : kNever;
  };
  d.expected_downtime_ms = downtime_ms(static_cast<double>(m.dirty_bytes));
  // Whether a round pays is a best guess, not a bound: the next round runs like this one.
  const double this_rate = raw_rate(m) > 0 ? raw_rate(m) : rate;
  const double next_round_s =
      this_rate > 0 ? config_.round_overhead_ms / 1000 + m.dirty_bytes / this_rate : kNever;
  const double next_rest = next_dirty_rate * next_round_s;
  d.next_round_downtime_ms = downtime_ms(next_rest);
  // The guard: this migration's rounds ran up to `slowdown_` times longer than predicted, so
  // the switch-over may too; it must fit the limit even then.
  if (predicted_round_s_ >= kMinTimedRound && m.seconds > 0)
    slowdown_ = std::clamp(m.seconds / predicted_round_s_, slowdown_, kMaxSlowdown);
  d.slowdown = slowdown_;
  d.worst_downtime_ms = d.expected_downtime_ms * slowdown_;

  // A working set that is dirtied faster than a round can send it stays whatever the
  // prediction says: two rounds without a new low end the copying.
  if (m.dirty_bytes < smallest_rest_) {
    smallest_rest_ = m.dirty_bytes;
    rounds_without_shrink_ = 0;
  } else {
    ++rounds_without_shrink_;
  }
  const bool next_round_pays = m.dirty_bytes > 0 && rate > 0 && rounds_without_shrink_ < 2 &&
                               next_rest <= config_.min_shrink * static_cast<double>(m.dirty_bytes);
  if (m.sent_guest_bytes > 0) previous_rate_ = raw_rate(m);
  have_previous_ = have_previous_ || m.sent_guest_bytes > 0;
  previous_dirty_rate_ = dirty_rate;

  const double limit_ms = static_cast<double>(config_.downtime_limit.count());
  if (d.worst_downtime_ms <= limit_ms && !next_round_pays) {
    d.kind = Decision::kSwitchover;
    d.reason = fmt::format(
        "{} left fits {} ms at {} (predicted downtime {:.0f} ms, {:.0f} ms if it runs {:.2f}x "
        "slow like this migration's slowest round); another round would leave {} (predicted "
        "{:.0f} ms)",
        format_bytes(m.dirty_bytes), config_.downtime_limit.count(), format_rate(rate),
        d.expected_downtime_ms, d.worst_downtime_ms, slowdown_,
        format_bytes(static_cast<uint64_t>(next_rest)), d.next_round_downtime_ms);
    return d;
  }
  if (m.dirty_bytes == 0) {
    d.kind = Decision::kSwitchover;
    d.reason = fmt::format(
        "nothing left to copy; predicted downtime {:.0f} ms ({:.0f} ms at {:.2f}x slow) is what "
        "the device state and the hand-off cost here",
        d.expected_downtime_ms, d.worst_downtime_ms, slowdown_);
    return d;
  }
  if (m.round + 1 >= config_.max_rounds) {
    d.kind = Decision::kSwitchover;
    d.reason = fmt::format("max-rounds {} reached with {} left (expected downtime {:.0f} ms)",
                           config_.max_rounds, format_bytes(m.dirty_bytes), d.expected_downtime_ms);
    return d;
  }
  // The round after round 0 is the first that measures the dirty rate against itself.
  if (m.round > 0 && dirty_rate >= d.bandwidth)
    ++stalls_;
  else
    stalls_ = 0;
  if (stalls_ >= 2) return throttle_or_fail(m, std::move(d));
  d.reason = fmt::format(
      "{} left, expected downtime {:.0f} ms ({:.0f} ms at {:.2f}x slow); another round should "
      "leave {} ({:.0f} ms)",
      format_bytes(m.dirty_bytes), d.expected_downtime_ms, d.worst_downtime_ms, slowdown_,
      format_bytes(static_cast<uint64_t>(next_rest)), d.next_round_downtime_ms);
  predicted_round_s_ = next_round_s;  // the next round, checked against it when it ends
  return d;
}

Decision ConvergencePolicy::throttle_or_fail(const RoundMeasurement& m, Decision d) {
  stalls_ = 0;
  const double dirty_rate = per_second(static_cast<double>(m.dirty_bytes), m.seconds);
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

}  // namespace ramshift::migration
