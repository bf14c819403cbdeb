#include "tcp_socket.h"

#include <arpa/inet.h>
#include <fcntl.h>
#include <netdb.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <poll.h>

#include <fmt/format.h>

#include <algorithm>
#include <cerrno>

#include "ramshift/base/byte_order.h"

namespace ramshift::transport::tcp {
namespace {

using Clock = std::chrono::steady_clock;

struct AddrInfo {
  addrinfo* head = nullptr;
  ~AddrInfo() {
    if (head) freeaddrinfo(head);
  }
};

Status resolve(const Uri& uri, bool passive, AddrInfo* out) {
  addrinfo hints{};
  hints.ai_family = AF_UNSPEC;
  hints.ai_socktype = SOCK_STREAM;
  hints.ai_flags = passive ? AI_PASSIVE : 0;
  std::string port = std::to_string(uri.port);
  int rc = getaddrinfo(uri.host.c_str(), port.c_str(), &hints, &out->head);
  if (rc != 0)
    return Status(ErrorCode::kUnreachable,
                  fmt::format("cannot resolve host '{}': {}", uri.host, gai_strerror(rc)));
  return Status::ok();
}

std::string format_sockaddr(const sockaddr_storage& ss) {
  char host[INET6_ADDRSTRLEN] = "?";
  uint16_t port = 0;
  if (ss.ss_family == AF_INET) {
    auto* a = reinterpret_cast<const sockaddr_in*>(&ss);
    inet_ntop(AF_INET, &a->sin_addr, host, sizeof host);
    port = ntohs(a->sin_port);
    return fmt::format("{}:{}", host, port);
  }
  if (ss.ss_family == AF_INET6) {
    auto* a = reinterpret_cast<const sockaddr_in6*>(&ss);
    inet_ntop(AF_INET6, &a->sin6_addr, host, sizeof host);
    port = ntohs(a->sin6_port);
    return fmt::format("[{}]:{}", host, port);
  }
  return "?";
}

int remaining_ms(Clock::time_point deadline) {
  auto left =
      std::chrono::duration_cast<std::chrono::milliseconds>(deadline - Clock::now()).count();
  return left <= 0 ? 0 : static_cast<int>(std::min<long long>(left, 1 << 30));
}

}  // namespace

void encode_queue_hello(const QueueHello& h, std::byte* out) {
  store_le<uint32_t>(out, kQueueHelloMagic);
  store_le<uint16_t>(out + 4, 1);
  store_le<uint16_t>(out + 6, h.queue_index);
  store_le<uint16_t>(out + 8, h.queue_count);
  store_le<uint16_t>(out + 10, 0);
  store_le<uint64_t>(out + 12, h.nonce);
  store_le<uint32_t>(out + 20, 0);
}

Result<QueueHello> decode_queue_hello(const std::byte* in) {
  if (load_le<uint32_t>(in) != kQueueHelloMagic)
    return Status(ErrorCode::kProtocol, "not a ramshift tcp peer (bad queue hello magic)");
  if (load_le<uint16_t>(in + 4) != 1)
    return Status(ErrorCode::kMismatch,
                  fmt::format("tcp queue hello version {} is not supported (this side speaks 1)",
                              load_le<uint16_t>(in + 4)));
  QueueHello h;
  h.queue_index = load_le<uint16_t>(in + 6);
  h.queue_count = load_le<uint16_t>(in + 8);
  h.nonce = load_le<uint64_t>(in + 12);
  if (load_le<uint16_t>(in + 10) != 0 || load_le<uint32_t>(in + 20) != 0)
    return Status(ErrorCode::kProtocol, "tcp queue hello: reserved bytes are not zero");
  if (h.queue_count == 0 || h.queue_index >= h.queue_count)
    return Status(ErrorCode::kProtocol, fmt::format("tcp queue hello: queue {} of {} is impossible",
                                                    h.queue_index, h.queue_count));
  return h;
}

Result<UniqueFd> listen_socket(const Uri& uri) {
  AddrInfo ai;
  RS_RETURN_IF_ERROR(resolve(uri, true, &ai));
  Status last(ErrorCode::kUnreachable, "no address to listen on");
  for (addrinfo* a = ai.head; a; a = a->ai_next) {
    UniqueFd fd(
        ::socket(a->ai_family, a->ai_socktype | SOCK_CLOEXEC | SOCK_NONBLOCK, a->ai_protocol));
    if (!fd.valid()) {
      last = errno_status(ErrorCode::kIo, "socket", errno);
      continue;
    }
    int one = 1;
    setsockopt(fd.get(), SOL_SOCKET, SO_REUSEADDR, &one, sizeof one);
    if (::bind(fd.get(), a->ai_addr, a->ai_addrlen) != 0) {
      int err = errno;
      if (err == EADDRINUSE)
        return Status(
            ErrorCode::kAddressInUse,
            fmt::format("port {} on {} is already in use; choose another port in --listen",
                        uri.port, uri.host),
            err);
      if (err == EADDRNOTAVAIL)
        return Status(ErrorCode::kInvalidArgument,
                      fmt::format("{} is not an address of this host; listen on one of its own "
                                  "addresses (or 0.0.0.0)",
                                  uri.host),
                      err);
      last = errno_status(ErrorCode::kIo, fmt::format("bind {}", uri.to_string()), err);
      continue;
    }
    // Why 128: the kernel's default somaxconn; a connection is at most 64+1 sockets.
    if (::listen(fd.get(), 128) != 0) {
      last = errno_status(ErrorCode::kIo, "listen", errno);
      continue;
    }
    return fd;
  }
  return last;
}

Result<UniqueFd> connect_socket(const Uri& uri, Clock::time_point deadline) {
  AddrInfo ai;
  RS_RETURN_IF_ERROR(resolve(uri, false, &ai));
  Status last(ErrorCode::kUnreachable, fmt::format("no address for {}", uri.host));
  for (addrinfo* a = ai.head; a; a = a->ai_next) {
    UniqueFd fd(
        ::socket(a->ai_family, a->ai_socktype | SOCK_CLOEXEC | SOCK_NONBLOCK, a->ai_protocol));
    if (!fd.valid()) {
      last = errno_status(ErrorCode::kIo, "socket", errno);
      continue;
    }
    int err = 0;
    if (::connect(fd.get(), a->ai_addr, a->ai_addrlen) != 0) {
      err = errno;
      if (err == EINPROGRESS) {
        Status w = wait_fd(fd.get(), POLLOUT, deadline);
        if (!w) {
          last = Status(ErrorCode::kUnreachable,
                        fmt::format("connecting to {} timed out (host unreachable or filtered)",
                                    uri.to_string()));
          continue;
        }
        socklen_t len = sizeof err;
        getsockopt(fd.get(), SOL_SOCKET, SO_ERROR, &err, &len);
      }
    }
    if (err == 0) {
      int one = 1;
      setsockopt(fd.get(), IPPROTO_TCP, TCP_NODELAY, &one, sizeof one);
      return fd;
    }
    if (err == ECONNREFUSED)
      last = Status(ErrorCode::kUnreachable,
                    fmt::format("connection refused by {} (is `ramshift receive` listening there?)",
                                uri.to_string()),
                    err);
    else
      last = errno_status(ErrorCode::kUnreachable,
                          fmt::format("cannot connect to {}", uri.to_string()), err);
  }
  return last;
}

Status set_peer_timeout(int fd, std::chrono::milliseconds timeout) {
  if (timeout.count() <= 0) return Status::ok();
  // Probes every fifth of the timeout (at least 1 s, the option's unit): the kernel checks
  // the user timeout when a probe is due, so a dead peer is seen within timeout + timeout/5.
  const int probe_s = static_cast<int>(std::max<int64_t>(1, timeout.count() / 5000));
  const int one = 1;
  const unsigned user_timeout_ms = static_cast<unsigned>(timeout.count());
  // Why 5 probes: with the user timeout set the kernel ends the connection on it, not on the
  // probe count; the count only has to be large enough not to end it sooner.
  const int probes = 5;
  if (setsockopt(fd, SOL_SOCKET, SO_KEEPALIVE, &one, sizeof one) != 0 ||
      setsockopt(fd, IPPROTO_TCP, TCP_KEEPIDLE, &probe_s, sizeof probe_s) != 0 ||
      setsockopt(fd, IPPROTO_TCP, TCP_KEEPINTVL, &probe_s, sizeof probe_s) != 0 ||
      setsockopt(fd, IPPROTO_TCP, TCP_KEEPCNT, &probes, sizeof probes) != 0 ||
      setsockopt(fd, IPPROTO_TCP, TCP_USER_TIMEOUT, &user_timeout_ms, sizeof user_timeout_ms) != 0)
    return errno_status(ErrorCode::kIo, "setting the peer timeout (keepalive, TCP_USER_TIMEOUT)",
                        errno);
  return Status::ok();
}

std::string local_address(int fd) {
  sockaddr_storage ss{};
  socklen_t len = sizeof ss;
  if (getsockname(fd, reinterpret_cast<sockaddr*>(&ss), &len) != 0) return "?";
  return format_sockaddr(ss);
}

std::string peer_address(int fd) {
  sockaddr_storage ss{};
  socklen_t len = sizeof ss;
  if (getpeername(fd, reinterpret_cast<sockaddr*>(&ss), &len) != 0) return "?";
  return format_sockaddr(ss);
}

uint16_t local_port(int fd) {
  sockaddr_storage ss{};
  socklen_t len = sizeof ss;
  if (getsockname(fd, reinterpret_cast<sockaddr*>(&ss), &len) != 0) return 0;
  if (ss.ss_family == AF_INET) return ntohs(reinterpret_cast<sockaddr_in*>(&ss)->sin_port);
  if (ss.ss_family == AF_INET6) return ntohs(reinterpret_cast<sockaddr_in6*>(&ss)->sin6_port);
  return 0;
}

Status wait_fd(int fd, short events, Clock::time_point deadline) {
  for (;;) {
    pollfd p{fd, events, 0};
    int rc = ::poll(&p, 1, remaining_ms(deadline));
    if (rc > 0) return Status::ok();
    if (rc == 0) return Status(ErrorCode::kTimeout, "timed out");
    if (errno != EINTR) return errno_status(ErrorCode::kIo, "poll", errno);
  }
}

Status send_all(int fd, const std::byte* data, size_t len, Clock::time_point deadline) {
  size_t done = 0;
  while (done < len) {
    ssize_t r = ::send(fd, data + done, len - done, MSG_NOSIGNAL);
    if (r > 0) {
      done += static_cast<size_t>(r);
      continue;
    }
    if (r < 0 && errno == EINTR) continue;
    if (r < 0 && errno == EAGAIN) {
      RS_RETURN_IF_ERROR(wait_fd(fd, POLLOUT, deadline));
      continue;
    }
    return errno_status(ErrorCode::kDisconnected, "send", errno);
  }
  return Status::ok();
}

Status recv_all(int fd, std::byte* data, size_t len, Clock::time_point deadline) {
  size_t done = 0;
  while (done < len) {
    ssize_t r = ::recv(fd, data + done, len - done, 0);
    if (r > 0) {
      done += static_cast<size_t>(r);
      continue;
    }
    if (r == 0) return Status(ErrorCode::kDisconnected, "peer closed the connection");
    if (errno == EINTR) continue;
    if (errno == EAGAIN) {
      RS_RETURN_IF_ERROR(wait_fd(fd, POLLIN, deadline));
      continue;
    }
    return errno_status(ErrorCode::kDisconnected, "recv", errno);
  }
  return Status::ok();
}

}  // namespace ramshift::transport::tcp
