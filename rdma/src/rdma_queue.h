// One queue of an rdma:// connection: an RC queue pair with its own completion queue,
// completion channel and poller thread. This file is the verbs shell: it posts, polls and
// owns the verbs objects; the ring protocol itself (credits, fragments, reassembly, work
// request bookkeeping, every check on what the peer sends) is verbs-free, in send_ring.h,
// receive_ring.h, work_requests.h and ring_protocol.h.
//
// Messages travel as RDMA WRITE WITH IMMEDIATE into a ring of fixed-size slots the receiver
// opened for REMOTE_WRITE (by a memory window bound on this queue pair where the device has
// them, else by the region's key) and announced in its hello. The sender copies a message into the
// matching slot of its own registered staging ring and writes it across; the immediate says
// "fragment of N bytes, last or not". A message larger than a slot travels as several
// fragments and is reassembled (copied) by the receiver; one that fits a slot is delivered
// as a view straight into the ring. Slots are used in order, so a cumulative count of
// released slots is the whole flow-control state: the receiver sends it back as a zero-byte
// WRITE WITH IMMEDIATE (credit flag set) when half the ring is free again or when it is
// about to wait. RC's in-order delivery makes every earlier write (post_writes: guest pages
// placed directly) visible before a later message's completion.
//
// Threads: one sender and one receiver thread per queue (the transport contract) plus the
// queue's poller, which only reads completions and updates counters; posting is serialised
// by send_mu_ because the receiver posts credits on the same send queue.
#pragma once

#include <atomic>
#include <chrono>
#include <condition_variable>
#include <functional>
#include <memory>
#include <mutex>
#include <optional>
#include <span>
#include <string_view>
#include <thread>
#include <vector>

#include "async_events.h"
#include "memory_windows.h"
#include "page_pull.h"
#include "peer_liveness.h"
#include "ramshift/base/mapped_memory.h"
#include "ramshift/base/unique_fd.h"
#include "ramshift/transport/channel_security.h"
#include "ramshift/transport/transport.h"
#include "receive_ring.h"
#include "ring_protocol.h"
#include "send_ring.h"
#include "verbs_handles.h"
#include "work_requests.h"

namespace ramshift::transport::rdma {

class RdmaQueue {
 public:
  // Creates the queue's CQ, QP (on `id`, whose route is resolved or which came from a
  // connect request), receive ring and hello buffer, and posts every receive it will need.
  // `authenticated`: --tls-* was given; the queue posts its authentication receives first.
  static Result<std::unique_ptr<RdmaQueue>> create(CmId id, SharedPd pd, const RdmaTuning& tuning,
                                                   uint32_t index, bool authenticated = false);
  ~RdmaQueue();
  RdmaQueue(const RdmaQueue&) = delete;
  RdmaQueue& operator=(const RdmaQueue&) = delete;

  rdma_cm_id* id() const { return id_.get(); }

  // On a queue created `authenticated`, once the CM says ESTABLISHED and before
  // exchange_hello: the TLS handshake, the accepting side's verdict (--tls-authz) and both
  // hellos, over two-sided messages (queue_auth.h). `host` is what the client dialled (its
  // certificate check); `peer` names the peer in errors ("rdma://10.9.0.1:7000").
  // `encrypt` (--encrypt) must be the same on both sides, or both refuse.
  Status authenticate(ChannelSecurity& security, PeerRole role, const std::string& host,
                      const std::string& peer, bool encrypt,
                      std::chrono::steady_clock::time_point deadline,
                      const std::function<Status()>& peer_left);
  // The authenticated session (its peer, its keys); nullptr on an unsecured queue.
  const SecureSession* session() const { return session_.get(); }

  // Handshake, once the CM says ESTABLISHED: send our ring description, wait for the peer's
  // (then allocate staging to match its ring), then start the poller thread.
  // `peer_left` is asked while waiting: a non-ok Status (the peer disconnected, seen on the
  // CM channel) ends the wait at once with it.
  Status exchange_hello(std::chrono::steady_clock::time_point deadline,
                        const std::function<Status()>& peer_left);

