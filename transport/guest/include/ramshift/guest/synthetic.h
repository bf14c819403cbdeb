// A synthetic guest: memory that workload threads keep writing at a set rate, with pages
// that describe themselves so that any copy of the memory can be checked for integrity.
//
// Spec (the CLI's `synthetic:` guest):
//   size=SIZE[,dirty-rate=RATE][,pattern=P][,threads=N][,seed=S][,tracking=T][,burst=B]
//   pattern mixed   half of each page random words, half structured text (the default)
//           random  every word changes: incompressible, XBZRLE's worst case
//           delta   one byte of the page body changes per write: XBZRLE's best case
//           zero    pages are rewritten as zeros
//   burst   B (1..16, 1 = steady): a bursty guest, dirtying B times the rate for 1/B of
//           every 400 ms and idle for the rest (the same average)
// A non-zero page starts with a 24-byte header: u64 (index ^ kTag), u64 generation,
// u32 CRC32C of the rest of the page, u32 pattern. Like the QEMU test guest
// (tests/qemu/guest/init.c), the guest keeps a generation table: the generation it last
// wrote to every page. verify() accepts a page only if it is what the table says: all zero
// where nothing (or, pattern=zero, a rewrite) was written, otherwise a header with the page's
// index and its current generation and a CRC that matches the body. So a page restored to
// an older generation's content (a write a migration lost) fails, not just a torn one.
// The table travels in the device state (device_state(), adopt_device_state()).
//
// Dirty pages are found by the kernel (DirtyTracker), never reported by the workload.
#pragma once

#include <array>
#include <atomic>
#include <condition_variable>
#include <memory>
#include <mutex>
#include <string>
#include <string_view>
#include <thread>
#include <vector>

#include "ramshift/base/mapped_memory.h"
#include "ramshift/base/status.h"
#include "ramshift/guest/dirty_tracker.h"
#include "ramshift/guest/guest.h"
#include "ramshift/guest/pattern.h"

namespace ramshift::guest {

struct SyntheticSpec {
  uint64_t size = 1ull << 30;
  uint64_t dirty_rate = 20ull << 20;  // bytes/s of pages rewritten, all threads together
  // mixed (random words then text, a quarter of the pages zero), random, delta (one byte
  // per page rewritten) or zero (rewritten pages become zero); not text.
  Pattern pattern = Pattern::kMixed;
  uint32_t threads = 1;
  uint64_t seed = 1;
  // tracking=auto|pagemap-scan|wp-faults: which kernel mechanism finds dirty pages.
  DirtyMechanism tracking = DirtyMechanism::kAuto;
  uint32_t burst = 1;             // burst=B: B x the rate for 1/B of each 400 ms, idle otherwise
  std::string to_string() const;  // the spec text that parse() reads back
  static Result<SyntheticSpec> parse(std::string_view text);
};

class SyntheticGuest final : public SourceGuest {
 public:
  // Allocates and fills the memory, then starts the workload (running, not paused).
  static Result<std::unique_ptr<SyntheticGuest>> create(const SyntheticSpec& spec);
  // Takes over `memory` that already holds this guest's pages (the destination after a
  // migration); the workload is created paused.
  // Without a generation table the one in memory is trusted: each page's header sets it.
  static Result<std::unique_ptr<SyntheticGuest>> adopt(const SyntheticSpec& spec,
                                                       std::span<std::byte> memory);
  // The same from the source's device_state(): its spec and its generation table.
  static Result<std::unique_ptr<SyntheticGuest>> adopt_device_state(std::string_view state,
                                                                    std::span<std::byte> memory);
  ~SyntheticGuest() override;

  const std::vector<Region>& regions() const override { return regions_; }
  std::string describe() const override;
  bool immutable() const override { return false; }
  Status start_dirty_log() override;
  Result<std::vector<uint64_t>> fetch_dirty(uint32_t region) override;
  void stop_dirty_log() override;
  void pause() override;
  void resume() override;
  void set_throttle(int percent) override;
  // The spec text, a NUL, then the generation table (u32 little-endian per page: 4 bytes per
  // 4 KiB page, 1 MiB for a 1 GiB guest). Call while paused.
  Result<std::string> device_state() const override;
  uint64_t device_state_bytes() const override;

  // Every page holds the generation the table says (see above). Call while paused.
  Status verify() const;
  // The generation the table holds for `page` (tests). Call while paused.
  uint32_t generation(uint64_t page) const { return generations_[page]; }
  uint64_t writes() const { return writes_.load(); }

 private:
  SyntheticGuest() = default;
  void start_threads(bool paused);
  void workload(uint32_t thread);
  void write_page(uint64_t page, uint64_t generation, uint64_t rng);
  void init_memory(const SyntheticSpec& spec, std::span<std::byte> memory);

  SyntheticSpec spec_;
  MappedMemory owned_;
  std::span<std::byte> memory_;
  std::vector<Region> regions_;
  std::unique_ptr<DirtyTracker> tracker_;
  // Per page, the generation last written (0: never). A workload write holds the page's
  // stripe lock from choosing the generation to storing it, so two threads that pick the
  // same page cannot leave the table and the page disagreeing. Why 256 stripes: collisions
  // are rare at a few thousand writes per second; 256 mutexes are 10 KiB.
  std::vector<uint32_t> generations_;
  std::array<std::mutex, 256> page_locks_;
  std::vector<std::thread> threads_;
  std::mutex mu_;
  std::condition_variable cv_;
  bool pause_ = false;
  bool stop_ = false;
  uint32_t parked_ = 0;
  // 0 for a created guest (its writes follow from the seed); random for an adopted one, so
  // that it does not replay the source's sequence of pages, which would rewrite exactly the
  // pages the source wrote and so hide a write the migration lost.
  uint64_t workload_salt_ = 0;
  std::atomic<int> throttle_{0};
  std::atomic<uint64_t> writes_{0};
};

}  // namespace ramshift::guest
