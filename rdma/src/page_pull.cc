// RDMA READ page pulls (page_pull.h): rdma_cm set-up, one RC queue pair per connection, each
// connection with its own protection domain and registrations, authenticated when asked.
#include "page_pull.h"

#include <arpa/inet.h>
#include <fcntl.h>
#include <fmt/format.h>
#include <poll.h>

#include <algorithm>
#include <cstring>
#include <optional>
#include <vector>

#include "pull_queue.h"
#include "ramshift/base/byte_order.h"
#include "ramshift/base/clock.h"
#include "verbs_handles.h"

namespace ramshift::transport::rdma {

using Clock = std::chrono::steady_clock;

namespace {

// How long the source waits for a window bind or a KEY to complete: local work for the device
// and one acknowledged SEND; only a failing queue pair takes long (its error ends it sooner).
constexpr auto kExposeTimeout = std::chrono::seconds(10);
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
  // Destroyed bottom-up: the windows (each holds the queue pair it was bound on) before the id
  // and its QP, those before the queue's CQ, MRs and PD, and the event channel last.
  EventChannel channel;
  std::unique_ptr<Queue> queue;
  CmId id;
  std::vector<MemoryWindow> windows;
  std::vector<PullKey> exposed;
  std::string no_windows;  // why the peer gets region keys; empty: windows
  std::string text;
  bool done = false;  // the peer's DONE arrived

  // Whether the peer left (its DISCONNECTED on this connection's own event channel).
  bool peer_left() {
    rdma_cm_event* ev = nullptr;
    if (rdma_get_cm_event(channel.get(), &ev) != 0) return false;
    const auto type = ev->event;
    rdma_ack_cm_event(ev);
    return type == RDMA_CM_EVENT_DISCONNECTED || type == RDMA_CM_EVENT_DEVICE_REMOVAL;
  }
  void take_messages() {
    for (auto& m : queue->take_messages()) done = done || is_done(m);
  }
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
                                                        ChannelSecurity* security,
                                                        bool memory_windows) {
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
        impl->queue->authenticate(*security, PeerRole::kClient, ip, peer, peer_left));
  }
  impl->no_windows = why_no_windows(raw->verbs, memory_windows);
  impl->text = fmt::format("rdma {} -> {}:{}, {}{}", device_of(raw), ip, port,
                           impl->no_windows.empty() ? "memory windows" : "region keys",
                           impl->queue->session_text());
  return std::unique_ptr<PullOrigin>(new PullOrigin(std::move(impl)));
}

Result<uint32_t> PullOrigin::expose(std::span<const std::byte> mapping) {
  for (const PullKey& k : impl_->exposed)
    if (reinterpret_cast<uint64_t>(mapping.data()) >= k.address &&
        reinterpret_cast<uint64_t>(mapping.data()) + mapping.size() <= k.address + k.length)
      return k.key;
  const bool windows = impl_->no_windows.empty();
  // LOCAL_WRITE although nothing here writes: without it the kernel pins the pages read-only,
  // and an anonymous page the guest had not touched yet would stay pinned as the shared zero
  // page while QEMU's later writes land in a new page the device never sees. The peer gets
  // read access only: through a window bound on this queue pair, or the region's own key.
  RS_ASSIGN_OR_RETURN(ibv_mr * mr, impl_->queue->registrations().ensure(
                                       mapping.data(), mapping.size(),
                                       IBV_ACCESS_LOCAL_WRITE |
                                           (windows ? IBV_ACCESS_MW_BIND : IBV_ACCESS_REMOTE_READ),
                                       "guest memory exposed for reads"));
  const auto deadline = Clock::now() + kExposeTimeout;
  PullKey key{reinterpret_cast<uint64_t>(mr->addr), mr->length, mr->rkey};
  Queue& q = *impl_->queue;
  auto sent = [&q] { return q.sends_done(); };
  if (windows) {
    MemoryWindow mw;
    RS_ASSIGN_OR_RETURN(WindowBind bind,
                        new_window(q.registrations().pd(), mr, IBV_ACCESS_REMOTE_READ, mw));
    RS_RETURN_IF_ERROR(q.post_bind(bind));
    RS_RETURN_IF_ERROR(q.poll_until(sent, deadline, "a memory window bind"));
    key.key = bind.rkey;
    impl_->windows.push_back(std::move(mw));
  }
  // The peer holds the key once the SEND completed (acknowledged: in its receive buffer),
  // before any frame that names this memory is written on QEMU's socket.
  std::byte message[kPullKeyBytes];
  encode_key(message, key);
  RS_RETURN_IF_ERROR(q.post_message(message));
  RS_RETURN_IF_ERROR(q.poll_until(sent, deadline, "the key's message to the destination"));
  impl_->take_messages();
  impl_->exposed.push_back(key);
  return key.key;
}

