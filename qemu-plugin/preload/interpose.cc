// The functions libramshift_qemu.so puts in front of libc's (LD_PRELOAD). Every call on a
// socket the library does not follow goes straight to libc after one atomic load (no socket
// is followed) or one shared-lock lookup. TCP sockets QEMU connects or accepts are followed
// until their first bytes show what they are; only multifd channels stay (channel.h).
// No C++ exception leaves these functions: QEMU is C.
#include <sys/socket.h>
#include <sys/uio.h>

#include <atomic>
#include <cerrno>
#include <memory>
#include <optional>
#include <shared_mutex>
#include <unordered_map>
#include <variant>

#include "channel.h"

namespace ramshift::qemu::preload {
namespace {

struct Entry {
  std::shared_ptr<SourceChannel> source;
  std::shared_ptr<DestChannel> dest;
  std::shared_ptr<std::mutex> mu = std::make_shared<std::mutex>();
};

class FdTable {
 public:
  bool empty() const { return count_.load(std::memory_order_acquire) == 0; }
  std::optional<Entry> find(int fd) {
    if (empty()) return std::nullopt;
    std::shared_lock lock(mu_);
    auto it = map_.find(fd);
    if (it == map_.end()) return std::nullopt;
    return it->second;
  }
  void add(int fd, Entry e) {
    std::unique_lock lock(mu_);
    map_[fd] = std::move(e);
    count_.store(map_.size(), std::memory_order_release);
  }
  std::optional<Entry> take(int fd) {
    if (empty()) return std::nullopt;
    std::unique_lock lock(mu_);
    auto it = map_.find(fd);
    if (it == map_.end()) return std::nullopt;
    Entry e = std::move(it->second);
    map_.erase(it);
    count_.store(map_.size(), std::memory_order_release);
    return e;
  }

 private:
  std::atomic<size_t> count_{0};
  std::shared_mutex mu_;
  std::unordered_map<int, Entry> map_;
};

FdTable& table() {
  static auto* t = new FdTable();  // never destroyed: calls may come during exit
  return *t;
}

bool is_tcp(int fd) {
  int type = 0;
  socklen_t len = sizeof type;
  sockaddr_storage ss{};
  socklen_t slen = sizeof ss;
  return getsockopt(fd, SOL_SOCKET, SO_TYPE, &type, &len) == 0 && type == SOCK_STREAM &&
         getsockname(fd, reinterpret_cast<sockaddr*>(&ss), &slen) == 0 &&
         (ss.ss_family == AF_INET || ss.ss_family == AF_INET6);
}

void follow_accepted(int fd) {
  if (fd < 0 || !settings().enabled || !is_tcp(fd)) return;
  Entry e;
  e.dest = std::make_shared<DestChannel>(fd);
  table().add(fd, std::move(e));
  prepare_listener(fd);
}

// Runs `io` on the channel end `side` picks for fd, under the entry's lock, and forgets the fd
// once the channel says it is done; an fd that has no such end takes `plain`, the call as made.
template <typename Side, typename Io, typename Plain>
ssize_t on_channel(int fd, Side side, Io io, Plain plain) {
  auto e = table().find(fd);
  if (!e || !side(*e)) return plain();
  Verdict v = Verdict::kKeep;
  ssize_t n;
  {
    std::lock_guard lock(*e->mu);
    n = io(*side(*e), v);
  }
  if (v == Verdict::kForget) table().take(fd);
  return n;
}

ssize_t do_sendmsg(int fd, const msghdr* msg, int flags) {
  return on_channel(
      fd, [](const Entry& e) { return e.source.get(); },
      [&](SourceChannel& s, Verdict& v) { return s.sendmsg(msg, flags, v); },
      [&] { return real().sendmsg(fd, msg, flags); });
}

ssize_t do_recvmsg(int fd, msghdr* msg, int flags) {
  return on_channel(
      fd, [](const Entry& e) { return e.dest.get(); },
      [&](DestChannel& d, Verdict& v) { return d.recvmsg(msg, flags, v); },
      [&] { return real().recvmsg(fd, msg, flags); });
}

template <typename F>
auto guarded(F&& f) -> decltype(f()) {
  try {
    return f();
  } catch (...) {
    errno = ENOMEM;
    return -1;
  }
}

// read/readv/write/writev on a migration channel become one recvmsg/sendmsg over the same
// iovecs, so the channel code sees a single path; any other fd takes `plain`, the call as made.
template <typename Plain>
ssize_t vectored(int fd, const iovec* iov, int cnt, bool receive, Plain plain) {
  return guarded([&]() -> ssize_t {
    auto e = table().find(fd);
    if (!e || !(receive ? e->dest != nullptr : e->source != nullptr)) return plain();
    msghdr m{};
    m.msg_iov = const_cast<iovec*>(iov);
    m.msg_iovlen = static_cast<size_t>(cnt);
    return receive ? do_recvmsg(fd, &m, 0) : do_sendmsg(fd, &m, 0);
  });
}

}  // namespace
}  // namespace ramshift::qemu::preload

