#include "ramshift/guest/image.h"

#include <fcntl.h>
#include <linux/magic.h>
#include <sys/mman.h>
#include <sys/stat.h>
#include <sys/statfs.h>
#include <sys/statvfs.h>
#include <unistd.h>

#include <fmt/format.h>
#include <algorithm>
#include <cerrno>
#include <cstring>

#include "ramshift/base/log.h"
#include "ramshift/base/units.h"

namespace ramshift::guest {

Result<std::unique_ptr<ImageGuest>> ImageGuest::open(const std::string& path, size_t page_size) {
  auto g = std::make_unique<ImageGuest>();
  g->path_ = path;
  g->fd_.reset(::open(path.c_str(), O_RDONLY | O_CLOEXEC));
  if (!g->fd_.valid()) {
    int err = errno;
    if (err == ENOENT)
      return Status(ErrorCode::kNotFound, fmt::format("guest image {} does not exist", path), err);
    return errno_status(ErrorCode::kIo, fmt::format("cannot read guest image {}", path), err);
  }
  struct stat st {};
  if (fstat(g->fd_.get(), &st) != 0)
    return errno_status(ErrorCode::kIo, fmt::format("cannot stat {}", path), errno);
  if (!S_ISREG(st.st_mode))
    return Status(ErrorCode::kIo, fmt::format("guest image {} is not a regular file", path));
  uint64_t size = static_cast<uint64_t>(st.st_size);
  if (size == 0)
    return Status(ErrorCode::kInvalidArgument, fmt::format("guest image {} is empty", path));
  if (page_size > host_page_size() && size % page_size != 0)
    return Status(ErrorCode::kInvalidArgument,
                  fmt::format("guest image {} is {} bytes, not a whole number of {}-byte pages",
                              path, size, page_size));
  // Probe one byte so an unreadable file fails here, not with SIGBUS in a queue thread.
  std::byte probe;
  if (pread(g->fd_.get(), &probe, 1, 0) != 1)
    return errno_status(ErrorCode::kIo, fmt::format("cannot read guest image {}", path), errno);
  // Why shared on tmpfs: before Linux 6.2, registering memory for RDMA pins it as if for
  // writing (FOLL_FORCE), so a private read-only mapping gets a copy of every page: the
  // image's size again in memory, each page allocated, zeroed and copied (128 MiB took
  // 1.6 s to register in the soft-RoCE VM, 0.45 s mapped shared). A shared mapping needs
  // write access for that pin; on tmpfs the only trace it leaves is the write fault's
  // mtime (and ctime) update, and the destructor puts the mtime back. Nothing here writes
  // through it. A disk file stays private: a write fault there also schedules writeback.
  // Only for the file's owner (or root), who alone may put the mtime back.
  struct statfs fs {};
  const bool may_restore_mtime = ::geteuid() == 0 || ::geteuid() == st.st_uid;
  if (may_restore_mtime && fstatfs(g->fd_.get(), &fs) == 0 && fs.f_type == TMPFS_MAGIC) {
    UniqueFd rw(::open(path.c_str(), O_RDWR | O_CLOEXEC));
    struct stat rw_st {};
    // The same file, not one renamed into its place since.
    if (rw.valid() && fstat(rw.get(), &rw_st) == 0 && rw_st.st_dev == st.st_dev &&
        rw_st.st_ino == st.st_ino) {
      auto shared = MappedMemory::map_file(rw.get(), size, true, path);
      if (shared) {
        g->map_ = std::move(shared).value();
        g->fd_ = std::move(rw);
        g->shared_ = true;
        g->mtime_ = st.st_mtim;
      }
    }
    if (!g->shared_)
      log::debug("guest image {} is on tmpfs but not writable here: mapped privately", path);
  }
  if (!g->shared_) {
    RS_ASSIGN_OR_RETURN(g->map_, MappedMemory::map_file(g->fd_.get(), size, false, path));
  }
  size_t pages = (size + page_size - 1) / page_size;
  g->regions_.push_back(Region{"image", size, g->map_.bytes().subspan(0, pages * page_size)});
  return g;
}

ImageGuest::~ImageGuest() {
  if (!shared_) return;
  struct stat st {};
  if (fstat(fd_.get(), &st) != 0 ||
      (st.st_mtim.tv_sec == mtime_.tv_sec && st.st_mtim.tv_nsec == mtime_.tv_nsec))
    return;
  const timespec times[2] = {{0, UTIME_OMIT}, mtime_};
  if (futimens(fd_.get(), times) != 0)
    log::debug("cannot restore the mtime of {}: {}", path_, std::strerror(errno));
}

std::string ImageGuest::describe() const {
  return fmt::format("image {} ({})", path_, format_bytes(regions_[0].bytes));
}

Result<std::unique_ptr<DestinationMemory>> DestinationMemory::create(
    const std::vector<uint64_t>& region_bytes, size_t page_size, const Options& options) {
  auto d = std::make_unique<DestinationMemory>();
  d->bytes_ = region_bytes;
  std::vector<uint64_t> offsets;
  uint64_t total = 0;
  for (uint64_t b : region_bytes) {
    offsets.push_back(total);
    total += (b + page_size - 1) / page_size * page_size;
  }
  d->whole_pages_total_ = total;
  d->exact_total_ =
      total - ((region_bytes.back() + page_size - 1) / page_size * page_size) + region_bytes.back();
  if (options.output_path.empty()) {
    RS_ASSIGN_OR_RETURN(d->map_, MappedMemory::anonymous(total));
  } else {
    d->path_ = options.output_path;
    d->partial_path_ = options.output_path + ".partial";
    struct stat st {};
    if (!options.overwrite && ::stat(d->path_.c_str(), &st) == 0)
      return Status(ErrorCode::kInvalidArgument,
                    fmt::format("{} already exists; remove it or pass --overwrite", d->path_));
    d->fd_.reset(::open(d->partial_path_.c_str(), O_RDWR | O_CREAT | O_TRUNC | O_CLOEXEC, 0644));
    if (!d->fd_.valid())
      return errno_status(ErrorCode::kIo, fmt::format("cannot create {}", d->partial_path_), errno);
    struct statvfs vfs {};
    if (fstatvfs(d->fd_.get(), &vfs) == 0) {
      uint64_t avail = uint64_t{vfs.f_bavail} * vfs.f_frsize;
      if (avail < total) {
        ::unlink(d->partial_path_.c_str());
        return Status(ErrorCode::kNoSpace,
                      fmt::format("receiver disk full: {} needs {} but its filesystem has {} free",
                                  d->path_, format_bytes(total), format_bytes(avail)));
      }
    }
    // Reserve every block before any is written: running out of space later would arrive as
    // SIGBUS on a mapped write, in the middle of the migration. Now, or chunk by chunk ahead
    // of the writes (reserve()); the file needs its full size either way for the mapping.
    int rc = options.reserve_later
                 ? (ftruncate(d->fd_.get(), static_cast<off_t>(total)) == 0 ? 0 : errno)
                 : posix_fallocate(d->fd_.get(), 0, static_cast<off_t>(total));
    if (rc != 0) {
      ::unlink(d->partial_path_.c_str());
      if (rc == ENOSPC)
        return Status(ErrorCode::kNoSpace,
                      fmt::format("receiver disk full: cannot reserve {} for {}",
                                  format_bytes(total), d->path_),
                      rc);
      return errno_status(ErrorCode::kIo, fmt::format("cannot allocate {}", d->partial_path_), rc);
    }
    auto map = MappedMemory::map_file(d->fd_.get(), total, true, d->partial_path_);
    if (!map) {
      ::unlink(d->partial_path_.c_str());
      return map.status();
    }
    d->map_ = std::move(map).value();
    d->reserve_later_ = options.reserve_later;
  }
  d->offsets_ = offsets;
  for (size_t i = 0; i < region_bytes.size(); ++i) {
    size_t span = (region_bytes[i] + page_size - 1) / page_size * page_size;
    d->spans_.push_back(d->map_.bytes().subspan(offsets[i], span));
  }
  return d;
}

Result<std::unique_ptr<DestinationMemory>> DestinationMemory::borrow(
    std::vector<std::span<std::byte>> regions, const std::vector<uint64_t>& region_bytes,
    size_t page_size) {
  if (regions.size() != region_bytes.size())
    return Status(ErrorCode::kMismatch,
                  fmt::format("the source sends {} region(s) but this destination has {}",
                              region_bytes.size(), regions.size()));
  auto d = std::make_unique<DestinationMemory>();
  for (size_t i = 0; i < regions.size(); ++i) {
    const uint64_t span = (region_bytes[i] + page_size - 1) / page_size * page_size;
    if (regions[i].size() < span)
      return Status(ErrorCode::kMismatch,
                    fmt::format("region {} of the source is {} bytes but this destination's is "
                                "{} bytes",
                                i, region_bytes[i], regions[i].size()));
    if (reinterpret_cast<uintptr_t>(regions[i].data()) % page_size != 0)
      return Status(
          ErrorCode::kInvalidArgument,
          fmt::format("destination region {} is not aligned to {}-byte pages", i, page_size));
    d->spans_.push_back(regions[i].first(span));
  }
  d->bytes_ = region_bytes;
  d->reserve_later_ = true;
  d->borrowed_ = true;
  return d;
}

DestinationMemory::~DestinationMemory() {
  if (!partial_path_.empty() && !committed_) {
    if (::unlink(partial_path_.c_str()) == 0)
      log::info("removed {} (migration did not complete)", partial_path_);
  }
}

Status DestinationMemory::reserve(uint32_t region, uint64_t offset, uint64_t bytes) {
  if (!reserve_later_) return Status::ok();
  if (borrowed_) {
    if (region >= spans_.size() || offset > spans_[region].size())
      return Status(ErrorCode::kInvalidArgument, fmt::format("no region {}", region));
    bytes = std::min<uint64_t>(bytes, spans_[region].size() - offset);
    std::memset(spans_[region].data() + offset, 0, bytes);
    return Status::ok();
  }
  if (region >= offsets_.size())
    return Status(ErrorCode::kInvalidArgument, fmt::format("no region {}", region));
  int rc = posix_fallocate(fd_.get(), static_cast<off_t>(offsets_[region] + offset),
                           static_cast<off_t>(bytes));
  if (rc == ENOSPC)
    return Status(ErrorCode::kNoSpace,
                  fmt::format("receiver disk full: cannot reserve {} more for {}",
                              format_bytes(bytes), path_),
                  rc);
  if (rc != 0) return errno_status(ErrorCode::kIo, fmt::format("cannot allocate {}", path_), rc);
  return Status::ok();
}

void DestinationMemory::populate(uint32_t region, uint64_t offset, uint64_t bytes) {
#ifndef MADV_POPULATE_WRITE
#define MADV_POPULATE_WRITE 23
#endif
  if (region >= spans_.size() || offset >= spans_[region].size()) return;
  bytes = std::min<uint64_t>(bytes, spans_[region].size() - offset);
  (void)madvise(spans_[region].data() + offset, bytes, MADV_POPULATE_WRITE);
}

Status DestinationMemory::commit() {
  if (path_.empty()) {
    committed_ = true;
    return Status::ok();
  }
  if (ftruncate(fd_.get(), static_cast<off_t>(exact_total_)) != 0)
    return errno_status(ErrorCode::kIo, fmt::format("cannot trim {}", partial_path_), errno);
  if (::rename(partial_path_.c_str(), path_.c_str()) != 0)
    return errno_status(ErrorCode::kIo, fmt::format("cannot rename {} to {}", partial_path_, path_),
                        errno);
  committed_ = true;
  return Status::ok();
}

Status DestinationMemory::uncommit() {
  if (!committed_ || path_.empty()) {
    committed_ = false;
    return Status::ok();
  }
  if (::rename(path_.c_str(), partial_path_.c_str()) != 0) {
    const int err = errno;
    ::unlink(path_.c_str());  // never left looking complete
    committed_ = false;
    return errno_status(ErrorCode::kIo,
                        fmt::format("cannot rename {} back to {}", path_, partial_path_), err);
  }
  committed_ = false;
  if (ftruncate(fd_.get(), static_cast<off_t>(whole_pages_total_)) != 0)
    return errno_status(ErrorCode::kIo, fmt::format("cannot extend {}", partial_path_), errno);
  return Status::ok();
}

}  // namespace ramshift::guest