PullOrigin::End PullOrigin::linger(PullMillis bound) {
  const auto deadline = Clock::now() + bound;
  End end = End::kBound;
  impl_->take_messages();
  Status s = impl_->done ? Status::ok()
                         : impl_->queue->poll_until(
                               [&] {
                                 impl_->take_messages();
                                 if (impl_->done) return true;
                                 if (!impl_->peer_left()) return false;
                                 end = End::kDisconnected;
                                 return true;
                               },
                               deadline, "the destination's DONE");
  if (impl_->done)
    end = End::kDone;
  else if (s.code() == ErrorCode::kDisconnected)
    end = End::kDisconnected;
  // The exposure ends here, whatever the peer does next: the windows first (their keys die at
  // once), then the regions (the region keys with them).
  impl_->windows.clear();
  impl_->queue->registrations().release_all();
  rdma_disconnect(impl_->id.get());
  return end;
}

PullStats PullOrigin::stats() const { return impl_->queue->registrations().stats(); }
std::string PullOrigin::describe() const { return impl_->text; }
std::string PullOrigin::why_region_keys() const { return impl_->no_windows; }

// ---------------------------------------------------------------------------------------
// Destination.

struct PullTarget::Impl {
  // Destroyed bottom-up: the id (with its QP) before the queue's CQ, MRs and PD, and the id's
  // own event channel (it is moved there from the listener's on accept) last.
  EventChannel channel;
  std::unique_ptr<Queue> queue;
  CmId id;
  std::string text;
  std::vector<PullKey> keys;  // from the source's KEYs
  bool done_sent = false;
  bool source_left = false;
  ~Impl() {
    if (id) rdma_disconnect(id.get());
  }

  // Whether the source closed the connection (its DISCONNECTED, kept once seen). Why it is
  // watched: the source closes the connection when it ends its exposure (DONE, or its peer
  // timeout), and a READ posted after that is never answered on soft-RoCE: it waited for the
  // caller's whole timeout (10 s in rdma_pull_probe) instead of failing.
  bool peer_left() {
    rdma_cm_event* ev = nullptr;
    while (!source_left && rdma_get_cm_event(channel.get(), &ev) == 0) {
      const auto type = ev->event;
      rdma_ack_cm_event(ev);
      source_left = type == RDMA_CM_EVENT_DISCONNECTED || type == RDMA_CM_EVENT_DEVICE_REMOVAL;
    }
    return source_left;
  }
  Status left_status(const char* waiting_for) const {
    return Status(ErrorCode::kDisconnected,
                  fmt::format("the source closed the READ connection (its exposure of the "
                              "guest memory ended) while {} was outstanding",
                              waiting_for));
  }
  // poll_until on the queue, ended early (kDisconnected) when the source leaves; what
  // already completed is taken first, so a key or READ that landed before the source left
  // still counts.
  Status poll_until(const std::function<bool()>& ready, PullMillis timeout, const char* what) {
    bool left = false;
    Status s = queue->poll_until(
        [&] {
          if (ready()) return true;
          left = peer_left();
          return left;
        },
        Clock::now() + timeout, what);
    if (!s) return s;
    return left ? left_status(what) : Status::ok();
  }

