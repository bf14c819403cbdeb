#include "ramshift/base/mapped_memory.h"

#include <sys/mman.h>
#include <unistd.h>

#include <fmt/format.h>
#include <cerrno>
#include <utility>

#include "ramshift/base/log.h"
#include "ramshift/base/units.h"

namespace ramshift {

size_t host_page_size() {
  static const size_t size = static_cast<size_t>(sysconf(_SC_PAGESIZE));
  return size;
}

namespace {
size_t round_up(size_t n) {
  return (n + host_page_size() - 1) / host_page_size() * host_page_size();
}
}  // namespace

MappedMemory::~MappedMemory() {
  if (addr_ && munmap(addr_, size_) != 0)
    log::warn("munmap of {} bytes failed: {}", size_, std::strerror(errno));
}

MappedMemory::MappedMemory(MappedMemory&& o) noexcept
    : addr_(std::exchange(o.addr_, nullptr)), size_(std::exchange(o.size_, 0)) {}

MappedMemory& MappedMemory::operator=(MappedMemory&& o) noexcept {
  if (this != &o) {
    this->~MappedMemory();
    addr_ = std::exchange(o.addr_, nullptr);
    size_ = std::exchange(o.size_, 0);
  }
  return *this;
}

Result<MappedMemory> MappedMemory::anonymous(size_t bytes) {
  size_t size = round_up(bytes);
  void* p = mmap(nullptr, size, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS | MAP_NORESERVE,
                 -1, 0);
  if (p == MAP_FAILED)
    return errno_status(ErrorCode::kNoSpace,
                        fmt::format("cannot reserve {} of memory", format_bytes(size)), errno);
  return MappedMemory(p, size);
}

Result<MappedMemory> MappedMemory::map_file(int fd, size_t bytes, bool writable,
                                            const std::string& what) {
  size_t size = round_up(bytes);
  int prot = writable ? PROT_READ | PROT_WRITE : PROT_READ;
  int flags = writable ? MAP_SHARED : MAP_PRIVATE;
  void* p = mmap(nullptr, size, prot, flags, fd, 0);
  if (p == MAP_FAILED)
    return errno_status(ErrorCode::kIo, fmt::format("cannot map {}", what), errno);
  return MappedMemory(p, size);
}

}  // namespace ramshift
