// The state of a running migration, one snapshot struct for every reader: the run reports it
// about ten times a second to a callback (the CLI's progress bar draws it), the control socket
// answers `query` and `metrics` from the latest one (control_server.h), and the final one is
// made from the report (final_progress), so the bar, `query` and the report show the same
// numbers. Called from the session's control thread.
//
// Status names are QMP's (query-migrate): setup, active, postcopy-active, completed, failed,
// cancelled, and none before any migration (a daemon waiting for its first source).
#pragma once

#include <cstdint>
#include <functional>
#include <optional>
#include <string>

#include "ramshift/migration/report.h"

namespace ramshift::migration {

enum class MigrationStatus : unsigned char {
  kNone,            // no migration yet (a listening daemon)
  kSetup,           // connecting, handshake, memory set up
  kActive,          // rounds of pages (pre-copy), the switchover included
  kPostcopyActive,  // post-copy: the guest runs on the destination, its pages follow
  kCompleted,
  kFailed,
  kCancelled,
};
const char* migration_status_name(MigrationStatus status);
bool is_final(MigrationStatus status);

struct Progress {
  MigrationStatus status = MigrationStatus::kActive;
  uint32_t round = 0;
  uint64_t total_bytes = 0;        // guest bytes to move in this round
  uint64_t done_bytes = 0;         // of them handled (sent, skipped as zero, or placed)
  uint64_t transferred_bytes = 0;  // guest bytes handled in every round so far
  uint64_t wire_bytes = 0;         // bytes on the link so far, all rounds
  // The last finished round's figures (source; 0 before round 0 ends): what the guest
  // dirtied per second while it ran, and the downtime the convergence policy predicts.
  double dirty_rate_bytes_per_s = 0;
  double expected_downtime_ms = 0;
  double setup_ms = 0;  // connect to READY; 0 while still in set-up
  double elapsed_s = 0;
  bool paused = false;           // the source guest is paused: this is the switchover round
  uint64_t bandwidth_limit = 0;  // wire bytes/s the sender may use now; 0 = unlimited
  // Post-copy: the guest runs on the destination; total/done count the pages still to move.
  bool postcopy = false;
  // Once a live pre-copy guest has moved: the measured downtime (source) and its parts.
  std::optional<double> downtime_ms;
  std::optional<DowntimeDetail> downtime_detail;

  uint64_t remaining_bytes() const {
    return total_bytes > done_bytes ? total_bytes - done_bytes : 0;
  }
  // Guest bytes per second since the start.
  double throughput_bytes_per_s() const {
    return elapsed_s > 0 ? transferred_bytes / elapsed_s : 0;
  }
};

using ProgressFn = std::function<void(const Progress&)>;

// The snapshot a finished migration leaves: its status, totals and last round, from `report`.
Progress final_progress(const MigrationReport& report);

// `query`'s answer: one JSON object (keys in docs/user-guide.md, "Watching and controlling").
std::string progress_json(const Progress& p);

// Prometheus text exposition (version 0.0.4) of `p`, every metric labelled role="ROLE".
std::string progress_metrics(const Progress& p, const std::string& role);

}  // namespace ramshift::migration
