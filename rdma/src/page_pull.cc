// RDMA READ page pulls (page_pull.h): rdma_cm set-up, one RC queue pair per connection, each
// connection with its own protection domain and registrations, authenticated when asked.
#include "page_pull.h"

#include <arpa/inet.h>
#include <fcntl.h>
#include <fmt/format.h>
#include <poll.h>

#include <algorithm>
#include <cstring>
#include <map>
#include <mutex>
#include <vector>

#include "auth_pipe.h"
#include "host_limits.h"
#include "ramshift/base/clock.h"
#include "ramshift/base/mapped_memory.h"
#include "read_requests.h"
#include "verbs_handles.h"

namespace ramshift::transport::rdma {

using Clock = std::chrono::steady_clock;

namespace {

// READs in flight per connection: a 512 KiB multifd packet of scattered 4 KiB pages is 128
// reads, so one packet fits; the device caps it further (max_qp_init_rd_atom, 128 on rxe).
constexpr uint32_t kSendDepth = 256;
constexpr uint8_t kReadDepth = 16;  // outstanding READs per QP asked of rdma_cm

struct Event {
  rdma_cm_event_type type{};
  rdma_cm_id* id = nullptr;
  int status = 0;
  std::vector<std::byte> private_data;
};

Result<Event> wait_event(rdma_event_channel* ch, Clock::time_point deadline) {
  for (;;) {
    rdma_cm_event* ev = nullptr;
    if (rdma_get_cm_event(ch, &ev) == 0) {
      Event out{ev->event, ev->id, ev->status, {}};
      auto* p = static_cast<const std::byte*>(ev->param.conn.private_data);
      if (p) out.private_data.assign(p, p + ev->param.conn.private_data_len);
      rdma_ack_cm_event(ev);
      return out;
    }
    if (errno != EAGAIN) return errno_status(ErrorCode::kIo, "rdma_get_cm_event", errno);
    auto left = std::chrono::duration_cast<std::chrono::milliseconds>(deadline - Clock::now());
    if (left.count() <= 0) return Status(ErrorCode::kTimeout, "no rdma_cm event in time");
    pollfd pfd{ch->fd, POLLIN, 0};
    ::poll(&pfd, 1, static_cast<int>(std::min<int64_t>(left.count(), 1000)));
  }
}

Result<EventChannel> nonblocking_channel() {
  EventChannel ch(rdma_create_event_channel());
  if (!ch) return errno_status(ErrorCode::kIo, "rdma_create_event_channel", errno);
  fcntl(ch->fd, F_SETFL, fcntl(ch->fd, F_GETFL) | O_NONBLOCK);
  return ch;
}

// A PD and the memory registered in it for pulls; the MRs go before the PD.
class Registrations {
 public:
  static Result<std::shared_ptr<Registrations>> create(ibv_context* ctx) {
    ibv_pd* pd = ibv_alloc_pd(ctx);
    if (!pd) return errno_status(ErrorCode::kIo, "ibv_alloc_pd", errno);
    return std::make_shared<Registrations>(make_shared_pd(pd));
  }
  // The destination's: one per device for the process, shared by its connections and gone
  // with the last of them. Only local access is ever granted in it (READ targets, the
  // set-up's buffers), so sharing it opens nothing to any peer, whereas a PD per connection
  // would pin the guest memory once per channel (and need channels x its size of memlock).
  static Result<std::shared_ptr<Registrations>> shared_local(ibv_context* ctx) {
    static std::mutex mu;
    static auto* shared = new std::map<ibv_context*, std::weak_ptr<Registrations>>();
    std::lock_guard lock(mu);
    if (auto r = (*shared)[ctx].lock()) return r;
    RS_ASSIGN_OR_RETURN(auto r, create(ctx));
    (*shared)[ctx] = r;
    return r;
  }

  explicit Registrations(SharedPd pd) : pd_(std::move(pd)) {}
  ibv_pd* pd() const { return pd_.get(); }

