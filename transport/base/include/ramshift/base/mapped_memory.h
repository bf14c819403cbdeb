// Move-only owner of an mmap()ed range: anonymous memory or a file mapping.
#pragma once

#include <cstddef>
#include <span>
#include <string>

#include "ramshift/base/status.h"

namespace ramshift {

class MappedMemory {
 public:
  MappedMemory() = default;
  ~MappedMemory();
  MappedMemory(MappedMemory&& o) noexcept;
  MappedMemory& operator=(MappedMemory&& o) noexcept;
  MappedMemory(const MappedMemory&) = delete;
  MappedMemory& operator=(const MappedMemory&) = delete;

  // Private, zero-filled, read-write memory of `bytes` (rounded up to the host page size).
  static Result<MappedMemory> anonymous(size_t bytes);
  // Maps `bytes` of the open file `fd` (rounded up to the host page size). Read-only maps
  // are MAP_PRIVATE|PROT_READ (the source can never change the image); writable maps are
  // MAP_SHARED so writes land in the file. `what` names the file in errors.
  static Result<MappedMemory> map_file(int fd, size_t bytes, bool writable,
                                       const std::string& what);

  std::span<std::byte> bytes() const { return {static_cast<std::byte*>(addr_), size_}; }
  size_t mapped_size() const { return size_; }

 private:
  MappedMemory(void* addr, size_t size) : addr_(addr), size_(size) {}
  void* addr_ = nullptr;
  size_t size_ = 0;
};

size_t host_page_size();

}  // namespace ramshift
