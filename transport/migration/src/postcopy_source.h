// The post-copy source: the guest is paused here for good and runs on the destination. It
// answers each PAGE_REQUEST on queue 0 at once (no pushed page waits in front of it), and
// pushes every other page POSTCOPY_START named over the data queues, continuing from just
// after the page last requested (a guest's next accesses tend to be near its last), until
// the destination confirms every page placed (POSTCOPY_PLACED). The guest's memory stays
// untouched and mapped until then: it is the only whole copy.
//
// Each page is hashed into the digest the first time it is sent (its memory cannot change
// any more), so the DIGEST that follows covers it.
//
// Over a transport with one-sided reads (rdma://) the source also lets the destination read
// the guest's memory: it registers it kRemoteRead on a thread of its own as post-copy starts
// (requests are served meanwhile), announces the keys in MEMORY_KEYS on queue 0, the
// authenticated session's control queue, and deregisters them when post-copy ends or fails.
// Faults then cost the source no CPU; it still pushes every page. Pages the destination read
// and placed before the push reached them are hashed when it confirms every page placed.
#pragma once

#include <atomic>
#include <chrono>
#include <memory>
#include <mutex>
#include <optional>
#include <thread>
#include <vector>

#include "queue_stream.h"
#include "ramshift/guest/guest.h"
#include "ramshift/migration/config.h"
#include "ramshift/migration/progress.h"
#include "ramshift/migration/report.h"
#include "ramshift/migration/session_state.h"
#include "ramshift/pipeline/checksum.h"
#include "ramshift/transport/transport.h"
#include "ramshift/wire/frame.h"

namespace ramshift::migration {

class PostcopySender {
 public:
  using Clock = std::chrono::steady_clock;
  // `pages`: per region, the bitmap POSTCOPY_START carries. Everything outlives the sender.
  PostcopySender(transport::Connection& conn, const std::vector<guest::Region>& regions,
                 uint32_t page_size, uint32_t data_queues, pipeline::MemoryDigest& digest,
                 const std::vector<std::vector<uint8_t>>& pages);

  // Serves and pushes until POSTCOPY_PLACED (ok), the destination's ERROR, a lost link, or
  // `placed_timeout` after the last push with no confirmation.
  Status run(SourceSession& session, const ProgressFn& progress,
             std::chrono::milliseconds placed_timeout);

  // When POSTCOPY_RUNNING arrived (the guest runs there), if it did.
  std::optional<Clock::time_point> running_at() const { return running_at_; }
  PostcopyReport figures() const;
  uint64_t wire_bytes() const { return wire_bytes_.load(); }

 private:
  struct Run {
    uint32_t region;
    uint64_t first;
    uint32_t count;
  };
  void push_main(uint32_t queue);
  std::optional<Run> next_run();  // the next pages to push, marked sent; none when all are
  Status send_run(uint32_t queue, const Run& run, const std::atomic<bool>* abort);
  Status serve_request(std::span<const std::byte> body);
  // Marks pages sent; hashes those sent for the first time. mu_ held.
  void claim(uint32_t region, uint64_t first, uint32_t count);
  uint64_t key(uint32_t region, uint64_t page) const { return offsets_[region] + page; }
  // Read exposure (capabilities().remote_read): registers on expose_thread_; the run loop
  // announces the keys once registered; release_reads() deregisters them (run()'s end).
  void expose_main();
  Status announce_reads();
  void release_reads();

  transport::Connection& conn_;
  const std::vector<guest::Region>& regions_;
  uint32_t page_size_;
  uint32_t queues_;
  pipeline::MemoryDigest& digest_;
  wire::RegionTable table_;
  std::vector<uint64_t> offsets_;
  uint64_t keys_ = 0;

  mutable std::mutex mu_;           // the fields below
  std::vector<uint8_t> left_;       // named and not sent yet (bit per key)
  uint64_t cursor_ = 0;             // where the push goes on
  uint64_t total_ = 0;              // pages named
  uint64_t sent_ = 0;               // named pages sent at least once
  std::vector<double> service_us_;  // per requested page: request read -> page handed over

  std::atomic<uint64_t> pushed_{0};
  std::atomic<uint64_t> requested_{0};
  std::atomic<uint64_t> wire_bytes_{0};
  std::atomic<bool> abort_{false};
  std::atomic<uint32_t> pushers_done_{0};
  std::vector<Status> push_status_;
  std::optional<Clock::time_point> running_at_;

  std::thread expose_thread_;
  std::atomic<bool> exposed_{false};             // expose_thread_ finished (read_keys_ set)
  bool announced_ = false;                       // run loop only
  Status expose_status_;                         // written before exposed_
  std::vector<transport::MemoryKey> read_keys_;  // per region; written before exposed_
  uint64_t read_exposed_bytes_ = 0;
  bool read_released_ = false;
};

// Whether `config` may move `guest` post-copy: a live guest, verified by transfer (with
// --verify full the destination's memory, running on, can never equal the paused source's).
Status postcopy_allowed(const SourceConfig& config, const guest::SourceGuest& guest);

// Whether a hybrid migration goes post-copy after `round` pre-copy rounds, `d` being the
// policy's decision on the last one (`m`): never once it converged (it switches over as
// pre-copy); where pre-copy would throttle or fail; with --postcopy-after N after exactly N
// rounds, else at the first round that left more than `min_shrink` of what it sent (the
// policy gives up only after two such rounds, each a round's time of the guest dirtying);
// and whenever config.postcopy_request is set (start-postcopy).
bool hybrid_switches(const SourceConfig& config, const Decision& d, const RoundMeasurement& m,
                     uint32_t round);

// A failure after POSTCOPY_START, saying what it means for the guest.
Status postcopy_lost(const Status& s);

// The bitmap POSTCOPY_START names: per region, the pages of `dirty` and of `more` (a
// selection without a list for a region means all its pages).
std::vector<std::vector<uint8_t>> postcopy_pages(const std::vector<guest::Region>& regions,
                                                 uint32_t page_size, const PageSelection& dirty,
                                                 const PageSelection& more);

// What the source's post-copy phase needs of its run.
struct PostcopySourceRun {
  transport::Connection& conn;
  SourceSession& session;
  const std::vector<guest::Region>& regions;
  const SourceConfig& config;
  pipeline::MemoryDigest& digest;
  const ProgressFn& progress;
};

// After POSTCOPY_START went out: serves and pushes every page it named until the destination
// confirms them placed, and records the figures in `report` (the downtime: from `paused`
// to POSTCOPY_RUNNING).
Status serve_postcopy(const PostcopySourceRun& run, const wire::PostcopyStart& start,
                      PostcopySender::Clock::time_point paused, MigrationReport& report);

}  // namespace ramshift::migration