  // The MR covering [p, p+len): registered on first use with `access` (then `added`, when
  // given, says what that cost).
  Result<ibv_mr*> ensure(const std::byte* p, size_t len, int access, const char* what,
                         PullStats* added = nullptr) {
    std::lock_guard lock(mu_);
    for (auto& m : mrs_) {
      auto* b = static_cast<std::byte*>(m->addr);
      if (p >= b && p + len <= b + m->length) return m.get();
    }
    std::string name = fmt::format("{} MiB of {}", len >> 20, what);
    RS_RETURN_IF_ERROR(check_memlock(len, name));
    auto t0 = Clock::now();
    MemoryRegion mr(ibv_reg_mr(pd_.get(), const_cast<std::byte*>(p), len, access));
    if (!mr) return registration_error(errno, len, name);
    const PullStats cost{len, ms_since(t0)};
    stats_.registration_ms += cost.registration_ms;
    stats_.registered_bytes += cost.registered_bytes;
    if (added) *added = cost;
    mrs_.push_back(std::move(mr));
    return mrs_.back().get();
  }

  PullStats stats() const {
    std::lock_guard lock(mu_);
    return stats_;
  }

 private:
  SharedPd pd_;  // declared first: destroyed after the MRs
  mutable std::mutex mu_;
  std::vector<MemoryRegion> mrs_;
  PullStats stats_;
};

// One connection's verbs objects: its registrations and their PD (the source's its own; the
// destination's shared, local access only), CQ, queue pair (on the rdma_cm id, which its
// owner destroys first), and the set-up's buffers and session. Members are destroyed
// bottom-up: the session before its pipe, the set-up's MR before its buffer, the CQ before
// its channel, the registrations (MRs, then the PD) last.
class Queue {
 public:
  static Result<std::unique_ptr<Queue>> create(rdma_cm_id* id, bool authenticated,
                                               std::shared_ptr<Registrations> regs) {
    auto q = std::make_unique<Queue>();
    q->regs_ = std::move(regs);
    q->comp_.reset(ibv_create_comp_channel(id->verbs));
    if (!q->comp_) return errno_status(ErrorCode::kIo, "ibv_create_comp_channel", errno);
    q->cq_.reset(ibv_create_cq(id->verbs, kSendDepth + kAuthSlots + 1, nullptr, q->comp_.get(), 0));
    if (!q->cq_) return errno_status(ErrorCode::kIo, "ibv_create_cq", errno);
    ibv_qp_init_attr attr{};
    attr.send_cq = q->cq_.get();
    attr.recv_cq = q->cq_.get();
    attr.qp_type = IBV_QPT_RC;
    attr.cap.max_send_wr = kSendDepth;
    attr.cap.max_recv_wr = kAuthSlots;
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
    if (rdma_create_qp(id, q->regs_->pd(), &attr) != 0)
      return errno_status(ErrorCode::kIo, "rdma_create_qp", errno);
    if (authenticated) {
      // The set-up's slots (local access only), posted before the peer can send anything.
      if (Status st = post_auth_receives(id->qp, q->auth_buf_.bytes(), q->auth_mr_->lkey); !st) {
        rdma_destroy_qp(id);  // before the PD and CQ it uses go with `q`
        return st;
      }
    }
    return q;
  }

  // Runs the TLS handshake and the verdict on the connected queue pair `qp` (the client
  // names `host`, the address it dialled). Every SEND of the set-up has completed when this
  // returns, so the CQ holds nothing of it for whoever polls it next.
  Status authenticate(ibv_qp* qp, ChannelSecurity& security, PeerRole role, const std::string& host,
                      const std::string& peer, std::function<Status()> peer_left) {
    const auto deadline = Clock::now() + kPullAuthTimeout;
    pipe_ = std::make_unique<AuthPipe>(qp, cq_.get(), auth_buf_.bytes(), auth_mr_->lkey, 0,
                                       std::move(peer_left));
    RS_ASSIGN_OR_RETURN(session_, pipe_->handshake(security, role, host, deadline));
    if (role == PeerRole::kServer) {
      RS_RETURN_IF_ERROR(pipe_->send_verdict(security, *session_, {}, deadline));
      return pipe_->sends_complete(deadline);
    }
    RS_ASSIGN_OR_RETURN(auto verdict, receive_verdict(*session_, peer, deadline));
    if (!verdict.empty())
      return Status(ErrorCode::kProtocol,
                    fmt::format("{} answered the authenticated set-up with {} bytes", peer,
                                4 + verdict.size()));
    return pipe_->sends_complete(deadline);
  }

