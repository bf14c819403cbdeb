#include "rdma_queue.h"

#include <arpa/inet.h>
#include <fcntl.h>
#include <fmt/format.h>
#include <poll.h>
#include <sys/eventfd.h>

#include <algorithm>
#include <cerrno>
#include <cstring>

#include "host_limits.h"
#include "ramshift/base/byte_order.h"
#include "ramshift/base/log.h"
#include "ramshift/base/units.h"

namespace ramshift::transport::rdma {
namespace {

using Clock = std::chrono::steady_clock;

constexpr uint32_t kImmCredit = 1u << 31;
constexpr uint32_t kImmLast = 1u << 30;
constexpr uint32_t kImmReserved = 0x3f000000u;
constexpr uint32_t kImmLenMask = 0x00ffffffu;
constexpr uint32_t kCreditMask = 0x3fffffffu;

// Receive work requests carry this tag in wr_id; send work requests carry their index.
constexpr uint64_t kRecvTag = 1ull << 63;
constexpr uint64_t kHelloRecvId = kRecvTag | 1;
constexpr uint64_t kImmRecvId = kRecvTag | 2;
constexpr uint64_t kHelloSendId = 1ull << 62;

// How long poll() waits for the reason of an unexplained end (see poll()).
constexpr std::chrono::milliseconds kExplainGrace{1000};

constexpr uint32_t kHelloMagic = 0x51525352;  // "RSRQ"
constexpr size_t kHelloBytes = 32;

Status verbs_error(const std::string& what, int err) {
  return errno_status(ErrorCode::kIo, what, err);
}

}  // namespace

// Reads a message given as a gather list, fragment by fragment.
class RdmaQueue::Gather {
 public:
  explicit Gather(std::span<const ConstBuffer> segs) : segs_(segs) {
    for (auto s : segs) remaining_ += s.size();
  }
  size_t remaining() const { return remaining_; }
  void copy(std::byte* dst, size_t n) {
    remaining_ -= n;
    while (n > 0) {
      ConstBuffer s = segs_[seg_];
      size_t take = std::min(n, s.size() - off_);
      if (take > 0) std::memcpy(dst, s.data() + off_, take);
      dst += take;
      n -= take;
      off_ += take;
      if (off_ == s.size()) {
        ++seg_;
        off_ = 0;
      }
    }
  }
  void skip_empty() {
    while (seg_ < segs_.size() && off_ == segs_[seg_].size()) {
      ++seg_;
      off_ = 0;
    }
  }

