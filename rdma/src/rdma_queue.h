// One queue of an rdma:// connection: an RC queue pair with its own completion queue,
// completion channel and poller thread.
//
// Messages travel as RDMA WRITE WITH IMMEDIATE into a ring of fixed-size slots the receiver
// registered (REMOTE_WRITE) and announced in its hello. The sender copies a message into the
// matching slot of its own registered staging ring and writes it across; the immediate says
// "fragment of N bytes, last or not". A message larger than a slot travels as several
// fragments and is reassembled (copied) by the receiver; one that fits a slot is delivered
// as a view straight into the ring. Slots are used in order, so a cumulative count of
// released slots is the whole flow-control state: the receiver sends it back as a zero-byte
// WRITE WITH IMMEDIATE (credit flag set) when half the ring is free again or when it is
// about to wait. RC's in-order delivery makes every earlier write (post_writes: guest pages
// placed directly) visible before a later message's completion.
//
// Immediate (host order before htonl):
//   bit 31 = 0 data:   bit 30 last fragment, bits 24..29 zero, bits 0..23 length
//   bit 31 = 1 credit: bits 0..29 slots released so far (mod 2^30)
//
// Threads: one sender and one receiver thread per queue (the transport contract) plus the
// queue's poller, which only reads completions and updates counters; posting is serialised
// by send_mu_ because the receiver posts credits on the same send queue.
#pragma once

#include <atomic>
#include <chrono>
#include <condition_variable>
#include <deque>
#include <memory>
#include <mutex>
#include <span>
#include <thread>
#include <vector>

#include "async_events.h"
#include "ramshift/base/mapped_memory.h"
#include "ramshift/base/unique_fd.h"
#include "ramshift/transport/transport.h"
#include "verbs_handles.h"

namespace ramshift::transport::rdma {

inline constexpr uint16_t kProtocolVersion = 1;
// Largest slot the 24-bit length of the immediate can describe.
inline constexpr uint32_t kMaxSlotBytes = 8u << 20;

class RdmaQueue {
 public:
  // Creates the queue's CQ, QP (on `id`, whose route is resolved or which came from a
  // connect request), receive ring and hello buffer, and posts every receive it will need.
  static Result<std::unique_ptr<RdmaQueue>> create(CmId id, SharedPd pd, const RdmaTuning& tuning,
                                                   uint32_t index);
  ~RdmaQueue();
  RdmaQueue(const RdmaQueue&) = delete;
  RdmaQueue& operator=(const RdmaQueue&) = delete;

  rdma_cm_id* id() const { return id_.get(); }

  // Handshake, once the CM says ESTABLISHED: send our ring description, wait for the peer's
  // (then allocate staging to match its ring), then start the poller thread.
  Status exchange_hello(std::chrono::steady_clock::time_point deadline);

  // The transport contract for this queue (see transport.h).
  Status post_message(std::span<const ConstBuffer> segments);
  Status post_writes(std::span<const RemoteWrite> writes, std::span<const uint32_t> lkeys);
  Status wait_writable(Millis timeout);
  Status flush(Millis timeout);
  Result<size_t> poll(std::span<ConstBuffer> out, Millis timeout);

  // From the connection's CM thread: the peer disconnected. Moves the QP to the error state
  // so that posted receives flush after every message that did land.
  void peer_disconnected();
  // Local close: disconnect, flush, wake every waiter. Idempotent.
  void close();

  static constexpr size_t kMaxMessage = (32u << 20) + 64;  // the same limit as tcp

 private:
  struct Fragment {
    uint32_t slot;
    uint32_t len;
    bool last;
  };
  class Gather;

  RdmaQueue(CmId id, SharedPd pd, const RdmaTuning& tuning, uint32_t index);
  Status init_resources();
  Status post_initial_receives();

  // Completion handling (poller thread, and exchange_hello before the poller starts).
  void run_poller();
  void handle(const ibv_wc& wc, uint32_t& reposts);
  void on_fragment(uint32_t imm);
  void on_credit(uint32_t value);
  void on_error_completion(const ibv_wc& wc, bool is_receive);
  void fail(Status s);  // first failure wins; moves the QP to error
  Status repost_receives(uint32_t count);

  // Sending (callers hold send_mu_).
  Status usable() const;
  uint64_t free_slots() const;
  uint64_t sq_free() const;
  Status post_fragments(Gather& src, size_t frags);
  Status post_chain(ibv_send_wr* first, size_t count);
  Status pump_pending();
  Status send_credit_locked();
  void maybe_send_credit();  // consumer thread
  void post_drain_marker();  // destructor, after close()
  // A signaled zero-byte RDMA WRITE numbered like any other request: its completion means
  // every request before it completed. Returns ibv_post_send's error (0 = posted).
  int post_signaled_marker_locked();
  bool drained() const;

  // Verbs owners, destroyed bottom-up: id (with its QP) first, then MRs before the memory
  // they pin, then the CQ, its channel, and the PD last (shared with the connection).
  SharedPd pd_;
  CompletionChannel channel_;
  CompletionQueue cq_;
  MappedMemory ring_;
  MemoryRegion ring_mr_;
  MappedMemory staging_;
  MemoryRegion staging_mr_;
  MappedMemory hello_buf_;  // [0, 64) receive, [64, 128) send
  MemoryRegion hello_mr_;
  CmId id_;

  RdmaTuning tuning_;
  uint32_t index_;
  uint32_t recv_depth_ = 0;
  UniqueFd wake_fd_;  // eventfd: wakes the poller on close
  std::thread poller_;
  std::atomic<bool> stopping_{false};
  std::atomic<bool> closed_{false};
  std::atomic<bool> peer_gone_{false};

  // Peer's ring, from its hello.
  uint64_t peer_ring_addr_ = 0;
  uint32_t peer_rkey_ = 0;
  uint32_t peer_slots_ = 0;
  uint32_t peer_slot_bytes_ = 0;

  // Shared with the poller (under mu_ or atomic), waited on with cv_.
  mutable std::mutex mu_;
  std::condition_variable cv_;
  std::deque<Fragment> ready_;              // landed fragments, in order
  Status failure_;                          // first error; sticky
  bool ended_ = false;                      // receives flushed: nothing more will arrive
  std::atomic<uint64_t> peer_released_{0};  // credits: peer slots free again (cumulative)
  std::atomic<uint64_t> completed_wr_{0};   // send WRs known complete (cumulative)
  std::atomic<uint32_t> recv_outstanding_{0};
  uint64_t arrived_ = 0;  // fragments landed in our ring (poller only)

  // Send side (send_mu_).
  std::mutex send_mu_;
  std::atomic<uint64_t> sent_frags_{0};  // fragments written into the peer's ring
  std::atomic<uint64_t> posted_wr_{0};   // read by the poller to know when it has drained
  uint64_t last_signaled_ = UINT64_MAX;
  std::vector<std::byte> pending_;  // the unsent tail of one accepted message
  size_t pending_off_ = 0;
  bool pending_active_ = false;
  std::vector<ibv_send_wr> wrs_;
  std::vector<ibv_sge> sges_;

  // Receive side (consumer thread only, except reported_ which the poller reads).
  uint64_t released_ = 0;  // our ring slots free again
  std::atomic<uint64_t> reported_{0};
  uint32_t held_ = 0;  // slots behind the views the last poll() returned
  std::vector<std::byte> reassembly_;
  bool reassembling_ = false;

  // Last member, so destroyed first: no async-event callback runs into a queue being torn
  // down, and the watch is gone before the QP and CQ it names.
  std::unique_ptr<AsyncEventWatch> async_watch_;
};

}  // namespace ramshift::transport::rdma