  // ", TLSv1.3 TLS_AES_256_GCM_SHA384, x509, peer CN=..." once authenticated, else "".
  std::string session_text() const {
    return session_ ? fmt::format(", {}, peer {}", session_->describe(), session_->peer_identity())
                    : std::string();
  }

  ibv_cq* cq() const { return cq_.get(); }
  ibv_comp_channel* comp() const { return comp_.get(); }

  Registrations& registrations() { return *regs_; }

 private:
  std::shared_ptr<Registrations> regs_;
  CompletionChannel comp_;
  CompletionQueue cq_;
  MappedMemory auth_buf_;
  MemoryRegion auth_mr_;
  std::unique_ptr<AuthPipe> pipe_;
  std::unique_ptr<SecureSession> session_;
};

rdma_conn_param conn_param(const std::byte* priv, size_t len) {
  rdma_conn_param p{};
  p.private_data = priv;
  p.private_data_len = static_cast<uint8_t>(len);
  p.responder_resources = kReadDepth;
  p.initiator_depth = kReadDepth;
  p.retry_count = 7;
  p.rnr_retry_count = 6;
  return p;
}

std::string device_of(rdma_cm_id* id) {
  return id && id->verbs ? ibv_get_device_name(id->verbs->device) : "?";
}

}  // namespace

// ---------------------------------------------------------------------------------------
// Source.

struct PullOrigin::Impl {
  // Destroyed bottom-up: the id (and its QP) before the queue's CQ, MRs and PD, and the event
  // channel last.
  EventChannel channel;
  std::unique_ptr<Queue> queue;
  CmId id;
  std::string text;
};

PullOrigin::PullOrigin(std::unique_ptr<Impl> impl) : impl_(std::move(impl)) {}
PullOrigin::~PullOrigin() = default;

namespace {

// The destination's reason in a reject's private data (PullListener::accept), printable.
std::string rejection_text(const std::vector<std::byte>& priv) {
  std::string out;
  for (std::byte b : priv) {
    const char c = static_cast<char>(b);
    if (c == 0) break;
    out += (c >= 0x20 && c < 0x7f) ? c : '?';  // the peer's words, printed, never obeyed
  }
  return out;
}

}  // namespace

Result<std::unique_ptr<PullOrigin>> PullOrigin::connect(const std::string& ip, uint16_t port,
                                                        std::span<const std::byte> priv,
                                                        PullMillis timeout,
                                                        ChannelSecurity* security) {
  auto deadline = Clock::now() + timeout;
  auto impl = std::make_unique<Impl>();
  RS_ASSIGN_OR_RETURN(impl->channel, nonblocking_channel());
  rdma_cm_id* raw = nullptr;
  if (rdma_create_id(impl->channel.get(), &raw, nullptr, RDMA_PS_TCP) != 0)
    return errno_status(ErrorCode::kIo, "rdma_create_id", errno);
  impl->id.reset(raw);
  sockaddr_in sa{};
  sa.sin_family = AF_INET;
  sa.sin_port = htons(port);
  if (inet_pton(AF_INET, ip.c_str(), &sa.sin_addr) != 1)
    return Status(ErrorCode::kInvalidArgument, fmt::format("'{}' is not an IPv4 address", ip));
  const std::string peer = fmt::format("the destination at {}:{}", ip, port);
  auto expect = [&](rdma_cm_event_type want, const char* step) -> Status {
    auto ev = wait_event(impl->channel.get(), deadline);
    if (!ev) return ev.status().with_context(step);
    if (ev->type == RDMA_CM_EVENT_REJECTED && !rejection_text(ev->private_data).empty())
      return Status(ErrorCode::kMismatch, fmt::format("{} refused this connection: {}", peer,
                                                      rejection_text(ev->private_data)));
    if (ev->type != want)
      return Status(ErrorCode::kUnreachable,
                    fmt::format("{} to {}:{}: {} (status {})", step, ip, port,
                                rdma_event_str(ev->type), ev->status));
    return Status::ok();
  };
  if (rdma_resolve_addr(raw, nullptr, reinterpret_cast<sockaddr*>(&sa), 2000) != 0)
    return errno_status(ErrorCode::kUnreachable, "rdma_resolve_addr", errno);
  RS_RETURN_IF_ERROR(expect(RDMA_CM_EVENT_ADDR_RESOLVED, "resolving the address"));
  if (rdma_resolve_route(raw, 2000) != 0)
    return errno_status(ErrorCode::kUnreachable, "rdma_resolve_route", errno);
  RS_RETURN_IF_ERROR(expect(RDMA_CM_EVENT_ROUTE_RESOLVED, "resolving the route"));
  // Its own PD: what it registers for remote reads is reachable through this connection only.
  RS_ASSIGN_OR_RETURN(auto regs, Registrations::create(raw->verbs));
  RS_ASSIGN_OR_RETURN(impl->queue, Queue::create(raw, security != nullptr, std::move(regs)));
  auto param = conn_param(priv.data(), priv.size());
  if (rdma_connect(raw, &param) != 0)
    return errno_status(ErrorCode::kUnreachable, "rdma_connect", errno);
  RS_RETURN_IF_ERROR(expect(RDMA_CM_EVENT_ESTABLISHED, "connecting"));
  if (security) {
    // The peer leaving shows on this connection's own event channel.
    auto peer_left = [ch = impl->channel.get()]() -> Status {
      rdma_cm_event* ev = nullptr;
      if (rdma_get_cm_event(ch, &ev) != 0) return Status::ok();
      const auto type = ev->event;
      rdma_ack_cm_event(ev);
      if (type == RDMA_CM_EVENT_DISCONNECTED || type == RDMA_CM_EVENT_DEVICE_REMOVAL)
        return Status(ErrorCode::kDisconnected,
                      "the destination closed the connection during authentication (its log "
                      "says why)");
      return Status::ok();
    };
    RS_RETURN_IF_ERROR(
        impl->queue->authenticate(raw->qp, *security, PeerRole::kClient, ip, peer, peer_left));
  }
  impl->text =
      fmt::format("rdma {} -> {}:{}{}", device_of(raw), ip, port, impl->queue->session_text());
  return std::unique_ptr<PullOrigin>(new PullOrigin(std::move(impl)));
}

Result<uint32_t> PullOrigin::expose(std::span<const std::byte> mapping) {
  // LOCAL_WRITE although nothing here writes: without it the kernel pins the pages read-only,
  // and an anonymous page the guest had not touched yet would stay pinned as the shared zero
  // page while QEMU's later writes land in a new page the device never sees. The peer gets
  // read access only.
  RS_ASSIGN_OR_RETURN(ibv_mr * mr, impl_->queue->registrations().ensure(
                                       mapping.data(), mapping.size(),
                                       IBV_ACCESS_LOCAL_WRITE | IBV_ACCESS_REMOTE_READ,
                                       "guest memory exposed for reads"));
  return mr->rkey;
}

void PullOrigin::wait_closed(PullMillis timeout) {
  auto deadline = Clock::now() + timeout;
  for (;;) {
    auto ev = wait_event(impl_->channel.get(), deadline);
    if (!ev || ev->type == RDMA_CM_EVENT_DISCONNECTED || ev->type == RDMA_CM_EVENT_DEVICE_REMOVAL)
      break;
  }
  rdma_disconnect(impl_->id.get());
}

PullStats PullOrigin::stats() const { return impl_->queue->registrations().stats(); }
std::string PullOrigin::describe() const { return impl_->text; }

// ---------------------------------------------------------------------------------------
// Destination.

struct PullTarget::Impl {
  // The id lives on the listener's event channel; destroyed (with its QP) before the queue's
  // CQ, MRs and PD.
  std::unique_ptr<Queue> queue;
  CmId id;
  std::string text;
  ~Impl() {
    if (id) rdma_disconnect(id.get());
  }

