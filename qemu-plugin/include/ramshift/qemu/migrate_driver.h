// Drives a whole QEMU-to-QEMU migration over QMP: capabilities and parameters on both QEMUs,
// optionally the two bridges (in this process, joined over a ramshift transport), the
// migration itself, and the run state both VMs end in. `ramshift qemu-migrate` is this
// function plus its flags and printing; tests and a management tool can call it directly.
//
//   source QEMU --unix--> bridge source ==via==> bridge dest --unix--> destination QEMU
//        ^                 (both in this process, with `via`)               ^
//        +------------------------------ QMP ------------------------------+
//
// Without `via` the QEMUs migrate to `destination_uri` themselves (QEMU to QEMU, or through
// bridges started elsewhere) and only QMP is driven.
#pragma once

#include <atomic>
#include <chrono>
#include <cstdint>
#include <functional>
#include <optional>
#include <string>
#include <vector>

#include "ramshift/base/status.h"
#include "ramshift/migration/cancel.h"
#include "ramshift/migration/progress.h"
#include "ramshift/qemu/bridge.h"

namespace ramshift::qemu {

struct MigrateDriverConfig {
  std::string source_qmp;       // the source QEMU's QMP socket path
  std::string destination_qmp;  // the destination's; that QEMU runs with -incoming defer
  // Bridged: both bridges run in this process, joined over this ramshift URI (e.g.
  // tcp://127.0.0.1:0); QEMU meets them on unix sockets in a temporary directory.
  // Exactly one of `via` and `destination_uri` is given.
  std::string via;
  // Direct: the URI the destination QEMU listens on, and the one the source QEMU migrates to
  // (empty = destination_uri; differs for exec: bridges).
  std::string destination_uri;
  std::string source_uri;
  uint32_t multifd_channels = 0;    // QEMU multifd channels; 0 = single-channel migration
  std::string multifd_compression;  // QEMU's own (none|zlib|zstd); empty = QEMU's default
  // QEMU's max-bandwidth, bytes/s. 0 = unlimited: QEMU's own default (128 MiB/s) would
  // hide the transport, so the driver lifts it to 1 TiB/s.
  uint64_t max_bandwidth = 0;
  // QEMU's downtime-limit; 0 = QEMU's (300 ms). With `tune`, the ceiling the tuner raises
  // the limit to, never past.
  double downtime_limit_ms = 0;
  // Switch-over tuning (switchover_tuner.h): the source QEMU's downtime-limit starts at a
  // floor and is raised toward the ceiling when iterations stop shrinking what is left, and
  // avail-switchover-bandwidth (QEMU >= 8.2, detected by query-migrate-parameters) follows
  // the sustained transfer rate. The floor is `tune_floor_ms` when set, else the tuner's
  // (SwitchoverTuner::kFloorMs). Off: the parameters are set once, as given.
  bool tune = true;
  std::optional<double> tune_floor_ms;
  // When set, each query-migrate answer is written here, one JSON object a line (the parts the
  // tuner reads, under QEMU's key names): a trace to replay in tests.
  std::string trace_path;
  // QEMU post-copy: when set, both QEMUs get the postcopy-ram capability and the source is
  // told `migrate-start-postcopy` once pre-copy has run this long (0: at once). The guest then
  // runs on the destination, which fetches the pages it touches over the migration's return
  // path (through the bridges with `via`). QEMU refuses it together with multifd before 8.1.
  std::optional<std::chrono::duration<double>> postcopy_after;
  // When post-copy pauses (its channels broke: a cut link, a failed bridge), recover it the
  // way QEMU does (`migrate-recover` on the destination, `migrate resume=true` on the
  // source; src/postcopy_recovery.h), retrying until `timeout`. The bridges must carry the new
  // channels: external ones started with --recover (BridgeConfig::recover), or `via`. Off: the
  // driver stops at the pause with an error that says how to recover by hand.
  bool postcopy_recover = true;
  // With postcopy_after: QEMU's postcopy-preempt capability too (QEMU >= 8.0 for recovery): the
  // pages a fault asks for travel on a channel of their own, ahead of the background stream.
  // One more channel for the bridges (their queues: 1 + multifd + 1).
  bool postcopy_preempt = false;
  // With postcopy_after: QEMU's postcopy-blocktime capability (QEMU >= 3.0): the destination
  // counts how long the guest's vCPUs waited for faulted pages; the report carries its totals.
  bool postcopy_blocktime = false;
  // QEMU's auto-converge capability (set on both QEMUs like the others; the source's acts):
  // when pre-copy stops converging QEMU slows the vCPUs (cpu-throttle-initial, 20%, then
  // +cpu-throttle-increment, 10%, per stalled iteration, up to 99%: its defaults, left as they
  // are). Off: the capability is cleared.
  bool auto_converge = false;
  // The migration is cancelled (QEMU resumes the source) when not done in this long. In
  // post-copy there is nothing to cancel back to: the driver gives up without migrate_cancel.
  std::chrono::duration<double> timeout{600};
  // With `via`: the bridges' codec, multifd awareness and transport options. The driver
  // sets queues (1 + multifd_channels) and accept_timeout_ms (60 s) itself.
  BridgeConfig bridge;
  // Set by the caller to cancel from another thread (a signal, the control socket); may be
  // null. The driver sends QMP `migrate_cancel` to the source QEMU at its next poll (100 ms)
  // and waits for QEMU to say cancelled: the source VM keeps running, and the destination
  // QEMU, whose incoming stream broke, fails its load and exits (QEMU's own behaviour).
  migration::CancelToken* cancel = nullptr;
  // The control socket's set-bandwidth: when set, a new value is sent to the source QEMU
  // as max-bandwidth (bytes/s; 0 = unlimited, as max_bandwidth) at the next poll.
  const std::atomic<uint64_t>* live_max_bandwidth = nullptr;
};

// QEMU's own figures from its last query-migrate (units as the JSON keys say).
struct QemuMigrationFigures {
  std::string status = "?";  // QEMU's migration status: completed, failed, cancelled, ...
  uint64_t total_ms = 0;
  uint64_t downtime_ms = 0;
  uint64_t setup_ms = 0;
  struct Ram {
    uint64_t total_bytes = 0;
    uint64_t transferred_bytes = 0;
    uint64_t duplicate_pages = 0;  // QEMU's name for the zero pages it skipped
    uint64_t normal_pages = 0;
    double mbps = 0;
    uint64_t dirty_sync_count = 0;
  };
  std::optional<Ram> ram;            // absent before QEMU reported any RAM figure
  std::optional<std::string> error;  // QEMU's error-desc
};

// What the switch-over tuner chose and why (MigrateDriverConfig::tune).
struct TuningReport {
  double floor_ms = 0;
  // "fixed": the tuner's default (a switch-over's fixed part); "given":
  // MigrateDriverConfig::tune_floor_ms. The rates (bytes/s) are the sustained transfer rate and
  // QEMU's dirty rate at the last iteration, what the floor was held against (absent before the
  // first iteration).
  std::string floor_source;
  std::optional<double> floor_link_rate;
  std::optional<double> floor_dirty_rate;
  double ceiling_ms = 0;
  // Whether the source QEMU has avail-switchover-bandwidth (>= 8.2), and the last value set
  // (bytes/s; absent: never set) after how many updates.
  bool switchover_bandwidth_supported = false;
  std::optional<uint64_t> switchover_bandwidth;
  uint32_t switchover_bandwidth_updates = 0;
  // Each downtime-limit set: the first is the floor, before `migrate`.
  struct Step {
    double at_ms = 0;  // QEMU's total-time when it was set
    uint64_t downtime_limit_ms = 0;
    uint64_t remaining_bytes = 0;   // what was left then
    uint64_t dirty_sync_count = 0;  // QEMU's iteration count then
    std::string reason;
  };
  std::vector<Step> downtime_limit_steps;
};

// One pause of post-copy and QEMU's recovery from it (ms since `migrate`).
struct PostcopyRecoveryEvent {
  double paused_at_ms = 0;                // the source first said postcopy-paused
  std::optional<double> recovered_at_ms;  // it was postcopy-active (or completed) again
  uint32_t attempts = 0;                  // `migrate resume=true` sent
  std::string last_error;                 // the last refusal, while not recovered
};

struct MigrateReport {
  QemuMigrationFigures qemu;
  // query-status of the VMs: the source before and after, the destination at the end.
  std::string source_status_before = "?";
  std::string source_status = "?";
  std::string destination_status = "?";
  uint32_t multifd_channels = 0;
  // With postcopy_after: ms from `migrate` to `migrate-start-postcopy` (absent: not started,
  // the migration ended in pre-copy first).
  std::optional<double> postcopy_started_ms;
  std::vector<PostcopyRecoveryEvent> postcopy_recoveries;  // each pause, in order
  // The migration capabilities each QEMU reports on (query-migrate-capabilities, read back
  // after setting them), e.g. {"auto-converge", "postcopy-ram"}.
  std::vector<std::string> source_capabilities, destination_capabilities;
  // The highest cpu-throttle-percentage the source reported (auto-converge; 0: never throttled).
  uint32_t throttle_pct_max = 0;
  // With postcopy_blocktime, from the destination's query-migrate once completed: the total
  // time (ms) vCPUs were blocked on faults (postcopy-blocktime) and each vCPU's.
  std::optional<uint64_t> postcopy_blocktime_ms;
  std::vector<uint64_t> postcopy_vcpu_blocktime_ms;
  std::string path;  // "bridge URI" or "direct URI"
  // With `via`: each bridge's report.
  std::optional<BridgeReport> bridge_source;
  std::optional<BridgeReport> bridge_destination;
  // Set when the destination QEMU closed a channel before the bridge had delivered its last
  // bytes, after QEMU had completed: noted, not a failure (BridgeReport::qemu_closed_early).
  std::string bridge_note;
  std::optional<TuningReport> tuning;  // with MigrateDriverConfig::tune
  // ok: QEMU completed, the destination VM is in the source's run state and both bridges
  // completed. Otherwise what went wrong (QEMU resumes the source VM; source_status says).
  Status outcome;

  std::string to_json() const;  // one JSON object, pretty-printed (keys in docs/user-guide.md)
};

// Runs the migration. An error means it never started (a QMP socket, a refused setting, the
// bridges' transport, `migrate-incoming`) and both VMs are as they were, apart from the
// migration parameters set; once QEMU has been told to migrate the result is a report,
// whose `outcome` says whether it worked (kCancelled after a cancel). `progress` gets
// QEMU's query-migrate as the snapshot every reader shares (migration/progress.h: status,
// round = dirty-sync-count - 1, transferred, remaining, dirty rate, expected downtime, setup
// and total time) about ten times a second, then once with a final status, from the
// calling thread.
Result<MigrateReport> run_qemu_migration(const MigrateDriverConfig& config,
                                         const migration::ProgressFn& progress = {});

}  // namespace ramshift::qemu
