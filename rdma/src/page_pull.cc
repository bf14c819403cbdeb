// RDMA READ page pulls (page_pull.h): rdma_cm set-up, one RC queue pair per connection,
// memory registered per mapping in a protection domain shared per device.
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

#include "host_limits.h"
#include "ramshift/base/clock.h"
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

}  // namespace

// The PD of one device and the mappings registered in it.
class PullDomain {
 public:
  static Result<std::shared_ptr<PullDomain>> of(ibv_context* ctx) {
    static std::mutex mu;
    static auto* domains = new std::map<ibv_context*, std::weak_ptr<PullDomain>>();
    std::lock_guard lock(mu);
    if (auto d = (*domains)[ctx].lock()) return d;
    ibv_pd* pd = ibv_alloc_pd(ctx);
    if (!pd) return errno_status(ErrorCode::kIo, "ibv_alloc_pd", errno);
    auto d = std::make_shared<PullDomain>();
    d->pd_ = make_shared_pd(pd);
    (*domains)[ctx] = d;
    return d;
  }

  ibv_pd* pd() const { return pd_.get(); }

  // The MR covering [p, p+len): registered on first use with `access`.
  Result<ibv_mr*> ensure(const std::byte* p, size_t len, int access, const char* what) {
    std::lock_guard lock(mu_);
    for (auto& m : mrs_) {
      auto* b = static_cast<std::byte*>(m->addr);
      if (p >= b && p + len <= b + m->length) return m.get();
    }
    auto t0 = Clock::now();
    std::string name = fmt::format("{} MiB of {}", len >> 20, what);
    RS_RETURN_IF_ERROR(check_memlock(len, name));
    MemoryRegion mr(ibv_reg_mr(pd_.get(), const_cast<std::byte*>(p), len, access));
    if (!mr) return registration_error(errno, len, name);
    stats_.registration_ms += ms_since(t0);
    stats_.registered_bytes += len;
    mrs_.push_back(std::move(mr));
    return mrs_.back().get();
  }

  PullStats stats() const {
    std::lock_guard lock(mu_);
    return stats_;
  }

 private:
  // MRs before the PD (declaration order reversed on destruction).
  SharedPd pd_;
  mutable std::mutex mu_;
  std::vector<MemoryRegion> mrs_;
  PullStats stats_;
};

namespace {

// A queue pair with its CQ on `id`, in `domain`'s PD.
struct Queue {
  std::shared_ptr<PullDomain> domain;
  CompletionChannel comp;
  CompletionQueue cq;