  Status completed(const ibv_wc& wc) {
    if (wc.status != IBV_WC_SUCCESS)
      return Status(ErrorCode::kIo, fmt::format("RDMA READ from the source failed: {}",
                                                ibv_wc_status_str(wc.status)));
    // Only READs are posted once the set-up is over; a receive completing means the source
    // sent a message it had no business sending.
    if (wc.opcode != IBV_WC_RDMA_READ)
      return Status(ErrorCode::kProtocol, "the source sent a message on the READ connection");
    return Status::ok();
  }

  // Waits for one completion; every posted batch signals only its last read, and an error
  // completion of any read is reported on its own.
  Status wait_completion(PullMillis timeout) {
    for (;;) {
      ibv_wc wc{};
      int n = ibv_poll_cq(queue->cq(), 1, &wc);
      if (n < 0) return Status(ErrorCode::kIo, "ibv_poll_cq failed");
      if (n == 1) return completed(wc);
      if (ibv_req_notify_cq(queue->cq(), 0) != 0)
        return Status(ErrorCode::kIo, "ibv_req_notify_cq failed");
      n = ibv_poll_cq(queue->cq(), 1, &wc);  // one may have landed before the arm
      if (n == 1) return completed(wc);
      pollfd pfd{queue->comp()->fd, POLLIN, 0};
      int rc = ::poll(&pfd, 1, static_cast<int>(timeout.count()));
      if (rc == 0) return Status(ErrorCode::kTimeout, "RDMA READ did not complete in time");
      ibv_cq* cq = nullptr;
      void* ctx = nullptr;
      if (ibv_get_cq_event(queue->comp(), &cq, &ctx) == 0) ibv_ack_cq_events(cq, 1);
    }
  }
};

PullTarget::PullTarget(std::unique_ptr<Impl> impl) : impl_(std::move(impl)) {}
PullTarget::~PullTarget() = default;

Result<uint32_t> PullTarget::lkey(std::span<std::byte> mapping, PullStats* added) {
  RS_ASSIGN_OR_RETURN(ibv_mr * mr, impl_->queue->registrations().ensure(
                                       mapping.data(), mapping.size(), IBV_ACCESS_LOCAL_WRITE,
                                       "guest memory", added));
  return mr->lkey;
}

Status PullTarget::read(std::span<const PullRead> reads, PullMillis timeout) {
  // Batches of at most kSendDepth / 2 reads, each waited for before the next is posted.
  constexpr size_t kBatch = kSendDepth / 2;
  std::vector<ibv_sge> sge(std::min(reads.size(), kBatch));
  std::vector<ibv_send_wr> wr(sge.size());
  for (size_t at = 0; at < reads.size(); at += kBatch) {
    size_t n = std::min(kBatch, reads.size() - at);
    for (size_t i = 0; i < n; ++i) {
      fill_read_request(reads[at + i], sge[i], wr[i]);
      wr[i].wr_id = at + i;
      wr[i].send_flags = i + 1 == n ? IBV_SEND_SIGNALED : 0;
      wr[i].next = i + 1 < n ? &wr[i + 1] : nullptr;
    }
    ibv_send_wr* bad = nullptr;
    if (int rc = ibv_post_send(impl_->id->qp, wr.data(), &bad); rc != 0)
      return errno_status(ErrorCode::kIo, "posting RDMA READs", rc);
    RS_RETURN_IF_ERROR(impl_->wait_completion(timeout));
  }
  return Status::ok();
}

PullStats PullTarget::stats() const { return impl_->queue->registrations().stats(); }
std::string PullTarget::describe() const { return impl_->text; }

struct PullListener::Impl {
  EventChannel channel;
  CmId id;
  uint16_t port = 0;
};

PullListener::PullListener(std::unique_ptr<Impl> impl) : impl_(std::move(impl)) {}
PullListener::~PullListener() = default;
uint16_t PullListener::port() const { return impl_->port; }

Result<std::unique_ptr<PullListener>> PullListener::create(const std::string& ip) {
  auto none = [&](const std::string& detail) {
    return Status(ErrorCode::kNotFound, fmt::format("no RDMA device serves {} ({})", ip, detail));
  };
  auto impl = std::make_unique<Impl>();
  auto ch = nonblocking_channel();
  if (!ch) return none(ch.status().message());  // ENODEV: no RDMA on this host at all
  impl->channel = std::move(*ch);
  rdma_cm_id* raw = nullptr;
  if (rdma_create_id(impl->channel.get(), &raw, nullptr, RDMA_PS_TCP) != 0)
    return none(fmt::format("rdma_create_id: {}", std::strerror(errno)));
  impl->id.reset(raw);
  sockaddr_in sa{};
  sa.sin_family = AF_INET;
  if (inet_pton(AF_INET, ip.c_str(), &sa.sin_addr) != 1)
    return Status(ErrorCode::kInvalidArgument, fmt::format("'{}' is not an IPv4 address", ip));
  if (rdma_bind_addr(raw, reinterpret_cast<sockaddr*>(&sa)) != 0)
    return none(fmt::format("rdma_bind_addr: {}", std::strerror(errno)));
  if (!raw->verbs) return none("the address is on no RDMA device's interface");
  if (rdma_listen(raw, 16) != 0) return errno_status(ErrorCode::kIo, "rdma_listen", errno);
  impl->port = ntohs(rdma_get_src_port(raw));
  return std::unique_ptr<PullListener>(new PullListener(std::move(impl)));
}

Result<std::unique_ptr<PullTarget>> PullListener::accept(
    PullMillis timeout, const std::function<std::string(std::span<const std::byte>)>& decide,
    ChannelSecurity* security) {
  auto deadline = Clock::now() + timeout;
  RS_ASSIGN_OR_RETURN(Event ev, wait_event(impl_->channel.get(), deadline));
  if (ev.type != RDMA_CM_EVENT_CONNECT_REQUEST) {
    // ESTABLISHED / DISCONNECTED of connections already handed out arrive here too.
    return Status(ErrorCode::kWouldBlock, rdma_event_str(ev.type));
  }
  CmId id(ev.id);
  std::string refusal = ev.private_data.size() < kPullPrivateBytes
                            ? std::string("a connect request without this library's data")
                            : decide(ev.private_data);
  if (!refusal.empty()) {
    // The reason rides in the reject message (rdma_cm carries up to 148 bytes on a reject).
    std::string text = refusal.substr(0, 140);
    rdma_reject(id.get(), text.c_str(), static_cast<uint8_t>(text.size() + 1));
    return Status(ErrorCode::kWouldBlock, "connect request refused: " + refusal);
  }
  auto regs = Registrations::shared_local(id->verbs);
  if (!regs) {
    rdma_reject(id.get(), nullptr, 0);
    return regs.status();
  }
  auto q = Queue::create(id.get(), security != nullptr, std::move(*regs));
  if (!q) {
    rdma_reject(id.get(), nullptr, 0);
    return q.status();
  }
  auto impl = std::make_unique<PullTarget::Impl>();
  impl->queue = std::move(*q);
  impl->id = std::move(id);  // from here the Impl destroys the QP before the queue's PD
  rdma_cm_id* raw = impl->id.get();
  auto param = conn_param(nullptr, 0);
  if (rdma_accept(raw, &param) != 0) return errno_status(ErrorCode::kIo, "rdma_accept", errno);
  if (security) {
    // The peer's departure shows on the listener's channel, shared with every other connection:
    // a refused peer's alert, or the deadline, ends the wait instead.
    Status a =
        impl->queue->authenticate(raw->qp, *security, PeerRole::kServer, "", "the source", nullptr);
    if (!a) return Status(ErrorCode::kMismatch, a.message());
  }
  impl->text =
      fmt::format("rdma {} <- port {}{}", device_of(raw), impl_->port, impl->queue->session_text());
  return std::unique_ptr<PullTarget>(new PullTarget(std::move(impl)));
}

}  // namespace ramshift::transport::rdma