  // The KEYs received so far into `keys`; kProtocol for any other message (the source sends
  // nothing else).
  Status take_keys() {
    for (auto& m : queue->take_messages()) {
      auto k = decode_key(m);
      if (!k)
        return Status(ErrorCode::kProtocol,
                      fmt::format("the source sent a {}-byte message that is not a key", m.size()));
      keys.push_back(*k);
    }
    return Status::ok();
  }
  std::optional<uint32_t> find(uint64_t addr, uint64_t len) const {
    for (auto it = keys.rbegin(); it != keys.rend(); ++it)
      if (addr >= it->address && addr + len <= it->address + it->length) return it->key;
    return std::nullopt;
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
  // Batches of at most half the send queue, each waited for before the next is posted; a
  // batch that makes no progress for `timeout` fails.
  constexpr size_t kBatch = 128;
  Queue& q = *impl_->queue;
  for (size_t at = 0; at < reads.size(); at += kBatch) {
    if (impl_->peer_left()) return impl_->left_status("an RDMA READ");
    RS_RETURN_IF_ERROR(q.post_reads(reads.subspan(at, std::min(kBatch, reads.size() - at))));
    RS_RETURN_IF_ERROR(impl_->poll_until([&q] { return q.sends_done(); }, timeout, "an RDMA READ"));
  }
  return Status::ok();
}

Result<uint32_t> PullTarget::key_for(uint64_t addr, uint64_t len, PullMillis timeout) {
  RS_RETURN_IF_ERROR(impl_->take_keys());
  if (auto k = impl_->find(addr, len)) return *k;
  // The source's KEY completed before it wrote the frame; its receive may still be on its way
  // through this side's CQ.
  Status keys = Status::ok();
  Status s = impl_->poll_until(
      [&] {
        keys = impl_->take_keys();
        return !keys || impl_->find(addr, len).has_value();
      },
      timeout, "the source's key");
  RS_RETURN_IF_ERROR(keys);
  if (auto k = impl_->find(addr, len)) return *k;
  if (s.code() == ErrorCode::kTimeout)
    return Status(ErrorCode::kProtocol,
                  fmt::format("the source named {} bytes at 0x{:x} without giving their key on "
                              "the READ connection",
                              len, addr));
  return s;
}

Status PullTarget::done(PullMillis timeout) {
  if (impl_->done_sent) return Status::ok();
  impl_->done_sent = true;
  std::byte message[4];
  store_le<uint32_t>(message, kPullDoneMagic);
  Queue& q = *impl_->queue;
  RS_RETURN_IF_ERROR(q.post_message(message));
  return q.poll_until([&q] { return q.sends_done(); }, Clock::now() + timeout, "DONE");
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
  // Its events (ESTABLISHED, the source's DISCONNECTED) on a channel of its own, so that
  // this connection, not whoever waits on the listener, learns that the source left.
  auto channel = nonblocking_channel();
  if (!channel || rdma_migrate_id(raw, channel->get()) != 0) {
    rdma_reject(raw, nullptr, 0);
    return channel ? errno_status(ErrorCode::kIo, "rdma_migrate_id", errno) : channel.status();
  }
  impl->channel = std::move(*channel);
  auto param = conn_param(nullptr, 0);
  if (rdma_accept(raw, &param) != 0) return errno_status(ErrorCode::kIo, "rdma_accept", errno);
  if (security) {
    PullTarget::Impl* target = impl.get();
    auto peer_left = [target]() -> Status {
      return target->peer_left() ? Status(ErrorCode::kDisconnected,
                                          "the source closed the connection during "
                                          "authentication (its log says why)")
                                 : Status::ok();
    };
    Status a = impl->queue->authenticate(*security, PeerRole::kServer, "", "the source", peer_left);
    if (!a) return Status(ErrorCode::kMismatch, a.message());
  }
  impl->text =
      fmt::format("rdma {} <- port {}{}", device_of(raw), impl_->port, impl->queue->session_text());
  return std::unique_ptr<PullTarget>(new PullTarget(std::move(impl)));
}

}  // namespace ramshift::transport::rdma
