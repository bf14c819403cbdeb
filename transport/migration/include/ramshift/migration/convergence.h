// Pre-copy convergence policy: after each round, decide whether to copy another round,
// switch over, throttle the guest, or give up. Pure logic (no clock, no I/O), so it is
// unit-tested with recorded rounds (tests/unit/migration/traces/).
//
// The aim is the lowest downtime the link allows, with --downtime-limit as a ceiling, not a
// target (docs/design.md, "Choosing the switch-over round", has the measurements). A round
// costs a fixed part (queue threads, drain, the ROUND_END round trip) plus its bytes at the
// link's rate; the fixed part is measured from this migration's own rounds, never assumed
// (the config's constants stand only until a round below 1 MB has been timed):
//   - round overhead = the median, over the last three rounds below 1 MB, of the round's
//     time minus its bytes at the bulk rate (the last round that moved at least 1 MB);
//   - predicted downtime = the switch-over's fixed part (twice the largest of those three:
//     the last round's own, and the commit exchange and hand-off over the same control path)
//     + what is left at the safe rate: the slower of the last two rounds' byte rates, each
//     counting its pages as if they travelled raw (the codec may stop compressing in the
//     last round) and, once the overhead is measured, without it (at most the bulk rate)
//     + the device state at the bulk rate;
//   - another round pays when it should leave at most min_shrink of what is left: it lasts
//     round overhead + what is left / this round's byte rate, while the guest dirties at the
//     lower of the last two rounds' dirty rates (a single burst does not end the copying);
//   - copy another round while one pays, even under the limit; switch over when none pays
//     and the prediction fits the limit even if its byte part runs as much slower than
//     predicted as this migration's slowest round's did (the guard: a wrong prediction must
//     not push the downtime past the limit; a measured fixed part is not multiplied); also
//     when the remaining set has not shrunk below its smallest for two rounds (the guest's
//     working set is all that is left);
//   - switch over when nothing is left to copy, even over the limit: no round can lower it;
//   - switch over anyway when max_rounds rounds have been copied (the final round then
//     runs with the guest paused, so the downtime may exceed the limit: reported as such);
//   - "no progress" when the guest dirtied at least as many bytes per second as the round
//     sent, two rounds in a row: switch over if what is left fits the limit; copy on while
//     the smallest rest reached so far would fit (a guest whose rounds are all fixed cost
//     returns to it); otherwise throttle (auto-converge: 20%, then +10% per further stall,
//     up to 99%) or, without auto-converge, fail with the figures.
#pragma once

#include <chrono>
#include <cstdint>
#include <string>
#include <vector>

