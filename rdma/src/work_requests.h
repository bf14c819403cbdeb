// The bookkeeping of one queue pair's work requests, without verbs: how many sends are in
// flight (the send queue's room), which of them ask for a completion (selective signaling,
// one in `signal_every`), whether a drain needs a signaled marker, and how many receives are
// still posted. The verbs shell numbers every send by its position (wr_id = posted() at the
// time), which is what lets one completion account for every request before it: a send queue
// completes in order.
//
// Threads: the posting side (under the queue's send lock) calls signal_request, note_posted,
// needs_marker and note_marker_posted; the poller calls on_send_completed and
// on_receive_completed; counters any thread reads are atomic.
#pragma once

#include <atomic>
#include <cstddef>
#include <cstdint>

namespace ramshift::transport::rdma {

class WorkRequestLedger {
 public:
  // `depth`: sends allowed in flight; `signal_every`: 1..depth/2 (validate_tuning).
  WorkRequestLedger(uint32_t depth, uint32_t signal_every)
      : depth_(depth), signal_every_(signal_every) {}

  uint64_t posted() const { return posted_.load(); }        // sends posted (cumulative)
  uint64_t completed() const { return completed_.load(); }  // sends known complete
  // Sends that may be posted now without overrunning the send queue.
  uint64_t send_free() const { return depth_ - (posted_.load() - completed_.load()); }

  // Whether send `wr_id` is one of the every-Nth that ask for a completion; records it as
  // the last signaled one when it is. Called for each request of a chain before posting it.
  bool signal_request(uint64_t wr_id) {
    if ((wr_id + 1) % signal_every_ != 0) return false;
    last_signaled_ = wr_id;
    return true;
  }
  void note_posted(size_t count) { posted_ += count; }
  // Send `wr_id` asks for a completion whatever signal_every says (a read's waiter needs
  // its own): records it as the last signaled one.
  void note_signaled(uint64_t wr_id) { last_signaled_ = wr_id; }

  // An unsignaled send reports nothing: flush and drain wait for a signaled zero-byte marker
  // posted after it. False when nothing was posted or the last send was signaled already.
  bool needs_marker() const {
    const uint64_t p = posted_.load();
    return p > 0 && last_signaled_ != p - 1;
  }
  // The marker (numbered posted()) was posted, signaled.
  void note_marker_posted() {
    last_signaled_ = posted_.load();
    ++posted_;
  }

  // A send completed (or was flushed): it and every send before it are done. Completions of
  // older requests arriving late never move the count back.
  void on_send_completed(uint64_t wr_id) {
    const uint64_t done = wr_id + 1;
    uint64_t cur = completed_.load();
    while (cur < done && !completed_.compare_exchange_weak(cur, done)) {
    }
  }

  void note_receives_posted(uint32_t count) { receives_ += count; }
  void on_receive_completed() { --receives_; }
  uint32_t receives_outstanding() const { return receives_.load(); }

  // Every receive and every send accounted for: the QP may be destroyed without a
  // completion arriving for memory or a CQ that is gone.
  bool drained() const { return receives_.load() == 0 && completed_.load() >= posted_.load(); }

 private:
  uint32_t depth_;
  uint32_t signal_every_;
  std::atomic<uint64_t> posted_{0};      // written by the posting side, read by the poller
  std::atomic<uint64_t> completed_{0};   // written by the poller
  uint64_t last_signaled_ = UINT64_MAX;  // posting side only
  std::atomic<uint32_t> receives_{0};
};

}  // namespace ramshift::transport::rdma