using namespace ramshift::qemu::preload;

#define RS_EXPORT extern "C" __attribute__((visibility("default")))

RS_EXPORT int connect(int fd, const sockaddr* addr, socklen_t len) {
  int rc = real().connect(fd, addr, len);
  int saved = errno;
  guarded([&] {
    if ((rc == 0 || errno == EINPROGRESS) && settings().enabled && addr &&
        (addr->sa_family == AF_INET || addr->sa_family == AF_INET6) && is_tcp(fd)) {
      Entry e;
      e.source = std::make_shared<SourceChannel>(fd);
      table().add(fd, std::move(e));
    }
    return 0;
  });
  errno = saved;
  return rc;
}

RS_EXPORT int accept(int fd, sockaddr* addr, socklen_t* len) {
  int rc = real().accept(fd, addr, len);
  int saved = errno;
  guarded([&] {
    follow_accepted(rc);
    return 0;
  });
  errno = saved;
  return rc;
}

RS_EXPORT int accept4(int fd, sockaddr* addr, socklen_t* len, int flags) {
  int rc = real().accept4(fd, addr, len, flags);
  int saved = errno;
  guarded([&] {
    follow_accepted(rc);
    return 0;
  });
  errno = saved;
  return rc;
}

RS_EXPORT ssize_t sendmsg(int fd, const msghdr* msg, int flags) {
  return guarded([&] { return do_sendmsg(fd, msg, flags); });
}

RS_EXPORT ssize_t recvmsg(int fd, msghdr* msg, int flags) {
  return guarded([&] { return do_recvmsg(fd, msg, flags); });
}

RS_EXPORT ssize_t read(int fd, void* buf, size_t n) {
  if (table().empty()) return real().read(fd, buf, n);
  iovec v{buf, n};
  return vectored(fd, &v, 1, /*receive=*/true, [&] { return real().read(fd, buf, n); });
}

RS_EXPORT ssize_t readv(int fd, const iovec* iov, int cnt) {
  if (table().empty()) return real().readv(fd, iov, cnt);
  return vectored(fd, iov, cnt, /*receive=*/true, [&] { return real().readv(fd, iov, cnt); });
}

RS_EXPORT ssize_t write(int fd, const void* buf, size_t n) {
  if (table().empty()) return real().write(fd, buf, n);
  iovec v{const_cast<void*>(buf), n};
  return vectored(fd, &v, 1, /*receive=*/false, [&] { return real().write(fd, buf, n); });
}

RS_EXPORT ssize_t writev(int fd, const iovec* iov, int cnt) {
  if (table().empty()) return real().writev(fd, iov, cnt);
  return vectored(fd, iov, cnt, /*receive=*/false, [&] { return real().writev(fd, iov, cnt); });
}

RS_EXPORT int close(int fd) {
  if (table().empty()) return real().close(fd);
  std::optional<Entry> e;
  guarded([&] {
    e = table().take(fd);
    if (e && e->source) {
      std::lock_guard lock(*e->mu);
      e->source->closing();
    }
    return 0;
  });
  int rc = real().close(fd);
  int saved = errno;
  guarded([&] {
    if (e && e->source) e->source->closed();
    if (e && e->dest) e->dest->closed();
    return 0;
  });
  errno = saved;
  return rc;
}
