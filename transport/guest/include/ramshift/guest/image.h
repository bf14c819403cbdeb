// A memory image in a file (offline migration): `--guest file:PATH` on the source, and the
// destination's `--guest-out PATH`.
#pragma once

#include <ctime>
#include <memory>
#include <string>
#include <vector>

#include "ramshift/base/mapped_memory.h"
#include "ramshift/base/status.h"
#include "ramshift/base/unique_fd.h"
#include "ramshift/guest/guest.h"

namespace ramshift::guest {

// Source side: the file mapped as one region named "image", which nothing here writes:
// MAP_PRIVATE and read-only, or on tmpfs MAP_SHARED (see shared_mapping()).
class ImageGuest final : public SourceGuest {
 public:
  // kNotFound (missing), kIo (unreadable, a directory), kInvalidArgument (empty, or a size
  // that is not whole pages when page_size exceeds the host page size).
  static Result<std::unique_ptr<ImageGuest>> open(const std::string& path, size_t page_size);
  ~ImageGuest() override;  // a shared mapping: puts back the mtime pinning may have moved
  const std::vector<Region>& regions() const override { return regions_; }
  std::string describe() const override;
  bool immutable() const override { return true; }  // sent in one round
  // True for an image on tmpfs that this process owns (or root): mapped shared, so pinning it for
  // RDMA on kernels before 6.2 (which pin read-only memory as if for writing) copies no page. The
  // pin's write fault moves the file's mtime; the destructor moves it back.
  bool shared_mapping() const { return shared_; }

 private:
  std::string path_;
  UniqueFd fd_;
  MappedMemory map_;
  bool shared_ = false;
  timespec mtime_{};  // the file's, when it was opened (shared mappings only)
  std::vector<Region> regions_;
};

// Destination side: memory for the incoming regions, laid end to end. Either anonymous
// (verify only) or a file written at PATH.partial and renamed to PATH on commit(), so a
// failed migration never leaves a file that looks complete.
class DestinationMemory {
 public:
  struct Options {
    std::string output_path;  // empty: anonymous memory
    bool overwrite = false;   // an existing output file may be replaced
    // Output file: leave reserving its blocks to reserve() (chunk by chunk, while the
    // migration runs) instead of reserving all of it in create().
    bool reserve_later = false;
  };
  // kNoSpace when the filesystem (or memory) cannot hold `region_bytes`; kInvalidArgument
  // when the output exists and overwrite is off.
  static Result<std::unique_ptr<DestinationMemory>> create(
      const std::vector<uint64_t>& region_bytes, size_t page_size, const Options& options);
  // The caller's memory (DestinationGuest::memory_for), one span per region: each must be
  // page-aligned and cover its region rounded up to whole pages (kMismatch otherwise). It is
  // not zeroed here but by reserve(), chunk by chunk ahead of the pages, because a fresh
  // destination must read zero (round 0 skips zero pages) and the caller's may not.
  static Result<std::unique_ptr<DestinationMemory>> borrow(
      std::vector<std::span<std::byte>> regions, const std::vector<uint64_t>& region_bytes,
      size_t page_size);
  ~DestinationMemory();

  // Spans of every region, each a whole number of pages.
  const std::vector<std::span<std::byte>>& regions() const { return spans_; }
  // Output file: trim to the exact size and rename into place. Anonymous: nothing.
  Status commit();
  // Undoes commit() (a switch-over the source aborted): the file back at PATH.partial, at its
  // whole pages' size, so a later failure removes it. A rename that fails removes PATH.
  Status uncommit();
  // Whether bytes written through regions() need reserve() first (an output file created
  // with reserve_later): a write to unreserved blocks of a full disk would be SIGBUS.
  bool reserves_later() const { return reserve_later_; }
  bool borrowed() const { return borrowed_; }
  // Reserves the file blocks under [offset, offset + bytes) of region `region` (kNoSpace
  // when the disk is full); borrowed memory: zeroes the range. Thread-safe; nothing to do
  // for anonymous memory.
  Status reserve(uint32_t region, uint64_t offset, uint64_t bytes);
  // Faults [offset, offset + bytes) of region `region` in, writable (MADV_POPULATE_WRITE),
  // so the pages that land there later cost no page fault each. Only an optimisation:
  // a kernel without it (< 5.14) is not an error.
  void populate(uint32_t region, uint64_t offset, uint64_t bytes);

 private:
  std::string path_;
  std::string partial_path_;
  UniqueFd fd_;
  MappedMemory map_;
  std::vector<std::span<std::byte>> spans_;
  std::vector<uint64_t> bytes_;
  std::vector<uint64_t> offsets_;  // of each region in the file
  bool reserve_later_ = false;
  bool borrowed_ = false;  // the caller's memory: zeroed by reserve(), never unmapped here
  uint64_t exact_total_ = 0;
  uint64_t whole_pages_total_ = 0;  // the file's size before commit() trimmed it
  bool committed_ = false;
};

}  // namespace ramshift::guest
