#include "ramshift/guest/missing_pages.h"

#include <linux/userfaultfd.h>
#include <poll.h>
#include <sys/ioctl.h>
#include <sys/mman.h>
#include <sys/syscall.h>
#include <sys/uio.h>
#include <unistd.h>

#include <fmt/format.h>

#include <algorithm>
#include <cerrno>
#include <climits>
#include <cstring>

#include "ramshift/base/log.h"
#include "ramshift/base/mapped_memory.h"
#include "userfault_fd.h"

namespace ramshift::guest {

Result<std::unique_ptr<MissingPages>> MissingPages::register_memory(
    std::vector<std::span<std::byte>> regions) {
  std::unique_ptr<MissingPages> m(new MissingPages());
  m->page_size_ = host_page_size();
  // The faulting thread's id, so the report can say how long each guest thread waited.
  RS_ASSIGN_OR_RETURN(m->uffd_, open_userfaultfd(UFFD_FEATURE_THREAD_ID));
  for (auto span : regions) {
    uffdio_register reg{};
    reg.range.start = reinterpret_cast<uint64_t>(span.data());
    reg.range.len = span.size();
    reg.mode = UFFDIO_REGISTER_MODE_MISSING;
    if (ioctl(m->uffd_.get(), UFFDIO_REGISTER, &reg) != 0)
      return errno_status(ErrorCode::kNotFound,
                          "userfaultfd missing-page registration of guest memory failed (post-copy "
                          "needs anonymous memory: no --guest-out file)",
                          errno);
    m->regions_.push_back(span);
  }
  // Not there (kernels before 5.3, or a seccomp filter): drop() then uses madvise alone.
  m->self_pidfd_ = UniqueFd(static_cast<int>(::syscall(SYS_pidfd_open, ::getpid(), 0u)));
  return m;
}

MissingPages::~MissingPages() {
  for (auto span : regions_) {
    uffdio_range range{reinterpret_cast<uint64_t>(span.data()), span.size()};
    if (ioctl(uffd_.get(), UFFDIO_UNREGISTER, &range) != 0)
      log::warn("UFFDIO_UNREGISTER: {}", std::strerror(errno));
  }
}

Result<std::vector<PageFault>> MissingPages::read_faults(std::chrono::milliseconds timeout) {
  std::vector<PageFault> faults;
  pollfd p{uffd_.get(), POLLIN, 0};
  int n = ::poll(&p, 1, static_cast<int>(timeout.count()));
  if (n < 0 && errno != EINTR) return errno_status(ErrorCode::kIo, "poll(userfaultfd)", errno);
  if (n <= 0) return faults;
  uffd_msg msgs[64];
  ssize_t got = ::read(uffd_.get(), msgs, sizeof(msgs));
  if (got < 0) {
    if (errno == EAGAIN || errno == EINTR) return faults;
    return errno_status(ErrorCode::kIo, "read(userfaultfd)", errno);
  }
  for (ssize_t i = 0; i < got / static_cast<ssize_t>(sizeof(uffd_msg)); ++i) {
    if (msgs[i].event != UFFD_EVENT_PAGEFAULT) continue;  // no other events were asked for
    const uint64_t addr = msgs[i].arg.pagefault.address;
    for (uint32_t r = 0; r < regions_.size(); ++r) {
      const uint64_t start = reinterpret_cast<uint64_t>(regions_[r].data());
      if (addr < start || addr - start >= regions_[r].size()) continue;
      faults.push_back({r, (addr - start) / page_size_, msgs[i].arg.pagefault.feat.ptid,
                        (msgs[i].arg.pagefault.flags & UFFD_PAGEFAULT_FLAG_WRITE) != 0});
      break;
    }
  }
  return faults;
}

Result<MissingPages::Placed> MissingPages::place(uint32_t region, uint64_t page,
                                                 std::span<const std::byte> bytes) {
  if (bytes.size() != page_size_ || region >= regions_.size() ||
      (page + 1) * page_size_ > regions_[region].size())
    return Status(ErrorCode::kInternal, "place: not one page of the guest");
  for (;;) {
    uffdio_copy copy{};
    copy.dst = address(region, page);
    copy.src = reinterpret_cast<uint64_t>(bytes.data());
    copy.len = page_size_;
    if (ioctl(uffd_.get(), UFFDIO_COPY, &copy) == 0) return Placed::kPlaced;
    if (errno == EEXIST) return Placed::kPresent;
    if (errno != EAGAIN)  // EAGAIN: the mapping changed under the copy; try again
      return errno_status(ErrorCode::kIo, fmt::format("UFFDIO_COPY of page {}", page), errno);
  }
}

Result<MissingPages::Placed> MissingPages::place_zero(uint32_t region, uint64_t page) {
  if (region >= regions_.size() || (page + 1) * page_size_ > regions_[region].size())
    return Status(ErrorCode::kInternal, "place_zero: not a page of the guest");
  for (;;) {
    uffdio_zeropage zero{};
    zero.range.start = address(region, page);
    zero.range.len = page_size_;
    if (ioctl(uffd_.get(), UFFDIO_ZEROPAGE, &zero) == 0) return Placed::kPlaced;
    if (errno == EEXIST) return Placed::kPresent;
    if (errno != EAGAIN)
      return errno_status(ErrorCode::kIo, fmt::format("UFFDIO_ZEROPAGE of page {}", page), errno);
  }
}

Status MissingPages::wake(uint32_t region, uint64_t page) {
  uffdio_range range{address(region, page), page_size_};
  if (ioctl(uffd_.get(), UFFDIO_WAKE, &range) != 0)
    return errno_status(ErrorCode::kIo, "UFFDIO_WAKE", errno);
  return Status::ok();
}

Status MissingPages::drop(std::span<const PageRun> runs) {
  std::vector<iovec> iov;
  iov.reserve(runs.size());
  for (const PageRun& r : runs) {
    if (r.region >= regions_.size() || (r.first + r.count) * page_size_ > regions_[r.region].size())
      return Status(ErrorCode::kInternal, "drop: not pages of the guest");
    if (r.count > 0)
      iov.push_back({reinterpret_cast<void*>(address(r.region, r.first)), r.count * page_size_});
  }
  size_t at = 0;
  while (batched_drop_ && self_pidfd_.valid() && at < iov.size()) {
    const size_t n = std::min<size_t>(iov.size() - at, IOV_MAX);
    size_t want = 0;
    for (size_t i = at; i < at + n; ++i) want += iov[i].iov_len;
    const ssize_t done =
        ::syscall(SYS_process_madvise, self_pidfd_.get(), iov.data() + at, n, MADV_DONTNEED, 0u);
    if (done < 0 && errno != EINVAL && errno != ENOSYS && errno != EPERM)
      return errno_status(ErrorCode::kIo, "process_madvise(MADV_DONTNEED) of guest pages", errno);
    if (done < 0) batched_drop_ = false;  // this kernel takes only some advice there
    // Refused, or stopped part-way: the loop below does this batch run by run (the pages
    // are not in use yet, so dropping one twice changes nothing).
    if (done < 0 || static_cast<size_t>(done) != want) break;
    at += n;
  }
  for (; at < iov.size(); ++at)
    if (::madvise(iov[at].iov_base, iov[at].iov_len, MADV_DONTNEED) != 0)
      return errno_status(ErrorCode::kIo, "madvise(MADV_DONTNEED) of guest pages", errno);
  return Status::ok();
}

}  // namespace ramshift::guest
