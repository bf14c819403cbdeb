#include "congestion.h"

#include <algorithm>

namespace ramshift::transport::dpdk {
namespace {

constexpr auto kMinPeriod = std::chrono::milliseconds(1);

}  // namespace

RateController::RateController(CongestionConfig config)
    : config_(config), rate_(config.initial_rate), tokens_(config.min_burst_bytes) {}

bool RateController::admit(size_t bytes, Clock::time_point now) {
  if (!started_) last_refill_ = now, started_ = true;
  double seconds = std::chrono::duration<double>(now - last_refill_).count();
  last_refill_ = now;
  double cap = std::max(config_.min_burst_bytes,
                        rate_ * std::chrono::duration<double>(config_.burst).count());
  tokens_ = std::min(cap, tokens_ + rate_ * seconds);
  if (tokens_ <= 0) {
    limited_ = held_back_ever_ = true;
    return false;
  }
  tokens_ -= double(bytes);  // may go below zero by one frame: paid back before the next
  return true;
}

void RateController::on_rtt(Clock::duration sample, Clock::time_point now) {
  srtt_ = srtt_ == Clock::duration{} ? sample : (srtt_ * 7 + sample) / 8;
  period_min_ = std::min(period_min_, sample);
  base_rtt_ = std::min(base_rtt_, sample);
  if (period_end_ == Clock::time_point{}) {
    period_start_ = now;
    period_end_ = now + std::max(srtt_, Clock::duration(kMinPeriod));
    delivered_bytes_ = 0;
  }
  if (now >= period_end_) end_period(now);
}

void RateController::end_period(Clock::time_point now) {
  // The period's smallest sample: one late ACK (a descheduled thread) is not congestion,
  // a whole round trip of late ACKs is a queue.
  const Clock::duration target = base_rtt_ + config_.headroom;
  const double delivered =
      delivered_bytes_ / std::max(1e-6, std::chrono::duration<double>(now - period_start_).count());
  if (period_min_ > target) {
    double excess = std::chrono::duration<double>(period_min_ - target) /
                    std::chrono::duration<double>(period_min_);
    // While a queue stands, what arrives is what the bottleneck passes: sending a little
    // below it drains the queue. Already below it, the queue is draining: hold the rate (the
    // delay signal lags by the queue, and cutting again would leave the link idle).
    if (delivered > 0)
      rate_ = std::min(rate_, delivered * 0.9);
    else
      rate_ *= std::max(0.5, 1 - config_.beta * excess);
    slow_start_ = false;
    last_decrease_ = now;
  } else if (period_min_ > base_rtt_ + config_.headroom / 2 && slow_start_) {
    // A queue is forming: leave slow start before it overshoots the target.
    slow_start_ = false;
  } else if (limited_) {
    rate_ = slow_start_ ? rate_ * 1.25 : rate_ + config_.additive_increase;
    // At most 1.5 times what arrives (which trails the rate by a round trip, x1.25): a
    // saturated bottleneck caps slow start's overshoot.
    if (slow_start_ && delivered > 0) rate_ = std::min(rate_, 1.5 * delivered);
  }
  rate_ = std::clamp(rate_, config_.min_rate, config_.max_rate);
  limited_ = false;
  delivered_bytes_ = 0;
  period_start_ = now;
  period_min_ = Clock::duration::max();
  period_end_ = now + std::max(srtt_, Clock::duration(kMinPeriod));
}

void RateController::on_timeout(Clock::time_point now) {
  if (now - last_decrease_ < std::max(srtt_, Clock::duration(kMinPeriod))) return;
  rate_ = std::max(config_.min_rate, rate_ / 2);
  slow_start_ = false;
  last_decrease_ = now;
}

}  // namespace ramshift::transport::dpdk
