// The outcome of one migration, as both ends report it (JSON keys in docs/user-guide.md).
#pragma once

#include <cstdint>
#include <optional>
#include <string>
#include <vector>

#include "ramshift/base/status.h"
#include "ramshift/pipeline/batch_format.h"
#include "ramshift/transport/transport.h"

namespace ramshift::migration {

// One pre-copy round as the source saw it.
struct RoundDetail {
  uint32_t round = 0;
  uint64_t pages = 0;  // pages handled in the round
  uint64_t guest_bytes = 0;
  uint64_t sent_bytes = 0;  // guest bytes that travelled (round 0 skips zero pages)
  uint64_t wire_bytes = 0;
  double ms = 0;
  uint64_t dirty_bytes_after = 0;   // dirtied while the round ran (what the next one sends)
  double expected_downtime_ms = 0;  // dirty_bytes_after / the round's bandwidth
  int throttle_pct = 0;
};

// The check before the commit (`verify` in the JSON report).
struct VerifyReport {
  std::string mode;                  // "transfer" or "full"
  uint64_t pages_checked = 0;        // pages whose hashes were compared, all attempts
  uint64_t mismatches_repaired = 0;  // pages resent because their chunk differed
  uint64_t chunks_repaired = 0;      // digest chunks that differed, all attempts
  double ms = 0;                     // the check's time, inside the downtime for a live guest
};

// Where a live migration's downtime went (`downtime_detail` in the JSON report), in ms. The
// source's parts follow one another from the pause to the destination's BYE, so they add up
// to its downtime_ms; the destination times the part of handoff_ms it spends resuming.
struct DowntimeDetail {
  double predicted_ms = 0;     // source: the convergence policy's prediction when it switched
  double last_pages_ms = 0;    // pause -> the final round placed there (its ROUND_END back)
  double device_state_ms = 0;  // its device state, read and encoded beside the last pages: sent
  double verify_ms = 0;        // DIGEST -> COMMIT: both checks, repair rounds included
  double verify_full_ms = 0;   // of verify_ms: hashing the paused memory here (--verify full)
  double handoff_ms = 0;       // HANDOFF -> BYE: one round trip plus the destination's resume
  double resume_ms = 0;        // destination: HANDOFF received -> the guest runs (its BYE follows)
  uint64_t device_state_bytes = 0;       // source: the device state's size
  uint64_t device_state_wire_bytes = 0;  // source: its frame body (smaller when compressed)
  // Switch-overs before this one that the guard aborted (their pages or the verdict on their
  // digest ran late, so the guest was resumed under the limit; switchover.h), and (source) the
  // longest of their pauses. The destination counts those it was told of (SWITCHOVER_ABORT).
  uint32_t aborted_switchovers = 0;
  double longest_aborted_pause_ms = 0;
};

// How long one guest thread waited for pages in post-copy (destination).
struct ThreadBlocked {
  uint32_t thread = 0;  // Linux thread id
  uint64_t faults = 0;
  double total_ms = 0;
  double max_ms = 0;  // the longest single wait
};

// Post-copy, as each end saw it (`postcopy` in the JSON report).
// Percentiles of a set of latencies, in microseconds (zeros when there were none).
struct LatencyFigures {
  double p50_us = 0;
  double p99_us = 0;
  double max_us = 0;
};
LatencyFigures latency_figures(std::vector<double> samples_us);

struct PostcopyReport {
  double postcopy_ms = 0;  // from POSTCOPY_START to every page placed (confirmed, source)
  uint64_t faults = 0;     // destination: guest accesses to absent pages
  uint64_t requests = 0;   // pages asked of the source (sent: destination, served: source)
  // Destination: from reading a fault to its page being placed (what the guest waits).
  LatencyFigures fault_latency;
  // Source: from reading a page request to its page handed to the transport (the source's
  // share of the destination's fault latency; the rest is the link and the placing).
  LatencyFigures service_latency;
  std::vector<ThreadBlocked> blocked;  // destination, per guest thread that faulted
  uint64_t pages_pushed = 0;           // pages placed (sent) from the background push
  uint64_t pages_faulted = 0;          // pages placed (sent) because the guest asked
  uint64_t pages_zero_local = 0;       // destination: never-sent zero pages filled here
  uint64_t pages_duplicate = 0;        // destination: arrived again once placed, dropped
  // Destination: how faulted pages came: "rdma_read" (one-sided reads of the source's
  // memory), "request" (PAGE_REQUEST answered by the source), "rdma_read+request" (requests
  // until the source's read keys arrived), "none" (no fault needed the source).
  std::string fault_path = "none";
  uint64_t reads = 0;                 // destination: pages fetched by one-sided read
  LatencyFigures read_fault_latency;  // destination: faults resolved by a read
  // Destination: each one-sided read call alone, posted to completed (what `ib_read_lat`
  // measures); the rest of read_fault_latency is the fault path and the placing.
  LatencyFigures read_latency;
  // Source: guest memory the destination could read during post-copy, and whether it was
  // all deregistered again at the end (its keys no longer valid).
  uint64_t read_exposed_bytes = 0;
  bool read_released = false;
  // Hybrid: POSTCOPY_DISCARD rounds before the pause, and the pages dropped on the
  // destination by them while the guest still ran on the source.
  uint32_t discard_rounds = 0;
  uint64_t pages_discarded = 0;
};

struct MigrationReport {
  std::string role;              // "source" or "destination"
  std::string mode = "precopy";  // precopy, postcopy, or hybrid (which did switch to post-copy)
  bool completed = false;
  bool verified = false;
  double total_ms = 0;
  double setup_ms = 0;
  std::optional<double> downtime_ms;  // none for an offline image: no guest was running
  uint32_t rounds = 0;
  uint64_t guest_bytes = 0;
  uint64_t wire_bytes = 0;
  pipeline::PageCounts pages;
  uint32_t queues = 0;
  uint32_t batch_pages = 0;  // pages per batch the migration used (the source chose it)
  // Memory this end set aside for XBZRLE caches, all queues: none for an image, which is
  // sent in one round (a cache only helps a page sent again).
  uint64_t xbzrle_cache_bytes = 0;
  std::string transport;
  std::string codec;
  std::string peer;
  // --codec auto: guest bytes/s measured while compressing and while raw (0 = not measured).
  std::optional<double> auto_compressed_bytes_per_s;
  std::optional<double> auto_raw_bytes_per_s;
  std::vector<RoundDetail> rounds_detail;  // source only
  int throttle_pct = 0;                    // auto-converge throttle at the end
  // Destination of a live guest: it ran here after the commit and stayed consistent.
  std::optional<bool> resumed_verified;
  uint64_t resumed_writes = 0;
  // Source of a live guest that did not move: "running" (never paused), "resumed" (paused
  // for the switchover, resumed after the failure or cancel) or "paused (handed over)".
  std::optional<std::string> source_guest;
  // ok when completed; kCancelled when either end was cancelled (JSON "status": "cancelled")
  std::optional<VerifyReport> verify;             // once a digest was compared
  std::optional<PostcopyReport> postcopy;         // once post-copy started
  std::optional<DowntimeDetail> downtime_detail;  // a live pre-copy guest that moved
  transport::LinkStats link;  // what the backend counts (dpdk: retransmits, ...)
  Status error;

  double throughput_mbps() const {
    return total_ms > 0 ? static_cast<double>(guest_bytes) * 8 / (total_ms / 1000) / 1e6 : 0;
  }
  std::string to_json() const;  // one JSON object, pretty-printed
};

}  // namespace ramshift::migration
