// The sending half of a queue's ring protocol, without verbs: credits for the peer's receive
// ring, cutting a message into slot-sized fragments copied into the staging ring, and the
// message that waits for credits.
//
// The k-th fragment ever sent goes to slot k mod slots of the peer's ring (and of our staging
// ring, which mirrors it), so a cumulative count of slots the peer released is the whole
// flow-control state: at most `slots` fragments may be unreleased.
//
// Threads: the sending side (under the queue's send lock) calls everything except
// on_credit, which the poller calls; the two counters they share are atomic.
#pragma once

#include <atomic>
#include <cstddef>
#include <cstdint>
#include <span>
#include <vector>

#include "ramshift/base/status.h"
#include "ramshift/transport/transport.h"
#include "ring_protocol.h"

namespace ramshift::transport::rdma {

// Reads a message given as a gather list, fragment by fragment.
class Gather {
 public:
  explicit Gather(std::span<const ConstBuffer> segments);
  size_t remaining() const { return remaining_; }
  // Copies the next `n` (<= remaining()) bytes to `dst`.
  void copy(std::byte* dst, size_t n);

 private:
  std::span<const ConstBuffer> segments_;
  size_t segment_ = 0, offset_ = 0, remaining_ = 0;
};

// One fragment copied into the staging ring, ready to be written to the peer.
struct StagedFragment {
  const std::byte* data;   // in the staging ring
  uint32_t len;            // 0..slot_bytes (0 only for an empty message)
  bool last;               // the message's last fragment
  uint64_t remote_offset;  // of its slot in the peer's ring
  uint32_t imm() const { return fragment_imm(len, last); }
};

class SendRing {
 public:
  // `queue` names the queue in errors; `max_chain` is the most fragments staged at once
  // (the send queue's depth: one work request each).
  SendRing(uint32_t queue, size_t max_chain);

  // From the peer's hello: its ring's shape, and our staging of the same size
  // (slots x slot_bytes bytes, registered by the shell).
  void attach(uint32_t peer_slots, uint32_t peer_slot_bytes, std::span<std::byte> staging);
  bool attached() const { return slots_ != 0; }

  size_t max_chain() const { return staged_.size(); }
  // Fragments a message of `bytes` needs (an empty message still takes one).
  size_t fragments_for(size_t bytes) const;
  // Slots of the peer's ring free now (credits).
  uint64_t free_slots() const { return slots_ - (sent_.load() - peer_released_.load()); }
  // Slots the peer released so far (cumulative); changes when a credit arrives.
  uint64_t peer_released() const { return peer_released_.load(); }

  // Copies the next `count` (<= free_slots(), <= max_chain()) fragments of `src` into their
  // staging slots and counts them as sent. The span is valid until the next call.
  std::span<const StagedFragment> stage(Gather& src, size_t count);

  // A message accepted without the credits to send it whole waits here, copied, so that
  // the caller's buffers are free at once. One at a time.
  bool has_pending() const { return pending_active_; }
  void hold(Gather& src);
  // Stages as much of the waiting message as credits and `send_room` allow (maybe nothing);
  // forgets it once its last fragment is staged.
  std::span<const StagedFragment> stage_pending(uint64_t send_room);

  // Poller: the peer says it released `value` (mod 2^30) slots so far. A count beyond the
  // fragments written is a protocol error.
  Status on_credit(uint32_t value);

 private:
  uint32_t queue_;
  uint32_t slots_ = 0;
  uint32_t slot_bytes_ = 0;
  std::span<std::byte> staging_;
  std::atomic<uint64_t> sent_{0};           // fragments written into the peer's ring
  std::atomic<uint64_t> peer_released_{0};  // of those, released by the peer
  std::vector<StagedFragment> staged_;
  std::vector<std::byte> pending_;  // the unsent tail of one accepted message
  size_t pending_offset_ = 0;
  bool pending_active_ = false;
};

}  // namespace ramshift::transport::rdma
