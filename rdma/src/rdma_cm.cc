// Connection management: rdma_cm listen/connect, the private-data handshake, and grouping
// the queues of one connection on the listener.
#include <arpa/inet.h>
#include <fcntl.h>
#include <fmt/format.h>
#include <netdb.h>
#include <poll.h>

#include <cstring>
#include <map>
#include <optional>
#include <random>

#include "cm_private_data.h"
#include "host_limits.h"
#include "peer_liveness.h"
#include "ramshift/base/byte_order.h"
#include "ramshift/base/clock.h"
#include "ramshift/base/log.h"
#include "ramshift/transport/channel_security.h"
#include "rdma.h"
#include "rdma_connection.h"
#include "rdma_tuning.h"

namespace ramshift::transport::rdma {
namespace {

using Clock = std::chrono::steady_clock;

struct CmEvent {
  rdma_cm_event_type type{};
  rdma_cm_id* id = nullptr;
  int status = 0;
  std::vector<std::byte> private_data;
};

// The next CM event on `channel` (acknowledged already), or kTimeout at `deadline`.
Result<CmEvent> next_event(rdma_event_channel* channel, Clock::time_point deadline) {
  for (;;) {
    rdma_cm_event* ev = nullptr;
    if (rdma_get_cm_event(channel, &ev) == 0) {
      CmEvent out;
      out.type = ev->event;
      out.id = ev->id;
      out.status = ev->status;
      auto* pd = static_cast<const std::byte*>(ev->param.conn.private_data);
      if (pd) out.private_data.assign(pd, pd + ev->param.conn.private_data_len);
      rdma_ack_cm_event(ev);
      return out;
    }
    if (errno != EAGAIN && errno != EWOULDBLOCK)
      return errno_status(ErrorCode::kIo, "rdma_get_cm_event", errno);
    auto left = std::chrono::duration_cast<std::chrono::milliseconds>(deadline - Clock::now());
    if (left.count() <= 0) return Status(ErrorCode::kTimeout, "no rdma_cm event in time");
    pollfd pfd{channel->fd, POLLIN, 0};
    ::poll(&pfd, 1, static_cast<int>(std::min<int64_t>(left.count(), 1000)));
  }
}

Result<EventChannel> make_channel() {
  EventChannel ch(rdma_create_event_channel());
  if (!ch) return errno_status(ErrorCode::kIo, "rdma_create_event_channel", errno);
  int fl = fcntl(ch->fd, F_GETFL);
  fcntl(ch->fd, F_SETFL, fl | O_NONBLOCK);
  return ch;
}

Result<sockaddr_storage> resolve(const Uri& uri, bool passive) {
  addrinfo hints{};
  hints.ai_family = AF_UNSPEC;
  hints.ai_socktype = SOCK_STREAM;
  hints.ai_flags = AI_NUMERICSERV | (passive ? AI_PASSIVE : 0);
  addrinfo* res = nullptr;
  std::string port = std::to_string(uri.port);
  int rc = getaddrinfo(uri.host.empty() ? nullptr : uri.host.c_str(), port.c_str(), &hints, &res);
  if (rc != 0)
    return Status(ErrorCode::kUnreachable,
                  fmt::format("cannot resolve '{}': {}", uri.host, gai_strerror(rc)));
  sockaddr_storage ss{};
  std::memcpy(&ss, res->ai_addr, res->ai_addrlen);
  freeaddrinfo(res);
  return ss;
}

std::string address_text(const sockaddr* sa) {
  char host[INET6_ADDRSTRLEN] = "?";
  uint16_t port = 0;
  if (sa && sa->sa_family == AF_INET) {
    auto* in = reinterpret_cast<const sockaddr_in*>(sa);
    inet_ntop(AF_INET, &in->sin_addr, host, sizeof host);
    port = ntohs(in->sin_port);
    return fmt::format("{}:{}", host, port);
  }
  if (sa && sa->sa_family == AF_INET6) {
    auto* in6 = reinterpret_cast<const sockaddr_in6*>(sa);
    inet_ntop(AF_INET6, &in6->sin6_addr, host, sizeof host);
    port = ntohs(in6->sin6_port);
    return fmt::format("[{}]:{}", host, port);
  }
  return "?";
}

std::string describe(rdma_cm_id* id, size_t queues) {
  return fmt::format(
      "rdma {} {} -> {} ({} queues)", id->verbs ? ibv_get_device_name(id->verbs->device) : "?",
      address_text(rdma_get_local_addr(id)), address_text(rdma_get_peer_addr(id)), queues);
}

rdma_conn_param conn_param(const std::byte* priv) {
  rdma_conn_param p{};
  p.private_data = priv;
  p.private_data_len = priv ? kPrivateBytes : 0;
  // RDMA READ both ways (post-copy faults read the source's memory), as deep as the device
  // allows: librdmacm lowers the maximum to the device's limit (16 on ConnectX, 128 on rxe).
  // Nothing is readable until memory is registered kRemoteRead, only while post-copy runs.
  p.responder_resources = RDMA_MAX_RESP_RES;
  p.initiator_depth = RDMA_MAX_INIT_DEPTH;
  p.retry_count = RetransmitPlan{}.retry_count;
  p.rnr_retry_count = 6;  // never 7 (infinite) on rxe; receives are always posted anyway
  return p;
}

// Before rdma_connect / rdma_accept: the QP's local ACK timeout, from --rdma-ack-timeout or
// derived from --peer-timeout (peer_liveness.h); rdma_cm's own when neither is set.
Status apply_ack_timeout(rdma_cm_id* id, const RdmaTuning& tuning) {
  const RetransmitPlan plan = plan_retransmits(tuning.peer_timeout, tuning.ack_timeout);
  if (plan.ack_timeout == 0) return Status::ok();
  auto t = plan.ack_timeout;
  log::debug("rdma: local ACK timeout exponent {}, {} retries", t, plan.retry_count);
  if (rdma_set_option(id, RDMA_OPTION_ID, RDMA_OPTION_ID_ACK_TIMEOUT, &t, sizeof t) != 0)
    return errno_status(ErrorCode::kIo, "rdma_set_option(ACK_TIMEOUT)", errno);
  return Status::ok();
}

// Before rdma_resolve_route: the packets' type of service, when the tuning sets one.
Status apply_tos(rdma_cm_id* id, const RdmaTuning& tuning) {
  if (tuning.tos < 0) return Status::ok();
  auto tos = static_cast<uint8_t>(tuning.tos);
  if (rdma_set_option(id, RDMA_OPTION_ID, RDMA_OPTION_ID_TOS, &tos, sizeof tos) != 0)
    return errno_status(ErrorCode::kIo, "rdma_set_option(TOS)", errno);
  return Status::ok();
}

// --rdma-device: the device an address resolved to must be the one named.
Status check_device(const ibv_context* verbs, const RdmaTuning& tuning, const std::string& addr) {
  if (tuning.device.empty() || !verbs) return Status::ok();
  const std::string name = ibv_get_device_name(verbs->device);
  if (name == tuning.device) return Status::ok();
  return Status(ErrorCode::kInvalidArgument,
                fmt::format("{} is on RDMA device {}, not --rdma-device {}; give an address of "
                            "{} (--rdma-source-ip when connecting)",
                            addr, name, tuning.device, tuning.device));
}

SharedPd alloc_pd(ibv_context* ctx, Status& err) {
  ibv_pd* pd = ibv_alloc_pd(ctx);
  if (!pd) err = errno_status(ErrorCode::kIo, "ibv_alloc_pd", errno);
  return pd ? make_shared_pd(pd) : SharedPd();
}

// Who the queues authenticate with (--tls-*): nullptr when the connection is not secured.
struct Securing {
  ChannelSecurity* security = nullptr;
  PeerRole role = PeerRole::kClient;
  std::string host;         // what the client dialled, checked against the server's certificate
  std::string peer;         // for errors: "rdma://10.9.0.1:7000", or the peer's address
  bool encrypt = false;     // --encrypt: payloads sealed (sealed_queues.h)
  bool queue_keys = false;  // both sides take a key per queue (cm_private_data.h)
  bool windows = true;      // --rdma-memory-windows
};

// Handshakes on every queue, then hands the queues to a connection on `channel`.
Result<std::unique_ptr<Connection>> finish(EventChannel channel, SharedPd pd,
                                           std::vector<std::unique_ptr<RdmaQueue>> queues,
                                           Clock::time_point deadline, const Securing& sec) {
  const auto t0 = Clock::now();
  // A peer that leaves before its hello shows on the CM channel (non-blocking): fail then,
  // rather than at the deadline, which would hold a listener that long.
  auto peer_left = [ch = channel.get()]() -> Status {
    rdma_cm_event* ev = nullptr;
    while (rdma_get_cm_event(ch, &ev) == 0) {
      const rdma_cm_event_type type = ev->event;
      rdma_ack_cm_event(ev);
      if (type == RDMA_CM_EVENT_DISCONNECTED || type == RDMA_CM_EVENT_DEVICE_REMOVAL ||
          type == RDMA_CM_EVENT_CONNECT_ERROR || type == RDMA_CM_EVENT_UNREACHABLE ||
          type == RDMA_CM_EVENT_REJECTED)
        return Status(
            ErrorCode::kDisconnected,
            fmt::format("the peer left before its queue hello ({})", rdma_event_str(type)));
    }
    return Status::ok();
  };
  // Before any hello: nothing of this side's memory is named to a peer not yet proven.
  if (sec.security) {
    for (auto& q : queues)
      RS_RETURN_IF_ERROR(q->authenticate(*sec.security, sec.role, sec.host, sec.peer, sec.encrypt,
                                         deadline, peer_left));
    log::debug("rdma: {} queue(s) authenticated in {:.0f} ms", queues.size(), ms_since(t0));
  }
  for (auto& q : queues) RS_RETURN_IF_ERROR(q->exchange_hello(deadline, peer_left));
  log::debug("rdma: queue hellos exchanged in {:.0f} ms", ms_since(t0));
  std::string text = describe(queues[0]->id(), queues.size());
  // Which keys the peer gets for one-sided access (none at all with --encrypt), and why not
  // windows, for the log.
  std::string no_windows = why_no_windows(pd->context, sec.windows);
  const bool windows = sec.queue_keys && no_windows.empty();
  if (!sec.encrypt) {
    text.pop_back();
    text += windows ? ", memory windows)" : ", region keys)";
  }
  if (const SecureSession* s = queues[0]->session()) {
    text.pop_back();  // the closing parenthesis
    text += fmt::format(", {}, peer {})", s->describe(), s->peer_identity());
    if (sec.role == PeerRole::kServer)
      log::info("accepted a TLS connection from {} ({})", s->peer_identity(), s->describe());
  }
  auto conn = std::make_unique<RdmaConnection>(std::move(channel), std::move(pd), std::move(queues),
                                               std::move(text), sec.queue_keys, no_windows);
  if (sec.encrypt) RS_RETURN_IF_ERROR(conn->seal_payloads());
  return std::unique_ptr<Connection>(std::move(conn));
}

class RdmaListener final : public Listener {
 public:
  RdmaListener(EventChannel ch, CmId id, Uri bound, TransportOptions options, RdmaTuning tuning,
               std::shared_ptr<ChannelSecurity> security, bool encrypt)
      : channel_(std::move(ch)),
        id_(std::move(id)),
        bound_(std::move(bound)),
        options_(std::move(options)),
        tuning_(tuning),
        security_(std::move(security)),
        encrypt_(encrypt) {}
  ~RdmaListener() override {
    groups_.clear();  // queues (their ids) before the listening id and the channel
  }

