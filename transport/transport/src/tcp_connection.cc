#include <fmt/format.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <poll.h>
#include <sys/socket.h>
#include <sys/uio.h>

#include <atomic>
#include <cerrno>
#include <climits>
#include <cstring>
#include <map>
#include <random>
#include <vector>

#include "ramshift/base/byte_order.h"
#include "ramshift/base/log.h"
#include "tcp.h"
#include "tcp_greeting.h"
#include "tcp_socket.h"

namespace ramshift::transport::tcp {
namespace {

using Clock = std::chrono::steady_clock;

// Same limit on every backend: the largest wire frame plus headroom.
constexpr size_t kMaxMessage = (32u << 20) + 64;
constexpr uint32_t kMaxQueues = 256;
// Why 2 MiB: several 256 KiB batches per recv() call, well under the socket's own buffer.
constexpr size_t kInitialRecvBuffer = 2u << 20;
constexpr size_t kLengthPrefix = 4;
// Why 512 KiB: room for two default batches (256 KiB) before a recv() would be short.
constexpr size_t kCompactBelow = 512u << 10;

struct Queue {
  UniqueFd fd;
  // TLS (--tls-dir / --tls-psk): every byte goes through it; null on a plaintext connection.
  // Declared after fd: destroyed before the socket it uses is closed.
  std::unique_ptr<SecureStream> tls;
  std::vector<ConstBuffer> tls_pieces;  // reused gather list for tls->write
  // Send side: the unsent tail of a partly written message (at most one message).
  std::vector<std::byte> pending;
  size_t pending_off = 0;
  // Receive side: bytes [start, end) are received and not yet delivered.
  std::vector<std::byte> rbuf;
  size_t start = 0;
  size_t end = 0;
  bool eof = false;
};

// One socket of a connection, and its TLS stream when the connection is secured.
struct QueueSocket {
  UniqueFd fd;
  std::unique_ptr<SecureStream> tls;
};

class TcpConnection final : public Connection {
 public:
  explicit TcpConnection(std::vector<QueueSocket> sockets) : queues_(sockets.size()) {
    for (size_t i = 0; i < sockets.size(); ++i) {
      queues_[i].fd = std::move(sockets[i].fd);
      queues_[i].tls = std::move(sockets[i].tls);
      queues_[i].rbuf.resize(kInitialRecvBuffer);
    }
    caps_.max_message = kMaxMessage;
    caps_.max_queues = kMaxQueues;
    local_ = local_address(queues_[0].fd.get());
    peer_ = peer_address(queues_[0].fd.get());
    if (queues_[0].tls)
      security_ =
          fmt::format(", {}, peer {}", queues_[0].tls->describe(), queues_[0].tls->peer_identity());
  }
  ~TcpConnection() override { close(); }

  const Capabilities& capabilities() const override { return caps_; }
  uint32_t queue_count() const override { return static_cast<uint32_t>(queues_.size()); }
  std::string describe() const override {
    return fmt::format("tcp {} -> {} ({} queues{})", local_, peer_, queues_.size(), security_);
  }
  std::string transport_name() const override { return "tcp"; }

  Result<MemoryKey> register_memory(std::span<std::byte> memory, MemoryAccess) override {
    return MemoryKey{reinterpret_cast<uint64_t>(memory.data()), memory.size(), 0, {}};
  }
  Status post_write(uint32_t, std::span<const RemoteWrite>) override {
    return no_remote_writes(transport_name());
  }