  // The transport contract for this queue (see transport.h).
  Status post_message(std::span<const ConstBuffer> segments);
  Status post_writes(std::span<const RemoteWrite> writes, std::span<const uint32_t> lkeys);
  // RDMA READs on this queue's QP (numbered like its other sends, the last one signaled);
  // returns once they completed. Any thread, beside the sender and receiver.
  Status read(std::span<const PullRead> reads, Millis timeout);
  // Binds type-2 memory windows on this queue's QP: posts one bind work request each
  // (numbered like the queue's other sends, the last one signaled; 1 to max_waited() at once)
  // and returns the number wait_posted waits for, so that several queues bind at once. From
  // then on the peer reaches each window with its rkey through this queue pair only (the
  // device refuses it on any other, even of the same PD), until the window is deallocated.
  Result<uint64_t> post_binds(std::span<const WindowBind> binds,
                              std::chrono::steady_clock::time_point deadline);
  // Waits until the requests numbered below `target` completed: ok when they succeeded.
  // `what` names them in errors ("memory window bind").
  Status wait_posted(uint64_t target, std::chrono::steady_clock::time_point deadline,
                     std::string_view what);
  // The most reads or binds one call may post: half the send queue.
  size_t max_waited() const { return tuning_.send_queue_depth / 2; }
  Status wait_writable(Millis timeout);
  Status flush(Millis timeout);
  Result<size_t> poll(std::span<ConstBuffer> out, Millis timeout);

  // From the connection's CM thread: the peer disconnected. Moves the QP to the error state
  // so that posted receives flush after every message that did land.
  void peer_disconnected();
  // Local close: disconnect, flush, wake every waiter. Idempotent. While the port is down
  // the disconnect request is held back (see finish_disconnect).
  void close();

  // Since when the queue's port has been down (the async event's time, or now if only the
  // device says so); nullopt while it is up.
  std::optional<std::chrono::steady_clock::time_point> port_down_since() const;
  // The disconnect close() held back, once the port is up again; nothing if it is still
  // down (destroying the id then sends the request anyway).
  void finish_disconnect();
  std::chrono::milliseconds peer_timeout() const { return tuning_.peer_timeout; }

  static constexpr size_t kMaxMessage = kMaxRingMessage;  // the same limit as tcp

 private:
  RdmaQueue(CmId id, SharedPd pd, const RdmaTuning& tuning, uint32_t index);
  Status init_resources();
  Status post_initial_receives();
  Status post_auth_receives();  // queue_auth.cc
  void encode_own_hello(std::span<std::byte> out) const;
  // Once the queue pair is connected, before its first SEND: binds the receive ring's window
  // (when the device has them and --rdma-memory-windows is not false).
  Status bind_ring_window();

  // Completion handling (poller thread, and exchange_hello before the poller starts).
  void run_poller();
  void handle(const ibv_wc& wc, uint32_t& reposts);
  void on_fragment(uint32_t imm);
  void on_error_completion(const ibv_wc& wc, bool is_receive);
  void fail(Status s);       // first failure wins; moves the QP to error
  bool port_active() const;  // the device's word on our port (true if it cannot say)
  Status repost_receives(uint32_t count);
  // --peer-timeout (peer_liveness.h), on the poller thread: gives up on a silent peer or a
  // port down too long, and sends the heartbeats the peer asked for.
  void tick_liveness(bool heard);
  bool send_heartbeat();
  void wake_poller();  // out of its sleep on the event channel, from any thread

