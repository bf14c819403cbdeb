// Pre-copy convergence policy: after each round, decide whether to copy another round,
// switch over, throttle the guest, or give up. Pure logic (no clock, no I/O), so it is
// unit-tested with made-up rounds.
//
// Rules (QEMU's ideas, made explicit):
//   - switch over when the remaining dirty bytes fit bandwidth x downtime_limit;
//   - switch over anyway when max_rounds rounds have been copied (the final round then
//     runs with the guest paused, so the downtime exceeds the limit: reported as such);
//   - "no progress" when the guest dirtied at least as many bytes per second as the round
//     sent, two rounds in a row: then throttle (auto-converge: 20%, then +10% per further
//     stall, up to 99%) or, without auto-converge, fail with the figures.
#pragma once

#include <chrono>
#include <cstdint>
#include <string>

namespace ramshift::migration {

struct ConvergenceConfig {
  // Why 100 ms: the product's promise is tens of milliseconds; QEMU's default is 300 ms.
  std::chrono::milliseconds downtime_limit{100};
  uint32_t max_rounds = 30;  // QEMU has no such cap; 30 bounds a migration that converges slowly
  bool auto_converge = false;
  int throttle_initial = 20;    // QEMU's cpu-throttle-initial
  int throttle_increment = 10;  // QEMU's cpu-throttle-increment
};

struct RoundMeasurement {
  uint32_t round = 0;
  double seconds = 0;             // how long the round took
  uint64_t sent_guest_bytes = 0;  // pages handled in the round x page size
  uint64_t dirty_bytes = 0;       // dirty at the end of the round (what is left to send)
};

struct Decision {
  enum Kind { kNextRound, kSwitchover, kThrottle, kFail } kind = kNextRound;
  int throttle_pct = 0;             // kThrottle: the new throttle
  double bandwidth = 0;             // bytes/s measured in the round
  double expected_downtime_ms = 0;  // remaining / bandwidth
  std::string reason;               // for logs and the error message
};

class ConvergencePolicy {
 public:
  explicit ConvergencePolicy(const ConvergenceConfig& config) : config_(config) {}
  Decision after_round(const RoundMeasurement& m);
  int throttle_pct() const { return throttle_; }

 private:
  ConvergenceConfig config_;
  int stalls_ = 0;
  int throttle_ = 0;
};

}  // namespace ramshift::migration