  Status post_send(uint32_t queue, std::span<const ConstBuffer> segments) override {
    RS_RETURN_IF_ERROR(check(queue));
    Queue& q = queues_[queue];
    if (closed_.load()) return closed_status();
    if (has_unsent(q)) {
      RS_RETURN_IF_ERROR(drain(q));
      if (has_unsent(q)) return Status(ErrorCode::kWouldBlock, "tcp send buffer full");
    }
    size_t total = 0;
    for (auto s : segments) total += s.size();
    if (total > kMaxMessage)
      return Status(
          ErrorCode::kInvalidArgument,
          fmt::format("message of {} bytes exceeds the {}-byte limit", total, kMaxMessage));
    std::byte prefix[kLengthPrefix];
    store_le<uint32_t>(prefix, static_cast<uint32_t>(total));
    if (q.tls) {
      q.tls_pieces.assign(1, ConstBuffer(prefix, kLengthPrefix));
      q.tls_pieces.insert(q.tls_pieces.end(), segments.begin(), segments.end());
      return map_tls(q.tls->write(q.tls_pieces));
    }
    // Why 1042: a page batch may be a header, one piece per page (1024 pages at most) and
    // its entries, plus the frame header and our length prefix. The kernel takes at most
    // IOV_MAX (1024) pieces per call; the rest goes through the partial-write path below.
    iovec iov[1042];
    size_t n = 0;
    iov[n++] = {prefix, kLengthPrefix};
    for (auto s : segments) {
      if (s.empty()) continue;
      if (n == std::size(iov))
        return Status(ErrorCode::kInvalidArgument, "message has more than 1041 segments");
      iov[n++] = {const_cast<std::byte*>(s.data()), s.size()};
    }
    msghdr msg{};
    msg.msg_iov = iov;
    msg.msg_iovlen = std::min<size_t>(n, IOV_MAX);
    ssize_t r;
    do r = ::sendmsg(q.fd.get(), &msg, MSG_NOSIGNAL | MSG_DONTWAIT);
    while (r < 0 && errno == EINTR);
    if (r < 0) {
      if (errno == EAGAIN) return Status(ErrorCode::kWouldBlock, "tcp send buffer full");
      return send_error(errno);
    }
    size_t sent = static_cast<size_t>(r);
    if (sent == total + kLengthPrefix) return Status::ok();
    // Partly sent: keep the rest (the message is accepted; the caller's buffers are free).
    q.pending.clear();
    q.pending_off = 0;
    size_t skip = sent;
    for (size_t i = 0; i < n; ++i) {
      auto* base = static_cast<std::byte*>(iov[i].iov_base);
      size_t len = iov[i].iov_len;
      if (skip >= len) {
        skip -= len;
        continue;
      }
      q.pending.insert(q.pending.end(), base + skip, base + len);
      skip = 0;
    }
    return Status::ok();
  }

  Status wait_writable(uint32_t queue, Millis timeout) override {
    RS_RETURN_IF_ERROR(check(queue));
    auto deadline = Clock::now() + timeout;
    Queue& q = queues_[queue];
    for (;;) {
      if (closed_.load()) return closed_status();
      Status w = wait_fd(q.fd.get(), POLLOUT, deadline);
      if (!w)
        return w.code() == ErrorCode::kTimeout ? Status(ErrorCode::kTimeout, "tcp queue still full")
                                               : w;
      RS_RETURN_IF_ERROR(drain(q));
      if (!has_unsent(q)) return Status::ok();
    }
  }

  Status flush(uint32_t queue, Millis timeout) override {
    RS_RETURN_IF_ERROR(check(queue));
    if (!has_unsent(queues_[queue])) return Status::ok();
    return wait_writable(queue, timeout);
  }

