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
// One timed round is not a measurement: on the host a round's fixed part swings 0.7-3.5 ms
// between consecutive rounds (loopback_20M_floor), so the constants stand until two are.
constexpr int kOverheadsToTrust = 2;

// The codec chooses per batch: pages that compressed in this round may go raw in the
// switch-over round (measured: round 1 at 145 MB/s of guest bytes, the last round at 118).
// A page is therefore costed at the larger of its guest and wire size: the guest bytes
// moved at min(guest, wire) bytes / seconds at the least.
double raw_rate(const RoundMeasurement& m) {
  const uint64_t bytes =
      m.wire_bytes > 0 ? std::min(m.sent_guest_bytes, m.wire_bytes) : m.sent_guest_bytes;
  return per_second(static_cast<double>(bytes), m.seconds);
}

uint64_t raw_bytes(const RoundMeasurement& m) {
  return m.wire_bytes > 0 ? std::min(m.sent_guest_bytes, m.wire_bytes) : m.sent_guest_bytes;
}

}  // namespace

void ConvergencePolicy::measure_overhead(const RoundMeasurement& m) {
  // A round below 1 MB is mostly its fixed part (in the soft-RoCE VM 20-80 ms whatever it
  // carried, on the host 1-4 ms): what its bytes at the bulk rate do not explain.
  const uint64_t bytes = raw_bytes(m);
  if (m.round == 0 || m.seconds <= 0 || bytes >= kBulkBytes || (bytes > 0 && bulk_rate_ <= 0))
    return;
  const double link_s = bytes > 0 ? static_cast<double>(bytes) / bulk_rate_ : 0;
  overheads_ms_[overheads_ % kOverheadWindow] = std::max(0.0, m.seconds - link_s) * 1000;
  ++overheads_;
}

double ConvergencePolicy::measured_round_overhead_ms() const {
  // The median of the last three: one round on a shared host can take twice the others.
  const int n = std::min(overheads_, kOverheadWindow);
  const double* v = overheads_ms_;
  if (n == 0) return 0;
  if (n < 3) return n == 1 ? v[0] : (v[0] + v[1]) / 2;
  return v[0] + v[1] + v[2] - std::max({v[0], v[1], v[2]}) - std::min({v[0], v[1], v[2]});
}

double ConvergencePolicy::byte_rate(const RoundMeasurement& m) const {
  const double raw = raw_rate(m);
  const uint64_t bytes = raw_bytes(m);
  if (overheads_ < kOverheadsToTrust || bytes >= kBulkBytes || bytes == 0) return raw;
  // Once the fixed part is measured it is costed on its own, so a small round's rate must
  // not carry it too: its bytes over the rest of its time, at most the bulk rate (a few
  // pages' share of a round is too short to time better than that).
  const double ceiling = std::max(bulk_rate_, raw);
  const double link_s = m.seconds - measured_round_overhead_ms() / 1000;
  if (link_s <= 0) return ceiling;
  return std::clamp(static_cast<double>(bytes) / link_s, raw, ceiling);
}

