// The destination's pages that a post-copy must drop, and the drop itself. A page named by
// POSTCOPY_START holds a stale copy here (or none); it must be absent when the guest runs, so
// that its first access faults and the source's copy fills it.
//
// Why dropping early: the stale pages of a hybrid are scattered (a guest dirtying at random),
// and dropping costs 4.7-5.8 us a page even batched (missing_pages.h), 155 ms for 27,000
// pages: all of it in the downtime if done once the guest is paused. POSTCOPY_DISCARD lets
// the destination drop most of them while the guest still runs on the source, round after
// round, each naming only those dirtied since the last; POSTCOPY_START then names every page
// to come, and only those not dropped yet are dropped in the downtime.
//
// The memory is registered for missing-page faults at the first drop (POSTCOPY_DISCARD, or
// POSTCOPY_START without one), and handed to the post-copy placer with the record of what is
// absent. Nothing may touch a dropped page until then: the data queues are idle (pre-copy is
// over), and a touch would block, not read zeros.
//
// Thread-safety: none; the destination's control thread owns it.
#pragma once

#include <cstdint>
#include <functional>
#include <memory>
#include <span>
#include <vector>

#include "ramshift/base/status.h"
#include "ramshift/guest/missing_pages.h"
#include "ramshift/migration/session_state.h"
#include "ramshift/wire/frame.h"

namespace ramshift::migration {

class DiscardedPages {
 public:
  // Registers `regions` (the table's, in its page size) for missing-page faults.
  static Result<std::unique_ptr<DiscardedPages>> register_memory(
      std::vector<std::span<std::byte>> regions, const wire::RegionTable& table,
      uint32_t page_size);

  // Drops the pages of `pages` (per region, a bitmap as POSTCOPY_START carries) that are
  // not dropped yet; how many that was.
  Result<uint64_t> drop(const std::vector<std::vector<uint8_t>>& pages);
  uint64_t dropped() const { return dropped_; }  // pages, over every drop()
  uint32_t drops() const { return drops_; }      // drop() calls

  // The registered memory, for the post-copy placer; this object is spent after it.
  std::unique_ptr<guest::MissingPages> take_pages() { return std::move(pages_); }

 private:
  DiscardedPages() = default;
  std::unique_ptr<guest::MissingPages> pages_;
  std::vector<std::vector<uint8_t>> absent_;  // per region: dropped here (bit per page)
  std::vector<uint64_t> region_pages_;
  uint64_t dropped_ = 0;
  uint32_t drops_ = 0;
};

// POSTCOPY_DISCARD on the destination: drops what `body` names (registering the memory into
// `discarded` at the first), and answers POSTCOPY_DISCARDED.
struct DiscardContext {
  DestinationSession& session;
  bool postcopy;  // the source asked for post-copy (HELLO)
  std::vector<std::span<std::byte>> regions;
  const wire::RegionTable& table;
  uint32_t page_size;
  std::function<Status(wire::FrameType, std::span<const std::byte>)> send_control;
};
Status take_discard(std::span<const std::byte> body, const DiscardContext& context,
                    std::unique_ptr<DiscardedPages>& discarded);

}  // namespace ramshift::migration