  Result<size_t> poll(uint32_t queue, std::span<ConstBuffer> out, Millis timeout) override {
    RS_RETURN_IF_ERROR(check(queue));
    Queue& q = queues_[queue];
    // The previous poll's views expire now. Move the undelivered bytes to the front only
    // when the free tail is small: copying a partial batch on every poll costs a few
    // percent of all received bytes.
    if (q.start > 0 && (q.start == q.end || q.rbuf.size() - q.end < kCompactBelow)) compact(q);
    auto deadline = Clock::now() + timeout;
    size_t n = 0;
    for (;;) {
      // Deliver every complete message already buffered.
      while (n < out.size() && q.end - q.start >= kLengthPrefix) {
        size_t len = load_le<uint32_t>(q.rbuf.data() + q.start);
        if (len == kRefusalMarker) {
          // The listener refused this socket and says why (tcp_greeting.h).
          if (q.end - q.start < 2 * kLengthPrefix && !q.eof) break;
          size_t text = q.end - q.start >= 2 * kLengthPrefix
                            ? load_le<uint32_t>(q.rbuf.data() + q.start + kLengthPrefix)
                            : 0;
          size_t have = q.end - q.start - std::min(q.end - q.start, 2 * kLengthPrefix);
          if (have < std::min<size_t>(text, kMaxRefusalText) && !q.eof) break;
          close();
          return refused_by(
              peer_, std::string_view(
                         reinterpret_cast<const char*>(q.rbuf.data()) + q.start + 2 * kLengthPrefix,
                         std::min({have, text, size_t{kMaxRefusalText}})));
        }
        if (len > kMaxMessage) {
          close();
          return Status(ErrorCode::kProtocol,
                        fmt::format("peer {} announced a {}-byte message; the limit is {}", peer_,
                                    len, kMaxMessage));
        }
        if (q.end - q.start < kLengthPrefix + len) {
          // Make room for the rest of it, only while no view points into the buffer.
          if (n == 0 && q.start + kLengthPrefix + len > q.rbuf.size()) {
            compact(q);
            if (q.rbuf.size() < kLengthPrefix + len) q.rbuf.resize(kLengthPrefix + len);
          }
          break;
        }
        out[n++] = ConstBuffer(q.rbuf.data() + q.start + kLengthPrefix, len);
        q.start += kLengthPrefix + len;
      }
      if (n > 0) return n;
      if (q.eof) {
        if (q.end > q.start)
          return Status(ErrorCode::kDisconnected,
                        fmt::format("peer {} closed the connection in the middle of a message "
                                    "({} bytes of it arrived)",
                                    peer_, q.end - q.start));
        return closed_.load() ? closed_status()
                              : Status(ErrorCode::kDisconnected,
                                       fmt::format("peer {} closed the connection", peer_));
      }
      if (closed_.load()) return closed_status();
      if (q.end == q.rbuf.size()) compact(q);  // n == 0 here: no view points into it
      if (q.tls) {
        auto got = q.tls->read(std::span(q.rbuf.data() + q.end, q.rbuf.size() - q.end));
        if (got && *got > 0) {
          q.end += *got;
          continue;
        }
        if (got) {
          q.eof = true;
          continue;
        }
        if (got.status().code() != ErrorCode::kWouldBlock) {
          if (got.status().sys_errno() == ETIMEDOUT) return timed_out_status();
          q.eof = true;
          return got.status();
        }
        Status w = wait_fd(q.fd.get(), POLLIN, deadline);
        if (!w) {
          if (w.code() == ErrorCode::kTimeout) return size_t{0};
          return w;
        }
        continue;
      }
      ssize_t r = ::recv(q.fd.get(), q.rbuf.data() + q.end, q.rbuf.size() - q.end, MSG_DONTWAIT);
      if (r > 0) {
        q.end += static_cast<size_t>(r);
        continue;
      }
      if (r == 0) {
        q.eof = true;
        continue;
      }
      if (errno == EINTR) continue;
      if (errno != EAGAIN) {
        if (errno == ETIMEDOUT) return timed_out_status();
        if (errno == ECONNRESET) {
          q.eof = true;
          return Status(ErrorCode::kDisconnected, fmt::format("connection reset by peer {}", peer_),
                        ECONNRESET);
        }
        return errno_status(ErrorCode::kIo, "recv", errno);
      }
      Status w = wait_fd(q.fd.get(), POLLIN, deadline);
      if (!w) {
        if (w.code() == ErrorCode::kTimeout) return size_t{0};
        return w;
      }
    }
  }

  void close() override {
    if (closed_.exchange(true)) return;
    // shutdown() (not close) wakes threads blocked in poll() on these sockets; the
    // descriptors themselves are closed by the destructor, after every thread has left.
    for (auto& q : queues_) ::shutdown(q.fd.get(), SHUT_RDWR);
  }

