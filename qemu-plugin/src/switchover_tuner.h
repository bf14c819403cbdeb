// Chooses stock QEMU's switch-over parameters during a migration from what QEMU itself
// reports: `avail-switchover-bandwidth` (QEMU >= 8.2) and `downtime-limit`. Pure logic, no
// clock and no I/O: `qemu-migrate` feeds it each query-migrate answer (~10 a second) and
// applies what it returns with migrate-set-parameters; the tests feed it recorded traces.
//
// Why: QEMU switches over once what is left (ram.remaining) is under bandwidth x
// downtime-limit, with the bandwidth taken from the last 100 ms window of the migration
// thread's writes, which on a shaped link swings with the socket buffers. And it switches over
// at the first iteration that fits its limit (default 300 ms), so its downtime lands anywhere
// under it. The tuner
//   (a) sets avail-switchover-bandwidth to the sustained rate: transferred bytes over the
//       last kRateWindowMs of samples (at least kRateMinSpanMs), re-set when it moves by more
//       than kRateChange;
//   (b) starts downtime-limit at a floor and keeps it there while the iterations still shrink
//       what is left (each sampled iteration a new low by kShrink), and doubles it, up to the
//       ceiling (the user's --downtime-limit, default QEMU's 300 ms), each time kStallIterations
//       iterations in a row neither set a new low nor fit the current limit: a guest that
//       dirties memory as fast as the link moves it still converges, at the ceiling.
//   (c) that floor is kFloorMs unless the user gives one: the fixed part of a switch-over,
//       which no link shortens. QEMU syncs the dirty log again after each short pass, so what
//       a sync finds is what the guest dirtied since the last one, small while it converges;
//       a guest that outruns the link is what (b)'s raising is for (from 5 ms, two doublings
//       more than from 20 ms). Against 20 ms at 100 Mbit/s and 1 Gbit/s neither floor won on
//       downtime or total time and no run raised the limit (docs/benchmarks).
// docs/design.md ("qemu-migrate: QEMU's switch-over parameters") has the measurements.
#pragma once

#include <cstdint>
#include <deque>
#include <optional>
#include <string>

#include <nlohmann/json.hpp>

#include "ramshift/qemu/migrate_driver.h"

namespace ramshift::qemu {

// The parts of one query-migrate answer the tuner reads; a trace file is these, one JSON
// object a line, under QEMU's own key names (to_json / from_query_migrate round-trip).
struct MigrationSnapshot {
  std::string status;               // active, completed, ...
  double total_ms = 0;              // total-time: since `migrate`
  double setup_ms = 0;              // setup-time
  double expected_downtime_ms = 0;  // expected-downtime
  uint64_t remaining_bytes = 0;     // ram.remaining: the dirty pages still to send
  uint64_t transferred_bytes = 0;   // ram.transferred: bytes written to the migration stream
  uint64_t dirty_sync_count = 0;    // ram.dirty-sync-count: 1 in the bulk pass, +1 an iteration
  double dirty_pages_rate = 0;      // ram.dirty-pages-rate: pages/s
  uint64_t page_size = 4096;        // ram.page-size
  double mbps = 0;                  // ram.mbps: QEMU's last 100 ms window

  static MigrationSnapshot from_query_migrate(const nlohmann::json& q);
  nlohmann::json to_json() const;
};

struct SwitchoverTunerConfig {
  // downtime-limit while iterations still shrink what is left; unset: kFloorMs.
  std::optional<double> floor_ms;
  double ceiling_ms = 300;  // the most it is raised to (QEMU's default when the user gave none)
  bool set_switchover_bandwidth = true;  // QEMU has avail-switchover-bandwidth
};

// What to set on the source QEMU now; empty fields: leave as is.
struct TunerAction {
  std::optional<uint64_t> switchover_bandwidth;  // bytes/s
  std::optional<uint64_t> downtime_limit_ms;
  bool empty() const { return !switchover_bandwidth && !downtime_limit_ms; }
};

class SwitchoverTuner {
 public:
  // How much of the recent past the sustained rate spans, and the least it needs.
  static constexpr double kRateWindowMs = 2000;
  static constexpr double kRateMinSpanMs = 1000;
  // Re-set avail-switchover-bandwidth when the rate moved by more than this fraction.
  static constexpr double kRateChange = 0.10;
  // An iteration "shrinks" when what is left is at most this fraction of the lowest so far.
  static constexpr double kShrink = 0.8;
  // Iterations in a row that neither shrink nor fit the limit before it is raised.
  static constexpr int kStallIterations = 2;
  // The floor when none is given: the fixed part of a switch-over (stop, device state, start,
  // a round trip: 1-2 ms on QEMU 10, 1-11 ms on 7.2), with room for a few MB of what is left.
  static constexpr double kFloorMs = 5;

  explicit SwitchoverTuner(SwitchoverTunerConfig config);

  // The downtime-limit to set before `migrate`.
  uint64_t initial_downtime_limit_ms() const;
  // Feeds the next query-migrate answer; returns what to set now (usually nothing).
  TunerAction observe(const MigrationSnapshot& s);
  // The choices so far, for the report.
  const TuningReport& report() const { return report_; }
  uint64_t downtime_limit_ms() const { return limit_ms_; }
  std::optional<double> sustained_rate() const { return rate_; }

 private:
  void update_rate(const MigrationSnapshot& s, TunerAction& action);
  void note_rates(const MigrationSnapshot& s);
  void on_iteration(const MigrationSnapshot& s, TunerAction& action);

  SwitchoverTunerConfig config_;
  TuningReport report_;
  uint64_t limit_ms_;
  std::deque<std::pair<double, uint64_t>> samples_;  // (total_ms, transferred) in the window
  std::optional<double> rate_;                       // bytes/s, sustained
  uint64_t last_sync_ = 0;
  std::optional<uint64_t> best_remaining_;  // lowest iteration sample so far
  int stalled_ = 0;                         // iterations in a row without a new low
};

}  // namespace ramshift::qemu
