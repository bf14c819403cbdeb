// The post-copy destination's page side: the guest runs while its memory arrives. It drops
// the pages POSTCOPY_START names, registers guest memory for missing-page faults, and runs
// the fault thread: each fault on a page still to come becomes a PAGE_REQUEST (once per
// page), each fault on a page that was never sent (it was zero) is filled here. Pages that
// arrive (requested on queue 0, pushed on the data queues) are placed atomically, hashed
// into the digest from the bytes as they travelled, and wake the threads waiting for them.
//
// A page is claimed (one bit) before it is placed, so of two copies of a page (a push and a
// request answer) exactly one is placed and hashed; the other is counted as a duplicate.
//
// Once the source's MEMORY_KEYS arrive (transports with one-sided reads: rdma://), a fault
// is one read of the source's memory into a staging page, placed like any copy (a push that
// got there first wins, the read is a duplicate); faults before then, and pages outside the
// keys, are requested.
//
// Thread-safety: place_frame() from any thread; the rest from the control thread.
#pragma once

#include <atomic>
#include <chrono>
#include <condition_variable>
#include <functional>
#include <memory>
#include <mutex>
#include <optional>
#include <span>
#include <thread>
#include <unordered_map>
#include <vector>

#include "discarded_pages.h"
#include "ramshift/base/mapped_memory.h"
#include "ramshift/guest/missing_pages.h"
#include "ramshift/migration/config.h"
#include "ramshift/migration/progress.h"
#include "ramshift/migration/report.h"
#include "ramshift/migration/session_state.h"
#include "ramshift/pipeline/checksum.h"
#include "ramshift/transport/transport.h"
#include "ramshift/wire/frame.h"

namespace ramshift::migration {

class PostcopyPlacer {
 public:
  using SendRequest = std::function<Status(const wire::PageRequest&)>;
  using OnError = std::function<void(const Status&)>;

  // Drops the pages `start` names from `regions`, registers them for faults and starts the
  // fault thread. Call before the guest runs. `digest` and the callbacks outlive the placer.
  // `discarded`: the memory registered already, some pages dropped (POSTCOPY_DISCARD), or null.
  static Result<std::unique_ptr<PostcopyPlacer>> start(
      std::vector<std::span<std::byte>> regions, const wire::RegionTable& table, uint32_t page_size,
      const wire::PostcopyStart& start, pipeline::MemoryDigest& digest, SendRequest send_request,
      OnError on_error, std::unique_ptr<DiscardedPages> discarded);
  // Stops the fault thread and unregisters: threads still waiting wake (and see zeros).
  ~PostcopyPlacer();

  // A POSTCOPY_PAGES body: places the pages not placed yet.
  Status place_frame(std::span<const std::byte> body);
  // The source's MEMORY_KEYS: from now on faults read their pages from it over `conn`
  // (which must have capabilities().remote_read). Control thread; `conn` outlives the placer.
  Status enable_reads(transport::Connection& conn, const wire::MemoryKeys& keys);
  // Every page POSTCOPY_START named is placed.
  bool all_placed() const { return needed_left_.load() == 0; }
  uint64_t pages_needed() const { return needed_total_; }
  uint64_t pages_left() const { return needed_left_.load(); }
  // The figures so far (faults, latencies, blocked time per guest thread, pages).
  PostcopyReport figures() const;

 private:
  using Clock = std::chrono::steady_clock;
  struct Waiter {
    uint32_t thread;
    Clock::time_point since;
  };
  // Where faults read their pages: the source's ranges, a staging area registered for reads.
  struct Reader {
    transport::Connection* conn = nullptr;
    std::vector<wire::KeyRange> ranges;
    MappedMemory staging;  // kStagingPages pages
    // The source's address and key of `page` of `region`; nullopt outside every range.
    std::optional<std::pair<uint64_t, uint32_t>> locate(uint32_t region, uint64_t offset) const;
  };
  static constexpr uint32_t kStagingPages = 32;
  PostcopyPlacer() = default;
  void fault_main();
  Status serve_faults();
  // Reads `faults`' pages from the source and places them (kStagingPages at a time).
  Status read_and_place(const Reader& reader, std::span<const guest::PageFault> faults);
  // Places one page (bytes empty: zero) once; false if it was placed already. `by_read`: its
  // waiters' latencies count as read faults too.
  Result<bool> place_once(uint32_t region, uint64_t page, std::span<const std::byte> bytes,
                          bool by_read = false);
  // The page is there: its waiters run on; `needed` counts it as pushed or faulted.
  void resolve(uint32_t region, uint64_t page, bool needed, bool by_read);
  uint64_t key(uint32_t region, uint64_t page) const { return offsets_[region] + page; }
  bool bit(const std::vector<uint8_t>& map, uint64_t k) const { return map[k / 8] >> (k % 8) & 1; }

