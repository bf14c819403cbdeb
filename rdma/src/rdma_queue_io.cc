// The data path of an rdma queue (the transport contract): sending messages and one-sided
// writes, waiting for room, flushing, and receiving. The ring protocol's logic is in
// send_ring.h and receive_ring.h; this file turns it into work requests.
#include "rdma_queue.h"

#include <arpa/inet.h>
#include <fmt/format.h>

#include <algorithm>

#include "read_requests.h"

namespace ramshift::transport::rdma {
namespace {

using Clock = std::chrono::steady_clock;

// How long poll() waits for the reason of an unexplained end (see poll()).
constexpr std::chrono::milliseconds kExplainGrace{1000};

}  // namespace

// ---- sending ----

Status RdmaQueue::usable() const {
  if (closed_) return Status(ErrorCode::kDisconnected, "rdma connection closed");
  std::lock_guard lock(mu_);
  if (!failure_.is_ok()) return failure_;
  if (ended_ || peer_gone_)
    return Status(ErrorCode::kDisconnected,
                  fmt::format("rdma queue {}: the peer disconnected", index_));
  return Status::ok();
}

Status RdmaQueue::post_chain(ibv_send_wr* first, size_t count) {
  for (size_t i = 0; i < count; ++i) {
    first[i].next = i + 1 < count ? &first[i + 1] : nullptr;
    const uint64_t wr_id = ledger_.posted() + i;
    first[i].wr_id = wr_id;
    if (ledger_.signal_request(wr_id)) first[i].send_flags |= IBV_SEND_SIGNALED;
  }
  ibv_send_wr* bad = nullptr;
  if (int rc = ibv_post_send(id_->qp, first, &bad); rc != 0) {
    Status s =
        errno_status(ErrorCode::kIo, fmt::format("rdma queue {}: ibv_post_send", index_), rc);
    fail(s);
    return s;
  }
  ledger_.note_posted(count);
  return Status::ok();
}

Status RdmaQueue::post_fragments(std::span<const StagedFragment> fragments) {
  for (size_t i = 0; i < fragments.size(); ++i) {
    const StagedFragment& f = fragments[i];
    ibv_sge& sge = sges_[i];
    sge = {reinterpret_cast<uint64_t>(f.data), f.len, staging_mr_->lkey};
    ibv_send_wr& wr = wrs_[i];
    wr = {};
    wr.sg_list = &sge;
    wr.num_sge = f.len > 0 ? 1 : 0;
    wr.opcode = IBV_WR_RDMA_WRITE_WITH_IMM;
    wr.imm_data = htonl(f.imm());
    wr.wr.rdma.remote_addr = peer_.ring_address + f.remote_offset;
    wr.wr.rdma.rkey = peer_.rkey;
    if (f.len <= tuning_.max_inline && f.len > 0) wr.send_flags |= IBV_SEND_INLINE;
  }
  return post_chain(wrs_.data(), fragments.size());
}

Status RdmaQueue::pump_pending() {
  while (send_.has_pending()) {
    auto staged = send_.stage_pending(ledger_.send_free());
    if (staged.empty()) return Status::ok();
    RS_RETURN_IF_ERROR(post_fragments(staged));
  }
  return Status::ok();
}

Status RdmaQueue::post_message(std::span<const ConstBuffer> segments) {
  std::lock_guard lock(send_mu_);
  RS_RETURN_IF_ERROR(usable());
  if (send_.has_pending()) {
    RS_RETURN_IF_ERROR(pump_pending());
    if (send_.has_pending()) return Status(ErrorCode::kWouldBlock, "rdma ring full");
  }
  Gather g(segments);
  size_t total = g.remaining();
  if (total > kMaxMessage)
    return Status(ErrorCode::kInvalidArgument,
                  fmt::format("message of {} bytes exceeds the {}-byte limit", total, kMaxMessage));
  const size_t frags = send_.fragments_for(total);
  if (frags <= send_.free_slots() && frags <= ledger_.send_free() && frags <= send_.max_chain())
    return post_fragments(send_.stage(g, frags));
  // Accepted, but it waits here for credits (the caller's buffers are free at once).
  send_.hold(g);
  return pump_pending();
}

Status RdmaQueue::post_writes(std::span<const RemoteWrite> writes,
                              std::span<const uint32_t> lkeys) {
  std::lock_guard lock(send_mu_);
  RS_RETURN_IF_ERROR(usable());
  if (writes.size() > tuning_.send_queue_depth / 2)
    return Status(ErrorCode::kInvalidArgument,
                  fmt::format("{} writes in one call; at most {} fit this queue", writes.size(),
                              tuning_.send_queue_depth / 2));
  // Messages keep their order relative to writes: a pending message goes first.
  RS_RETURN_IF_ERROR(pump_pending());
  if (send_.has_pending() || writes.size() > ledger_.send_free())
    return Status(ErrorCode::kWouldBlock, "rdma send queue full");
  for (size_t i = 0; i < writes.size(); ++i) {
    const RemoteWrite& w = writes[i];
    ibv_sge& sge = sges_[i];
    sge = {reinterpret_cast<uint64_t>(w.local), static_cast<uint32_t>(w.length), lkeys[i]};
    ibv_send_wr& wr = wrs_[i];
    wr = {};
    wr.sg_list = &sge;
    wr.num_sge = 1;
    wr.opcode = IBV_WR_RDMA_WRITE;
    wr.wr.rdma.remote_addr = w.remote_address;
    wr.wr.rdma.rkey = w.rkey;
  }
  if (writes.empty()) return Status::ok();
  return post_chain(wrs_.data(), writes.size());
}

Status RdmaQueue::read(std::span<const PullRead> reads, Millis timeout) {
  if (reads.empty()) return Status::ok();
  const auto deadline = Clock::now() + timeout;
  RS_ASSIGN_OR_RETURN(uint64_t target, post_waited(
                                           reads.size(),
                                           [&](size_t i, ibv_sge& sge, ibv_send_wr& wr) {
                                             fill_read_request(reads[i], sge, wr);
                                           },
                                           deadline, "RDMA READ"));
  return wait_posted(target, deadline, "RDMA READ");
}

Result<uint64_t> RdmaQueue::post_binds(std::span<const WindowBind> binds,
                                       Clock::time_point deadline) {
  return post_waited(
      binds.size(), [&](size_t i, ibv_sge&, ibv_send_wr& wr) { fill_bind_request(binds[i], wr); },
      deadline, "memory window bind");
}

Result<uint64_t> RdmaQueue::post_waited(
    size_t count, const std::function<void(size_t, ibv_sge&, ibv_send_wr&)>& fill,
    Clock::time_point deadline, std::string_view what) {
  if (count == 0 || count > max_waited())
    return Status(ErrorCode::kInvalidArgument,
                  fmt::format("{} {} requests in one call; 1 to {} fit this queue", count, what,
                              max_waited()));
  for (;;) {
    uint64_t seen_done;
    {
      std::lock_guard lock(send_mu_);
      RS_RETURN_IF_ERROR(usable());
      // Reads and binds need no order against the messages held for credits: they may pass
      // them. One slot stays free for the poller's heartbeat: a READ leaves no completion at
      // the peer, so while this queue only reads, the heartbeat is all the peer hears from us.
      if (count < ledger_.send_free()) {
        for (size_t i = 0; i < count; ++i) fill(i, sges_[i], wrs_[i]);
        wrs_[count - 1].send_flags = IBV_SEND_SIGNALED;
        RS_RETURN_IF_ERROR(post_chain(wrs_.data(), count));
        const uint64_t target = ledger_.posted();
        ledger_.note_signaled(target - 1);
        return target;
      }
      seen_done = ledger_.completed();
    }
    std::unique_lock lock(mu_);
    if (!cv_.wait_until(lock, deadline, [&] {
          return ledger_.completed() != seen_done || closed_ || !failure_.is_ok();
        }))
      return Status(ErrorCode::kTimeout,
                    fmt::format("rdma send queue full: no room for the {} requests", what));
  }
}

Status RdmaQueue::wait_posted(uint64_t target, Clock::time_point deadline, std::string_view what) {
  // The poller wakes cv_ after every batch of completions; the last request's completion (in
  // order with every send before it) moves completed() past its number.
  std::unique_lock lock(mu_);
  cv_.wait_until(lock, deadline, [&] {
    return ledger_.completed() >= target || ended_ || closed_ || !failure_.is_ok();
  });
  if (waited_ok_upto_.load() >= target) return Status::ok();
  if (!failure_.is_ok()) return failure_;
  if (ledger_.completed() >= target)  // flushed: the QP went to the error state first
    return Status(ErrorCode::kDisconnected,
                  fmt::format("rdma queue {}: {} flushed: the queue pair failed", index_, what));
  if (ended_ || closed_)
    return Status(ErrorCode::kDisconnected,
                  fmt::format("rdma queue {}: the peer disconnected", index_));
  return Status(ErrorCode::kTimeout,
                fmt::format("rdma queue {}: {} did not complete in time", index_, what));
}

Status RdmaQueue::wait_writable(Millis timeout) {
  auto deadline = Clock::now() + timeout;
  for (;;) {
    uint64_t seen_credit, seen_done;
    {
      std::lock_guard lock(send_mu_);
      RS_RETURN_IF_ERROR(usable());
      RS_RETURN_IF_ERROR(pump_pending());
      if (!send_.has_pending() && ledger_.send_free() >= tuning_.send_queue_depth / 2)
        return Status::ok();
      seen_credit = send_.peer_released();
      seen_done = ledger_.completed();
    }
    std::unique_lock lock(mu_);
    bool woke = cv_.wait_until(lock, deadline, [&] {
      return send_.peer_released() != seen_credit || ledger_.completed() != seen_done || ended_ ||
             closed_ || !failure_.is_ok();
    });
    if (!woke) return Status(ErrorCode::kTimeout, "rdma queue still full");
  }
}

Status RdmaQueue::flush(Millis timeout) {
  auto deadline = Clock::now() + timeout;
  RS_RETURN_IF_ERROR(wait_writable(timeout));
  uint64_t target;
  {
    std::lock_guard lock(send_mu_);
    RS_RETURN_IF_ERROR(usable());
    if (ledger_.needs_marker()) {
      // Unsignaled work requests report nothing: end with a signaled marker.
      if (int rc = post_signaled_marker_locked(); rc != 0)
        return errno_status(ErrorCode::kIo, "ibv_post_send (flush)", rc);
    }
    target = ledger_.posted();
  }
  std::unique_lock lock(mu_);
  cv_.wait_until(lock, deadline, [&] {
    return ledger_.completed() >= target || ended_ || closed_ || !failure_.is_ok();
  });
  if (!failure_.is_ok()) return failure_;
  if (ledger_.completed() >= target) return Status::ok();
  if (ended_ || closed_)
    return Status(ErrorCode::kDisconnected,
                  fmt::format("rdma queue {}: the peer disconnected", index_));
  return Status(ErrorCode::kTimeout, "rdma writes still in flight");
}

// ---- receiving ----

Status RdmaQueue::send_credit_locked() {
  if (!receive_.credit_owed() || ledger_.send_free() == 0) return Status::ok();
  ibv_send_wr wr{};
  wr.opcode = IBV_WR_RDMA_WRITE_WITH_IMM;
  wr.num_sge = 0;
  // Published before posting: the peer may answer with a write into the slots at once.
  wr.imm_data = htonl(receive_.report_credit());
  wr.wr.rdma.remote_addr = peer_.ring_address;
  wr.wr.rdma.rkey = peer_.rkey;
  return post_chain(&wr, 1);
}

void RdmaQueue::maybe_send_credit() {
  std::lock_guard lock(send_mu_);
  if (closed_ || !send_.attached()) return;
  (void)send_credit_locked();
}

Result<size_t> RdmaQueue::poll(std::span<ConstBuffer> out, Millis timeout) {
  // The views the previous call returned are released now; their slots become credits.
  receive_.begin_poll();
  if (receive_.credit_due()) maybe_send_credit();
  auto deadline = Clock::now() + timeout;
  out = out.first(std::min(out.size(), receive_.views_per_poll()));
  for (;;) {
    size_t n = 0;
    bool copied = false;
    {
      std::unique_lock lock(mu_);
      Result<ReceiveRing::Taken> taken = receive_.take(out);
      if (!taken) {
        lock.unlock();
        fail(taken.status());
        return taken.status();
      }
      n = taken->messages;
      copied = taken->copied;
      if (n == 0 && receive_.empty()) {
        if (failure_.is_ok() && ended_ && !closed_ && !peer_gone_) {
          // The QP went to the error state with neither side closing: a failure whose
          // reason comes as an async event (or the peer's DISCONNECTED) on another thread.
          // Give it a moment so that the caller hears why rather than a bare disconnect.
          cv_.wait_for(lock, kExplainGrace, [&] { return !failure_.is_ok() || peer_gone_.load(); });
          // Still nothing: the responder side of the QP failed on a request of the peer's
          // and the device raised no event (soft-RoCE raises none for a refused write).
          if (failure_.is_ok() && !peer_gone_)
            return Status(ErrorCode::kDisconnected,
                          fmt::format("rdma queue {}: the queue pair failed without a disconnect "
                                      "from the peer: a request of the peer's was refused here "
                                      "(most often a one-sided write outside the memory "
                                      "registered for it); the peer's error says which",
                                      index_));
        }
        if (!failure_.is_ok()) return failure_;
        if (ended_ || closed_)
          return Status(ErrorCode::kDisconnected,
                        fmt::format("rdma queue {}: the peer disconnected", index_));
      }
    }
    if (copied) maybe_send_credit();
    if (n > 0) return n;
    // About to wait: every slot we hold is free, so say so, or the sender may wait for us.
    // (If the send queue had no room, retry as soon as a send completes.)
    if (receive_.credit_owed()) maybe_send_credit();
    const bool owed = receive_.credit_owed();
    const uint64_t seen_done = ledger_.completed();
    std::unique_lock lock(mu_);
    bool woke = cv_.wait_until(lock, deadline, [&] {
      return !receive_.empty() || ended_ || closed_ || !failure_.is_ok() ||
             (owed && ledger_.completed() != seen_done);
    });
    if (!woke) {
      if (receive_.credit_owed()) {
        lock.unlock();
        maybe_send_credit();
      }
      return size_t{0};
    }
  }
}

}  // namespace ramshift::transport::rdma