  // Sending (callers hold send_mu_).
  Status usable() const;
  Status post_fragments(std::span<const StagedFragment> fragments);
  Status post_chain(ibv_send_wr* first, size_t count);
  Status pump_pending();
  Status send_credit_locked();
  void maybe_send_credit();  // consumer thread
  void post_drain_marker();  // destructor, after close()
  // A signaled zero-byte RDMA WRITE numbered like any other request: its completion means
  // every request before it completed. Returns ibv_post_send's error (0 = posted).
  int post_signaled_marker_locked();
  // Posts `count` requests that `fill` describes (the last one signaled), for a caller that
  // waits for their outcome with wait_posted: RDMA READs and window binds.
  Result<uint64_t> post_waited(size_t count,
                               const std::function<void(size_t, ibv_sge&, ibv_send_wr&)>& fill,
                               std::chrono::steady_clock::time_point deadline,
                               std::string_view what);

  // Verbs owners, destroyed bottom-up: the ring's window, the id (with its QP), then MRs
  // before the memory they pin, then the CQ, its channel, and the PD last (shared with the
  // connection).
  SharedPd pd_;
  CompletionChannel channel_;
  CompletionQueue cq_;
  MappedMemory ring_;
  MemoryRegion ring_mr_;
  MappedMemory staging_;
  MemoryRegion staging_mr_;
  MappedMemory hello_buf_;  // [0, 64) receive, [64, 128) send
  MemoryRegion hello_mr_;
  MappedMemory auth_buf_;  // queue_auth.h: receive slots, then send slots
  MemoryRegion auth_mr_;
  CmId id_;
  // The receive ring's window, bound on id_'s QP: deallocated (its key dead) before the QP.
  MemoryWindow ring_window_;
  uint32_t ring_rkey_ = 0;  // what the hello names: the window's key, or the region's
  bool ring_window_wanted_ = false;

  RdmaTuning tuning_;
  uint32_t index_;
  uint32_t recv_depth_ = 0;
  UniqueFd wake_fd_;  // eventfd: wakes the poller on close
  std::thread poller_;
  std::atomic<bool> stopping_{false};
  std::atomic<bool> closed_{false};
  std::atomic<bool> peer_gone_{false};
  std::atomic<bool> disconnect_held_{false};  // close() found the port down

  bool authenticated_ = false;
  std::unique_ptr<MessagePipe> auth_pipe_;      // the session's pipe (queue_auth.cc)
  std::unique_ptr<SecureSession> session_;      // after authenticate()
  std::vector<std::byte> expected_peer_hello_;  // the peer's hello as the session carried it
  RingHello peer_;                              // the peer's ring, from its hello
  PeerWatch watch_;                             // poller thread only, set before it starts
  // When the port went down (steady clock, ns since its epoch); 0 while it is up. Written by
  // the async-event thread, read by the poller.
  std::atomic<int64_t> port_down_ns_{0};
  // Whether the port went down at any time since the queue was made (never cleared).
  std::atomic<bool> port_went_down_{false};

  // Shared with the poller (under mu_ or atomic), waited on with cv_.
  mutable std::mutex mu_;
  std::condition_variable cv_;
  Status failure_;            // first error; sticky
  bool ended_ = false;        // receives flushed: nothing more will arrive
  WorkRequestLedger ledger_;  // posted under send_mu_, completed by the poller
  // One past the last send number that completed as a successful RDMA READ or window bind
  // (poller): what wait_posted's caller learns its requests succeeded by.
  std::atomic<uint64_t> waited_ok_upto_{0};
  ReceiveRing receive_;  // arrivals from the poller (queued under mu_), taken by poll()

  // Send side (send_mu_; credits arrive from the poller).
  std::mutex send_mu_;
  SendRing send_;
  std::vector<ibv_send_wr> wrs_;
  std::vector<ibv_sge> sges_;

  // Last member, so destroyed first: no async-event callback runs into a queue being torn
  // down, and the watch is gone before the QP and CQ it names.
  std::unique_ptr<AsyncEventWatch> async_watch_;
};

}  // namespace ramshift::transport::rdma
