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
