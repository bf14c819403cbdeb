// The destination end of a multifd channel (channel.h) and the process's rdma_cm listeners.
#include <arpa/inet.h>
#include <fcntl.h>
#include <fmt/format.h>
#include <poll.h>
#include <sys/ioctl.h>
#include <sys/random.h>

#include <cerrno>
#include <cstring>
#include <map>
#include <thread>

#include "channel.h"
#include "ramshift/base/byte_order.h"
#include "ramshift/base/clock.h"
#include "socket_address.h"

namespace ramshift::qemu::preload {
namespace {

// How long a READ may go without completing before the channel fails: generous, as a soft-RoCE
// peer inside a TCG VM can stall for seconds under load.
constexpr auto kReadTimeout = std::chrono::seconds(60);
// How long the reader waits at the switch offset for the listener thread to hand over the
// connection the source already sees established (microseconds in practice).
constexpr auto kAttachTimeout = std::chrono::seconds(30);
// How long the end of the stream waits for the source to acknowledge DONE: one SEND.
constexpr auto kDoneTimeout = std::chrono::seconds(1);

// One listener per local address, each with a thread that accepts connect requests and arms
// the channel whose nonce they carry. Never destroyed (QEMU's threads may run until exit).
class Hub {
 public:
  static Hub& get() {
    static auto* h = new Hub();
    return *h;
  }

  Result<uint16_t> listen_on(const std::string& ip) {
    std::lock_guard lock(mu_);
    auto it = ports_.find(ip);
    if (it != ports_.end()) return it->second;
    auto l = transport::rdma::PullListener::create(ip);
    if (!l) {
      ports_.emplace(ip, l.status());
      return l.status();
    }
    uint16_t port = (*l)->port();
    ports_.emplace(ip, port);
    std::thread([this, listener = std::move(*l)] { serve(*listener); }).detach();
    return port;
  }

  void expect(uint64_t nonce, std::weak_ptr<DestChannel> ch) {
    std::lock_guard lock(mu_);
    expecting_[nonce] = std::move(ch);
  }

 private:
  void serve(transport::rdma::PullListener& l) {
    // With --tls-*, every connection authenticates before it is handed to its channel; the
    // credentials are loaded once (an error refuses every connection, saying so here).
    auto security = security_for(Role::kDestination);
    if (!security)
      note_fallback(Role::kDestination,
                    "its --tls-* credentials cannot be used: " + security.status().message());
    for (;;) {
      std::shared_ptr<DestChannel> chosen;
      auto decide = [&](std::span<const std::byte> priv) -> std::string {
        auto req = decode_connect(priv);
        if (!req) return "not a connect request of this library version";
        // Each side goes by its own flags; the source's bit only lets this side say why.
        if (settings().authenticate && !req->authenticates)
          return "the destination authenticates READ connections (--tls-dir or --tls-psk) and "
                 "the source runs without: give both sides' qemu-exec the same --tls-* flags";
        if (!settings().authenticate && req->authenticates)
          return "the destination runs without --tls-dir/--tls-psk and the source with them: "
                 "give both sides' qemu-exec the same --tls-* flags";
        if (!security) return "the destination cannot load its --tls-* credentials";
        std::lock_guard lock(mu_);
        auto it = expecting_.find(req->nonce);
        if (it == expecting_.end()) return "no multifd channel here expects this connection";
        auto ch = it->second.lock();
        expecting_.erase(it);
        if (!ch || !ch->arm(req->switch_offset))
          return "the multifd channel no longer expects this connection";
        chosen = std::move(ch);
        return "";
      };
      auto target =
          l.accept(std::chrono::milliseconds(1000), decide, security ? security->get() : nullptr);
      if (target) {
        chosen->attach(std::move(*target));
        continue;
      }
      if (chosen) {
        const bool refused = target.status().code() == ErrorCode::kMismatch;
        note_fallback(Role::kDestination, fmt::format("{} the source's RDMA connection: {}",
                                                      refused ? "refused" : "accepting failed for",
                                                      target.status().message()));
        chosen->attach(nullptr);
      } else if (target.status().code() == ErrorCode::kWouldBlock &&
                 target.status().message().starts_with("connect request refused: ")) {
        note_fallback(Role::kDestination, target.status().message());
      }
    }
  }

