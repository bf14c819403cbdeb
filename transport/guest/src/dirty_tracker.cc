#include "ramshift/guest/dirty_tracker.h"

#include <fcntl.h>
#include <linux/userfaultfd.h>
#include <poll.h>
#include <sys/ioctl.h>
#include <sys/mman.h>
#include <sys/syscall.h>
#include <unistd.h>

#include <fmt/format.h>
#include <atomic>
#include <cerrno>
#include <cstdlib>
#include <mutex>
#include <thread>

#include "ramshift/base/log.h"
#include "ramshift/base/mapped_memory.h"
#include "ramshift/base/unique_fd.h"
#include "userfault_fd.h"

// The ABI of newer kernels than Debian 12's headers describe (Linux 6.7: PAGEMAP_SCAN and
// UFFD_FEATURE_WP_ASYNC). Values from include/uapi/linux/{fs,userfaultfd}.h.
#ifndef PAGEMAP_SCAN
struct page_region {
  __u64 start;
  __u64 end;
  __u64 categories;
};
struct pm_scan_arg {
  __u64 size;
  __u64 flags;
  __u64 start;
  __u64 end;
  __u64 walk_end;
  __u64 vec;
  __u64 vec_len;
  __u64 max_pages;
  __u64 category_inverted;
  __u64 category_mask;
  __u64 category_anyof_mask;
  __u64 return_mask;
};
#define PAGEMAP_SCAN _IOWR('f', 16, struct pm_scan_arg)
#define PAGE_IS_WRITTEN (1 << 1)
#define PM_SCAN_WP_MATCHING (1 << 0)
#define PM_SCAN_CHECK_WPASYNC (1 << 1)
#endif
#ifndef MADV_POPULATE_WRITE
#define MADV_POPULATE_WRITE 23
#endif
#ifndef UFFD_FEATURE_WP_ASYNC
#define UFFD_FEATURE_WP_ASYNC (1 << 15)
#endif
#ifndef UFFD_FEATURE_WP_UNPOPULATED
#define UFFD_FEATURE_WP_UNPOPULATED (1 << 13)
#endif

namespace ramshift::guest {

const char* dirty_mechanism_name(DirtyMechanism m) {
  switch (m) {
    case DirtyMechanism::kAuto:
      return "auto";
    case DirtyMechanism::kPagemapScan:
      return "pagemap-scan";
    case DirtyMechanism::kFaults:
      return "wp-faults";
  }
  return "?";
}

namespace {

Status register_wp(int uffd, std::span<std::byte> memory) {
  uffdio_register reg{};
  reg.range.start = reinterpret_cast<uint64_t>(memory.data());
  reg.range.len = memory.size();
  reg.mode = UFFDIO_REGISTER_MODE_WP;
  if (ioctl(uffd, UFFDIO_REGISTER, &reg) != 0)
    return errno_status(ErrorCode::kNotFound, "userfaultfd write-protect registration failed",
                        errno);
  return Status::ok();
}

Status write_protect(int uffd, uint64_t start, uint64_t len, bool protect) {
  uffdio_writeprotect wp{};
  wp.range.start = start;
  wp.range.len = len;
  wp.mode = protect ? UFFDIO_WRITEPROTECT_MODE_WP : 0;
  if (ioctl(uffd, UFFDIO_WRITEPROTECT, &wp) != 0)
    return errno_status(ErrorCode::kIo, "UFFDIO_WRITEPROTECT", errno);
  return Status::ok();
}

// ---- PAGEMAP_SCAN -----------------------------------------------------------------------

class PagemapScanTracker final : public DirtyTracker {
 public:
  static Result<std::unique_ptr<DirtyTracker>> create(std::span<std::byte> memory) {
    auto t = std::make_unique<PagemapScanTracker>();
    t->memory_ = memory;
    RS_ASSIGN_OR_RETURN(t->uffd_,
                        open_userfaultfd(UFFD_FEATURE_WP_ASYNC | UFFD_FEATURE_WP_UNPOPULATED));
    RS_RETURN_IF_ERROR(register_wp(t->uffd_.get(), memory));
    t->pagemap_.reset(::open("/proc/self/pagemap", O_RDONLY | O_CLOEXEC));
    if (!t->pagemap_.valid())
      return errno_status(ErrorCode::kNotFound, "open /proc/self/pagemap", errno);
    RS_RETURN_IF_ERROR(write_protect(t->uffd_.get(), reinterpret_cast<uint64_t>(memory.data()),
                                     memory.size(), true));
    // One scan both proves the ioctl exists and clears anything written so far.
    auto first = t->fetch_and_clear();
    if (!first) return first.status();
    return std::unique_ptr<DirtyTracker>(std::move(t));
  }

