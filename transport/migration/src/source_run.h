// The source's side of one migration (run_source in source.h): one object per run, its
// methods split by phase over three files:
//   source.cc             connecting, the handshake, control frames, the run's outcome;
//   source_rounds.cc      one round of pages over every queue (stream_round) and its threads;
//   source_switchover.cc  the rounds' policy, the switch-over (or post-copy), verify, hand-off.
// Not thread-safe: the control thread owns it; the queue threads touch only their stats_[q],
// the encoders and what StreamShared hands them.
#pragma once

#include <atomic>
#include <chrono>
#include <future>
#include <memory>
#include <span>
#include <vector>

#include "memory_preparer.h"
#include "queue_stream.h"
#include "ramshift/migration/convergence.h"
#include "ramshift/migration/report.h"
#include "ramshift/migration/session_state.h"
#include "ramshift/migration/source.h"
#include "ramshift/pipeline/batch_encoder.h"
#include "ramshift/pipeline/checksum.h"
#include "ramshift/pipeline/compression_governor.h"
#include "ramshift/transport/transport.h"
#include "rate_limiter.h"
#include "remote_memory.h"
#include "switchover.h"

namespace ramshift::migration {

class SourceRun {
 public:
  using Clock = std::chrono::steady_clock;
  using Selection = PageSelection;

  SourceRun(guest::SourceGuest& guest, const SourceConfig& config, const ProgressFn& progress)
      : guest_(guest),
        config_(config),
        progress_(progress),
        governor_(pipeline::codec_may_compress(config.codec.mode),
                  config.codec.mode != pipeline::CodecMode::kAuto),
        limiter_(config.bandwidth_limit, config.live_bandwidth_limit) {}

  MigrationReport run();

 private:
  // source.cc
  Status migrate();
  Status cancel_if_asked();
  Status send_control(wire::FrameType type, std::span<const std::byte> body);
  Result<std::vector<std::byte>> await(wire::FrameType want, std::chrono::milliseconds timeout);
  Status handshake();
  Status start_placement();
  Status absorb_keys(std::span<const std::byte> body);
  Selection all_pages() const { return Selection(guest_.regions().size()); }

  // source_rounds.cc
  Status stream_round(uint32_t round, const Selection& selection);
  Progress snapshot(uint32_t round, uint64_t total, uint64_t done, uint64_t wire) const;
  Status peer_error_or(Status lost);
  Status await_round_ack(uint32_t round);
  Status check_round_ack(std::span<const std::byte> body, uint32_t round);
  void queue_main(uint32_t q, uint32_t round, const Selection& selection);

  // source_switchover.cc
  Status precopy_rounds();
  Status switchover(uint32_t round, Selection dirty, const Decision& decision);
  Status resume_if_overdue();
  Status abort_switchover();
  void count_aborted_switchover(double paused_ms, const char* what, const char* kept_for);
  Status too_many_aborted_switchovers() const;
  Status send_device_state(const DeviceStateFrame& frame);
  Status go_postcopy(uint32_t rounds, Selection dirty);
  Status verify();
  Status hand_off();

  guest::SourceGuest& guest_;
  const SourceConfig& config_;
  const ProgressFn& progress_;
  pipeline::CompressionGovernor governor_;
  RateLimiter limiter_;
  std::unique_ptr<transport::Connection> conn_;
  std::unique_ptr<QueueStats[]> stats_;
  std::unique_ptr<pipeline::MemoryDigest> digest_;
  std::vector<std::unique_ptr<pipeline::BatchEncoder>> encoders_;  // per data queue
  std::atomic<bool> abort_{false};
  std::atomic<uint32_t> finished_{0};
  SourceSession session_{SourceState::kConnecting};  // whether the guest may be resumed, too
  uint32_t early_ack_ = 0;  // round + 1 of an acknowledgement taken during the round
  Clock::time_point pause_time_;
  DowntimeClock downtime_clock_;                // from the switch-over's pause
  uint64_t peer_capabilities_ = 0;              // the destination's HELLO
  double link_rate_ = 0;                        // the rounds' bulk rate when the switch-over began
  DowntimeDetail downtime_;                     // its parts so far
  Clock::time_point digest_sent_;               // the last DIGEST of the switch-over
  SwitchoverGuard guard_;                       // armed while a guarded switch-over's pages travel
  std::vector<double> aborted_pauses_ms_;       // each switch-over the guard aborted, its pause
  bool round_paused_ = false;                   // the round in flight started with the guest paused
  std::future<DeviceStateFrame> device_state_;  // read while the switch-over's pages go
  uint64_t cache_per_queue_ = 0;
  bool placing_ = false;  // raw pages travel as one-sided writes (rdma)
  bool keys_logged_ = false;
  wire::RegionTable table_;
  RemoteMemory remote_;                         // destination memory keyed so far
  std::unique_ptr<MemoryPreparer> local_prep_;  // after conn_: its threads use it
  uint64_t wire_control_ = 0;
  bool error_sent_ = false;  // the ERROR frame went out already (a cancel during a round)
  Clock::time_point start_;
  MigrationReport report_;
};

}  // namespace ramshift::migration
