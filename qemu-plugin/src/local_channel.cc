#include "local_channel.h"

#include "ramshift/qemu/bridge.h"

#include <fcntl.h>
#include <poll.h>
#include <sys/eventfd.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/un.h>

#include <cerrno>
#include <chrono>
#include <cstring>
#include <thread>

#include <fmt/format.h>

namespace ramshift::qemu {
namespace {

Status set_nonblocking(int fd) {
  int flags = fcntl(fd, F_GETFL);
  if (flags < 0 || fcntl(fd, F_SETFL, flags | O_NONBLOCK) < 0)
    return errno_status(ErrorCode::kIo, "fcntl(O_NONBLOCK)", errno);
  return Status::ok();
}

// Waits for `events` on `fd` or the wake eventfd. kCancelled when woken.
Status wait_for(int fd, short events, int wake, int timeout_ms = -1) {
  for (;;) {
    pollfd p[2] = {{fd, events, 0}, {wake, POLLIN, 0}};
    int n = ::poll(p, 2, timeout_ms);
    if (n < 0) {
      if (errno == EINTR) continue;
      return errno_status(ErrorCode::kIo, "poll", errno);
    }
    if (n == 0) return Status(ErrorCode::kTimeout, "timed out");
    if (p[1].revents) return Status(ErrorCode::kCancelled, "bridge aborted");
    return Status::ok();
  }
}

Result<sockaddr_un> unix_address(const std::string& path) {
  sockaddr_un a{};
  a.sun_family = AF_UNIX;
  if (path.empty() || path.size() >= sizeof a.sun_path)
    return Status(ErrorCode::kInvalidArgument,
                  fmt::format("unix socket path '{}' is empty or longer than {} bytes", path,
                              sizeof a.sun_path - 1));
  std::memcpy(a.sun_path, path.data(), path.size());
  return a;
}

}  // namespace

Result<LocalChannel> LocalChannel::from_socket(UniqueFd fd) {
  LocalChannel c;
  RS_RETURN_IF_ERROR(set_nonblocking(fd.get()));
  int dup_fd = ::dup(fd.get());
  if (dup_fd < 0) return errno_status(ErrorCode::kIo, "dup", errno);
  c.write_fd_.reset(dup_fd);
  c.read_fd_ = std::move(fd);
  c.socket_ = true;
  int e = ::eventfd(0, EFD_CLOEXEC | EFD_NONBLOCK);
  if (e < 0) return errno_status(ErrorCode::kIo, "eventfd", errno);
  c.wake_.reset(e);
  return c;
}

Result<LocalChannel> LocalChannel::from_stdio() {
  LocalChannel c;
  int in = ::dup(STDIN_FILENO), out = ::dup(STDOUT_FILENO);
  if (in < 0 || out < 0) return errno_status(ErrorCode::kIo, "dup(stdio)", errno);
  c.read_fd_.reset(in);
  c.write_fd_.reset(out);
  // stdout now belongs to the channel: anything else printed there would corrupt QEMU's
  // stream, so point the process's stdout at stderr.
  ::dup2(STDERR_FILENO, STDOUT_FILENO);
  RS_RETURN_IF_ERROR(set_nonblocking(in));
  RS_RETURN_IF_ERROR(set_nonblocking(out));
  int e = ::eventfd(0, EFD_CLOEXEC | EFD_NONBLOCK);
  if (e < 0) return errno_status(ErrorCode::kIo, "eventfd", errno);
  c.wake_.reset(e);
  return c;
}

Result<size_t> LocalChannel::read_some(std::span<std::byte> out) {
  for (;;) {
    ssize_t n = ::read(read_fd_.get(), out.data(), out.size());
    if (n >= 0) return static_cast<size_t>(n);
    if (errno == EINTR) continue;
    if (errno == EAGAIN) {
      RS_RETURN_IF_ERROR(wait_for(read_fd_.get(), POLLIN, wake_.get()));
      continue;
    }
    if (errno == ECONNRESET)
      return errno_status(ErrorCode::kDisconnected, "QEMU reset the connection", errno);
    return errno_status(ErrorCode::kIo, "reading from QEMU", errno);
  }
}

Status LocalChannel::write_all(std::span<const std::byte> data) {
  while (!data.empty()) {
    ssize_t n = socket_ ? ::send(write_fd_.get(), data.data(), data.size(), MSG_NOSIGNAL)
                        : ::write(write_fd_.get(), data.data(), data.size());
    if (n > 0) {
      data = data.subspan(static_cast<size_t>(n));
      continue;
    }
    if (n < 0 && errno == EINTR) continue;
    if (n < 0 && errno == EAGAIN) {
      RS_RETURN_IF_ERROR(wait_for(write_fd_.get(), POLLOUT, wake_.get()));
      continue;
    }
    if (n < 0 && (errno == EPIPE || errno == ECONNRESET))
      return errno_status(ErrorCode::kDisconnected, "QEMU closed its end", errno);
    return errno_status(ErrorCode::kIo, "writing to QEMU", errno);
  }
  return Status::ok();
}

void LocalChannel::close_write() {
  if (socket_)
    ::shutdown(write_fd_.get(), SHUT_WR);
  else
    write_fd_.reset();
}

void LocalChannel::abort() {
  uint64_t one = 1;
  if (wake_.valid()) (void)!::write(wake_.get(), &one, sizeof one);
  // A socket shut down both ways tells QEMU at once; a pipe is closed when we exit.
  if (socket_) ::shutdown(read_fd_.get(), SHUT_RDWR);
}

Result<UnixListener> UnixListener::open(const std::string& path) {
  RS_ASSIGN_OR_RETURN(sockaddr_un a, unix_address(path));
  UnixListener l;
  l.fd_.reset(::socket(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC | SOCK_NONBLOCK, 0));
  if (!l.fd_.valid()) return errno_status(ErrorCode::kIo, "socket(AF_UNIX)", errno);
  struct stat st;
  if (::lstat(path.c_str(), &st) == 0) {
    if (!S_ISSOCK(st.st_mode))
      return Status(ErrorCode::kInvalidArgument,
                    fmt::format("{} exists and is not a socket; refusing to replace it", path));
    ::unlink(path.c_str());  // stale socket from an earlier run
  }
  if (::bind(l.fd_.get(), reinterpret_cast<sockaddr*>(&a), sizeof a) < 0)
    return errno_status(errno == EADDRINUSE ? ErrorCode::kAddressInUse : ErrorCode::kIo,
                        "bind " + path, errno);
  l.path_ = path;
  if (::listen(l.fd_.get(), 64) < 0) return errno_status(ErrorCode::kIo, "listen " + path, errno);
  return l;
}

UnixListener::~UnixListener() {
  if (fd_.valid() && !path_.empty()) ::unlink(path_.c_str());
}

Result<UniqueFd> UnixListener::accept(int timeout_ms) {
  for (;;) {
    int fd = ::accept4(fd_.get(), nullptr, nullptr, SOCK_CLOEXEC);
    if (fd >= 0) return UniqueFd(fd);
    if (errno == EINTR || errno == ECONNABORTED) continue;
    if (errno != EAGAIN) return errno_status(ErrorCode::kIo, "accept on " + path_, errno);
    pollfd p{fd_.get(), POLLIN, 0};
    int n = ::poll(&p, 1, timeout_ms);
    if (n == 0) return Status(ErrorCode::kTimeout, "no connection from QEMU");
    if (n < 0 && errno != EINTR) return errno_status(ErrorCode::kIo, "poll", errno);
  }
}

Result<UniqueFd> connect_unix(const std::string& path, int timeout_ms) {
  RS_ASSIGN_OR_RETURN(sockaddr_un a, unix_address(path));
  auto deadline = std::chrono::steady_clock::now() + std::chrono::milliseconds(timeout_ms);
  for (;;) {
    UniqueFd fd(::socket(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0));
    if (!fd.valid()) return errno_status(ErrorCode::kIo, "socket(AF_UNIX)", errno);
    if (::connect(fd.get(), reinterpret_cast<sockaddr*>(&a), sizeof a) == 0) return fd;
    int err = errno;
    bool retry = err == ENOENT || err == ECONNREFUSED || err == EAGAIN;
    if (!retry || std::chrono::steady_clock::now() >= deadline)
      return errno_status(ErrorCode::kUnreachable,
                          fmt::format("destination QEMU is not listening at {}", path), err);
    std::this_thread::sleep_for(std::chrono::milliseconds(50));
  }
}

Result<std::string> parse_unix_uri(const std::string& text) {
  if (text.rfind("unix:", 0) != 0 || text.size() == 5)
    return Status(ErrorCode::kInvalidArgument,
                  fmt::format("'{}' is not a unix socket address; expected unix:PATH, e.g. "
                              "unix:/run/qemu-mig.sock",
                              text));
  return text.substr(5);
}

}  // namespace ramshift::qemu
