// One dpdk:// queue's congestion control, without DPDK: a pacer (token bucket) whose rate a
// delay-based controller sets from round-trip samples, in the manner of Swift (a target
// delay above the path's base round trip; additive increase below it, a decrease
// proportional to the excess above it, at most once per round trip), with a halving on a
// retransmission timeout as the backstop. The choice is argued in docs/dpdk-congestion.md.
// Times are passed in, so tests drive the clock.
#pragma once

#include <chrono>
#include <cstddef>

namespace ramshift::transport::dpdk {

using Clock = std::chrono::steady_clock;

struct CongestionConfig {
  // Bytes/s. Why 20 MB/s to start: below any link this runs on; slow start (x1.25 per round
  // trip, about 1 ms here) passes 1 GB/s within 10 ms.
  double initial_rate = 20e6;
  double min_rate = 1e6;
  double max_rate = 12.5e9;  // 100 Gbit/s
  // Queueing delay tolerated above the base round trip before slowing down. Why 5 ms: two
  // processes sharing two loaded cores see round trips jitter by milliseconds from scheduling
  // alone, which a tighter target takes for a queue (measured, load ~11, 512 MiB over a
  // 1 Gbit/s tbf veth, medians of 3 alternating: 18.9 s at 5 ms, 28.7 s at 2 ms); a tbf's
  // queue (50 ms at 1 Gbit/s, about 6 MB) is far from full at 5 ms.
  Clock::duration headroom = std::chrono::milliseconds(5);
  // Additive increase per round trip, bytes/s. Why 4 MB/s: from half of 1 Gbit/s back to
  // the full rate in about 15 round trips (tens of milliseconds).
  double additive_increase = 4e6;
  double beta = 0.8;  // how hard the decrease follows the excess delay
  // Bytes the pacer may send at once after an idle spell: why 200 us of the rate, and at
  // least 64 KiB: the I/O thread's loop comes round every few microseconds when busy, but
  // a preempted thread must not lose a whole time slice of sending.
  Clock::duration burst = std::chrono::microseconds(200);
  double min_burst_bytes = 64 * 1024;
};

class RateController {
 public:
  explicit RateController(CongestionConfig config = {});

  // Whether a frame of `bytes` may leave now (it takes the tokens if so). A refusal marks
  // the period as rate-limited: only a sender held back by the pacer earns an increase.
  bool admit(size_t bytes, Clock::time_point now);
  // A round-trip sample of a frame sent once (Karn).
  void on_rtt(Clock::duration sample, Clock::time_point now);
  // Bytes the peer acknowledged for the first time: the delivery rate per round trip, which
  // is the bottleneck's rate while a queue stands before it.
  void on_delivered(size_t bytes) { delivered_bytes_ += double(bytes); }
  // A retransmission timer ran out: halve, at most once per round trip.
  void on_timeout(Clock::time_point now);

  double rate() const { return rate_; }
  bool held_back_ever() const { return held_back_ever_; }
  bool slow_start() const { return slow_start_; }

 private:
  void end_period(Clock::time_point now);

  CongestionConfig config_;
  double rate_;
  double tokens_;
  Clock::time_point last_refill_{};
  bool started_ = false;
  bool slow_start_ = true;
  bool limited_ = false;  // the pacer refused a frame in this period
  bool held_back_ever_ = false;
  // Base round trip: the smallest sample of the connection. Not re-learnt: a standing
  // queue would creep into it, and a migration is short and takes one path.
  Clock::duration base_rtt_ = Clock::duration::max();
  Clock::duration srtt_{};
  Clock::duration period_min_ = Clock::duration::max();
  Clock::time_point period_start_{}, period_end_{};
  double delivered_bytes_ = 0;  // in this period
  Clock::time_point last_decrease_{};
};

}  // namespace ramshift::transport::dpdk
