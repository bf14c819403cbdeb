// What a migration moves: the guest's memory regions, as the source sees them.
//
// The live-engine adds dirty tracking and vCPU control to this interface; the foundation
// needs only the regions of a guest that does not change (a memory image).
#pragma once

#include <cstdint>
#include <span>

#include <string>
#include <vector>
#include "ramshift/base/status.h"

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

  // Live guests (all no-ops for an immutable one).
  // Starts kernel dirty tracking of every region; pages written from now on are reported.
  virtual Status start_dirty_log() { return Status::ok(); }
  // Pages of `region` (in page_size units) written since the last call, ascending, and
  // clears them. Immutable guests never have any.
  virtual Result<std::vector<uint64_t>> fetch_dirty(uint32_t) { return std::vector<uint64_t>{}; }
  // Stops the vCPUs at a point where memory is consistent; returns once they stopped.
  virtual void pause() {}
  virtual void resume() {}
  // Slows the vCPUs to (100 - percent)% of their speed (auto-converge).
  virtual void set_throttle(int) {}
  // Opaque device state, sent at switchover.
  virtual std::string device_state() const { return {}; }
};

}  // namespace ramshift::guest