namespace ramshift::migration {

struct ConvergenceConfig {
  // Why 100 ms: the product's promise is tens of milliseconds; QEMU's default is 300 ms.
  // A ceiling, not a target: the policy switches over under it once no further round pays.
  std::chrono::milliseconds downtime_limit{100};
  uint32_t max_rounds = 30;  // QEMU has no such cap; 30 bounds a migration that converges slowly
  bool auto_converge = false;
  int throttle_initial = 20;    // QEMU's cpu-throttle-initial
  int throttle_increment = 10;  // QEMU's cpu-throttle-increment
  // Until a round below 1 MB has been timed (then measured: see above). Downtime beyond the
  // last round's bytes: pause, last dirty fetch, device state, commit round trip, resume,
  // BYE. Why 10 ms: median 4.7 ms, 12 of 15 switch-overs at most
  // 12.3 ms, over tcp (1 Gbit/s veth and loopback) on two cores shared with five builds;
  // the two above 20 ms were on a CPU-starved host (docs/design.md).
  double switchover_overhead_ms = 10;
  // Until measured, likewise. Time a round takes beyond its bytes: queue threads, drain, the
  // ROUND_END round trip. Why 3 ms: rounds of ~20 pages took 0.9-3.5 ms (veth and loopback tcp). It
  // is what makes a round stop paying once the rest is a few dozen pages.
  double round_overhead_ms = 3;
  // Another round must leave at most this fraction of what is left. Why 0.5: on the traces,
  // rounds left 0.10-0.53 of their input until the floor (~20 pages at 20 MB/s) and
  // 0.86-1.10 at it; 0.5 stops at the floor, give or take one round of noise.
  double min_shrink = 0.5;
};

struct RoundMeasurement {
  uint32_t round = 0;
  double seconds = 0;               // how long the round took
  uint64_t sent_guest_bytes = 0;    // pages handled in the round x page size
  uint64_t dirty_bytes = 0;         // dirty at the end of the round (what is left to send)
  uint64_t wire_bytes = 0;          // what the round put on the wire; 0 = unknown (guest bytes)
  uint64_t device_state_bytes = 0;  // what the switch-over sends besides pages (0 = unknown)
  // A switch-over the guard aborted (switchover.h): timed against its prediction, so its
  // overrun widens the slowdown, but no measure of the link's rate or of the guest's progress.
  bool aborted_switchover = false;
};

struct Decision {
  enum Kind { kNextRound, kSwitchover, kThrottle, kFail } kind = kNextRound;
  int throttle_pct = 0;               // kThrottle: the new throttle
  double bandwidth = 0;               // guest bytes/s measured in the round
  double expected_downtime_ms = 0;    // switching over now: overhead + rest at the safe rate
  double next_round_downtime_ms = 0;  // the same after one more round (predicted)
  // The guard: the byte part of expected_downtime_ms x `slowdown`, the most this migration's
  // rounds' byte parts ran over their prediction (1 = none, at most 3), + the fixed part
  // (x `slowdown` too while it is the config's constant). A switch-over must fit with it.
  double slowdown = 1;
  double switchover_fixed_ms = 0;  // the fixed part in expected_downtime_ms
  double device_state_ms = 0;      // the device state at the bulk rate, in expected_downtime_ms
  double round_overhead_ms = 0;    // a round's fixed part, as used for this decision
  bool fixed_measured = false;     // both come from this migration's rounds
  double worst_downtime_ms = 0;
  std::string reason;  // for logs and the error message
};

class ConvergencePolicy {
 public:
  explicit ConvergencePolicy(const ConvergenceConfig& config) : config_(config) {}
  Decision after_round(const RoundMeasurement& m);
  int throttle_pct() const { return throttle_; }
  // Raw bytes/s of the last round that moved at least 1 MB (0 before one did).
  double bulk_rate() const { return bulk_rate_; }
  // A round's fixed part measured so far (ms; 0 before a round below 1 MB was timed).
  double measured_round_overhead_ms() const;

 private:
  // Times a round below 1 MB: its length minus its bytes at the bulk rate.
  void measure_overhead(const RoundMeasurement& m);
  // The round's bytes per second of link time: as if raw, less the measured fixed part.
  double byte_rate(const RoundMeasurement& m) const;
  Decision throttle_or_fail(const RoundMeasurement& m, Decision d);

  ConvergenceConfig config_;
  int stalls_ = 0;
  int throttle_ = 0;
  bool have_previous_ = false;           // the fields below hold the previous round's figures
  double previous_rate_ = 0;             // byte_rate() of the previous round that sent
  double previous_dirty_rate_ = 0;       // bytes/s
  uint64_t smallest_rest_ = UINT64_MAX;  // fewest dirty bytes after any round so far
  double predicted_round_s_ = 0;         // how long the policy expected this round to last
  double predicted_fixed_s_ = 0;         // of which its fixed part
  double slowdown_ = 1;                  // the most a round ran over that, as a ratio
  struct TimedRound {
    double seconds, predicted_s, predicted_fixed_s;
  };
  std::vector<TimedRound> timed_;              // the rounds the guard times (at most max_rounds)
  double bulk_rate_ = 0;                       // raw bytes/s of the last round of >= 1 MB
  int rounds_without_shrink_ = 0;              // rounds since the rest last hit a new low
  static constexpr int kOverheadWindow = 3;    // the median below assumes 3
  double overheads_ms_[kOverheadWindow] = {};  // the last rounds' fixed parts, a ring
  int overheads_ = 0;                          // how many were timed (all rounds)
};

}  // namespace ramshift::migration