  Uri address() const override { return bound_; }

  Result<std::unique_ptr<Connection>> accept(Millis timeout) override {
    auto deadline = Clock::now() + timeout;
    for (;;) {
      const auto group_deadline = expire_groups();
      auto ev = next_event(channel_.get(), std::min(deadline, group_deadline));
      if (!ev) {
        if (ev.status().code() != ErrorCode::kTimeout) return ev.status();
        if (Clock::now() < deadline) continue;  // a half-made connection's deadline
        return Status(ErrorCode::kTimeout,
                      fmt::format("no rdma connection within {} ms", timeout.count()));
      }
      if (ev->type == RDMA_CM_EVENT_CONNECT_REQUEST) {
        on_request(*ev);
      } else if (ev->type == RDMA_CM_EVENT_ESTABLISHED) {
        auto it = owner_.find(ev->id);
        if (it == owner_.end()) continue;
        Group& g = groups_[it->second];
        if (++g.established < g.count) continue;
        uint64_t token = it->second;
        auto conn = complete(token);
        if (conn) return conn;
        log::warn("rdma: a connection failed during its handshake: {}", conn.status().message());
      } else if (ev->id != id_.get()) {
        // A queue of a half-made connection failed or left: drop the whole group.
        auto it = owner_.find(ev->id);
        if (it != owner_.end()) {
          log::warn("rdma: a connecting peer went away ({})", rdma_event_str(ev->type));
          drop(it->second);
        }
      }
    }
  }