  std::mutex mu_;
  std::map<std::string, Result<uint16_t>> ports_;
  std::map<uint64_t, std::weak_ptr<DestChannel>> expecting_;
};

// `msg` limited to its first `cap` bytes, in `out` (iovecs in `storage`).
void cap_message(const msghdr* msg, size_t cap, msghdr& out, std::vector<iovec>& storage) {
  out = *msg;
  storage.clear();
  for (size_t i = 0; i < msg->msg_iovlen && cap > 0; ++i) {
    iovec v = msg->msg_iov[i];
    v.iov_len = std::min(v.iov_len, cap);
    cap -= v.iov_len;
    storage.push_back(v);
  }
  out.msg_iov = storage.data();
  out.msg_iovlen = storage.size();
}

// Waits until the socket has data, an end or an error. False on a non-blocking call.
bool wait_readable(int fd, int flags) {
  if ((flags & MSG_DONTWAIT) || (fcntl(fd, F_GETFL) & O_NONBLOCK)) return false;
  pollfd p{fd, POLLIN, 0};
  while (::poll(&p, 1, 1000) == 0) {
  }
  return true;
}

// Reads exactly `n` bytes for the library itself: 0 at a clean end before any byte,
// -1 with errno otherwise.
ssize_t read_exact(int fd, std::byte* out, size_t n) {
  size_t got = 0;
  while (got < n) {
    ssize_t r = ::recv(fd, out + got, n - got, 0);
    if (r > 0) {
      got += static_cast<size_t>(r);
    } else if (r == 0) {
      if (got == 0) return 0;
      errno = EPROTO;
      return -1;
    } else if (errno == EAGAIN) {
      pollfd p{fd, POLLIN, 0};
      ::poll(&p, 1, 1000);
    } else if (errno != EINTR) {
      return -1;
    }
  }
  return static_cast<ssize_t>(got);
}

}  // namespace

void prepare_listener(int fd) {
  static const bool incoming = [] {
    FILE* f = std::fopen("/proc/self/cmdline", "re");
    if (!f) return false;
    char buf[4096];
    size_t n = std::fread(buf, 1, sizeof buf, f);
    std::fclose(f);
    return std::string_view(buf, n).find(std::string_view("-incoming\0", 10)) !=
           std::string_view::npos;
  }();
  if (!incoming) return;
  std::string ip = socket_ipv4(fd, SocketEnd::kLocal);
  if (!ip.empty()) std::thread([ip] { (void)Hub::get().listen_on(ip); }).detach();
}

bool DestChannel::arm(uint64_t at) {
  uint64_t unknown = kUnknown;
  return switch_at_.compare_exchange_strong(unknown, at);
}

void DestChannel::attach(std::unique_ptr<PullTarget> target) {
  std::lock_guard lock(arm_mu_);
  target_ = std::move(target);
  attached_ = true;
  arm_cv_.notify_all();
}

ssize_t DestChannel::fail(int err, const std::string& why) {
  state_ = State::kFailed;
  note_once("dest-failed", "destination: multifd channel failed: " + why);
  errno = err;
  return -1;
}

ssize_t DestChannel::recvmsg(msghdr* msg, int flags, Verdict& verdict) {
  switch (state_) {
    case State::kInit:
      return recv_init(msg, flags, verdict);
    case State::kOffered:
      return recv_offered(msg, flags);
    case State::kFramed:
      return recv_framed(msg, flags);
    case State::kFailed:
      errno = EIO;
      return -1;
    case State::kPlain:
      break;
  }
  return real().recvmsg(fd_, msg, flags);
}

ssize_t DestChannel::recv_init(msghdr* msg, int flags, Verdict& verdict) {
  ssize_t n = real().recvmsg(fd_, msg, flags);
  if (n <= 0) return n;
  // Copy what QEMU received of the first 64 bytes (a peek counts for the magic only).
  size_t want = kMultifdInitBytes - delivered_, at = delivered_, left = static_cast<size_t>(n);
  std::byte peeked[kMultifdInitBytes];
  std::byte* dst = (flags & MSG_PEEK) ? peeked : init_ + delivered_;
  size_t copied = 0;
  for (size_t i = 0; i < msg->msg_iovlen && copied < want && left > 0; ++i) {
    size_t take = std::min({msg->msg_iov[i].iov_len, want - copied, left});
    std::memcpy(dst + copied, msg->msg_iov[i].iov_base, take);
    copied += take;
    left -= take;
  }
  const std::byte* head = (flags & MSG_PEEK) ? peeked : init_;
  size_t have = (flags & MSG_PEEK) ? copied : at + copied;
  if (have >= 4 && !is_multifd_magic({head, 4})) {
    state_ = State::kPlain;  // the main channel, postcopy-preempt, VNC, ...
    verdict = Verdict::kForget;
    return n;
  }
  if (flags & MSG_PEEK) return n;
  delivered_ += static_cast<uint64_t>(n);
  if (delivered_ < kMultifdInitBytes) return n;
  stats_ = new_channel_stats(Role::kDestination);
  stats_->socket_bytes += delivered_;
  stats_->plain_bytes += delivered_;
  stats_->touch();
  const auto stamped = stamp_version({init_, kMultifdInitBytes});
  if (delivered_ == kMultifdInitBytes && stamped && *stamped != wire_version()) {
    note_fallback(Role::kDestination,
                  fmt::format("the source's library speaks wire version {}, this one {}", *stamped,
                              wire_version()));
    state_ = State::kPlain;
    return n;
  }
  if (delivered_ > kMultifdInitBytes || !has_stamp({init_, kMultifdInitBytes})) {
    note_fallback(Role::kDestination, "the source QEMU does not run with the library");
    state_ = State::kPlain;
    return n;
  }
  offer();
  return n;
}

void DestChannel::offer() {
  state_ = State::kPlain;
  std::string ip = socket_ipv4(fd_, SocketEnd::kLocal);
  if (ip.empty()) {
    note_fallback(Role::kDestination,
                  "the migration socket's local address is not IPv4 (RDMA is offered on IPv4 "
                  "addresses only)");
    return;
  }
  auto port = Hub::get().listen_on(ip);
  if (!port) {
    note_fallback(Role::kDestination, port.status().message());
    return;
  }
  uint64_t nonce = 0;
  if (getrandom(&nonce, sizeof nonce, 0) != sizeof nonce) return;
  Hub::get().expect(nonce, weak_from_this());
  std::byte buf[kOfferBytes];
  encode_offer(buf, Offer{*port, nonce});
  if (::send(fd_, buf, sizeof buf, MSG_NOSIGNAL | MSG_DONTWAIT) != sizeof buf) return;
  state_ = State::kOffered;
}

ssize_t DestChannel::recv_offered(msghdr* msg, int flags) {
  for (;;) {
    uint64_t at = switch_at_.load();
    if (at != kUnknown && delivered_ > at)
      return fail(EPROTO, "the source named a switch offset already passed");
    if (at != kUnknown && delivered_ == at && !(flags & MSG_PEEK)) {
      int framed = frame_at_switch();
      if (framed < 0) return -1;
      state_ = framed ? State::kFramed : State::kPlain;
      if (!framed) return real().recvmsg(fd_, msg, flags);
      return recv_framed(msg, flags);
    }
    // Bytes counted before reading the offset were all sent before the source connected, so
    // before it sends its first frame: reading no more than they keeps QEMU off the frames.
    int avail = 0;
    if (ioctl(fd_, FIONREAD, &avail) != 0) return real().recvmsg(fd_, msg, flags);
    at = switch_at_.load();
    if (avail == 0) {
      pollfd p{fd_, POLLIN, 0};
      if (::poll(&p, 1, 0) == 1) return real().recvmsg(fd_, msg, flags);  // end or error
      if (!wait_readable(fd_, flags)) {
        errno = EAGAIN;
        return -1;
      }
      continue;
    }
    size_t cap = static_cast<size_t>(avail);
    if (at != kUnknown) cap = std::min<uint64_t>(cap, at - delivered_);
    msghdr capped;
    std::vector<iovec> storage;
    cap_message(msg, cap, capped, storage);
    ssize_t n = real().recvmsg(fd_, &capped, flags | MSG_DONTWAIT);
    if (n > 0 && !(flags & MSG_PEEK)) {
      delivered_ += static_cast<uint64_t>(n);
      stats_->socket_bytes += static_cast<uint64_t>(n);
      stats_->plain_bytes += static_cast<uint64_t>(n);
      stats_->touch();
    }
    return n;
  }
}

int DestChannel::frame_at_switch() {
  std::byte magic[4];
  for (;;) {
    ssize_t n = ::recv(fd_, magic, sizeof magic, MSG_PEEK);
    if (n == 4) break;
    if (n == 0) return 0;  // the end: QEMU's own read reports it
    if (n < 0 && errno != EAGAIN && errno != EINTR) return 0;
    pollfd p{fd_, POLLIN, 0};
    ::poll(&p, 1, 100);
  }
  if (load_le<uint32_t>(magic) != kFrameMagic) {
    // Tentative: the cause (this side refusing the source's connection, after waiting up to
    // 1 s for the refusal to reach it) is often recorded only after this channel saw it.
    note_fallback(Role::kDestination, "the source did not switch to RDMA at the agreed offset",
                  /*tentative=*/true);
    return 0;
  }
  std::unique_lock lock(arm_mu_);
  if (!arm_cv_.wait_for(lock, kAttachTimeout, [&] { return attached_; }) || !target_) {
    fail(EPROTO, "the source switched to RDMA but the connection was not accepted here");
    return -1;
  }
  stats_->rdma = true;
  note_once("dest-rdma",
            "destination: multifd pages arrive by RDMA READ (" + target_->describe() + ")");
  return 1;
}

ssize_t DestChannel::next_frame() {
  std::byte head[kFrameHeaderBytes];
  ssize_t n = read_exact(fd_, head, sizeof head);
  if (n == 0) {
    // The stream's clean end: no frame, so no READ, follows. Telling the source ends its
    // exposure now rather than when this QEMU closes the channel.
    std::lock_guard lock(arm_mu_);
    if (target_) (void)target_->done(kDoneTimeout);
    return 0;
  }
  if (n < 0) return fail(errno, "the source's stream ended inside a frame");
  auto h = decode_frame_header(head);
  if (!h) return fail(EPROTO, "the source sent a frame this library cannot read");
  std::vector<std::byte> list(size_t{h->reads} * kFrameReadBytes);
  if (!list.empty() && read_exact(fd_, list.data(), list.size()) <= 0)
    return fail(EPROTO, "the source's stream ended inside a frame");
  reads_.clear();
  for (uint32_t i = 0; i < h->reads; ++i) {
    auto r = decode_frame_read(list.data() + size_t{i} * kFrameReadBytes);
    if (!r) return fail(EPROTO, "the source sent a frame with an empty or oversized read");
    reads_.push_back(*r);
  }
  inline_left_ = h->inline_bytes;
  read_at_ = 0;
  read_off_ = 0;
  stats_->socket_bytes += sizeof head + list.size();
  stats_->frames += 1;
  return 1;
}

ssize_t DestChannel::recv_framed(msghdr* msg, int flags) {
  if (flags & MSG_PEEK) return fail(EINVAL, "QEMU peeked inside a framed channel");
  for (;;) {
    if (inline_left_ == 0 && read_at_ == reads_.size()) {
      ssize_t r = next_frame();
      if (r <= 0) return r;
      continue;
    }
    if (inline_left_ > 0) {
      msghdr capped;
      std::vector<iovec> storage;
      cap_message(msg, inline_left_, capped, storage);
      ssize_t n = real().recvmsg(fd_, &capped, flags);
      if (n > 0) {
        inline_left_ -= static_cast<uint64_t>(n);
        delivered_ += static_cast<uint64_t>(n);
        stats_->socket_bytes += static_cast<uint64_t>(n);
        stats_->touch();
      }
      return n;
    }
    return serve_reads(msg);
  }
}

uint32_t DestChannel::lkey_for(std::byte* p, size_t len) {
  for (const Registered& r : registered_)
    if (p >= r.begin && p + len <= r.end) return r.lkey;
  auto map = mapping_of(p, len);
  if (map.empty()) {
    fail(EFAULT, "QEMU reads into memory that is not a writable mapping");
    return 0;
  }
  transport::rdma::PullStats added;
  auto lkey = target_->lkey(map, &added);
  if (!lkey) {
    fail(lkey.status().sys_errno() ? lkey.status().sys_errno() : ENOMEM, lkey.status().message());
    return 0;
  }
  // The process's channels share the registration: only the one that made it counts it.
  if (added.registered_bytes > 0)
    note_registration(map.data(), added.registered_bytes, added.registration_ms);
  registered_.push_back({map.data(), map.data() + map.size(), *lkey});
  return *lkey;
}

ssize_t DestChannel::serve_reads(msghdr* msg) {
  std::vector<transport::rdma::PullRead> ops;
  size_t total = 0, pieces = 0;
  for (size_t i = 0; i < msg->msg_iovlen && read_at_ < reads_.size(); ++i) {
    auto* base = static_cast<std::byte*>(msg->msg_iov[i].iov_base);
    size_t len = msg->msg_iov[i].iov_len, off = 0;
    while (off < len && read_at_ < reads_.size()) {
      const FrameRead& r = reads_[read_at_];
      size_t take = std::min<size_t>(len - off, r.len - read_off_);
      uint32_t lkey = lkey_for(base + off, take);
      if (lkey == 0) return -1;
      auto rkey = target_->key_for(r.addr + read_off_, take, kReadTimeout);
      if (!rkey) return fail(EPROTO, rkey.status().message());
      // QEMU reads a packet's pages into one iovec each; runs of guest pages that sit next to
      // each other on both sides become one READ (one work request, one completion).
      transport::rdma::PullRead next{base + off, lkey, r.addr + read_off_, *rkey,
                                     static_cast<uint32_t>(take)};
      if (!ops.empty() && transport::rdma::continues(ops.back(), next))
        ops.back().len += next.len;
      else
        ops.push_back(next);
      ++pieces;
      off += take;
      read_off_ += take;
      total += take;
      if (read_off_ == r.len) {
        ++read_at_;
        read_off_ = 0;
      }
    }
  }
  if (total == 0) return 0;
  Status st = target_->read(ops, kReadTimeout);
  if (!st) return fail(EIO, st.message());
  delivered_ += total;
  stats_->rdma_bytes += total;
  stats_->rdma_pages += pieces;
  stats_->rdma_reads += ops.size();
  stats_->touch();
  return static_cast<ssize_t>(total);
}

void DestChannel::closed() {
  {
    std::lock_guard lock(arm_mu_);
    target_.reset();  // disconnects: the source's side may now let go of its memory
  }
  write_stats();
}

}  // namespace ramshift::qemu::preload
