// The receiving half of a queue's ring protocol, without verbs: checking each fragment the
// peer announces against our slot size and the credits we gave, handing messages out (a
// single-fragment message as a view straight into the ring, a longer one reassembled into a
// copy), and counting the slots released so the shell can return them as credits.
//
// Slots are written and released in order: the k-th fragment lands in slot k mod slots. A
// view keeps its slot until the consumer's next poll; a copied fragment's slot is free at once.
//
// Threads: the poller calls arrive() (and nothing else outside the lock); push(), empty() and
// take() need the lock the shell guards its arrivals with; begin_poll() and the credit calls
// belong to the consumer thread (report_credit under the shell's send lock). reported_ is
// the one counter both sides read, and it is atomic.
#pragma once

#include <atomic>
#include <cstddef>
#include <cstdint>
#include <deque>
#include <span>
#include <vector>

#include "ramshift/base/status.h"
#include "ramshift/transport/transport.h"

namespace ramshift::transport::rdma {

// A fragment the peer wrote into our ring.
struct ArrivedFragment {
  uint32_t slot;
  uint32_t len;
  bool last;
};

class ReceiveRing {
 public:
  // Our ring's shape (validate_tuning's ranges); `queue` names the queue in errors.
  ReceiveRing(uint32_t slots, uint32_t slot_bytes, uint32_t queue);

  // The ring's memory, slots x slot_bytes, that views point into.
  void attach(std::span<const std::byte> memory) { memory_ = memory.data(); }

  // Poller: the peer announced a data fragment with immediate `imm` (host order, credit bit
  // clear). Reserved bits, a length above a slot, or a fragment beyond the credits we
  // returned are protocol errors; otherwise the fragment's slot is the next one.
  Result<ArrivedFragment> arrive(uint32_t imm);

  // Under the lock: queue a fragment arrive() accepted; whether none is waiting.
  void push(ArrivedFragment f) { ready_.push_back(f); }
  bool empty() const { return ready_.empty(); }

  // Consumer, at the start of each poll: the views the previous poll returned are released
  // now, and a finished reassembly's buffer may be reused.
  void begin_poll();
  // The most messages one poll hands out: half the ring. The consumer releases views only by
  // polling again, and the sender needs those credits while the consumer works.
  size_t views_per_poll() const;

  struct Taken {
    size_t messages;  // written to the front of `out`
    bool copied;      // a fragment was reassembled: its slot is free already
  };
  // Under the lock: moves waiting fragments into `out` (at most out.size() messages). Views
  // come first; a message in several fragments is copied, and handed out once its last
  // fragment is here, alone. A reassembly above kMaxRingMessage is a protocol error.
  Result<Taken> take(std::span<ConstBuffer> out);

  // Credits, consumer side: half the ring released since the last report (return them now);
  // anything released and not reported (return them before waiting).
  bool credit_due() const;
  bool credit_owed() const { return released_ != reported_.load(); }
  // Marks what is released as reported and returns the credit immediate that says so. The
  // shell calls it just before posting: the peer may write into those slots at once.
  uint32_t report_credit();
  // The count last reported (a heartbeat repeats it, under the same send lock).
  uint64_t reported() const { return reported_.load(); }

 private:
  uint32_t slots_;
  uint32_t slot_bytes_;
  uint32_t queue_;
  const std::byte* memory_ = nullptr;
  uint64_t arrived_ = 0;               // fragments landed (poller only)
  std::deque<ArrivedFragment> ready_;  // landed, not yet taken, in order (under the lock)
  uint64_t released_ = 0;              // slots free again (consumer)
  std::atomic<uint64_t> reported_{0};  // of those, reported to the peer
  uint32_t held_ = 0;                  // slots behind the views the last poll returned
  std::vector<std::byte> reassembly_;
  bool reassembling_ = false;
};

}  // namespace ramshift::transport::rdma