 private:
  struct Group {
    uint16_t count = 0;
    uint16_t established = 0;
    Clock::time_point expires{};  // set by its first connect request
    std::string peer;             // its first queue's address, for the log
    bool queue_keys = false;      // its requests set kCapQueueKeys
    SharedPd pd;
    std::vector<std::unique_ptr<RdmaQueue>> queues;
  };

  // A connection whose queues do not all arrive and establish within the connect timeout
  // (10 s unless set; a sound source's connect() gives up after its own --connect-timeout,
  // 10 s by default, with every queue requested at once) is dropped: until then each queue
  // that did arrive holds a pinned receive ring, so a peer that connects some queues and
  // falls silent must not keep them. Returns the earliest deadline still pending.
  Clock::time_point expire_groups() {
    const auto now = Clock::now();
    auto earliest = Clock::time_point::max();
    for (auto it = groups_.begin(); it != groups_.end();) {
      Group& g = it->second;
      if (now < g.expires) {
        earliest = std::min(earliest, g.expires);
        ++it;
        continue;
      }
      size_t accepted = 0;
      for (auto& q : g.queues) accepted += q ? 1 : 0;
      log::warn(
          "rdma: gave up on a half-made connection from {}: {} of its {} queues asked to "
          "connect and {} established within {:.1f} s (the connect timeout); its queues and "
          "pinned memory are released",
          g.peer, accepted, g.count, g.established,
          static_cast<double>(options_.connect_timeout.count()) / 1000.0);
      for (auto& q : g.queues)
        if (q) owner_.erase(q->id());
      it = groups_.erase(it);
    }
    return earliest;
  }

