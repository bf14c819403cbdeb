// What a migration moves: the guest's memory regions, as the source sees them (with its
// dirty log, vCPU control and device state), and a destination guest whose memory belongs
// to the caller.
#pragma once

#include <cstdint>
#include <span>

#include <string>
#include <string_view>
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
  // Ends dirty tracking for good (post-copy, once the guest is paused and its last dirty
  // pages are read): write-protect tracking keeps the memory from being pinned (Linux 6.1:
  // ibv_reg_mr fails with EFAULT), and post-copy registers it for the peer's reads.
  virtual void stop_dirty_log() {}
  // Stops the vCPUs at a point where memory is consistent; returns once they stopped.
  virtual void pause() {}
  virtual void resume() {}
  // Slows the vCPUs to (100 - percent)% of their speed (auto-converge).
  virtual void set_throttle(int) {}
  // Opaque device state, taken once the guest is paused and sent at switchover; an error
  // fails the migration (the guest is resumed here).
  virtual Result<std::string> device_state() const { return std::string(); }
  // The size device_state() will have, as known while the guest runs (0 = unknown): the
  // convergence policy counts it in the switch-over, since it crosses the same link.
  virtual uint64_t device_state_bytes() const { return 0; }
};

// The destination's view of a guest it receives into memory of its own (an embedding VMM's
// RAM, `ramshift_destination_add_region`) instead of memory the engine allocates.
class DestinationGuest {
 public:
  virtual ~DestinationGuest() = default;
  // The memory for the source's regions (`region_bytes`, in table order): one span per
  // region, page-aligned, covering its bytes rounded up to whole `page_size` pages. It is
  // zeroed chunk by chunk before pages land in it. kMismatch when the table is not this
  // guest's shape.
  virtual Result<std::vector<std::span<std::byte>>> memory_for(
      const std::vector<uint64_t>& region_bytes, uint32_t page_size) = 0;
  // The paused source's device state, once the memory is verified and before the commit.
  // The guest must not run until resume(). Called again, with a newer state, after a
  // switch-over the source aborted (its guest ran on): the last state is the one to run.
  virtual Status load_device_state(std::string_view state) = 0;
  // The source has let the guest go: from now on it runs here.
  virtual void resume() = 0;
};

}  // namespace ramshift::guest
