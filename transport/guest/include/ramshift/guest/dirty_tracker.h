// Kernel dirty tracking of guest memory with userfaultfd write-protect.
//
// Two mechanisms, picked at start():
//   kPagemapScan  UFFD_FEATURE_WP_ASYNC + PAGEMAP_SCAN (Linux >= 6.7): writes are recorded by
//                 the kernel with no fault; fetch_and_clear() is one ioctl that returns the
//                 written pages and write-protects them again atomically.
//   kFaults       synchronous write-protect faults (Linux >= 5.7, e.g. Debian 12's 6.1): a
//                 handler thread records each first write to a page and lets it proceed.
// Soft-dirty bits are not used: these machines' kernels are built without them.
//
// The guarantee (tested): every write to the tracked range that happens after start() is
// reported by the first fetch_and_clear() that begins after the write, or a later one if it
// races with the fetch — never lost.
#pragma once

#include <cstddef>
#include <cstdint>
#include <memory>
#include <span>
#include <string>
#include <vector>

#include "ramshift/base/status.h"

namespace ramshift::guest {

enum class DirtyMechanism { kAuto, kPagemapScan, kFaults };
const char* dirty_mechanism_name(DirtyMechanism m);

// Test knob, never for production: with RAMSHIFT_TEST_DROP_DIRTY_EVERY=N (N >= 1) in the
// environment when a tracker starts, every Nth dirty page it would report is dropped from
// the report (and stays write-protected, so the write is lost unless it happens again).
// It breaks the guarantee above on purpose: the migration tests use it to show what each
// `--verify` mode catches. Unset, empty, 0 or not a number: off.
inline constexpr const char* kTestDropDirtyEveryEnv = "RAMSHIFT_TEST_DROP_DIRTY_EVERY";
uint64_t test_drop_dirty_every();  // N, or 0 when the knob is off

class DirtyTracker {
 public:
  virtual ~DirtyTracker() = default;
  // Starts tracking `memory` (anonymous, page-aligned). kNotFound/kIo with the reason when
  // the kernel lacks userfaultfd write-protect or the mechanism asked for.
  static Result<std::unique_ptr<DirtyTracker>> start(
      std::span<std::byte> memory, DirtyMechanism mechanism = DirtyMechanism::kAuto);

  virtual DirtyMechanism mechanism() const = 0;
  // Indices (host pages from the start of the range) written since the previous call (or
  // start()), in ascending order; the pages are write-protected again before it returns.
  virtual Result<std::vector<uint64_t>> fetch_and_clear() = 0;
};

}  // namespace ramshift::guest