  void drop(uint64_t token) {
    auto& g = groups_[token];
    for (auto& q : g.queues)
      if (q) owner_.erase(q->id());
    groups_.erase(token);
  }

  // `tell`: the reason the peer is given (in the reject's private data); none when empty.
  void reject(rdma_cm_id* raw, const Status& why, std::string_view tell = {}) {
    log::warn("rdma: refused a connect request: {}", why.message());
    std::byte priv[4 + kRejectBytes];
    store_le<uint32_t>(priv, kRejectMagic);
    tell = tell.substr(0, kRejectBytes);
    std::memcpy(priv + 4, tell.data(), tell.size());
    if (tell.empty())
      rdma_reject(raw, nullptr, 0);
    else
      rdma_reject(raw, priv, static_cast<uint8_t>(4 + tell.size()));
    rdma_destroy_id(raw);
  }

  void on_request(const CmEvent& ev) {
    auto p = decode_private(ev.private_data);
    if (!p) return reject(ev.id, p.status());
    if (p->authenticated && !security_)
      return reject(ev.id,
                    Status(ErrorCode::kMismatch,
                           "the peer speaks TLS, but this side was started without --tls-dir or "
                           "--tls-psk: give both sides the same --tls-* options"),
                    "it runs without TLS (no --tls-dir or --tls-psk); give both sides the same "
                    "--tls-* options");
    if (!p->authenticated && security_)
      return reject(ev.id,
                    Status(ErrorCode::kMismatch,
                           "the peer connected without TLS, and this side requires it "
                           "(--tls-dir or --tls-psk); refused before anything was exchanged"),
                    "it accepts only TLS connections (it runs with --tls-dir or --tls-psk); "
                    "start this side with the same --tls-* options");
    Group& g = groups_[p->token];
    if (g.count == 0) {
      g.count = p->queue_count;
      g.queue_keys = p->queue_keys;
      g.queues.resize(g.count);
      g.expires = Clock::now() + options_.connect_timeout;
      g.peer = address_text(rdma_get_peer_addr(ev.id));
    }
    if (g.count != p->queue_count || g.queues[p->queue] || g.queue_keys != p->queue_keys)
      return reject(ev.id, Status(ErrorCode::kProtocol, "inconsistent queue in a connection"));
    if (!g.pd) {
      Status err;
      g.pd = alloc_pd(ev.id->verbs, err);
      if (!g.pd) return reject(ev.id, err);
    } else if (g.pd->context != ev.id->verbs) {
      return reject(ev.id, Status(ErrorCode::kMismatch, "queues arrived on different devices"));
    }
    rdma_cm_id* raw = ev.id;
    const auto t0 = Clock::now();
    auto q = RdmaQueue::create(CmId(raw), g.pd, tuning_, p->queue, security_ != nullptr);
    if (!q) {
      log::warn("rdma: cannot set up queue {}: {}", p->queue, q.status().message());
      return;  // the id died with the failed queue, which refuses the peer
    }
    log::debug("rdma: queue {} of a connecting peer set up in {:.0f} ms", p->queue, ms_since(t0));
    if (Status st = apply_ack_timeout((*q)->id(), tuning_); !st) {
      log::warn("rdma: {}", st.message());
      return;
    }
    std::byte priv[kPrivateBytes];
    encode_private(priv, *p);
    rdma_conn_param param = conn_param(priv);
    if (rdma_accept((*q)->id(), &param) != 0) {
      log::warn("rdma: rdma_accept failed: {}", std::strerror(errno));
      return;
    }
    owner_[(*q)->id()] = p->token;
    g.queues[p->queue] = std::move(q).value();
  }