  DirtyMechanism mechanism() const override { return DirtyMechanism::kPagemapScan; }

  Result<std::vector<uint64_t>> fetch_and_clear() override {
    std::vector<uint64_t> pages;
    const uint64_t base = reinterpret_cast<uint64_t>(memory_.data());
    const uint64_t end = base + memory_.size();
    const uint64_t page = host_page_size();
    uint64_t at = base;
    // Why 512 regions per call: 12 KiB of results; a call continues where the last stopped.
    page_region regions[512];
    while (at < end) {
      pm_scan_arg arg{};
      arg.size = sizeof arg;
      arg.flags = PM_SCAN_WP_MATCHING | PM_SCAN_CHECK_WPASYNC;
      arg.start = at;
      arg.end = end;
      arg.vec = reinterpret_cast<uint64_t>(regions);
      arg.vec_len = std::size(regions);
      arg.category_mask = PAGE_IS_WRITTEN;
      arg.return_mask = PAGE_IS_WRITTEN;
      long n = ioctl(pagemap_.get(), PAGEMAP_SCAN, &arg);
      if (n < 0)
        return errno_status(ErrorCode::kNotFound, "PAGEMAP_SCAN (needs Linux >= 6.7)", errno);
      for (long i = 0; i < n; ++i)
        for (uint64_t p = regions[i].start; p < regions[i].end; p += page)
          pages.push_back((p - base) / page);
      if (arg.walk_end <= at) break;  // no progress: should not happen, avoid spinning
      at = arg.walk_end;
    }
    return pages;
  }

 private:
  std::span<std::byte> memory_;
  UniqueFd uffd_;
  UniqueFd pagemap_;
};

// ---- write-protect faults ---------------------------------------------------------------

class FaultTracker final : public DirtyTracker {
 public:
  static Result<std::unique_ptr<DirtyTracker>> create(std::span<std::byte> memory) {
    auto t = std::make_unique<FaultTracker>();
    t->memory_ = memory;
    t->dirty_.assign(memory.size() / host_page_size(), 0);
    RS_ASSIGN_OR_RETURN(t->uffd_, open_userfaultfd(UFFD_FEATURE_PAGEFAULT_FLAG_WP));
    RS_RETURN_IF_ERROR(register_wp(t->uffd_.get(), memory));
    // Unpopulated pages cannot be write-protected without WP_UNPOPULATED: populate first.
    // MADV_POPULATE_WRITE (Linux 5.14) faults them in writable without touching their
    // bytes — a read-and-write-back loop could undo a guest write racing with it.
    if (madvise(memory.data(), memory.size(), MADV_POPULATE_WRITE) != 0)
      return errno_status(ErrorCode::kNotFound, "MADV_POPULATE_WRITE (needs Linux >= 5.14)", errno);
    RS_RETURN_IF_ERROR(write_protect(t->uffd_.get(), reinterpret_cast<uint64_t>(memory.data()),
                                     memory.size(), true));
    int fds[2];
    if (pipe2(fds, O_CLOEXEC) != 0) return errno_status(ErrorCode::kIo, "pipe", errno);
    t->stop_rd_.reset(fds[0]);
    t->stop_wr_.reset(fds[1]);
    t->handler_ = std::thread([p = t.get()] { p->handle_faults(); });
    return std::unique_ptr<DirtyTracker>(std::move(t));
  }

  ~FaultTracker() override {
    if (handler_.joinable()) {
      char c = 0;
      (void)!::write(stop_wr_.get(), &c, 1);
      handler_.join();
    }
    // Let any writer still blocked on a protected page go.
    (void)write_protect(uffd_.get(), reinterpret_cast<uint64_t>(memory_.data()), memory_.size(),
                        false);
  }

  DirtyMechanism mechanism() const override { return DirtyMechanism::kFaults; }

