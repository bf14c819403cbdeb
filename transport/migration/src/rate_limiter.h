// Token bucket shared by all queue threads of a sender (--bandwidth-limit).
// One lock per batch (hundreds of KiB), never per page.
#pragma once

#include <chrono>
#include <cstdint>
#include <mutex>
#include <thread>

namespace ramshift::migration {

class RateLimiter {
 public:
  using Clock = std::chrono::steady_clock;
  // `bytes_per_s` 0 = unlimited.
  explicit RateLimiter(uint64_t bytes_per_s) : rate_(static_cast<double>(bytes_per_s)) {}

  // Blocks until `bytes` may go. Why a 20 ms burst: enough to send a batch at once on fast
  // links, small enough that a 1 Gbit/s limit never overshoots by more than 2.5 MB.
  void acquire(uint64_t bytes) {
    if (rate_ <= 0) return;
    Clock::time_point wake;
    {
      std::lock_guard lock(mu_);
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
  double rate_;
  std::mutex mu_;
  bool started_ = false;
  Clock::time_point last_;
  double tokens_ = 0;
};

}  // namespace ramshift::migration
