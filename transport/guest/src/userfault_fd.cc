#include "userfault_fd.h"

#include <fcntl.h>
#include <linux/userfaultfd.h>
#include <sys/ioctl.h>
#include <sys/syscall.h>
#include <unistd.h>

#include <fmt/format.h>

#include <cerrno>

namespace ramshift::guest {

Result<UniqueFd> open_userfaultfd(uint64_t features) {
  UniqueFd fd(static_cast<int>(syscall(SYS_userfaultfd, O_CLOEXEC | O_NONBLOCK)));
  if (!fd.valid()) {
    // Without the syscall (or with it forbidden to this user), /dev/userfaultfd may work.
    UniqueFd dev(::open("/dev/userfaultfd", O_RDWR | O_CLOEXEC));
    constexpr unsigned long kUserModeOnly = 0xAA00 | 0;  // USERFAULTFD_IOC_NEW = _IO(0xAA, 0)
    if (dev.valid()) fd.reset(ioctl(dev.get(), kUserModeOnly, O_CLOEXEC | O_NONBLOCK));
  }
  if (!fd.valid())
    return errno_status(ErrorCode::kNotFound,
                        "userfaultfd is not available (needs Linux >= 5.7 with CONFIG_USERFAULTFD, "
                        "and root or vm.unprivileged_userfaultfd=1)",
                        errno);
  uffdio_api api{};
  api.api = UFFD_API;
  api.features = features;
  if (ioctl(fd.get(), UFFDIO_API, &api) != 0)
    return errno_status(ErrorCode::kNotFound,
                        fmt::format("this kernel's userfaultfd lacks features 0x{:x}", features),
                        errno);
  return fd;
}

}  // namespace ramshift::guest
