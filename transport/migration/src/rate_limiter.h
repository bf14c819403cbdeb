// Token bucket shared by all queue threads of a sender (--bandwidth-limit).
// One lock per batch (hundreds of KiB), never per page. The rate may change while it runs
// (the control socket's set-bandwidth): it is read at every batch, and a new rate starts a
// fresh bucket, so it applies from the next batch on.
#pragma once

#include <algorithm>
#include <atomic>
#include <chrono>
#include <cstdint>
#include <mutex>
#include <thread>

namespace ramshift::migration {

class RateLimiter {
 public:
  using Clock = std::chrono::steady_clock;
  // `bytes_per_s` 0 = unlimited; with `live`, the rate is read from there instead.
  explicit RateLimiter(uint64_t bytes_per_s, const std::atomic<uint64_t>* live = nullptr)
      : fixed_(bytes_per_s), live_(live) {}

  uint64_t rate() const { return live_ ? live_->load(std::memory_order_relaxed) : fixed_; }

  // Blocks until `bytes` may go. Why a 20 ms burst: enough to send a batch at once on fast
  // links, small enough that a 1 Gbit/s limit never overshoots by more than 2.5 MB.
  void acquire(uint64_t bytes) {
    const uint64_t now_rate = rate();
    if (now_rate == 0 && !live_) return;
    Clock::time_point wake;
    {
      std::lock_guard lock(mu_);
      if (now_rate != static_cast<uint64_t>(rate_)) {
        rate_ = static_cast<double>(now_rate);
        started_ = false;
      }
      if (rate_ <= 0) return;
      auto now = Clock::now();
      if (!started_) {
        started_ = true;
        last_ = now;
        tokens_ = rate_ * 0.02;
      }
      double burst = std::max(rate_ * 0.02, static_cast<double>(bytes));
      tokens_ =
          std::min(burst, tokens_ + rate_ * std::chrono::duration<double>(now - last_).count());
      last_ = now;
      tokens_ -= static_cast<double>(bytes);
      if (tokens_ >= 0) return;
      wake = now + std::chrono::duration_cast<Clock::duration>(
                       std::chrono::duration<double>(-tokens_ / rate_));
    }
    std::this_thread::sleep_until(wake);
  }

 private:
  const uint64_t fixed_;
  const std::atomic<uint64_t>* live_;
  double rate_ = 0;  // under mu_: the rate of the current bucket
  std::mutex mu_;
  bool started_ = false;
  Clock::time_point last_;
  double tokens_ = 0;
};

}  // namespace ramshift::migration