 private:
  std::span<const ConstBuffer> segs_;
  size_t seg_ = 0, off_ = 0, remaining_ = 0;
};

RdmaQueue::RdmaQueue(CmId id, SharedPd pd, const RdmaTuning& tuning, uint32_t index)
    : pd_(std::move(pd)), id_(std::move(id)), tuning_(tuning), index_(index) {}

Result<std::unique_ptr<RdmaQueue>> RdmaQueue::create(CmId id, SharedPd pd, const RdmaTuning& tuning,
                                                     uint32_t index) {
  if (tuning.ring_slots < 2 || tuning.ring_slots > 1024)
    return Status(ErrorCode::kInvalidArgument, "rdma ring slots must be 2..1024");
  if (tuning.slot_bytes < 4096 || tuning.slot_bytes > kMaxSlotBytes)
    return Status(ErrorCode::kInvalidArgument,
                  fmt::format("rdma slot size must be 4 KiB..{}", format_bytes(kMaxSlotBytes)));
  if (tuning.send_queue_depth < 8 || tuning.signal_every < 1 ||
      tuning.signal_every > tuning.send_queue_depth / 2)
    return Status(
        ErrorCode::kInvalidArgument,
        "rdma send queue depth must be >= 8 and the signaling interval at most half of it");
  std::unique_ptr<RdmaQueue> q(new RdmaQueue(std::move(id), std::move(pd), tuning, index));
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
  int cqe = static_cast<int>(send_depth + recv_depth_);
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
  ring_mr_.reset(ibv_reg_mr(pd_.get(), ring_.bytes().data(), ring_bytes,
                            IBV_ACCESS_LOCAL_WRITE | IBV_ACCESS_REMOTE_WRITE));
  if (!ring_mr_) return registration_error(errno, ring_bytes, "the transport's receive ring");
  RS_ASSIGN_OR_RETURN(hello_buf_, MappedMemory::anonymous(4096));
  hello_mr_.reset(ibv_reg_mr(pd_.get(), hello_buf_.bytes().data(), 4096, IBV_ACCESS_LOCAL_WRITE));
  if (!hello_mr_) return registration_error(errno, 4096, "the transport's hello buffer");

  ibv_qp_init_attr qa{};
  qa.send_cq = cq_.get();
  qa.recv_cq = cq_.get();
  qa.qp_type = IBV_QPT_RC;
  qa.sq_sig_all = 0;
  qa.cap.max_send_wr = send_depth;
  qa.cap.max_recv_wr = recv_depth_;
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
  async_watch_ = std::make_unique<AsyncEventWatch>(ctx, id_->qp, cq_.get(), id_->port_num, index_,
                                                   [this](Status s) { fail(std::move(s)); });
  wake_fd_.reset(eventfd(0, EFD_NONBLOCK | EFD_CLOEXEC));
  if (!wake_fd_.valid()) return verbs_error("eventfd", errno);
  wrs_.resize(tuning_.send_queue_depth);
  sges_.resize(tuning_.send_queue_depth);
  return post_initial_receives();
}

Status RdmaQueue::post_initial_receives() {
  ibv_sge sge{reinterpret_cast<uint64_t>(hello_buf_.bytes().data()), 64, hello_mr_->lkey};
  ibv_recv_wr wr{};
  wr.wr_id = kHelloRecvId;
  wr.sg_list = &sge;
  wr.num_sge = 1;
  ibv_recv_wr* bad = nullptr;
  if (int rc = ibv_post_recv(id_->qp, &wr, &bad); rc != 0) return verbs_error("ibv_post_recv", rc);
  recv_outstanding_ = 1;
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
  recv_outstanding_ += count;
  return Status::ok();
}

RdmaQueue::~RdmaQueue() {
  close();
  post_drain_marker();
  stopping_ = true;
  if (wake_fd_.valid()) {
    uint64_t one = 1;
    [[maybe_unused]] auto n = ::write(wake_fd_.get(), &one, sizeof one);
  }
  if (poller_.joinable()) poller_.join();
}

// ---- handshake ----

Status RdmaQueue::exchange_hello(Clock::time_point deadline) {
  std::byte* out = hello_buf_.bytes().data() + 64;
  std::memset(out, 0, kHelloBytes);
  store_le<uint32_t>(out, kHelloMagic);
  store_le<uint16_t>(out + 4, kProtocolVersion);
  store_le<uint64_t>(out + 8, reinterpret_cast<uint64_t>(ring_.bytes().data()));
  store_le<uint32_t>(out + 16, ring_mr_->rkey);
  store_le<uint32_t>(out + 20, tuning_.ring_slots);
  store_le<uint32_t>(out + 24, tuning_.slot_bytes);
  store_le<uint32_t>(out + 28, index_);
  ibv_sge sge{reinterpret_cast<uint64_t>(out), kHelloBytes, hello_mr_->lkey};
  ibv_send_wr wr{};
  wr.wr_id = kHelloSendId;
  wr.sg_list = &sge;
  wr.num_sge = 1;
  wr.opcode = IBV_WR_SEND;
  wr.send_flags = IBV_SEND_SIGNALED;
  ibv_send_wr* bad = nullptr;
  if (int rc = ibv_post_send(id_->qp, &wr, &bad); rc != 0) return verbs_error("sending hello", rc);

  bool got = false;
  ibv_wc wcs[16];
  uint32_t reposts = 0;
  while (!got) {
    int n = ibv_poll_cq(cq_.get(), 16, wcs);
    if (n < 0) return verbs_error("ibv_poll_cq", errno);
    for (int i = 0; i < n; ++i) {
      const ibv_wc& wc = wcs[i];
      if (wc.wr_id == kHelloRecvId && wc.status == IBV_WC_SUCCESS) {
        recv_outstanding_--;
        const std::byte* in = hello_buf_.bytes().data();
        if (wc.byte_len < kHelloBytes || load_le<uint32_t>(in) != kHelloMagic)
          return Status(ErrorCode::kProtocol, "rdma peer sent a malformed queue hello");
        if (load_le<uint16_t>(in + 4) != kProtocolVersion)
          return Status(ErrorCode::kMismatch,
                        fmt::format("rdma peer speaks queue protocol {}, this build {}",
                                    load_le<uint16_t>(in + 4), kProtocolVersion));
        peer_ring_addr_ = load_le<uint64_t>(in + 8);
        peer_rkey_ = load_le<uint32_t>(in + 16);
        peer_slots_ = load_le<uint32_t>(in + 20);
        peer_slot_bytes_ = load_le<uint32_t>(in + 24);
        if (peer_slots_ < 2 || peer_slots_ > 1024 || peer_slot_bytes_ < 4096 ||
            peer_slot_bytes_ > kMaxSlotBytes || load_le<uint32_t>(in + 28) != index_)
          return Status(
              ErrorCode::kProtocol,
              fmt::format("rdma peer's ring for queue {} is out of range ({} slots of "
                          "{} bytes, queue {})",
                          index_, peer_slots_, peer_slot_bytes_, load_le<uint32_t>(in + 28)));
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
      std::this_thread::sleep_for(std::chrono::microseconds(200));
    }
  }
  RS_RETURN_IF_ERROR(repost_receives(reposts));
  const uint64_t staging_bytes = uint64_t{peer_slots_} * peer_slot_bytes_;
  RS_RETURN_IF_ERROR(check_memlock(staging_bytes, "the transport's send staging"));
  RS_ASSIGN_OR_RETURN(staging_, MappedMemory::anonymous(staging_bytes));
  staging_mr_.reset(
      ibv_reg_mr(pd_.get(), staging_.bytes().data(), staging_bytes, IBV_ACCESS_LOCAL_WRITE));
  if (!staging_mr_) return registration_error(errno, staging_bytes, "the transport's send staging");
  poller_ = std::thread([this] { run_poller(); });
  return Status::ok();
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
    if (n > 0) {
      cv_.notify_all();
      continue;
    }
    if (stopping_) {
      if (drained()) break;
      if (drain_deadline == Clock::time_point{})
        drain_deadline = Clock::now() + std::chrono::seconds(2);
      if (Clock::now() > drain_deadline) {  // the QP is destroyed anyway; flushes die with it
        // A bug, not the peer's doing: the error state flushes whatever is still posted.
        log::warn(
            "rdma queue {}: {} receive(s) and {} send(s) still unaccounted for 2 s after "
            "closing; destroying the queue anyway",
            index_, recv_outstanding_.load(), posted_wr_.load() - completed_wr_.load());
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

bool RdmaQueue::drained() const {
  return recv_outstanding_.load() == 0 && completed_wr_.load() >= posted_wr_.load();
}

void RdmaQueue::handle(const ibv_wc& wc, uint32_t& reposts) {
  const bool is_receive = (wc.wr_id & kRecvTag) != 0;
  if (wc.status != IBV_WC_SUCCESS) {
    if (is_receive) {
      recv_outstanding_--;
    } else if (wc.wr_id < kHelloSendId) {
      uint64_t done = wc.wr_id + 1;
      uint64_t cur = completed_wr_.load();
      while (cur < done && !completed_wr_.compare_exchange_weak(cur, done)) {
      }
    }
    on_error_completion(wc, is_receive);
    return;
  }
  if (!is_receive) {
    if (wc.wr_id >= kHelloSendId) return;
    uint64_t done = wc.wr_id + 1;
    uint64_t cur = completed_wr_.load();
    while (cur < done && !completed_wr_.compare_exchange_weak(cur, done)) {
    }
    return;
  }
  recv_outstanding_--;
  ++reposts;
  if (wc.wr_id == kHelloRecvId || wc.opcode != IBV_WC_RECV_RDMA_WITH_IMM ||
      !(wc.wc_flags & IBV_WC_WITH_IMM)) {
    fail(Status(
        ErrorCode::kProtocol,
        fmt::format("rdma queue {}: the peer sent a message that is not a ring write", index_)));
    return;
  }
  uint32_t imm = ntohl(wc.imm_data);
  if (imm & kImmCredit)
    on_credit(imm & kCreditMask);
  else
    on_fragment(imm);
}

void RdmaQueue::on_fragment(uint32_t imm) {
  uint32_t len = imm & kImmLenMask;
  if ((imm & kImmReserved) != 0 || len > tuning_.slot_bytes) {
    fail(Status(ErrorCode::kProtocol,
                fmt::format("rdma queue {}: fragment header {:#x} is invalid (slot is {} bytes)",
                            index_, imm, tuning_.slot_bytes)));
    return;
  }
  if (arrived_ - reported_.load() >= tuning_.ring_slots) {
    fail(
        Status(ErrorCode::kProtocol,
               fmt::format("rdma queue {}: the peer wrote past the credits it was given", index_)));
    return;
  }
  Fragment f{static_cast<uint32_t>(arrived_ % tuning_.ring_slots), len, (imm & kImmLast) != 0};
  ++arrived_;
  std::lock_guard lock(mu_);
  ready_.push_back(f);
}

void RdmaQueue::on_credit(uint32_t value) {
  uint64_t have = peer_released_.load();
  uint64_t delta = (value - (have & kCreditMask)) & kCreditMask;
  if (delta > sent_frags_.load() - have) {
    fail(Status(
        ErrorCode::kProtocol,
        fmt::format("rdma queue {}: the peer returned credits for slots never written", index_)));
    return;
  }
  peer_released_ = have + delta;
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
    default:
      s = Status(ErrorCode::kIo,
                 fmt::format("rdma queue {}: {} work request failed: {} ({})", index_,
                             is_receive ? "receive" : "send", what, static_cast<int>(wc.status)));
  }
  fail(std::move(s));
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
  if (!id_ || !id_->qp || posted_wr_ == 0 || last_signaled_ == posted_wr_ - 1) return;
  (void)post_signaled_marker_locked();  // if it fails, the drain deadline still bounds the wait
}

int RdmaQueue::post_signaled_marker_locked() {
  ibv_send_wr wr{};
  wr.opcode = IBV_WR_RDMA_WRITE;  // zero bytes: it writes nothing in the peer's ring
  wr.num_sge = 0;
  wr.wr.rdma.remote_addr = peer_ring_addr_;
  wr.wr.rdma.rkey = peer_rkey_;
  wr.wr_id = posted_wr_;
  wr.send_flags = IBV_SEND_SIGNALED;
  ibv_send_wr* bad = nullptr;
  if (int rc = ibv_post_send(id_->qp, &wr, &bad); rc != 0) return rc;
  last_signaled_ = posted_wr_;
  ++posted_wr_;
  return 0;
}

void RdmaQueue::close() {
  if (closed_.exchange(true)) return;
  rdma_disconnect(id_.get());
  ibv_qp_attr attr{};
  attr.qp_state = IBV_QPS_ERR;
  if (id_->qp) ibv_modify_qp(id_->qp, &attr, IBV_QP_STATE);
  { std::lock_guard lock(mu_); }
  cv_.notify_all();
  if (wake_fd_.valid()) {
    uint64_t one = 1;
    [[maybe_unused]] auto n = ::write(wake_fd_.get(), &one, sizeof one);
  }
}

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

uint64_t RdmaQueue::free_slots() const {
  return peer_slots_ - (sent_frags_.load() - peer_released_.load());
}
uint64_t RdmaQueue::sq_free() const {
  return tuning_.send_queue_depth - (posted_wr_ - completed_wr_.load());
}

Status RdmaQueue::post_chain(ibv_send_wr* first, size_t count) {
  for (size_t i = 0; i < count; ++i) {
    first[i].next = i + 1 < count ? &first[i + 1] : nullptr;
    first[i].wr_id = posted_wr_ + i;
    if ((posted_wr_ + i + 1) % tuning_.signal_every == 0) {
      first[i].send_flags |= IBV_SEND_SIGNALED;
      last_signaled_ = posted_wr_ + i;
    }
  }
  ibv_send_wr* bad = nullptr;
  if (int rc = ibv_post_send(id_->qp, first, &bad); rc != 0) {
    Status s = verbs_error(fmt::format("rdma queue {}: ibv_post_send", index_), rc);
    fail(s);
    return s;
  }
  posted_wr_ += count;
  return Status::ok();
}

Status RdmaQueue::post_fragments(Gather& src, size_t frags) {
  uint64_t seq = sent_frags_.load();
  for (size_t i = 0; i < frags; ++i, ++seq) {
    uint64_t slot = seq % peer_slots_;
    size_t len = std::min<size_t>(src.remaining(), peer_slot_bytes_);
    std::byte* dst = staging_.bytes().data() + slot * peer_slot_bytes_;
    src.copy(dst, len);
    bool last = src.remaining() == 0;
    ibv_sge& sge = sges_[i];
    sge = {reinterpret_cast<uint64_t>(dst), static_cast<uint32_t>(len), staging_mr_->lkey};
    ibv_send_wr& wr = wrs_[i];
    wr = {};
    wr.sg_list = &sge;
    wr.num_sge = len > 0 ? 1 : 0;
    wr.opcode = IBV_WR_RDMA_WRITE_WITH_IMM;
    wr.imm_data = htonl(static_cast<uint32_t>(len) | (last ? kImmLast : 0));
    wr.wr.rdma.remote_addr = peer_ring_addr_ + slot * peer_slot_bytes_;
    wr.wr.rdma.rkey = peer_rkey_;
    if (len <= tuning_.max_inline && len > 0) wr.send_flags |= IBV_SEND_INLINE;
  }
  // Credits count fragments written; bump before posting so a fast credit never exceeds it.
  sent_frags_ += frags;
  return post_chain(wrs_.data(), frags);
}

Status RdmaQueue::pump_pending() {
  while (pending_active_) {
    size_t remaining = pending_.size() - pending_off_;
    size_t frags_needed =
        remaining == 0 ? 1 : (remaining + peer_slot_bytes_ - 1) / peer_slot_bytes_;
    size_t n = std::min<uint64_t>({frags_needed, free_slots(), sq_free()});
    if (n == 0) return Status::ok();
    ConstBuffer seg[1] = {ConstBuffer(pending_).subspan(pending_off_)};
    Gather g(seg);
    RS_RETURN_IF_ERROR(post_fragments(g, n));
    pending_off_ = pending_.size() - g.remaining();
    if (n == frags_needed) {
      pending_active_ = false;
      pending_.clear();
      pending_off_ = 0;
    }
  }
  return Status::ok();
}

Status RdmaQueue::post_message(std::span<const ConstBuffer> segments) {
  std::lock_guard lock(send_mu_);
  RS_RETURN_IF_ERROR(usable());
  if (pending_active_) {
    RS_RETURN_IF_ERROR(pump_pending());
    if (pending_active_) return Status(ErrorCode::kWouldBlock, "rdma ring full");
  }
  Gather g(segments);
  size_t total = g.remaining();
  if (total > kMaxMessage)
    return Status(ErrorCode::kInvalidArgument,
                  fmt::format("message of {} bytes exceeds the {}-byte limit", total, kMaxMessage));
  size_t frags = total == 0 ? 1 : (total + peer_slot_bytes_ - 1) / peer_slot_bytes_;
  if (frags <= free_slots() && frags <= sq_free() && frags <= wrs_.size())
    return post_fragments(g, frags);
  // Accepted, but it waits here for credits (the caller's buffers are free at once).
  pending_.resize(total);
  g.copy(pending_.data(), total);
  pending_off_ = 0;
  pending_active_ = true;
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
  if (pending_active_ || writes.size() > sq_free())
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

Status RdmaQueue::wait_writable(Millis timeout) {
  auto deadline = Clock::now() + timeout;
  for (;;) {
    uint64_t seen_credit, seen_done;
    {
      std::lock_guard lock(send_mu_);
      RS_RETURN_IF_ERROR(usable());
      RS_RETURN_IF_ERROR(pump_pending());
      if (!pending_active_ && sq_free() >= tuning_.send_queue_depth / 2) return Status::ok();
      seen_credit = peer_released_.load();
      seen_done = completed_wr_.load();
    }
    std::unique_lock lock(mu_);
    bool woke = cv_.wait_until(lock, deadline, [&] {
      return peer_released_.load() != seen_credit || completed_wr_.load() != seen_done || ended_ ||
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
    target = posted_wr_;
    if (target > 0 && last_signaled_ != target - 1) {
      // Unsignaled work requests report nothing: end with a signaled marker.
      if (int rc = post_signaled_marker_locked(); rc != 0)
        return verbs_error("ibv_post_send (flush)", rc);
      target = posted_wr_;
    }
  }
  std::unique_lock lock(mu_);
  cv_.wait_until(lock, deadline, [&] {
    return completed_wr_.load() >= target || ended_ || closed_ || !failure_.is_ok();
  });
  if (!failure_.is_ok()) return failure_;
  if (completed_wr_.load() >= target) return Status::ok();
  if (ended_ || closed_)
    return Status(ErrorCode::kDisconnected,
                  fmt::format("rdma queue {}: the peer disconnected", index_));
  return Status(ErrorCode::kTimeout, "rdma writes still in flight");
}

// ---- receiving ----

Status RdmaQueue::send_credit_locked() {
  uint64_t value = released_;
  if (value == reported_.load() || sq_free() == 0) return Status::ok();
  ibv_send_wr wr{};
  wr.opcode = IBV_WR_RDMA_WRITE_WITH_IMM;
  wr.num_sge = 0;
  wr.imm_data = htonl(kImmCredit | static_cast<uint32_t>(value & kCreditMask));
  wr.wr.rdma.remote_addr = peer_ring_addr_;
  wr.wr.rdma.rkey = peer_rkey_;
  // Published before posting: the peer may answer with a write into the slots at once.
  reported_ = value;
  return post_chain(&wr, 1);
}

void RdmaQueue::maybe_send_credit() {
  std::lock_guard lock(send_mu_);
  if (closed_ || peer_slots_ == 0) return;
  (void)send_credit_locked();
}

Result<size_t> RdmaQueue::poll(std::span<ConstBuffer> out, Millis timeout) {
  // The views the previous call returned are released now; their slots become credits.
  released_ += held_;
  held_ = 0;
  if (!reassembling_) reassembly_.clear();
  if (released_ - reported_.load() >= std::max<uint32_t>(1, tuning_.ring_slots / 2))
    maybe_send_credit();
  auto deadline = Clock::now() + timeout;
  const std::byte* ring = ring_.bytes().data();
  // Hand out at most half the ring per call: the caller releases views only by calling
  // again, and the sender needs those credits while the caller works on what it has.
  out = out.first(std::min<size_t>(out.size(), std::max<uint32_t>(1, tuning_.ring_slots / 2)));
  for (;;) {
    size_t n = 0;
    bool copied = false;
    {
      std::unique_lock lock(mu_);
      while (!ready_.empty() && n < out.size()) {
        Fragment f = ready_.front();
        if (!reassembling_ && f.last) {
          out[n++] = ConstBuffer(ring + size_t{f.slot} * tuning_.slot_bytes, f.len);
          ++held_;
          ready_.pop_front();
          continue;
        }
        if (n > 0) break;  // hand out the views first; their slots must be released in order
        reassembling_ = true;
        const std::byte* src = ring + size_t{f.slot} * tuning_.slot_bytes;
        reassembly_.insert(reassembly_.end(), src, src + f.len);
        ready_.pop_front();
        ++released_;
        copied = true;
        if (reassembly_.size() > kMaxMessage) {
          lock.unlock();
          Status s(ErrorCode::kProtocol, "rdma peer sent a message above the size limit");
          fail(s);
          return s;
        }
        if (f.last) {
          reassembling_ = false;
          out[n++] = ConstBuffer(reassembly_);
          break;
        }
      }
      if (n == 0 && ready_.empty()) {
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
    if (released_ != reported_.load()) maybe_send_credit();
    const bool owed = released_ != reported_.load();
    const uint64_t seen_done = completed_wr_.load();
    std::unique_lock lock(mu_);
    bool woke = cv_.wait_until(lock, deadline, [&] {
      return !ready_.empty() || ended_ || closed_ || !failure_.is_ok() ||
             (owed && completed_wr_.load() != seen_done);
    });
    if (!woke) {
      if (released_ != reported_.load()) {
        lock.unlock();
        maybe_send_credit();
      }
      return size_t{0};
    }
  }
}

}  // namespace ramshift::transport::rdma
