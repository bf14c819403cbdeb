// Missing-page faults of guest memory (userfaultfd, missing mode): the post-copy
// destination runs a guest whose memory has not all arrived. A guest thread that touches an
// absent page blocks in the kernel; the fault reader sees which page and which thread, and
// the thread runs on once the page is placed (place(), place_zero()), never before. Placing
// is atomic: a page is either absent or whole, and placing one that is present already
// (a push that raced a fault) changes nothing and says so (kPresent).
//
// Thread-safety: read_faults() from one thread; place*, wake and drop from any.
#pragma once

#include <chrono>
#include <cstddef>
#include <cstdint>
#include <memory>
#include <span>
#include <vector>

#include "ramshift/base/status.h"
#include "ramshift/base/unique_fd.h"

namespace ramshift::guest {

// Pages first .. first + count - 1 of one region.
struct PageRun {
  uint32_t region = 0;
  uint64_t first = 0;
  uint64_t count = 0;
};

struct PageFault {
  uint32_t region = 0;
  uint64_t page = 0;       // index in the region, in host pages
  uint32_t thread_id = 0;  // the faulting thread (Linux tid)
  bool write = false;
};

class MissingPages {
 public:
  // Registers every region (anonymous private memory, whole host pages). Pages present now
  // stay as they are; only absent pages fault. kNotFound with the reason when the kernel
  // lacks userfaultfd or refuses the range (file-backed memory on a disk, for one).
  static Result<std::unique_ptr<MissingPages>> register_memory(
      std::vector<std::span<std::byte>> regions);
  // Unregisters: threads still blocked wake and the kernel fills what they touch with zeros.
  ~MissingPages();
  MissingPages(const MissingPages&) = delete;
  MissingPages& operator=(const MissingPages&) = delete;

  // Faults read within `timeout` (empty on timeout): every one waiting, up to 64.
  Result<std::vector<PageFault>> read_faults(std::chrono::milliseconds timeout);

  enum class Placed { kPlaced, kPresent };
  // Copies one page (host page size) in and wakes the threads waiting for it.
  Result<Placed> place(uint32_t region, uint64_t page, std::span<const std::byte> bytes);
  // The same with a page of zeros.
  Result<Placed> place_zero(uint32_t region, uint64_t page);
  // Wakes threads waiting on a page that is present (placed after they faulted on it).
  Status wake(uint32_t region, uint64_t page);
  // Makes the pages of every run absent again (MADV_DONTNEED): their next access faults.
  // Why batched: the post-copy destination drops the pages dirtied since they were sent while
  // the guest is paused, often tens of thousands of scattered runs. One madvise per run cost
  // 10.4 us a page here (34,565 pages of 512 MiB: 360 ms); process_madvise on this process,
  // 1024 runs per call (kernels >= 6.13 take MADV_DONTNEED there), 62-114 ms. Older kernels
  // refuse it, and then each run gets its own madvise.
  Status drop(std::span<const PageRun> runs);

  size_t page_size() const { return page_size_; }

 private:
  MissingPages() = default;
  uint64_t address(uint32_t region, uint64_t page) const {
    return reinterpret_cast<uint64_t>(regions_[region].data()) + page * page_size_;
  }

  UniqueFd uffd_;
  UniqueFd self_pidfd_;       // for process_madvise; invalid where the kernel offers none
  bool batched_drop_ = true;  // false once the kernel refused MADV_DONTNEED by process_madvise
  std::vector<std::span<std::byte>> regions_;
  size_t page_size_ = 0;
};

}  // namespace ramshift::guest