Decision ConvergencePolicy::after_round(const RoundMeasurement& m) {
  Decision d;
  d.bandwidth = per_second(static_cast<double>(m.sent_guest_bytes), m.seconds);
  // The device state moves in bulk: at the rate of the last large round, not at a small
  // round's, which is mostly its fixed cost (1 MB of state took 8.4 ms at 1 Gbit/s).
  // An aborted switch-over ran late for a reason the rounds did not show (a stall, a slow
  // check): counted once, in the slowdown (at most 3x), and not again through a rate taken
  // from it. Taking its rate too (a 3 s stall of a 1 MB round: 0.3 MB/s) compounded the two
  // and left no switch-over predicted to fit after one stall on a loaded host.
  const bool measures_link = !m.aborted_switchover;
  if (measures_link && raw_bytes(m) >= kBulkBytes) bulk_rate_ = raw_rate(m);
  if (measures_link) measure_overhead(m);
  const bool measured = overheads_ >= kOverheadsToTrust;
  d.fixed_measured = measured;
  const double largest_overhead_ms =
      measured
          ? *std::max_element(overheads_ms_, overheads_ms_ + std::min(overheads_, kOverheadWindow))
          : 0;
  d.round_overhead_ms = measured ? measured_round_overhead_ms() : config_.round_overhead_ms;
  // The switch-over pays a round's fixed part for its last pages and about as much again for
  // the commit exchange and hand-off over the same control path. Measured: on the host the
  // switch-over's fixed part was 4.7 ms median against rounds' 1-4 ms; in the soft-RoCE VM
  // the whole downtime was at most twice the largest of the last three rounds' fixed parts
  // in 8 of 12 switch-overs, twice their median in 3 (docs/design.md). So the largest.
  d.switchover_fixed_ms = measured ? 2 * largest_overhead_ms : config_.switchover_overhead_ms;
  // The slower of two rounds: one round's rate swings by a fifth on a shared host
  // (docs/design.md). A round that sent nothing measured no rate: the previous one stands.
  const double this_byte_rate = measures_link ? byte_rate(m) : 0;
  const double rate = !have_previous_      ? this_byte_rate
                      : this_byte_rate > 0 ? std::min(this_byte_rate, previous_rate_)
                                           : previous_rate_;
  const double dirty_rate = per_second(static_cast<double>(m.dirty_bytes), m.seconds);
  // The next round's dirtying at the lower of two rates: one burst must not stop the copying.
  const double next_dirty_rate =
      have_previous_ ? std::min(dirty_rate, previous_dirty_rate_) : dirty_rate;
  constexpr double kNever = 1e12;
  const double state_rate = bulk_rate_ > 0 ? bulk_rate_ : rate;
  const double state_ms = m.device_state_bytes == 0 ? 0
                          : state_rate > 0
                              ? static_cast<double>(m.device_state_bytes) / state_rate * 1000
                              : kNever;
  d.device_state_ms = state_ms;
  // The part of the downtime that is bytes (the guard multiplies it), without the fixed part.
  auto bytes_ms = [&](double rest) {
    if (rest <= 0) return state_ms;
    return rate > 0 ? state_ms + rest / rate * 1000 : kNever;
  };
  auto downtime_ms = [&](double rest) { return d.switchover_fixed_ms + bytes_ms(rest); };
  d.expected_downtime_ms = downtime_ms(static_cast<double>(m.dirty_bytes));
  // Whether a round pays is a best guess, not a bound: the next round runs like this one.
  const double next_rate = this_byte_rate > 0 ? this_byte_rate : rate;
  const double next_fixed_s = d.round_overhead_ms / 1000;
  const double next_round_s =
      next_rate > 0 ? next_fixed_s + static_cast<double>(m.dirty_bytes) / next_rate : kNever;
  const double next_rest = next_dirty_rate * next_round_s;
  d.next_round_downtime_ms = downtime_ms(next_rest);
  // The guard: this migration's rounds ran up to `slowdown_` times longer than predicted, so
  // the switch-over may too; it must fit the limit even then. A round is timed on its bytes
  // alone (its time less the fixed part, against the prediction less the fixed part it
  // assumed), and once the fixed part is measured every round is re-timed with it: a round
  // that overran only because the constant was too small (20-80 ms a round in the soft-RoCE
  // VM against 3) is counted once, in the switch-over's fixed part, not again as a slowdown.
  if (predicted_round_s_ - predicted_fixed_s_ >= kMinTimedRound && m.seconds > 0)
    timed_.push_back({m.seconds, predicted_round_s_, predicted_fixed_s_});
  slowdown_ = 1;
  for (const TimedRound& t : timed_) {
    const double fixed_s = measured ? d.round_overhead_ms / 1000 : t.predicted_fixed_s;
    slowdown_ = std::clamp((t.seconds - fixed_s) / (t.predicted_s - t.predicted_fixed_s), slowdown_,
                           kMaxSlowdown);
  }
  d.slowdown = slowdown_;
  // A fixed part that is still the constant is as uncertain as the rest: multiplied too.
  auto worst_ms = [&](double rest) {
    return measured ? d.switchover_fixed_ms + bytes_ms(rest) * slowdown_
                    : downtime_ms(rest) * slowdown_;
  };
  d.worst_downtime_ms = worst_ms(static_cast<double>(m.dirty_bytes));

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
  if (measures_link && m.sent_guest_bytes > 0) previous_rate_ = this_byte_rate;
  have_previous_ = have_previous_ || (measures_link && m.sent_guest_bytes > 0);
  previous_dirty_rate_ = dirty_rate;
  // The round after round 0 is the first that measures the dirty rate against itself.
  const bool no_progress = measures_link && m.round > 0 && dirty_rate >= d.bandwidth;
  stalls_ = no_progress ? stalls_ + 1 : 0;

  const double limit_ms = static_cast<double>(config_.downtime_limit.count());
  const bool fits = d.worst_downtime_ms <= limit_ms;
  // A switch-over the guard aborts (switchover.h) ends as a live round, timed against this:
  // its fixed part and what is left at the safe rate, so its overrun raises the slowdown.
  auto predict_switchover_round = [&] {
    predicted_fixed_s_ = d.round_overhead_ms / 1000;
    predicted_round_s_ =
        predicted_fixed_s_ + (rate > 0 ? static_cast<double>(m.dirty_bytes) / rate : 0);
  };
  if (fits && !next_round_pays) {
    predict_switchover_round();
    d.kind = Decision::kSwitchover;
    d.reason = fmt::format(
        "{} left fits {} ms at {} (predicted downtime {:.0f} ms = {:.0f} ms fixed ({}) + the "
        "rest; {:.0f} ms if that runs {:.2f}x slow like this migration's slowest round); "
        "another round would leave {} (predicted {:.0f} ms)",
        format_bytes(m.dirty_bytes), config_.downtime_limit.count(), format_rate(rate),
        d.expected_downtime_ms, d.switchover_fixed_ms, measured ? "measured" : "assumed",
        d.worst_downtime_ms, slowdown_, format_bytes(static_cast<uint64_t>(next_rest)),
        d.next_round_downtime_ms);
    return d;
  }
  if (m.dirty_bytes == 0) {
    predict_switchover_round();
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
  const double smallest_worst_ms = worst_ms(static_cast<double>(smallest_rest_));
  if (stalls_ >= 2 && fits) {
    predict_switchover_round();
    d.kind = Decision::kSwitchover;
    d.reason = fmt::format(
        "no progress, and {} left fits {} ms (predicted {:.0f} ms, {:.0f} ms at {:.2f}x slow)",
        format_bytes(m.dirty_bytes), config_.downtime_limit.count(), d.expected_downtime_ms,
        d.worst_downtime_ms, slowdown_);
    return d;
  }
  if (stalls_ >= 2 && smallest_worst_ms > limit_ms) {
    d = throttle_or_fail(m, std::move(d));
    if (d.kind == Decision::kFail)
      d.reason += fmt::format(
          " (at its smallest, {} left, the switch-over is predicted {:.0f} ms at worst, {:.0f} "
          "ms of it the hand-off's fixed part, {})",
          format_bytes(smallest_rest_), smallest_worst_ms, d.switchover_fixed_ms,
          d.fixed_measured ? "measured from this migration's rounds" : "assumed");
    return d;
  }
  d.reason = fmt::format(
      "{} left, expected downtime {:.0f} ms ({:.0f} ms at {:.2f}x slow; {:.0f} ms fixed, {}); "
      "another round should leave {} ({:.0f} ms)",
      format_bytes(m.dirty_bytes), d.expected_downtime_ms, d.worst_downtime_ms, slowdown_,
      d.switchover_fixed_ms, measured ? "measured" : "assumed",
      format_bytes(static_cast<uint64_t>(next_rest)), d.next_round_downtime_ms);
  if (stalls_ >= 2)
    d.reason += fmt::format(
        "; no progress, copying on until the rest is back at its smallest, {} ({:.0f} ms at "
        "worst)",
        format_bytes(smallest_rest_), smallest_worst_ms);
  predicted_round_s_ = next_round_s;  // the next round, checked against it when it ends
  predicted_fixed_s_ = next_fixed_s;
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