  Result<std::vector<uint64_t>> fetch_and_clear() override {
    // Holding the lock keeps the handler from un-protecting a page between our reading its
    // bit and protecting it again; a writer that faults meanwhile waits and lands in the next
    // set. Writes to pages still unprotected during this call reach memory before it returns,
    // and those pages are in the set returned, so the caller copies them afterwards.
    std::lock_guard lock(mu_);
    std::vector<uint64_t> pages;
    const uint64_t base = reinterpret_cast<uint64_t>(memory_.data());
    const uint64_t ps = host_page_size();
    for (uint64_t i = 0; i < dirty_.size(); ++i) {
      if (!dirty_[i]) continue;
      dirty_[i] = 0;
      pages.push_back(i);
      uint64_t j = i + 1;
      while (j < dirty_.size() && dirty_[j]) {
        dirty_[j] = 0;
        pages.push_back(j++);
      }
      RS_RETURN_IF_ERROR(write_protect(uffd_.get(), base + i * ps, (j - i) * ps, true));
      i = j - 1;
    }
    return pages;
  }

 private:
  void handle_faults() {
    const uint64_t base = reinterpret_cast<uint64_t>(memory_.data());
    const uint64_t ps = host_page_size();
    for (;;) {
      pollfd p[2] = {{uffd_.get(), POLLIN, 0}, {stop_rd_.get(), POLLIN, 0}};
      if (::poll(p, 2, -1) < 0 && errno != EINTR) return;
      if (p[1].revents) return;
      uffd_msg msg[32];
      ssize_t n = ::read(uffd_.get(), msg, sizeof msg);
      if (n <= 0) continue;
      for (ssize_t i = 0; i < n / static_cast<ssize_t>(sizeof(uffd_msg)); ++i) {
        if (msg[i].event != UFFD_EVENT_PAGEFAULT) continue;
        uint64_t addr = msg[i].arg.pagefault.address & ~(ps - 1);
        std::lock_guard lock(mu_);
        dirty_[(addr - base) / ps] = 1;
        if (!write_protect(uffd_.get(), addr, ps, false))  // also wakes the writer
          log::error("dirty tracking: cannot release a write-protected page");
      }
    }
  }

  std::span<std::byte> memory_;
  UniqueFd uffd_;
  UniqueFd stop_rd_, stop_wr_;
  std::mutex mu_;
  std::vector<uint8_t> dirty_;
  std::thread handler_;
};

}  // namespace

namespace {

// The test knob RAMSHIFT_TEST_DROP_DIRTY_EVERY=N (see dirty_tracker.h): a tracker that
// forgets every Nth dirty page it reports, as a buggy tracker would. The dropped pages are
// write-protected again like the others, so the write is lost for good unless the page is
// written again: exactly the failure a pre-copy migration must not miss.
class DroppingTracker final : public DirtyTracker {
 public:
  DroppingTracker(std::unique_ptr<DirtyTracker> inner, uint64_t every)
      : inner_(std::move(inner)), every_(every) {}
  DirtyMechanism mechanism() const override { return inner_->mechanism(); }
  Result<std::vector<uint64_t>> fetch_and_clear() override {
    RS_ASSIGN_OR_RETURN(auto pages, inner_->fetch_and_clear());
    std::erase_if(pages, [this](uint64_t) { return ++seen_ % every_ == 0; });
    return pages;
  }

 private:
  std::unique_ptr<DirtyTracker> inner_;
  uint64_t every_;
  uint64_t seen_ = 0;
};

Result<std::unique_ptr<DirtyTracker>> start_tracker(std::span<std::byte> memory,
                                                    DirtyMechanism mechanism) {
  if (mechanism == DirtyMechanism::kPagemapScan) return PagemapScanTracker::create(memory);
  if (mechanism == DirtyMechanism::kFaults) return FaultTracker::create(memory);
  auto scan = PagemapScanTracker::create(memory);
  if (scan) return scan;
  log::info("dirty tracking: {}; using write-protect faults instead", scan.status().message());
  return FaultTracker::create(memory);
}

}  // namespace

uint64_t test_drop_dirty_every() {
  const char* knob = std::getenv(kTestDropDirtyEveryEnv);
  if (!knob || !*knob) return 0;
  char* end = nullptr;
  const unsigned long long every = std::strtoull(knob, &end, 10);
  return *end == '\0' ? every : 0;
}

Result<std::unique_ptr<DirtyTracker>> DirtyTracker::start(std::span<std::byte> memory,
                                                          DirtyMechanism mechanism) {
  RS_ASSIGN_OR_RETURN(auto tracker, start_tracker(memory, mechanism));
  if (const uint64_t every = test_drop_dirty_every(); every > 0) {
    log::warn("dirty tracking: {} is set: every {}th dirty page is dropped (a test fault)",
              kTestDropDirtyEveryEnv, every);
    return std::unique_ptr<DirtyTracker>(new DroppingTracker(std::move(tracker), every));
  }
  return tracker;
}

}  // namespace ramshift::guest
