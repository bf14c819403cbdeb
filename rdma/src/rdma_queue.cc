// An rdma queue's set-up, hello, completions and teardown; its data path (sending, receiving)
// is in rdma_queue_io.cc.
#include "rdma_queue.h"

#include <arpa/inet.h>
#include <fcntl.h>
#include <fmt/format.h>
#include <poll.h>
#include <sys/eventfd.h>

#include <algorithm>
#include <cerrno>
#include <cstring>
#include <optional>

#include "gid_check.h"
#include "host_limits.h"
#include "queue_auth.h"
#include "ramshift/base/log.h"
#include "signaled_send.h"

namespace ramshift::transport::rdma {
namespace {

using Clock = std::chrono::steady_clock;

// Receive work requests carry this tag in wr_id; send work requests carry their index.
constexpr uint64_t kRecvTag = 1ull << 63;
constexpr uint64_t kHelloRecvId = kRecvTag | 1;
constexpr uint64_t kImmRecvId = kRecvTag | 2;
constexpr uint64_t kHelloSendId = 1ull << 62;
constexpr uint64_t kRingBindId = kHelloSendId | 2;

Status verbs_error(const std::string& what, int err) {
  return errno_status(ErrorCode::kIo, what, err);
}

}  // namespace

RdmaQueue::RdmaQueue(CmId id, SharedPd pd, const RdmaTuning& tuning, uint32_t index)
    : pd_(std::move(pd)),
      id_(std::move(id)),
      tuning_(tuning),
      index_(index),
      ledger_(tuning.send_queue_depth, tuning.signal_every),
      receive_(tuning.ring_slots, tuning.slot_bytes, index),
      send_(index, tuning.send_queue_depth) {}

Result<std::unique_ptr<RdmaQueue>> RdmaQueue::create(CmId id, SharedPd pd, const RdmaTuning& tuning,
                                                     uint32_t index, bool authenticated) {
  RS_RETURN_IF_ERROR(validate_tuning(tuning));
  std::unique_ptr<RdmaQueue> q(new RdmaQueue(std::move(id), std::move(pd), tuning, index));
  q->authenticated_ = authenticated;
  RS_RETURN_IF_ERROR(q->init_resources());
  return q;
}

Status RdmaQueue::init_resources() {
  ibv_context* ctx = id_->verbs;
  ibv_device_attr attr{};
  if (int rc = ibv_query_device(ctx, &attr); rc != 0) return verbs_error("ibv_query_device", rc);
  recv_depth_ = 2 * tuning_.ring_slots + 8;
  uint32_t send_depth = tuning_.send_queue_depth + 8;
  if (static_cast<int>(send_depth) > attr.max_qp_wr ||
      static_cast<int>(recv_depth_) > attr.max_qp_wr)
    return Status(ErrorCode::kInvalidArgument,
                  fmt::format("the device allows {} work requests per queue; lower the send "
                              "queue depth or ring slots",
                              attr.max_qp_wr));
  // Authentication adds its own receives and sends (queue_auth.h), all done before the ring's.
  const uint32_t auth_wrs = authenticated_ ? kAuthSlots : 0;
  int cqe = static_cast<int>(send_depth + recv_depth_ + 2 * auth_wrs);
  if (cqe > attr.max_cqe) return Status(ErrorCode::kInvalidArgument, "device CQ too small");

  channel_.reset(ibv_create_comp_channel(ctx));
  if (!channel_) return verbs_error("ibv_create_comp_channel", errno);
  int fl = fcntl(channel_->fd, F_GETFL);
  fcntl(channel_->fd, F_SETFL, fl | O_NONBLOCK);
  cq_.reset(ibv_create_cq(ctx, cqe, this, channel_.get(),
                          static_cast<int>(index_) % ctx->num_comp_vectors));
  if (!cq_) return verbs_error("ibv_create_cq", errno);

  const uint64_t ring_bytes = uint64_t{tuning_.ring_slots} * tuning_.slot_bytes;
  RS_RETURN_IF_ERROR(check_memlock(ring_bytes + 4096, "the transport's receive ring"));
  RS_ASSIGN_OR_RETURN(ring_, MappedMemory::anonymous(ring_bytes));
  // With windows the ring's region grants no remote access itself: only the window bound on
  // this queue pair does (bind_ring_window), so its key opens the ring through this queue only.
  ring_window_wanted_ = why_no_windows(ctx, tuning_.memory_windows).empty();
  ring_mr_.reset(
      ibv_reg_mr(pd_.get(), ring_.bytes().data(), ring_bytes,
                 IBV_ACCESS_LOCAL_WRITE |
                     (ring_window_wanted_ ? IBV_ACCESS_MW_BIND : IBV_ACCESS_REMOTE_WRITE)));
  if (!ring_mr_) return registration_error(errno, ring_bytes, "the transport's receive ring");
  ring_rkey_ = ring_mr_->rkey;  // the window's once bound
  receive_.attach(ring_.bytes());
  RS_ASSIGN_OR_RETURN(hello_buf_, MappedMemory::anonymous(4096));
  hello_mr_.reset(ibv_reg_mr(pd_.get(), hello_buf_.bytes().data(), 4096, IBV_ACCESS_LOCAL_WRITE));
  if (!hello_mr_) return registration_error(errno, 4096, "the transport's hello buffer");

  ibv_qp_init_attr qa{};
  qa.send_cq = cq_.get();
  qa.recv_cq = cq_.get();
  qa.qp_type = IBV_QPT_RC;
  qa.sq_sig_all = 0;
  qa.cap.max_send_wr = send_depth;
  qa.cap.max_recv_wr = recv_depth_ + auth_wrs;
  qa.cap.max_send_sge = 1;
  qa.cap.max_recv_sge = 1;
  qa.cap.max_inline_data = tuning_.max_inline;
  if (rdma_create_qp(id_.get(), pd_.get(), &qa) != 0) {
    qa.cap.max_inline_data = 0;  // some providers refuse inline: go without it
    tuning_.max_inline = 0;
    if (rdma_create_qp(id_.get(), pd_.get(), &qa) != 0) return verbs_error("rdma_create_qp", errno);
  }
  // Failures that complete none of our work requests (the peer writing outside our memory,
  // a fatal QP, a port going down) only come as async events.
  // With a peer timeout, a port going down is given that long to come back (tick_liveness).
  PortChange on_port;
  if (tuning_.peer_timeout.count() > 0)
    on_port = [this](bool up) {
      const int64_t now = Clock::now().time_since_epoch().count();
      if (up) {
        port_down_ns_ = 0;
      } else {
        port_down_ns_ = now == 0 ? 1 : now;
        port_went_down_ = true;
      }
    };
  async_watch_ = std::make_unique<AsyncEventWatch>(
      ctx, id_->qp, cq_.get(), id_->port_num, index_, [this](Status s) { fail(std::move(s)); },
      std::move(on_port));
  wake_fd_.reset(eventfd(0, EFD_NONBLOCK | EFD_CLOEXEC));
  if (!wake_fd_.valid()) return verbs_error("eventfd", errno);
  wrs_.resize(tuning_.send_queue_depth);
  sges_.resize(tuning_.send_queue_depth);
  return post_initial_receives();
}

Status RdmaQueue::post_initial_receives() {
  if (authenticated_) RS_RETURN_IF_ERROR(post_auth_receives());  // first: see queue_auth.h
  ibv_sge sge{reinterpret_cast<uint64_t>(hello_buf_.bytes().data()), 64, hello_mr_->lkey};
  ibv_recv_wr wr{};
  wr.wr_id = kHelloRecvId;
  wr.sg_list = &sge;
  wr.num_sge = 1;
  ibv_recv_wr* bad = nullptr;
  if (int rc = ibv_post_recv(id_->qp, &wr, &bad); rc != 0) return verbs_error("ibv_post_recv", rc);
  ledger_.note_receives_posted(1);
  return repost_receives(recv_depth_ - 1);
}

// Receives for WRITE WITH IMMEDIATE carry no buffer: the data went to the ring already.
Status RdmaQueue::repost_receives(uint32_t count) {
  std::vector<ibv_recv_wr> wrs(count);
  for (uint32_t i = 0; i < count; ++i) {
    wrs[i].wr_id = kImmRecvId;
    wrs[i].next = i + 1 < count ? &wrs[i + 1] : nullptr;
  }
  if (count == 0) return Status::ok();
  ibv_recv_wr* bad = nullptr;
  if (int rc = ibv_post_recv(id_->qp, wrs.data(), &bad); rc != 0)
    return verbs_error("ibv_post_recv", rc);
  ledger_.note_receives_posted(count);
  return Status::ok();
}

RdmaQueue::~RdmaQueue() {
  close();
  post_drain_marker();
  stopping_ = true;
  wake_poller();
  if (poller_.joinable()) poller_.join();
}

// ---- handshake ----

// Posted before the queue's first SEND (the authentication's or the hello's), unsignaled: the
// send queue runs in order, so the window is bound before the hello that names its key
// leaves, and a bind that fails completes in error and fails the handshake.
Status RdmaQueue::bind_ring_window() {
  if (!ring_window_wanted_ || ring_window_) return Status::ok();
  RS_ASSIGN_OR_RETURN(WindowBind bind,
                      new_window(pd_.get(), ring_mr_.get(), IBV_ACCESS_REMOTE_WRITE, ring_window_));
  ibv_send_wr wr{};
  fill_bind_request(bind, wr);
  wr.wr_id = kRingBindId;
  ibv_send_wr* bad = nullptr;
  if (int rc = ibv_post_send(id_->qp, &wr, &bad); rc != 0)
    return verbs_error("ibv_post_send (receive ring window bind)", rc);
  ring_rkey_ = bind.rkey;
  return Status::ok();
}

Status RdmaQueue::exchange_hello(Clock::time_point deadline,
                                 const std::function<Status()>& peer_left) {
  RS_RETURN_IF_ERROR(check_gid_index(id_->qp, id_->port_num, tuning_.gid_index, index_));
  RS_RETURN_IF_ERROR(bind_ring_window());
  std::byte* out = hello_buf_.bytes().data() + 64;
  encode_own_hello(std::span(out, kHelloBytes));
  if (int rc = post_signaled_send(id_->qp, kHelloSendId, {out, kHelloBytes}, hello_mr_->lkey);
      rc != 0)
    return verbs_error("sending hello", rc);

  bool got = false;
  ibv_wc wcs[16];
  uint32_t reposts = 0;
  while (!got) {
    int n = ibv_poll_cq(cq_.get(), 16, wcs);
    if (n < 0) return verbs_error("ibv_poll_cq", errno);
    for (int i = 0; i < n; ++i) {
      const ibv_wc& wc = wcs[i];
      if (wc.wr_id == kHelloRecvId && wc.status == IBV_WC_SUCCESS) {
        ledger_.on_receive_completed();
        // The receive buffer is 64 bytes: a longer send would have failed the receive.
        const size_t len = std::min<size_t>(wc.byte_len, 64);
        if (authenticated_ &&
            !std::ranges::equal(hello_buf_.bytes().first(len), expected_peer_hello_))
          return Status(ErrorCode::kProtocol,
                        fmt::format("rdma queue {}: the peer's hello is not the one its "
                                    "authenticated session carried",
                                    index_));
        RS_ASSIGN_OR_RETURN(peer_, decode_hello(hello_buf_.bytes().first(len), index_));
        got = true;
      } else if (wc.wr_id == kHelloSendId && wc.status == IBV_WC_SUCCESS) {
        // our hello left
      } else {
        handle(wc, reposts);  // the peer may already be sending
      }
    }
    {
      std::lock_guard lock(mu_);
      if (!failure_.is_ok()) return failure_;
    }
    if (n == 0) {
      if (Clock::now() > deadline)
        return Status(ErrorCode::kTimeout,
                      fmt::format("rdma queue {}: no hello from the peer", index_));
      if (peer_left) RS_RETURN_IF_ERROR(peer_left());
      std::this_thread::sleep_for(std::chrono::microseconds(200));
    }
  }
  RS_RETURN_IF_ERROR(repost_receives(reposts));
  const uint64_t staging_bytes = uint64_t{peer_.slots} * peer_.slot_bytes;
  RS_RETURN_IF_ERROR(check_memlock(staging_bytes, "the transport's send staging"));
  RS_ASSIGN_OR_RETURN(staging_, MappedMemory::anonymous(staging_bytes));
  staging_mr_.reset(
      ibv_reg_mr(pd_.get(), staging_.bytes().data(), staging_bytes, IBV_ACCESS_LOCAL_WRITE));
  if (!staging_mr_) return registration_error(errno, staging_bytes, "the transport's send staging");
  {
    std::lock_guard lock(send_mu_);
    send_.attach(peer_.slots, peer_.slot_bytes, staging_.bytes());
  }
  watch_ = PeerWatch(tuning_.peer_timeout, peer_.liveness, Clock::now());
  if (watch_.heartbeat_interval().count() > 0)
    log::debug("rdma queue {}: a heartbeat every {} ms", index_,
               watch_.heartbeat_interval().count());
  poller_ = std::thread([this] { run_poller(); });
  return Status::ok();
}

void RdmaQueue::encode_own_hello(std::span<std::byte> out) const {
  encode_hello({reinterpret_cast<uint64_t>(ring_.bytes().data()), ring_rkey_, tuning_.ring_slots,
                tuning_.slot_bytes, index_,
                LivenessAnnounce{.sends_heartbeats = true, .silence_limit = tuning_.peer_timeout}},
               out);
}

// ---- completions ----

void RdmaQueue::run_poller() {
  ibv_wc wcs[32];
  bool armed = false;
  unsigned unacked = 0;
  Clock::time_point drain_deadline{};
  for (;;) {
    int n = ibv_poll_cq(cq_.get(), 32, wcs);
    if (n < 0) {
      fail(verbs_error("ibv_poll_cq", errno));
      break;
    }
    uint32_t reposts = 0;
    for (int i = 0; i < n; ++i) handle(wcs[i], reposts);
    if (reposts > 0 && !closed_) {
      Status s = repost_receives(reposts);
      if (!s) fail(s);
    }
    if (!stopping_) tick_liveness(reposts > 0);
    if (n > 0) {
      // Credits and send completions change atomics outside mu_: without taking it here, a
      // waiter between its predicate and its sleep could miss this notify and sleep out its
      // whole timeout (a sender waiting for a credit, a receiver owing one: both ends stall).
      { std::lock_guard lock(mu_); }
      cv_.notify_all();
      continue;
    }
    if (stopping_) {
      if (ledger_.drained()) break;
      if (drain_deadline == Clock::time_point{})
        drain_deadline = Clock::now() + std::chrono::seconds(2);
      if (Clock::now() > drain_deadline) {  // the QP is destroyed anyway; flushes die with it
        // A bug, not the peer's doing: the error state flushes whatever is still posted.
        log::warn(
            "rdma queue {}: {} receive(s) and {} send(s) still unaccounted for 2 s after "
            "closing; destroying the queue anyway",
            index_, ledger_.receives_outstanding(), ledger_.posted() - ledger_.completed());
        break;
      }
    }
    if (tuning_.busy_poll && !stopping_) continue;  // spin: never sleep on the channel
    if (!armed) {
      ibv_req_notify_cq(cq_.get(), 0);
      armed = true;
      continue;  // poll once more: a completion may have slipped in before arming
    }
    pollfd fds[2] = {{channel_->fd, POLLIN, 0}, {wake_fd_.get(), POLLIN, 0}};
    ::poll(fds, 2, stopping_ ? 10 : 100);
    if (fds[0].revents & POLLIN) {
      ibv_cq* cq = nullptr;
      void* ctx = nullptr;
      if (ibv_get_cq_event(channel_.get(), &cq, &ctx) == 0) {
        armed = false;
        if (++unacked >= 64) {
          ibv_ack_cq_events(cq_.get(), unacked);
          unacked = 0;
        }
      }
    }
    if (fds[1].revents & POLLIN) {
      uint64_t v;
      [[maybe_unused]] auto r = ::read(wake_fd_.get(), &v, sizeof v);
    }
  }
  if (unacked) ibv_ack_cq_events(cq_.get(), unacked);  // every event acked before the CQ dies
  {
    std::lock_guard lock(mu_);
    ended_ = true;
  }
  cv_.notify_all();
}

void RdmaQueue::tick_liveness(bool heard) {
  if (closed_ || peer_gone_) return;
  const auto now = Clock::now();
  if (heard) watch_.heard(now);
  {
    std::lock_guard lock(mu_);
    if (!failure_.is_ok() || ended_) return;
  }
  const int64_t down = port_down_ns_.load();
  std::optional<Clock::time_point> port_down;
  if (down != 0) port_down = Clock::time_point(Clock::duration(down));
  if (Status s = watch_.check(now, port_down, index_); !s) {
    log::debug("{}", s.message());
    fail(std::move(s));
    return;
  }
  if (watch_.heartbeat_due(now) && !send_heartbeat()) watch_.heartbeat_not_sent(now);
}

// A credit repeating the count last reported: a no-op to the peer's ring (no slot released
// twice), but a receive completion that tells it we are here. Skipped when the send queue is
// full or an application thread holds the send lock; false then, and the poller tries again
// on its next pass. (A full queue does not speak for us: one-sided writes and reads leave no
// completion at the peer.)
bool RdmaQueue::send_heartbeat() {
  std::unique_lock lock(send_mu_, std::try_to_lock);
  if (!lock.owns_lock() || closed_ || !send_.attached() || ledger_.send_free() == 0) return false;
  ibv_send_wr wr{};
  wr.opcode = IBV_WR_RDMA_WRITE_WITH_IMM;
  wr.num_sge = 0;
  wr.imm_data = htonl(credit_imm(receive_.reported()));
  wr.wr.rdma.remote_addr = peer_.ring_address;
  wr.wr.rdma.rkey = peer_.rkey;
  (void)post_chain(&wr, 1);  // a failure fails the queue with its reason
  return true;
}

void RdmaQueue::handle(const ibv_wc& wc, uint32_t& reposts) {
  const bool is_receive = (wc.wr_id & kRecvTag) != 0;
  if (wc.status != IBV_WC_SUCCESS) {
    if (is_receive)
      ledger_.on_receive_completed();
    else if (wc.wr_id < kHelloSendId)
      ledger_.on_send_completed(wc.wr_id);
    on_error_completion(wc, is_receive);
    return;
  }
  if (!is_receive) {
    if (wc.wr_id >= kHelloSendId) return;
    // Before the ledger moves: post_and_wait() takes a completed number without this for a
    // failure.
    if ((wc.opcode == IBV_WC_RDMA_READ || wc.opcode == IBV_WC_BIND_MW) &&
        waited_ok_upto_.load() < wc.wr_id + 1)
      waited_ok_upto_.store(wc.wr_id + 1);
    ledger_.on_send_completed(wc.wr_id);
    return;
  }
  ledger_.on_receive_completed();
  ++reposts;
  if (wc.wr_id == kHelloRecvId || wc.opcode != IBV_WC_RECV_RDMA_WITH_IMM ||
      !(wc.wc_flags & IBV_WC_WITH_IMM)) {
    fail(Status(
        ErrorCode::kProtocol,
        fmt::format("rdma queue {}: the peer sent a message that is not a ring write", index_)));
    return;
  }
  const uint32_t imm = ntohl(wc.imm_data);
  if (is_credit_imm(imm)) {
    if (Status s = send_.on_credit(credit_value(imm)); !s) fail(std::move(s));
  } else {
    on_fragment(imm);
  }
}

void RdmaQueue::on_fragment(uint32_t imm) {
  Result<ArrivedFragment> f = receive_.arrive(imm);
  if (!f) {
    fail(f.status());
    return;
  }
  std::lock_guard lock(mu_);
  receive_.push(*f);
}

void RdmaQueue::on_error_completion(const ibv_wc& wc, bool is_receive) {
  if (wc.status == IBV_WC_WR_FLUSH_ERR) {
    // The QP is in the error state: after a local close, a peer disconnect or a failure.
    if (is_receive) {
      std::lock_guard lock(mu_);
      ended_ = true;
    }
    return;
  }
  const char* what = ibv_wc_status_str(wc.status);
  Status s;
  switch (wc.status) {
    case IBV_WC_RETRY_EXC_ERR:
    case IBV_WC_RNR_RETRY_EXC_ERR:
      s = Status(ErrorCode::kDisconnected,
                 fmt::format("rdma queue {}: the peer stopped acknowledging ({}): it exited or "
                             "the link is down",
                             index_, what));
      break;
    case IBV_WC_REM_ACCESS_ERR:
      s = Status(ErrorCode::kProtocol,
                 fmt::format("rdma queue {}: the peer refused a remote write ({}): wrong key or "
                             "range",
                             index_, what));
      break;
    case IBV_WC_LOC_QP_OP_ERR:
      // Soft-RoCE fails a request it cannot transmit because its netdev is down, where a
      // NIC would retransmit: say the link, not the device's words. The port's event may
      // still be on its way (another thread reads it), so ask the device too.
      if (port_down_ns_.load() != 0 || !port_active()) {
        s = Status(ErrorCode::kDisconnected,
                   fmt::format("rdma queue {}: the RDMA port is down (the link is lost); the "
                               "device failed a request it could not send ({})",
                               index_, what));
        break;
      }
      // Seen after a 2 s flap: the request failed as the port came back up, and a queue pair
      // in error cannot resume.
      if (port_went_down_) {
        s = Status(ErrorCode::kDisconnected,
                   fmt::format("rdma queue {}: the RDMA port went down and came back, but the "
                               "device failed a request it could not send meanwhile ({}); this "
                               "device does not resume a queue after its link went down",
                               index_, what));
        break;
      }
      [[fallthrough]];
    default:
      s = Status(ErrorCode::kIo,
                 fmt::format("rdma queue {}: {} work request failed: {} ({})", index_,
                             is_receive ? "receive" : "send", what, static_cast<int>(wc.status)));
      break;
  }
  fail(std::move(s));
}

bool RdmaQueue::port_active() const {
  ibv_port_attr attr{};
  if (!id_->verbs || ibv_query_port(id_->verbs, id_->port_num, &attr) != 0) return true;
  return attr.state == IBV_PORT_ACTIVE;
}

void RdmaQueue::fail(Status s) {
  {
    std::lock_guard lock(mu_);
    if (failure_.is_ok()) failure_ = std::move(s);
    ended_ = true;
  }
  ibv_qp_attr attr{};
  attr.qp_state = IBV_QPS_ERR;
  if (id_->qp) ibv_modify_qp(id_->qp, &attr, IBV_QP_STATE);
  cv_.notify_all();
}

void RdmaQueue::peer_disconnected() {
  peer_gone_ = true;
  ibv_qp_attr attr{};
  attr.qp_state = IBV_QPS_ERR;
  if (id_->qp) ibv_modify_qp(id_->qp, &attr, IBV_QP_STATE);
  { std::lock_guard lock(mu_); }  // a waiter has either seen peer_gone_ or gets the notify
  cv_.notify_all();
}

// The kernel's ib_drain_sq, for the poller's drain: a work request posted to a QP in the
// error state completes at once with a flush error, and a send queue completes in order, so
// once a signaled marker completes every request before it has too. Without it, unsignaled
// requests that completed (a receiver's credits, mostly) are never reported, and the poller
// waited out its 2 s drain deadline per queue on every close.
void RdmaQueue::post_drain_marker() {
  std::lock_guard lock(send_mu_);  // the destructor: no sender or receiver thread is left
  if (!id_ || !id_->qp || !ledger_.needs_marker()) return;
  (void)post_signaled_marker_locked();  // if it fails, the drain deadline still bounds the wait
}

int RdmaQueue::post_signaled_marker_locked() {
  ibv_send_wr wr{};
  wr.opcode = IBV_WR_RDMA_WRITE;  // zero bytes: it writes nothing in the peer's ring
  wr.num_sge = 0;
  wr.wr.rdma.remote_addr = peer_.ring_address;
  wr.wr.rdma.rkey = peer_.rkey;
  wr.wr_id = ledger_.posted();
  wr.send_flags = IBV_SEND_SIGNALED;
  ibv_send_wr* bad = nullptr;
  if (int rc = ibv_post_send(id_->qp, &wr, &bad); rc != 0) return rc;
  ledger_.note_marker_posted();
  return 0;
}

std::optional<Clock::time_point> RdmaQueue::port_down_since() const {
  if (const int64_t down = port_down_ns_.load(); down != 0)
    return Clock::time_point(Clock::duration(down));
  if (!port_active()) return Clock::now();
  return std::nullopt;
}

// A disconnect request is a CM message on the device's management queue pair; soft-RoCE
// sends it while its netdev is down too, and one sent then can be lost for good (seen: the
// kernel's cm_destroy_id waiting on it for minutes, the link long back up), so that
// destroying the id, or exiting, blocks in the kernel where no signal reaches. So it waits
// for the port (RdmaConnection's destructor gives it the peer timeout).
void RdmaQueue::close() {
  if (closed_.exchange(true)) return;
  if (port_down_since())
    disconnect_held_ = true;
  else
    rdma_disconnect(id_.get());
  ibv_qp_attr attr{};
  attr.qp_state = IBV_QPS_ERR;
  if (id_->qp) ibv_modify_qp(id_->qp, &attr, IBV_QP_STATE);
  { std::lock_guard lock(mu_); }
  cv_.notify_all();
  wake_poller();
}

void RdmaQueue::wake_poller() {
  if (!wake_fd_.valid()) return;
  uint64_t one = 1;
  [[maybe_unused]] auto n = ::write(wake_fd_.get(), &one, sizeof one);
}

void RdmaQueue::finish_disconnect() {
  if (!disconnect_held_ || port_down_since()) return;
  disconnect_held_ = false;
  rdma_disconnect(id_.get());
}

}  // namespace ramshift::transport::rdma