 private:
  Status check(uint32_t q) const {
    if (q >= queues_.size())
      return Status(ErrorCode::kInvalidArgument,
                    fmt::format("queue {} does not exist (connection has {})", q, queues_.size()));
    return Status::ok();
  }
  Status closed_status() const { return Status(ErrorCode::kDisconnected, "connection closed"); }
  // The peer timeout (set_peer_timeout) ran out: the peer stopped answering without closing.
  Status timed_out_status() const {
    return Status(ErrorCode::kDisconnected,
                  fmt::format("peer {} stopped answering (no acknowledgement within the peer "
                              "timeout: host down or link cut?)",
                              peer_),
                  ETIMEDOUT);
  }
  Status send_error(int err) {
    if (err == ETIMEDOUT) return timed_out_status();
    if (err == EPIPE || err == ECONNRESET)
      return Status(ErrorCode::kDisconnected, fmt::format("peer {} closed the connection", peer_),
                    err);
    return errno_status(ErrorCode::kIo, "send", err);
  }
  static bool has_unsent(const Queue& q) {
    return q.tls ? q.tls->has_unsent() : q.pending_off < q.pending.size();
  }
  // A TLS stream's errors as a plain socket's: the peer timeout keeps its own message.
  Status map_tls(Status s) const {
    if (!s && s.sys_errno() == ETIMEDOUT) return timed_out_status();
    return s;
  }
  static void compact(Queue& q) {
    std::memmove(q.rbuf.data(), q.rbuf.data() + q.start, q.end - q.start);
    q.end -= q.start;
    q.start = 0;
  }
  Status drain(Queue& q) {
    if (q.tls) {
      Status f = q.tls->flush_some();
      return f.code() == ErrorCode::kWouldBlock ? Status::ok() : map_tls(f);
    }
    while (q.pending_off < q.pending.size()) {
      ssize_t r = ::send(q.fd.get(), q.pending.data() + q.pending_off,
                         q.pending.size() - q.pending_off, MSG_NOSIGNAL | MSG_DONTWAIT);
      if (r > 0) {
        q.pending_off += static_cast<size_t>(r);
        continue;
      }
      if (r < 0 && errno == EINTR) continue;
      if (r < 0 && errno == EAGAIN) return Status::ok();
      return send_error(errno);
    }
    q.pending.clear();
    q.pending_off = 0;
    return Status::ok();
  }

  std::vector<Queue> queues_;
  Capabilities caps_;
  std::string local_;
  std::string peer_;
  std::string security_;  // ", TLS 1.3 ..., peer CN=..." on a secured connection
  std::atomic<bool> closed_{false};
};

// How long a half-formed connection (some queues arrived) may wait for the rest.
constexpr auto kGroupTimeout = std::chrono::seconds(15);
// How long an accepted socket has to send its queue hello.
constexpr auto kHelloTimeout = std::chrono::seconds(5);

class TcpListener final : public Listener {
 public:
  TcpListener(UniqueFd fd, Uri uri, Millis peer_timeout, std::shared_ptr<ChannelSecurity> security)
      : fd_(std::move(fd)),
        uri_(std::move(uri)),
        peer_timeout_(peer_timeout),
        security_(std::move(security)) {
    uri_.port = local_port(fd_.get());
  }
  Uri address() const override { return uri_; }