  static Result<Queue> create(rdma_cm_id* id) {
    Queue q;
    RS_ASSIGN_OR_RETURN(q.domain, PullDomain::of(id->verbs));
    q.comp.reset(ibv_create_comp_channel(id->verbs));
    if (!q.comp) return errno_status(ErrorCode::kIo, "ibv_create_comp_channel", errno);
    q.cq.reset(ibv_create_cq(id->verbs, kSendDepth + 1, nullptr, q.comp.get(), 0));
    if (!q.cq) return errno_status(ErrorCode::kIo, "ibv_create_cq", errno);
    ibv_qp_init_attr attr{};
    attr.send_cq = q.cq.get();
    attr.recv_cq = q.cq.get();
    attr.qp_type = IBV_QPT_RC;
    attr.cap.max_send_wr = kSendDepth;
    attr.cap.max_recv_wr = 1;
    attr.cap.max_send_sge = 1;
    attr.cap.max_recv_sge = 1;
    if (rdma_create_qp(id, q.domain->pd(), &attr) != 0)
      return errno_status(ErrorCode::kIo, "rdma_create_qp", errno);
    return q;
  }
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
  // Destroyed bottom-up: the id (and its QP) before the CQ and its channel, the PD last.
  EventChannel channel;
  Queue queue;
  CmId id;
  std::string text;
  ~Impl() {
    if (id && id->qp) rdma_destroy_qp(id.get());
  }
};

PullOrigin::PullOrigin(std::unique_ptr<Impl> impl) : impl_(std::move(impl)) {}
PullOrigin::~PullOrigin() = default;

Result<std::unique_ptr<PullOrigin>> PullOrigin::connect(const std::string& ip, uint16_t port,
                                                        std::span<const std::byte> priv,
                                                        PullMillis timeout) {
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
  auto expect = [&](rdma_cm_event_type want, const char* step) -> Status {
    auto ev = wait_event(impl->channel.get(), deadline);
    if (!ev) return ev.status().with_context(step);
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
  RS_ASSIGN_OR_RETURN(impl->queue, Queue::create(raw));
  auto param = conn_param(priv.data(), priv.size());
  if (rdma_connect(raw, &param) != 0)
    return errno_status(ErrorCode::kUnreachable, "rdma_connect", errno);
  RS_RETURN_IF_ERROR(expect(RDMA_CM_EVENT_ESTABLISHED, "connecting"));
  impl->text = fmt::format("rdma {} -> {}:{}", device_of(raw), ip, port);
  return std::unique_ptr<PullOrigin>(new PullOrigin(std::move(impl)));
}

Result<uint32_t> PullOrigin::expose(std::span<const std::byte> mapping) {
  // LOCAL_WRITE although nothing here writes: without it the kernel pins the pages read-only,
  // and an anonymous page the guest had not touched yet would stay pinned as the shared zero
  // page while QEMU's later writes land in a new page the device never sees. The peer gets
  // read access only.
  RS_ASSIGN_OR_RETURN(ibv_mr * mr,
                      impl_->queue.domain->ensure(mapping.data(), mapping.size(),
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

PullStats PullOrigin::stats() const { return impl_->queue.domain->stats(); }
std::string PullOrigin::describe() const { return impl_->text; }

// ---------------------------------------------------------------------------------------
// Destination.

struct PullTarget::Impl {
  // The id lives on the listener's event channel; destroyed before the CQ and the PD.
  Queue queue;
  CmId id;
  std::string text;
  ~Impl() {
    if (id) {
      rdma_disconnect(id.get());
      if (id->qp) rdma_destroy_qp(id.get());
    }
  }

  // Waits for one completion; every posted batch signals only its last read, and an error
  // completion of any read is reported on its own.
  Status wait_completion(PullMillis timeout) {
    for (;;) {
      ibv_wc wc{};
      int n = ibv_poll_cq(queue.cq.get(), 1, &wc);
      if (n < 0) return Status(ErrorCode::kIo, "ibv_poll_cq failed");
      if (n == 1) {
        if (wc.status != IBV_WC_SUCCESS)
          return Status(ErrorCode::kIo, fmt::format("RDMA READ from the source failed: {}",
                                                    ibv_wc_status_str(wc.status)));
        return Status::ok();
      }
      if (ibv_req_notify_cq(queue.cq.get(), 0) != 0)
        return Status(ErrorCode::kIo, "ibv_req_notify_cq failed");
      n = ibv_poll_cq(queue.cq.get(), 1, &wc);  // one may have landed before the arm
      if (n == 1) {
        if (wc.status != IBV_WC_SUCCESS)
          return Status(ErrorCode::kIo, fmt::format("RDMA READ from the source failed: {}",
                                                    ibv_wc_status_str(wc.status)));
        return Status::ok();
      }
      pollfd pfd{queue.comp->fd, POLLIN, 0};
      int rc = ::poll(&pfd, 1, static_cast<int>(timeout.count()));
      if (rc == 0) return Status(ErrorCode::kTimeout, "RDMA READ did not complete in time");
      ibv_cq* cq = nullptr;
      void* ctx = nullptr;
      if (ibv_get_cq_event(queue.comp.get(), &cq, &ctx) == 0) ibv_ack_cq_events(cq, 1);
    }
  }
};

PullTarget::PullTarget(std::unique_ptr<Impl> impl) : impl_(std::move(impl)) {}
PullTarget::~PullTarget() = default;

Result<uint32_t> PullTarget::lkey(std::span<std::byte> mapping) {
  RS_ASSIGN_OR_RETURN(ibv_mr * mr,
                      impl_->queue.domain->ensure(mapping.data(), mapping.size(),
                                                  IBV_ACCESS_LOCAL_WRITE, "guest memory"));
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

PullStats PullTarget::stats() const { return impl_->queue.domain->stats(); }
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
    PullMillis timeout, const std::function<bool(std::span<const std::byte>)>& decide) {
  auto deadline = Clock::now() + timeout;
  RS_ASSIGN_OR_RETURN(Event ev, wait_event(impl_->channel.get(), deadline));
  if (ev.type != RDMA_CM_EVENT_CONNECT_REQUEST) {
    // ESTABLISHED / DISCONNECTED of connections already handed out arrive here too.
    return Status(ErrorCode::kWouldBlock, rdma_event_str(ev.type));
  }
  CmId id(ev.id);
  if (ev.private_data.size() < kPullPrivateBytes || !decide(ev.private_data)) {
    rdma_reject(id.get(), nullptr, 0);
    return Status(ErrorCode::kWouldBlock, "connect request refused");
  }
  auto impl = std::make_unique<PullTarget::Impl>();
  auto q = Queue::create(id.get());
  if (!q) {
    rdma_reject(id.get(), nullptr, 0);
    return q.status();
  }
  impl->queue = std::move(*q);
  auto param = conn_param(nullptr, 0);
  if (rdma_accept(id.get(), &param) != 0) return errno_status(ErrorCode::kIo, "rdma_accept", errno);
  impl->text = fmt::format("rdma {} <- port {}", device_of(id.get()), impl_->port);
  impl->id = std::move(id);
  return std::unique_ptr<PullTarget>(new PullTarget(std::move(impl)));
}

}  // namespace ramshift::transport::rdma