  std::unique_ptr<guest::MissingPages> pages_;
  wire::RegionTable table_;
  uint32_t page_size_ = 0;
  pipeline::MemoryDigest* digest_ = nullptr;
  SendRequest send_request_;
  OnError on_error_;
  std::vector<uint64_t> offsets_;  // first key of each region
  std::vector<uint8_t> needed_;    // the bitmap POSTCOPY_START sent, all regions end to end
  std::unique_ptr<std::atomic<uint8_t>[]> claimed_;  // a copy of the page is being placed
  uint64_t needed_total_ = 0;
  std::atomic<uint64_t> needed_left_{0};
  std::vector<std::byte> zeros_;

  mutable std::mutex mu_;           // the fields below
  std::vector<uint8_t> done_;       // placed (and its waiters resolved)
  std::vector<uint8_t> requested_;  // asked of the source once
  std::unordered_map<uint64_t, std::vector<Waiter>> waiters_;
  std::unordered_map<uint32_t, ThreadBlocked> blocked_;
  std::vector<double> latencies_us_;
  std::vector<double> read_latencies_us_;
  std::vector<double> read_call_us_;  // each conn->read() alone (read_and_place)
  PostcopyReport counts_;
  std::shared_ptr<const Reader> reader_;  // set once by enable_reads

  std::atomic<bool> stop_{false};
  std::thread fault_thread_;  // last: stopped first
};

// Where the data queue threads find the placer: pushed pages may arrive before the control
// thread has read POSTCOPY_START (queues are not ordered against each other), so place()
// waits for it; once closed, a late duplicate is dropped. close() returns when no thread
// uses the placer any more, so it may then be destroyed.
class PlacerSlot {
 public:
  void open(PostcopyPlacer* placer);
  void close();
  Status place(std::span<const std::byte> body, const std::atomic<bool>& stop);

 private:
  std::mutex mu_;
  std::condition_variable cv_;
  PostcopyPlacer* placer_ = nullptr;
  bool closed_ = false;
  int active_ = 0;
};

// Whether this destination can take a post-copy session as configured: the guest must be
// in anonymous memory (userfaultfd does not serve files on disk) in host-sized pages.
Status postcopy_possible(const DestinationConfig& config, uint32_t page_size);

// The destination's post-copy phase, from POSTCOPY_START to COMMIT, on the control thread.
class PostcopyReceiver {
 public:
  using SendControl = std::function<Status(wire::FrameType, std::span<const std::byte>)>;
  struct Context {
    transport::Connection& conn;
    DestinationSession& session;
    const wire::RegionTable& table;
    uint32_t page_size;
    pipeline::MemoryDigest& digest;
    PlacerSlot& slot;
    SendControl send_control;
    const ProgressFn& progress;
    const std::atomic<bool>& stop;  // the run failed elsewhere (a data queue)
  };
  explicit PostcopyReceiver(Context context) : c_(std::move(context)) {}
  ~PostcopyReceiver();  // closes the slot, then stops the placer: waiting threads wake

  // Drops and registers the memory POSTCOPY_START names, then `resume` runs the guest here.
  // `discarded`: as for PostcopyPlacer::start.
  Status start(std::span<const std::byte> body, std::vector<std::span<std::byte>> regions,
               std::unique_ptr<DiscardedPages> discarded, const std::function<Status()>& resume);
  // Places requested pages, confirms when every page is there, compares the DIGEST and
  // sends COMMIT. kCancelled("stopped") when `stop` ended it (the caller has the reason).
  Status run();
  PostcopyReport figures() const;
  uint32_t rounds() const { return rounds_; }
  double verify_ms() const { return verify_ms_; }

 private:
  Status check_digest(std::span<const std::byte> body);

  Context c_;
  std::unique_ptr<PostcopyPlacer> placer_;
  std::mutex error_mu_;
  Status placer_error_;  // from the fault thread
  std::chrono::steady_clock::time_point start_;
  double postcopy_ms_ = 0;
  uint32_t rounds_ = 0;
  double verify_ms_ = 0;
};

}  // namespace ramshift::migration