  Result<std::unique_ptr<Connection>> accept(Millis timeout) override {
    auto deadline = Clock::now() + timeout;
    for (;;) {
      Status w = wait_fd(fd_.get(), POLLIN, deadline);
      if (!w)
        return w.code() == ErrorCode::kTimeout
                   ? Status(ErrorCode::kTimeout,
                            fmt::format("no connection on {}", uri_.to_string()))
                   : w;
      UniqueFd s(::accept4(fd_.get(), nullptr, nullptr, SOCK_CLOEXEC | SOCK_NONBLOCK));
      if (!s.valid()) {
        if (errno == EAGAIN || errno == EINTR || errno == ECONNABORTED) continue;
        return errno_status(ErrorCode::kIo, "accept", errno);
      }
      auto greeted = greet_client(security_.get(), s.get(), Clock::now() + kHelloTimeout);
      if (!greeted) {
        log::warn("rejected a connection from {}: {}", peer_address(s.get()),
                  greeted.status().message());
        continue;
      }
      const QueueHello* hello = &greeted->hello;
      if (hello->queue_count > kMaxQueues) {
        log::warn("rejected a connection from {}: {} queues (limit {})", peer_address(s.get()),
                  hello->queue_count, kMaxQueues);
        continue;
      }
      int one = 1;
      setsockopt(s.get(), IPPROTO_TCP, TCP_NODELAY, &one, sizeof one);
      RS_RETURN_IF_ERROR(set_peer_timeout(s.get(), peer_timeout_));
      drop_stale_groups();
      Group& g = groups_[hello->nonce];
      if (g.fds.empty()) {
        g.fds.resize(hello->queue_count);
        g.started = Clock::now();
      }
      if (g.fds.size() != hello->queue_count || g.fds[hello->queue_index].fd.valid()) {
        log::warn("rejected a connection from {}: inconsistent queue hello", peer_address(s.get()));
        continue;
      }
      g.fds[hello->queue_index] = {std::move(s), std::move(greeted->stream)};
      if (++g.arrived == g.fds.size()) {
        auto sockets = std::move(g.fds);
        groups_.erase(hello->nonce);
        if (sockets[0].tls)
          log::info("accepted a TLS connection from {} ({})", sockets[0].tls->peer_identity(),
                    sockets[0].tls->describe());
        return std::unique_ptr<Connection>(std::make_unique<TcpConnection>(std::move(sockets)));
      }
    }
  }

 private:
  struct Group {
    std::vector<QueueSocket> fds;
    size_t arrived = 0;
    Clock::time_point started;
  };
  void drop_stale_groups() {
    for (auto it = groups_.begin(); it != groups_.end();) {
      if (Clock::now() - it->second.started > kGroupTimeout) {
        log::warn("dropped a connection whose queues did not all arrive within {} s",
                  std::chrono::duration_cast<std::chrono::seconds>(kGroupTimeout).count());
        it = groups_.erase(it);
      } else {
        ++it;
      }
    }
  }

  UniqueFd fd_;
  Uri uri_;
  Millis peer_timeout_;                        // set on every accepted socket (set_peer_timeout)
  std::shared_ptr<ChannelSecurity> security_;  // null: plaintext
  std::map<uint64_t, Group> groups_;
};

}  // namespace

Result<std::unique_ptr<Listener>> listen(const Uri& uri, const TransportOptions& options) {
  RS_ASSIGN_OR_RETURN(auto security, channel_security(options.settings, PeerRole::kServer));
  RS_ASSIGN_OR_RETURN(UniqueFd fd, listen_socket(uri));
  return std::unique_ptr<Listener>(
      std::make_unique<TcpListener>(std::move(fd), uri, options.peer_timeout, std::move(security)));
}

Result<std::unique_ptr<Connection>> connect(const Uri& uri, uint32_t queues,
                                            const TransportOptions& options) {
  if (queues == 0 || queues > kMaxQueues)
    return Status(ErrorCode::kInvalidArgument,
                  fmt::format("{} queues requested; tcp supports 1..{}", queues, kMaxQueues));
  RS_ASSIGN_OR_RETURN(auto security, channel_security(options.settings, PeerRole::kClient));
  auto deadline = Clock::now() + options.connect_timeout;
  std::random_device rd;
  uint64_t nonce = (uint64_t{rd()} << 32) ^ rd();
  std::vector<QueueSocket> sockets;
  for (uint32_t i = 0; i < queues; ++i) {
    RS_ASSIGN_OR_RETURN(UniqueFd fd, connect_socket(uri, deadline));
    RS_RETURN_IF_ERROR(set_peer_timeout(fd.get(), options.peer_timeout));
    QueueHello hello{static_cast<uint16_t>(i), static_cast<uint16_t>(queues), nonce};
    RS_ASSIGN_OR_RETURN(auto tls, greet_server(security.get(), fd.get(), uri, hello, deadline));
    sockets.push_back({std::move(fd), std::move(tls)});
  }
  if (sockets[0].tls)
    log::info("TLS to {}: {}, peer {}", uri.to_string(), sockets[0].tls->describe(),
              sockets[0].tls->peer_identity());
  return std::unique_ptr<Connection>(std::make_unique<TcpConnection>(std::move(sockets)));
}

}  // namespace ramshift::transport::tcp
