#include "ramshift/pipeline/compression_governor.h"

#include <algorithm>
#include <cmath>

#include "ramshift/base/log.h"

namespace ramshift::pipeline {

namespace {
double seconds(CompressionGovernor::Clock::duration d) {
  return std::chrono::duration<double>(d).count();
}
}  // namespace

CompressionGovernor::CompressionGovernor(bool enabled, bool always)
    : adaptive_(enabled && !always), compress_(enabled && always) {}

void CompressionGovernor::record(uint64_t guest_bytes, Clock::time_point now) {
  if (!adaptive_) return;
  std::lock_guard lock(mu_);
  if (!started_) {
    started_ = true;
    window_start_ = mode_start_ = now;
  }
  // A batch recorded at the settle's end was mostly encoded before it: count only later ones.
  if (now - window_start_ > kSettle) window_bytes_ += guest_bytes;
  if (now - window_start_ >= kWindow || probe_is_clear(now)) evaluate(now);
}

bool CompressionGovernor::probe_is_clear(Clock::time_point now) const {
  if (!probing_ || now - window_start_ < kSettle + kMinProbe) return false;
  const bool mode = compress_.load(std::memory_order_relaxed);
  const double rate = static_cast<double>(window_bytes_) / seconds(now - window_start_ - kSettle);
  const double other = rate_[!mode];
  return rate > kClearRatio * other || rate * kClearRatio < other;
}

void CompressionGovernor::evaluate(Clock::time_point now) {
  if (!warmed_up_) {
    warmed_up_ = true;
    window_bytes_ = 0;
    window_start_ = now;
    return;
  }
  const double secs = seconds(now - window_start_ - kSettle);
  const bool mode = compress_.load(std::memory_order_relaxed);
  const double measured = secs > 0 ? static_cast<double>(window_bytes_) / secs : 0;
  // A probe's rate is its own; the incumbent's is averaged over its windows (each window
  // weighs half), so one slow window of noise or of a region's content decides nothing.
  const bool fresh = probing_ || rate_[mode] == 0;
  rate_[mode] = fresh ? measured : (rate_[mode] + measured) / 2;
  window_bytes_ = 0;
  window_start_ = now;
  ++windows_in_mode_;

  // Each mode's score is its rate, compressing's discounted by the margin raw wins ties by.
  const double score[2] = {rate_[0], rate_[1] / kCompressMargin};
  const double last_score = mode ? measured / kCompressMargin : measured;
  if (rate_[!mode] == 0) {
    switch_to(!mode, true);  // the other mode has never been measured: measure it now
  } else if (probing_) {
    const bool winner = score[1] > score[0];
    finish_probe(now - mode_start_);
    if (winner != mode) switch_to(winner, false);
  } else if (windows_in_mode_ >= hold_windows_ || last_score < 0.95 * score[!mode]) {
    // Time to check the other mode again — at once if this window was slower than the
    // other mode was when last measured (the content or the link changed).
    switch_to(!mode, true);
  }
  log::debug("codec auto: {} window {:.1f} MB/s (average {:.1f}, other mode {:.1f}); next {}",
             mode ? "zstd" : "raw", measured / 1e6, rate_[mode] / 1e6, rate_[!mode] / 1e6,
             should_compress() ? "zstd" : "raw");
}

void CompressionGovernor::finish_probe(Clock::duration probe_length) {
  probing_ = false;
  // The next probe of the loser costs about what this one did: its length times the share
  // of throughput it gives up. Wait until that is kProbeBudget of the time in between.
  const double fast = std::max(rate_[0], rate_[1]), slow = std::min(rate_[0], rate_[1]);
  const double loss = fast > 0 ? 1 - slow / fast : 0;
  const double wait = seconds(probe_length) * loss / kProbeBudget;
  const int windows = static_cast<int>(std::ceil(wait / seconds(kWindow)));
  hold_windows_ = std::clamp(windows, kHoldWindows, kMaxHoldWindows);
}

void CompressionGovernor::switch_to(bool mode, bool probing) {
  probing_ = probing;
  compress_.store(mode, std::memory_order_relaxed);
  windows_in_mode_ = 0;
  mode_start_ = window_start_;
  ++switches_;
}

CompressionGovernor::Estimate CompressionGovernor::estimate() const {
  std::lock_guard lock(mu_);
  return {rate_[1], rate_[0], switches_};
}

}  // namespace ramshift::pipeline
