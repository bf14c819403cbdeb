// The destination's side of one migration (run_destination in destination.h): one object
// per run, its methods split by phase over two files:
//   destination.cc             the handshake, preparing memory, the data queues' threads, control
//                              frames and the run's outcome;
//   destination_switchover.cc  the control loop: the switch-over's device state and digest, the
//                              commit, the hand-off (or an aborted switch-over), and post-copy.
// The control thread owns it; the queue threads touch only their state_[q], the decoders, the
// digest and what the locks guard.
#pragma once

#include <atomic>
#include <chrono>
#include <condition_variable>
#include <memory>
#include <mutex>
#include <span>
#include <string>
#include <thread>
#include <vector>

#include "discarded_pages.h"
#include "memory_preparer.h"
#include "postcopy_destination.h"
#include "ramshift/guest/image.h"
#include "ramshift/guest/synthetic.h"
#include "ramshift/migration/destination.h"
#include "ramshift/migration/report.h"
#include "ramshift/migration/session_state.h"
#include "ramshift/pipeline/batch_decoder.h"
#include "ramshift/pipeline/checksum.h"
#include "ramshift/transport/transport.h"
#include "ramshift/wire/frame.h"

namespace ramshift::migration {

struct alignas(64) QueueState {
  std::atomic<uint64_t> pages{0};
  std::atomic<uint64_t> wire_bytes{0};
  std::atomic<int64_t> rounds_done{0};  // rounds whose ROUND_END this queue has checked
  pipeline::PageCounts counts;          // read after join
};

class DestinationRun {
 public:
  using Clock = std::chrono::steady_clock;

  DestinationRun(std::unique_ptr<transport::Connection> conn, const DestinationConfig& config,
                 const ProgressFn& progress)
      : conn_(std::move(conn)), config_(config), progress_(progress) {}

  MigrationReport run();

 private:
  // destination.cc
  void fail(const Status& s);
  Result<wire::FrameView> next_control(std::chrono::milliseconds timeout, const char* waiting_for);
  Status send_control(wire::FrameType type, std::span<const std::byte> body);
  Status migrate();
  Status handshake();
  void start_preparing();
  Status prepare_chunk(uint32_t r, uint64_t offset, std::span<std::byte> chunk);
  void queue_main(uint32_t q);
  Status receive_queue(uint32_t q);
  Status ack_finished_rounds();
  Status cancel_if_asked();
  Status error_after_stop();
  Status current_error();
  void report_progress();

  // destination_switchover.cc
  Status control_loop();
  Result<bool> take_digest(std::span<const std::byte> body);
  Status drop_switchover();
  Status run_postcopy(std::span<const std::byte> body);
  Status adopt_guest();
  Status run_resumed_guest();
  Status check_digest(const wire::Digest& digest);
  Result<bool> check_memory(const wire::Digest& digest);
  Status await_final_round(const wire::Digest& digest);

  std::unique_ptr<transport::Connection> conn_;
  const DestinationConfig& config_;
  const ProgressFn& progress_;
  wire::Hello hello_;
  wire::RegionTable table_;
  std::unique_ptr<guest::DestinationMemory> memory_;
  std::unique_ptr<pipeline::MemoryDigest> digest_;
  std::string device_state_;
  // Where the protocol stands: image or live guest, whether the guest may run here.
  DestinationSession session_{DestinationState::kAccepted};
  std::unique_ptr<guest::SyntheticGuest> guest_;  // declared after memory_: destroyed first
  uint32_t queues_ = 0;
  uint64_t total_pages_ = 0;
  std::unique_ptr<QueueState[]> state_;
  std::vector<std::thread> threads_;
  std::atomic<bool> stop_{false};
  std::mutex mu_;
  std::condition_variable cv_;
  std::mutex send_mu_;
  std::mutex ack_mu_;
  int64_t acked_rounds_ = 0;
  Status first_error_;
  bool verify_full_ = false;          // --verify full: the source asked for it in HELLO
  uint32_t verify_repairs_ = 0;       // VERIFY_MISMATCH frames sent
  uint32_t aborted_switchovers_ = 0;  // SWITCHOVER_ABORT frames taken
  bool placing_ = false;              // guest memory registered for the source's remote writes
  bool postcopy_ = false;             // the source may switch to post-copy (HELLO)
  PlacerSlot postcopy_slot_;          // the post-copy placer, for the data queues
  std::unique_ptr<DiscardedPages> discarded_;  // hybrid: pages dropped before POSTCOPY_START
  std::unique_ptr<MemoryPreparer> preparer_;
  std::atomic<uint64_t> prepared_bytes_{0};
  Clock::time_point start_;
  Clock::time_point last_progress_{};
  MigrationReport report_;
};

}  // namespace ramshift::migration