  Result<std::unique_ptr<Connection>> complete(uint64_t token) {
    Group g = std::move(groups_[token]);
    for (auto& q : g.queues) owner_.erase(q->id());
    groups_.erase(token);
    RS_ASSIGN_OR_RETURN(EventChannel ch, make_channel());
    for (auto& q : g.queues)
      if (rdma_migrate_id(q->id(), ch.get()) != 0)
        return errno_status(ErrorCode::kIo, "rdma_migrate_id", errno);
    // The handshake gets its own budget: accept()'s timeout was for a peer to show up (and
    // a listener serving one migration after another waits for one without end, so a peer
    // that connects and never says hello must not hold it longer than a connect may take).
    auto hello_deadline = Clock::now() + options_.connect_timeout;
    Securing sec{security_.get(),
                 PeerRole::kServer,
                 "",
                 address_text(rdma_get_peer_addr(g.queues[0]->id())),
                 encrypt_,
                 g.queue_keys,
                 tuning_.memory_windows};
    return finish(std::move(ch), std::move(g.pd), std::move(g.queues), hello_deadline, sec);
  }

  EventChannel channel_;
  std::map<uint64_t, Group> groups_;
  std::map<rdma_cm_id*, uint64_t> owner_;
  CmId id_;
  Uri bound_;
  TransportOptions options_;
  RdmaTuning tuning_;
  std::shared_ptr<ChannelSecurity> security_;  // null: plaintext
  bool encrypt_ = false;                       // --encrypt
};

// What an unexpected CM event during connect means, for the person who reads it.
Status connect_error(const CmEvent& ev, const Uri& uri) {
  switch (ev.type) {
    case RDMA_CM_EVENT_ADDR_ERROR:
      return Status(ErrorCode::kUnreachable,
                    fmt::format("cannot resolve {} to an RDMA device (status {}): no RDMA "
                                "device has a route to it",
                                uri.host, ev.status));
    case RDMA_CM_EVENT_ROUTE_ERROR:
      return Status(ErrorCode::kUnreachable, fmt::format("no RDMA route to {}", uri.host));
    case RDMA_CM_EVENT_REJECTED:
      if (ev.private_data.size() > 4 && load_le<uint32_t>(ev.private_data.data()) == kRejectMagic) {
        std::string text;
        for (size_t i = 4; i < std::min(ev.private_data.size(), 4 + kRejectBytes); ++i) {
          const char c = static_cast<char>(ev.private_data[i]);
          if (c == 0) break;                          // the rest of the fixed-size REJ private data
          text += (c >= 0x20 && c < 0x7f) ? c : '?';  // the peer's words, printed, never obeyed
        }
        return Status(ErrorCode::kMismatch,
                      fmt::format("{} refused this connection: {}", uri.to_string(), text));
      }
      return Status(ErrorCode::kUnreachable,
                    fmt::format("connection refused by {} (is `ramshift receive` listening "
                                "there on rdma://?)",
                                uri.to_string()));
    default:
      return Status(ErrorCode::kUnreachable,
                    fmt::format("rdma connect to {} failed: {} (status {})", uri.to_string(),
                                rdma_event_str(ev.type), ev.status));
  }
}

}  // namespace

Result<std::unique_ptr<Listener>> listen(const Uri& uri, const TransportOptions& options) {
  RS_ASSIGN_OR_RETURN(RdmaTuning tuning, tuning_from(options));
  RS_RETURN_IF_ERROR(require_device());
  RS_ASSIGN_OR_RETURN(sockaddr_storage addr, resolve(uri, true));
  RS_ASSIGN_OR_RETURN(EventChannel ch, make_channel());
  rdma_cm_id* raw = nullptr;
  if (rdma_create_id(ch.get(), &raw, nullptr, RDMA_PS_TCP) != 0)
    return errno_status(ErrorCode::kIo, "rdma_create_id", errno);
  CmId id(raw);
  if (rdma_bind_addr(raw, reinterpret_cast<sockaddr*>(&addr)) != 0) {
    int err = errno;
    if (err == EADDRINUSE)
      return Status(ErrorCode::kAddressInUse, fmt::format("{} is already in use", uri.to_string()),
                    err);
    return errno_status(
        ErrorCode::kUnreachable,
        fmt::format("cannot listen on {} (is it the address of an RDMA device?)", uri.to_string()),
        err);
  }
  if (!tuning.device.empty() && !raw->verbs)
    return Status(ErrorCode::kInvalidArgument,
                  fmt::format("--rdma-device {}: listen on an address of that device, not {}",
                              tuning.device, uri.host.empty() ? "any address" : uri.host));
  RS_RETURN_IF_ERROR(check_device(raw->verbs, tuning, uri.host));
  RS_RETURN_IF_ERROR(apply_tos(raw, tuning));  // for what rdma_cm sends from this side
  RS_ASSIGN_OR_RETURN(auto security, channel_security(options.settings, PeerRole::kServer));
  RS_ASSIGN_OR_RETURN(const bool encrypt, options.settings.flag("tls-encrypt", false));
  if (rdma_listen(raw, 64) != 0) return errno_status(ErrorCode::kIo, "rdma_listen", errno);
  Uri bound = uri;
  bound.port = ntohs(rdma_get_src_port(raw));
  return std::unique_ptr<Listener>(new RdmaListener(std::move(ch), std::move(id), bound, options,
                                                    tuning, std::move(security), encrypt));
}

Result<std::unique_ptr<Connection>> connect(const Uri& uri, uint32_t queues,
                                            const TransportOptions& options) {
  if (queues == 0 || queues > kMaxQueues)
    return Status(ErrorCode::kInvalidArgument, fmt::format("{} queues is outside 1..256", queues));
  RS_ASSIGN_OR_RETURN(RdmaTuning tuning, tuning_from(options));
  RS_RETURN_IF_ERROR(require_device());
  RS_ASSIGN_OR_RETURN(sockaddr_storage addr, resolve(uri, false));
  std::optional<sockaddr_storage> source;
  if (!tuning.source_ip.empty()) {
    auto src = resolve(Uri{.scheme = "rdma", .host = tuning.source_ip, .port = 0}, false);
    if (!src) return src.status().with_context("--rdma-source-ip");
    source = *src;
  }
  RS_ASSIGN_OR_RETURN(auto security, channel_security(options.settings, PeerRole::kClient));
  RS_ASSIGN_OR_RETURN(EventChannel ch, make_channel());
  const auto deadline = Clock::now() + options.connect_timeout;
  const int step_ms = static_cast<int>(std::max<int64_t>(options.connect_timeout.count(), 100));
  std::random_device rd;
  PrivateData priv_in{(uint64_t{rd()} << 32) | rd(), 0, static_cast<uint16_t>(queues),
                      security != nullptr, /*queue_keys=*/true};
  // Every queue goes through resolve-address, resolve-route and connect at the same time:
  // each step is a round trip, and doing them queue after queue multiplied the set-up time.
  std::vector<CmId> ids(queues);
  std::vector<std::unique_ptr<RdmaQueue>> qs(queues);
  const auto t0 = Clock::now();
  SharedPd pd;
  for (uint32_t q = 0; q < queues; ++q) {
    rdma_cm_id* raw = nullptr;
    if (rdma_create_id(ch.get(), &raw, reinterpret_cast<void*>(uintptr_t{q}), RDMA_PS_TCP) != 0)
      return errno_status(ErrorCode::kIo, "rdma_create_id", errno);
    ids[q].reset(raw);
    sockaddr* src = source ? reinterpret_cast<sockaddr*>(&*source) : nullptr;
    if (rdma_resolve_addr(raw, src, reinterpret_cast<sockaddr*>(&addr), step_ms) != 0)
      return errno_status(ErrorCode::kUnreachable,
                          fmt::format("cannot resolve {} to an RDMA device", uri.host), errno);
  }
  for (uint32_t established = 0; established < queues;) {
    auto ev = next_event(ch.get(), deadline);
    if (!ev) {
      if (ev.status().code() == ErrorCode::kTimeout)
        return Status(ErrorCode::kTimeout,
                      fmt::format("rdma connect to {} timed out ({} of {} queues connected)",
                                  uri.to_string(), established, queues));
      return ev.status();
    }
    const auto q = static_cast<uint32_t>(reinterpret_cast<uintptr_t>(ev->id->context));
    if (q >= queues) continue;
    switch (ev->type) {
      case RDMA_CM_EVENT_ADDR_RESOLVED:
        RS_RETURN_IF_ERROR(
            check_device(ev->id->verbs, tuning,
                         tuning.source_ip.empty() ? "the route to " + uri.host : tuning.source_ip));
        RS_RETURN_IF_ERROR(apply_tos(ev->id, tuning));
        if (rdma_resolve_route(ev->id, step_ms) != 0)
          return errno_status(ErrorCode::kUnreachable, fmt::format("no RDMA route to {}", uri.host),
                              errno);
        break;
      case RDMA_CM_EVENT_ROUTE_RESOLVED: {
        if (!pd) {
          Status err;
          pd = alloc_pd(ev->id->verbs, err);
          if (!pd) return err;
        } else if (pd->context != ev->id->verbs) {
          return Status(ErrorCode::kMismatch, "queues resolved to different RDMA devices");
        }
        log::debug("rdma: queue {} route resolved at {:.0f} ms", q, ms_since(t0));
        RS_ASSIGN_OR_RETURN(
            qs[q], RdmaQueue::create(std::move(ids[q]), pd, tuning, q, security != nullptr));
        log::debug("rdma: queue {} created at {:.0f} ms", q, ms_since(t0));
        RS_RETURN_IF_ERROR(apply_ack_timeout(qs[q]->id(), tuning));
        std::byte priv[kPrivateBytes];
        PrivateData mine = priv_in;
        mine.queue = static_cast<uint16_t>(q);
        encode_private(priv, mine);
        rdma_conn_param param = conn_param(priv);
        if (rdma_connect(qs[q]->id(), &param) != 0)
          return errno_status(ErrorCode::kUnreachable, "rdma_connect", errno);
        break;
      }
      case RDMA_CM_EVENT_ESTABLISHED:
        log::debug("rdma: queue {} established at {:.0f} ms", q, ms_since(t0));
        ++established;
        break;
      default:
        return connect_error(*ev, uri);
    }
  }
  RS_ASSIGN_OR_RETURN(const bool encrypt, options.settings.flag("tls-encrypt", false));
  // The listener accepted kCapQueueKeys (an older one refuses the bit): keys per queue.
  Securing sec{security.get(), PeerRole::kClient,    uri.host, uri.to_string(), encrypt,
               true,           tuning.memory_windows};
  return finish(std::move(ch), std::move(pd), std::move(qs), deadline, sec);
}

}  // namespace ramshift::transport::rdma
