#include "ramshift/pipeline/compression_governor.h"

#include <algorithm>

#include "ramshift/base/log.h"

namespace ramshift::pipeline {

CompressionGovernor::CompressionGovernor(bool enabled, bool always)
    : adaptive_(enabled && !always), compress_(enabled && always) {}

void CompressionGovernor::record(uint64_t guest_bytes, Clock::time_point now) {
  if (!adaptive_) return;
  std::lock_guard lock(mu_);
  if (!started_) {
    started_ = true;
    window_start_ = now;
  }
  if (now - window_start_ >= kSettle) window_bytes_ += guest_bytes;
  if (now - window_start_ >= kWindow) evaluate(now);
}

void CompressionGovernor::evaluate(Clock::time_point now) {
  if (!warmed_up_) {
    warmed_up_ = true;
    window_bytes_ = 0;
    window_start_ = now;
    return;
  }
  double seconds = std::chrono::duration<double>(now - window_start_ - kSettle).count();
  bool mode = compress_.load(std::memory_order_relaxed);
  rate_[mode] = seconds > 0 ? static_cast<double>(window_bytes_) / seconds : 0;
  window_bytes_ = 0;
  window_start_ = now;
  ++windows_in_mode_;

  // Each mode's score is its rate, compressing's discounted by the margin raw wins ties by.
  const double score[2] = {rate_[0], rate_[1] / kCompressMargin};
  bool next = mode;
  if (rate_[!mode] == 0) {
    next = !mode;  // the other mode has never been measured: measure it now
    probing_ = true;
  } else if (probing_) {
    next = score[1] > score[0];  // probe finished: keep the faster
    probing_ = false;
    hold_windows_ = next == mode ? kHoldWindows : std::min(2 * hold_windows_, kMaxHoldWindows);
  } else if (windows_in_mode_ >= hold_windows_ || score[mode] < 0.95 * score[!mode]) {
    // Time to check the other mode again — at once if this mode has become slower than the
    // other was when last measured (the content or the link changed).
    next = !mode;
    probing_ = true;
  }
  log::debug("codec auto: {} window {:.1f} MB/s (other mode {:.1f}); next {}",
             mode ? "zstd" : "raw", rate_[mode] / 1e6, rate_[!mode] / 1e6, next ? "zstd" : "raw");
  if (next != mode) {
    compress_.store(next, std::memory_order_relaxed);
    windows_in_mode_ = 0;
    ++switches_;
  }
}

CompressionGovernor::Estimate CompressionGovernor::estimate() const {
  std::lock_guard lock(mu_);
  return {rate_[1], rate_[0], switches_};
}

}  // namespace ramshift::pipeline
