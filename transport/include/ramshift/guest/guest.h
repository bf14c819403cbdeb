// What a migration moves: the guest's memory regions, as the source sees them.
//
// The live-engine adds dirty tracking and vCPU control to this interface; the foundation
// needs only the regions of a guest that does not change (a memory image).
#pragma once

#include <cstdint>
#include <span>
#include <string>
#include <vector>

namespace ramshift::guest {

struct Region {
  std::string name;
  uint64_t bytes = 0;           // exact size
  std::span<std::byte> memory;  // covers `bytes` rounded up to whole pages; tail reads zero
};

class SourceGuest {
 public:
  virtual ~SourceGuest() = default;
  virtual const std::vector<Region>& regions() const = 0;
  virtual std::string describe() const = 0;  // for logs and the report
  // True when the memory cannot change during the migration (an image): the sender may
  // then hand pages to the transport without copying them first.
  virtual bool immutable() const { return false; }
};

}  // namespace ramshift::guest
