// One READ-pull connection's verbs objects, set-up and messages (pull_queue.h).
#include "pull_queue.h"

#include <fmt/format.h>
#include <poll.h>

#include <algorithm>
#include <map>
#include <utility>

#include "host_limits.h"
#include "ramshift/base/byte_order.h"
#include "ramshift/base/clock.h"
#include "read_requests.h"
#include "signaled_send.h"

namespace ramshift::transport::rdma {
namespace {

// READs in flight per connection: a 512 KiB multifd packet of scattered 4 KiB pages is 128
// reads, so one packet fits; the device caps it further (max_qp_init_rd_atom, 128 on rxe).
constexpr uint32_t kSendDepth = 256;

// Work request ids after the set-up's (queue_auth.h, bit 61): bit 63 marks receives as there.
constexpr uint64_t kMessageRecvId = (1ull << 63) | (1ull << 60);
constexpr uint64_t kMessageSendId = 1ull << 60;
constexpr uint64_t kBindId = 1ull << 59;
constexpr uint64_t kReadId = 1ull << 58;

std::string request_name(uint64_t wr_id) {
  if (wr_id & (1ull << 63)) return "a receive";
  if (wr_id & kMessageSendId) return "a message to the peer";
  if (wr_id & kBindId) return "a memory window bind";
  return "RDMA READ from the source";
}

}  // namespace

void encode_key(std::byte* out, const PullKey& k) {
  store_le<uint32_t>(out, kPullKeyMagic);
  store_le<uint32_t>(out + 4, k.key);
  store_le<uint64_t>(out + 8, k.address);
  store_le<uint64_t>(out + 16, k.length);
}

std::optional<PullKey> decode_key(std::span<const std::byte> in) {
  if (in.size() != kPullKeyBytes || load_le<uint32_t>(in.data()) != kPullKeyMagic)
    return std::nullopt;
  PullKey k{load_le<uint64_t>(in.data() + 8), load_le<uint64_t>(in.data() + 16),
            load_le<uint32_t>(in.data() + 4)};
  if (k.length == 0 || k.address + k.length < k.address) return std::nullopt;
  return k;
}

bool is_done(std::span<const std::byte> in) {
  return in.size() == 4 && load_le<uint32_t>(in.data()) == kPullDoneMagic;
}

// ---------------------------------------------------------------------------------------
// Registrations.

Result<std::shared_ptr<Registrations>> Registrations::create(ibv_context* ctx) {
  ibv_pd* pd = ibv_alloc_pd(ctx);
  if (!pd) return errno_status(ErrorCode::kIo, "ibv_alloc_pd", errno);
  return std::make_shared<Registrations>(make_shared_pd(pd));
}

Result<std::shared_ptr<Registrations>> Registrations::shared_local(ibv_context* ctx) {
  static std::mutex mu;
  static auto* shared = new std::map<ibv_context*, std::weak_ptr<Registrations>>();
  std::lock_guard lock(mu);
  if (auto r = (*shared)[ctx].lock()) return r;
  RS_ASSIGN_OR_RETURN(auto r, create(ctx));
  (*shared)[ctx] = r;
  return r;
}

Result<ibv_mr*> Registrations::ensure(const std::byte* p, size_t len, int access, const char* what,
                                      PullStats* added) {
  std::lock_guard lock(mu_);
  for (auto& m : mrs_) {
    auto* b = static_cast<std::byte*>(m->addr);
    if (p >= b && p + len <= b + m->length) return m.get();
  }
  std::string name = fmt::format("{} MiB of {}", len >> 20, what);
  RS_RETURN_IF_ERROR(check_memlock(len, name));
  auto t0 = std::chrono::steady_clock::now();
  MemoryRegion mr(ibv_reg_mr(pd_.get(), const_cast<std::byte*>(p), len, access));
  if (!mr) return registration_error(errno, len, name);
  const PullStats cost{len, ms_since(t0)};
  stats_.registration_ms += cost.registration_ms;
  stats_.registered_bytes += cost.registered_bytes;
  if (added) *added = cost;
  mrs_.push_back(std::move(mr));
  return mrs_.back().get();
}

void Registrations::release_all() {
  std::lock_guard lock(mu_);
  mrs_.clear();
}

PullStats Registrations::stats() const {
  std::lock_guard lock(mu_);
  return stats_;
}

// ---------------------------------------------------------------------------------------
// Queue.

Result<std::unique_ptr<Queue>> Queue::create(rdma_cm_id* id, bool authenticated,
                                             std::shared_ptr<Registrations> regs) {
  auto q = std::make_unique<Queue>();
  q->regs_ = std::move(regs);
  q->comp_.reset(ibv_create_comp_channel(id->verbs));
  if (!q->comp_) return errno_status(ErrorCode::kIo, "ibv_create_comp_channel", errno);
  const uint32_t receives = (authenticated ? kAuthSlots : 0) + kPullMessageSlots;
  q->cq_.reset(ibv_create_cq(id->verbs, kSendDepth + receives + 1, nullptr, q->comp_.get(), 0));
  if (!q->cq_) return errno_status(ErrorCode::kIo, "ibv_create_cq", errno);
  ibv_qp_init_attr attr{};
  attr.send_cq = q->cq_.get();
  attr.recv_cq = q->cq_.get();
  attr.qp_type = IBV_QPT_RC;
  attr.cap.max_send_wr = kSendDepth;
  attr.cap.max_recv_wr = receives;
  attr.cap.max_send_sge = 1;
  attr.cap.max_recv_sge = 1;
  if (authenticated) {
    const char* what = "the library's authentication buffers";
    RS_RETURN_IF_ERROR(check_memlock(kAuthBufferBytes, what));
    RS_ASSIGN_OR_RETURN(q->auth_buf_, MappedMemory::anonymous(kAuthBufferBytes));
    q->auth_mr_.reset(ibv_reg_mr(q->regs_->pd(), q->auth_buf_.bytes().data(), kAuthBufferBytes,
                                 IBV_ACCESS_LOCAL_WRITE));
    if (!q->auth_mr_) return registration_error(errno, kAuthBufferBytes, what);
  }
  constexpr size_t kMessageBuffer = 2 * kPullMessageSlots * kPullMessageBytes;
  RS_RETURN_IF_ERROR(check_memlock(kMessageBuffer, "the library's message buffers"));
  RS_ASSIGN_OR_RETURN(q->msg_buf_, MappedMemory::anonymous(kMessageBuffer));
  q->msg_mr_.reset(ibv_reg_mr(q->regs_->pd(), q->msg_buf_.bytes().data(), kMessageBuffer,
                              IBV_ACCESS_LOCAL_WRITE));
  if (!q->msg_mr_)
    return registration_error(errno, kMessageBuffer, "the library's message buffers");
  if (rdma_create_qp(id, q->regs_->pd(), &attr) != 0)
    return errno_status(ErrorCode::kIo, "rdma_create_qp", errno);
  q->qp_ = id->qp;
  // The set-up's slots, then the messages' (local access only), posted before the peer can
  // send anything.
  Status st = authenticated ? post_auth_receives(id->qp, q->auth_buf_.bytes(), q->auth_mr_->lkey)
                            : Status::ok();
  for (uint32_t i = 0; st && i < kPullMessageSlots; ++i) st = q->post_message_receive(i);
  if (!st) {
    rdma_destroy_qp(id);  // before the PD and CQ it uses go with `q`
    return st;
  }
  return q;
}

Status Queue::post_message_receive(uint32_t slot) {
  ibv_sge sge{reinterpret_cast<uint64_t>(msg_buf_.bytes().data() + slot * kPullMessageBytes),
              kPullMessageBytes, msg_mr_->lkey};
  ibv_recv_wr wr{};
  wr.wr_id = kMessageRecvId | slot;
  wr.sg_list = &sge;
  wr.num_sge = 1;
  ibv_recv_wr* bad = nullptr;
  if (int rc = ibv_post_recv(qp_, &wr, &bad); rc != 0)
    return errno_status(ErrorCode::kIo, "ibv_post_recv (pull messages)", rc);
  return Status::ok();
}

Status Queue::authenticate(ChannelSecurity& security, PeerRole role, const std::string& host,
                           const std::string& peer, std::function<Status()> peer_left) {
  const auto deadline = Clock::now() + kPullAuthTimeout;
  pipe_ = std::make_unique<AuthPipe>(qp_, cq_.get(), auth_buf_.bytes(), auth_mr_->lkey, 0,
                                     std::move(peer_left));
  // The peer's first message after the set-up may complete while this side still polls for
  // the set-up's last completions: it is kept, as any message after the set-up.
  pipe_->pass_others_to([this](const ibv_wc& wc) { return on_completion(wc); });
  RS_ASSIGN_OR_RETURN(session_, pipe_->handshake(security, role, host, deadline));
  if (role == PeerRole::kServer) {
    RS_RETURN_IF_ERROR(pipe_->send_verdict(security, *session_, {}, deadline));
  } else {
    RS_ASSIGN_OR_RETURN(auto verdict, receive_verdict(*session_, peer, deadline));
    if (!verdict.empty())
      return Status(ErrorCode::kProtocol,
                    fmt::format("{} answered the authenticated set-up with {} bytes", peer,
                                4 + verdict.size()));
  }
  return pipe_->finish(deadline);
}

std::string Queue::session_text() const {
  return session_ ? fmt::format(", {}, peer {}", session_->describe(), session_->peer_identity())
                  : std::string();
}

Status Queue::post_message(std::span<const std::byte> message) {
  // One message in flight at a time (each is waited for), so slots are used in turn.
  const uint32_t slot = kPullMessageSlots + messages_sent_ % kPullMessageSlots;
  std::byte* p = msg_buf_.bytes().data() + slot * kPullMessageBytes;
  std::copy(message.begin(), message.end(), p);
  if (int rc = post_signaled_send(qp_, kMessageSendId | messages_sent_, {p, message.size()},
                                  msg_mr_->lkey);
      rc != 0)
    return errno_status(ErrorCode::kIo, "ibv_post_send (pull message)", rc);
  ++messages_sent_;
  ++signaled_posted_;
  return Status::ok();
}

Status Queue::post_bind(const WindowBind& bind) {
  ibv_send_wr wr{};
  fill_bind_request(bind, wr);
  wr.wr_id = kBindId | signaled_posted_;
  wr.send_flags = IBV_SEND_SIGNALED;
  ibv_send_wr* bad = nullptr;
  if (int rc = ibv_post_send(qp_, &wr, &bad); rc != 0)
    return errno_status(ErrorCode::kIo, "ibv_post_send (memory window bind)", rc);
  ++signaled_posted_;
  return Status::ok();
}

Status Queue::post_reads(std::span<const PullRead> reads) {
  if (reads.empty()) return Status::ok();
  std::vector<ibv_sge> sge(reads.size());
  std::vector<ibv_send_wr> wr(reads.size());
  for (size_t i = 0; i < reads.size(); ++i) {
    fill_read_request(reads[i], sge[i], wr[i]);
    wr[i].wr_id = kReadId | i;
    wr[i].send_flags = i + 1 == reads.size() ? IBV_SEND_SIGNALED : 0;
    wr[i].next = i + 1 < reads.size() ? &wr[i + 1] : nullptr;
  }
  ibv_send_wr* bad = nullptr;
  if (int rc = ibv_post_send(qp_, wr.data(), &bad); rc != 0)
    return errno_status(ErrorCode::kIo, "posting RDMA READs", rc);
  ++signaled_posted_;
  return Status::ok();
}

Status Queue::on_completion(const ibv_wc& wc) {
  const bool receive = (wc.wr_id & (1ull << 63)) != 0;
  if (wc.status == IBV_WC_WR_FLUSH_ERR && receive)
    return Status(ErrorCode::kDisconnected, "the peer closed the READ connection");
  if (wc.status != IBV_WC_SUCCESS)
    return Status(ErrorCode::kIo, fmt::format("{} failed: {}", request_name(wc.wr_id),
                                              ibv_wc_status_str(wc.status)));
  if (!receive) {
    ++signaled_done_;  // only signaled requests complete when they succeed
    return Status::ok();
  }
  if ((wc.wr_id & ~uint64_t{0xff}) != kMessageRecvId || wc.opcode != IBV_WC_RECV)
    return Status(ErrorCode::kProtocol, "the peer wrote into this connection");
  const uint32_t slot = static_cast<uint32_t>(wc.wr_id & 0xff);
  const std::byte* p = msg_buf_.bytes().data() + slot * kPullMessageBytes;
  inbox_.emplace_back(p, p + std::min(wc.byte_len, kPullMessageBytes));
  return post_message_receive(slot);
}

Status Queue::drain() {
  ibv_wc wcs[16];
  for (;;) {
    const int n = ibv_poll_cq(cq_.get(), 16, wcs);
    if (n < 0) return Status(ErrorCode::kIo, "ibv_poll_cq failed");
    for (int i = 0; i < n; ++i) RS_RETURN_IF_ERROR(on_completion(wcs[i]));
    if (n < 16) return Status::ok();
  }
}

Status Queue::poll_until(const std::function<bool()>& ready, Clock::time_point deadline,
                         const std::string& what) {
  for (;;) {
    RS_RETURN_IF_ERROR(drain());
    if (ready()) return Status::ok();
    if (ibv_req_notify_cq(cq_.get(), 0) != 0)
      return Status(ErrorCode::kIo, "ibv_req_notify_cq failed");
    RS_RETURN_IF_ERROR(drain());  // one may have landed before the arm
    if (ready()) return Status::ok();
    const auto left =
        std::chrono::duration_cast<std::chrono::milliseconds>(deadline - Clock::now());
    if (left.count() <= 0)
      return Status(ErrorCode::kTimeout, fmt::format("{} did not complete in time", what));
    // At most 50 ms asleep: `ready` may watch something besides this CQ (the peer leaving).
    pollfd pfd{comp_->fd, POLLIN, 0};
    if (::poll(&pfd, 1, static_cast<int>(std::min<int64_t>(left.count(), 50))) == 1) {
      ibv_cq* cq = nullptr;
      void* ctx = nullptr;
      if (ibv_get_cq_event(comp_.get(), &cq, &ctx) == 0) ibv_ack_cq_events(cq, 1);
    }
  }
}

std::vector<std::vector<std::byte>> Queue::take_messages() { return std::exchange(inbox_, {}); }

}  // namespace ramshift::transport::rdma
