// The source end of a multifd channel (channel.h).
#include <arpa/inet.h>
#include <fmt/format.h>
#include <poll.h>

#include <cerrno>
#include <cstring>
#include <thread>

#include "channel.h"
#include "ramshift/base/clock.h"
#include "socket_address.h"

namespace ramshift::qemu::preload {
namespace {

// How long the source's send thread may wait for the RDMA connection once the destination
// offered one: rdma_cm takes a few ms on a NIC and ≈ 0.1 s under soft-RoCE in a TCG VM.
constexpr auto kConnectTimeout = std::chrono::seconds(10);

size_t total_len(const msghdr* msg) {
  size_t n = 0;
  for (size_t i = 0; i < msg->msg_iovlen; ++i) n += msg->msg_iov[i].iov_len;
  return n;
}

// The first `n` bytes of the message's iovecs.
std::vector<std::byte> gather(const msghdr* msg, size_t n) {
  std::vector<std::byte> out;
  for (size_t i = 0; i < msg->msg_iovlen && out.size() < n; ++i) {
    auto* b = static_cast<const std::byte*>(msg->msg_iov[i].iov_base);
    size_t take = std::min(n - out.size(), msg->msg_iov[i].iov_len);
    out.insert(out.end(), b, b + take);
  }
  return out;
}

}  // namespace

ssize_t SourceChannel::send_all(std::vector<iovec> iov, int flags) {
  size_t at = 0;
  ssize_t total = 0;
  while (at < iov.size()) {
    msghdr m{};
    m.msg_iov = iov.data() + at;
    m.msg_iovlen = iov.size() - at;
    ssize_t n = real().sendmsg(fd_, &m, flags | MSG_NOSIGNAL);
    if (n < 0) {
      if (errno == EINTR) continue;
      if (errno == EAGAIN) {
        pollfd p{fd_, POLLOUT, 0};
        ::poll(&p, 1, 1000);
        continue;
      }
      return -1;
    }
    total += n;
    for (size_t left = static_cast<size_t>(n); left > 0 && at < iov.size();) {
      size_t take = std::min(left, iov[at].iov_len);
      iov[at].iov_base = static_cast<char*>(iov[at].iov_base) + take;
      iov[at].iov_len -= take;
      left -= take;
      if (iov[at].iov_len == 0) ++at;
    }
    while (at < iov.size() && iov[at].iov_len == 0) ++at;
  }
  sent_ += static_cast<uint64_t>(total);
  if (stats_) {
    stats_->socket_bytes += static_cast<uint64_t>(total);
    stats_->touch();
  }
  return total;
}

ssize_t SourceChannel::sendmsg(const msghdr* msg, int flags, Verdict& verdict) {
  switch (state_) {
    case State::kInit:
      return send_init(msg, flags, verdict);
    case State::kWaitOffer: {
      switch (classify(msg, flags)) {
        case Shape::kPagePacket:
          ++page_packets_;
          check_offer();
          break;
        case Shape::kSplitHeader:
          // zero-copy-send: QEMU sends the header alone and the pages with MSG_ZEROCOPY,
          // whose completions it counts; those sends must stay QEMU's own.
          note_fallback(Role::kSource, "zero-copy-send is on: its pages stay on the socket");
          state_ = State::kPlain;
          break;
        case Shape::kOther:
          if (page_packets_ > 0 && is_sync(msg)) {
            // The destination answers the init at once: no offer by QEMU's first sync most
            // likely means none is coming. Say so while QEMU runs, but keep looking (the
            // stats drop the reason should the channel switch after all).
            check_offer();
            if (state_ == State::kWaitOffer) note_no_offer();
          }
          break;
      }
      if (state_ == State::kFramed) return send_framed(msg, flags);
      if (state_ == State::kPlain) return real().sendmsg(fd_, msg, flags);
      // Whole messages until the switch, so that it comes at a packet boundary.
      ssize_t n = send_all(std::vector<iovec>(msg->msg_iov, msg->msg_iov + msg->msg_iovlen), flags);
      if (n > 0) stats_->plain_bytes += static_cast<uint64_t>(n);
      return n;
    }
    case State::kFramed:
      return send_framed(msg, flags);
    case State::kPlain:
      break;
  }
  return real().sendmsg(fd_, msg, flags);
}

SourceChannel::Shape SourceChannel::classify(const msghdr* msg, int flags) {
  if (msg->msg_iovlen == 0 || (flags & MSG_ZEROCOPY)) return Shape::kOther;
  std::span<const std::byte> head(static_cast<const std::byte*>(msg->msg_iov[0].iov_base),
                                  msg->msg_iov[0].iov_len);
  ParseResult r = parse_multifd_packet(head, page_size_);
  const MultifdPacket& k = r.packet;
  if (r.outcome != ParseOutcome::kPacket || k.header_bytes != head.size()) return Shape::kOther;
  if (k.normal_pages == 0) return Shape::kOther;
  if (msg->msg_iovlen == 1) return Shape::kSplitHeader;
  if (msg->msg_iovlen != 1 + size_t{k.normal_pages}) return Shape::kOther;
  for (size_t i = 1; i < msg->msg_iovlen; ++i)
    if (msg->msg_iov[i].iov_len != k.page_size) return Shape::kOther;
  page_size_ = k.page_size;
  return Shape::kPagePacket;
}

ssize_t SourceChannel::send_init(const msghdr* msg, int flags, Verdict& verdict) {
  auto first = gather(msg, kMultifdInitBytes);
  if (total_len(msg) != kMultifdInitBytes || !is_multifd_magic(first)) {
    state_ = State::kPlain;  // the main channel, postcopy-preempt, or not migration at all
    verdict = Verdict::kForget;
    return real().sendmsg(fd_, msg, flags);
  }
  stats_ = new_channel_stats(Role::kSource);
  put_stamp(first);
  state_ = State::kWaitOffer;
  return send_all({iovec{first.data(), first.size()}}, flags);
}

void SourceChannel::check_offer() {
  std::byte buf[kOfferBytes];
  ssize_t n = ::recv(fd_, buf, sizeof buf, MSG_PEEK | MSG_DONTWAIT);
  if (n < static_cast<ssize_t>(kOfferBytes)) return;  // none yet (or not all of it yet)
  ::recv(fd_, buf, sizeof buf, MSG_DONTWAIT);
  auto offer = decode_offer(buf);
  if (!offer) {
    note_fallback(Role::kSource,
                  "the destination answered with something that is not an "
                  "offer of this library version");
    state_ = State::kPlain;
    return;
  }
  std::string ip = socket_ipv4(fd_, SocketEnd::kPeer);
  if (ip.empty()) {
    note_fallback(Role::kSource,
                  "the destination's address is not IPv4 (RDMA is offered on IPv4 addresses only)");
    state_ = State::kPlain;
    return;
  }
  // With --tls-*, the connection authenticates before any key is made or sent; when it
  // cannot (refused either way, credentials unusable), the pages stay on QEMU's socket.
  auto security = security_for(Role::kSource);
  if (!security) {
    note_fallback(Role::kSource,
                  "its --tls-* credentials cannot be used: " + security.status().message());
    state_ = State::kPlain;
    return;
  }
  std::byte priv[transport::rdma::kPullPrivateBytes]{};
  encode_connect(priv, ConnectRequest{offer->nonce, sent_, settings().authenticate});
  auto origin = PullOrigin::connect(ip, offer->port, priv, kConnectTimeout, security->get(),
                                    settings().memory_windows);
  if (!origin) {
    note_fallback(Role::kSource, fmt::format("the destination offered RDMA at {}:{}, but: {}", ip,
                                             offer->port, origin.status().message()));
    state_ = State::kPlain;
    return;
  }
  origin_ = std::move(*origin);
  stats_->rdma = true;
  stats_->windows = origin_->why_region_keys().empty();
  note_once("source-rdma", "source: multifd pages go by RDMA READ (" + origin_->describe() + ")");
  if (!stats_->windows)
    note_once("source-region-keys", "source: " + origin_->why_region_keys() +
                                        ": the destination's keys are the memory regions', "
                                        "valid through its READ connection until deregistered");
  state_ = State::kFramed;
}

const std::byte* SourceChannel::exposed(const std::byte* p, size_t len) {
  for (const Exposed& e : exposed_)
    if (p >= e.begin && p + len <= e.end) return e.begin;
  if (expose_failed_) return nullptr;
  auto map = mapping_of(p, len);
  if (map.empty()) return nullptr;
  auto t0 = std::chrono::steady_clock::now();
  // Registers the mapping and hands its key to the destination on the READ connection.
  auto key = origin_->expose(map);
  if (!key) {
    expose_failed_ = true;
    note_once("expose", "source: guest memory stays on the socket: " + key.status().message());
    return nullptr;
  }
  note_registration(map.data(), map.size(), ms_since(t0));
  exposed_.push_back({map.data(), map.data() + map.size()});
  return map.data();
}

ssize_t SourceChannel::send_framed(const msghdr* msg, int flags) {
  if (flags & MSG_ZEROCOPY) {
    // Only reachable when zero-copy-send was switched on between migrations on a channel
    // that had switched: refuse, QEMU fails the migration and the source keeps running.
    note_once("zerocopy", "source: zero-copy-send cannot join a channel that moved to RDMA");
    errno = EOPNOTSUPP;
    return -1;
  }
  // Only a raw multifd page packet, header in iov[0] and one page per further iovec, has
  // pages that may be read later (a page written after QEMU sent it is dirty again and sent
  // again); everything else goes inline, byte for byte.
  std::vector<FrameRead> reads;
  size_t inline_iovs = msg->msg_iovlen;
  if (classify(msg, flags) == Shape::kPagePacket) {
    const std::byte* last_mapping = nullptr;
    for (size_t i = 1; i < msg->msg_iovlen; ++i) {
      const iovec& v = msg->msg_iov[i];
      auto* p = static_cast<const std::byte*>(v.iov_base);
      const std::byte* mapping = exposed(p, v.iov_len);
      if (!mapping) {
        reads.clear();
        break;
      }
      auto addr = reinterpret_cast<uint64_t>(p);
      // Neighbouring pages of one mapping (one key) become one read (the destination splits
      // it again only where its own pages are not neighbours).
      const bool same = mapping == last_mapping;
      last_mapping = mapping;
      if (!reads.empty() && same && reads.back().addr + reads.back().len == addr &&
          reads.back().len + v.iov_len <= transport::rdma::kMaxMergedRead)
        reads.back().len += static_cast<uint32_t>(v.iov_len);
      else
        reads.push_back({addr, static_cast<uint32_t>(v.iov_len)});
    }
    if (!reads.empty()) inline_iovs = 1;
  }
  size_t inline_bytes = 0;
  for (size_t i = 0; i < inline_iovs; ++i) inline_bytes += msg->msg_iov[i].iov_len;
  auto frame = encode_frame(static_cast<uint32_t>(inline_bytes), reads);
  std::vector<iovec> iov;
  iov.reserve(1 + inline_iovs);
  iov.push_back({frame.data(), frame.size()});
  iov.insert(iov.end(), msg->msg_iov, msg->msg_iov + inline_iovs);
  if (send_all(std::move(iov), flags) < 0) return -1;
  uint64_t remote = 0;
  for (const FrameRead& r : reads) remote += r.len;
  stats_->rdma_bytes += remote;
  stats_->frames += 1;
  if (!reads.empty()) stats_->rdma_pages += msg->msg_iovlen - 1;
  return static_cast<ssize_t>(inline_bytes + remote);
}

void SourceChannel::note_no_offer() {
  note_fallback(Role::kSource,
                "the destination made no RDMA offer (it runs without the library, with "
                "--transport tcp, or without an RDMA device for this address; its stats say "
                "which)",
                /*tentative=*/true);
}

bool SourceChannel::is_sync(const msghdr* msg) const {
  if (msg->msg_iovlen == 0) return false;
  std::span<const std::byte> head(static_cast<const std::byte*>(msg->msg_iov[0].iov_base),
                                  msg->msg_iov[0].iov_len);
  ParseResult r = parse_multifd_packet(head, page_size_);
  return r.outcome == ParseOutcome::kPacket && (r.packet.flags & kMultifdFlagSync);
}

void SourceChannel::closing() {
  if (state_ == State::kWaitOffer) note_no_offer();
  // An offer this side never read would turn QEMU's close into a reset, which could cost the
  // destination the channel's last bytes: read whatever the destination wrote.
  if (state_ != State::kInit) {
    std::byte sink[256];
    while (::recv(fd_, sink, sizeof sink, MSG_DONTWAIT) > 0) {
    }
  }
}

void SourceChannel::closed() {
  write_stats();
  if (!origin_) return;
  // The destination may still be reading the last packets (those still in the sockets): keep
  // the exposure until it says it is done (it does at the stream's end) or leaves, and at
  // most the peer timeout. A destination slower than that fails its READ, so its QEMU fails
  // the migration and the source's guest stays here (paused, as after any failed end).
  std::thread([o = std::move(origin_), stats = stats_]() mutable {
    const auto t0 = std::chrono::steady_clock::now();
    const auto end = o->linger(settings().peer_timeout);
    stats->exposed_after_close_ms = static_cast<uint64_t>(ms_since(t0));
    stats->exposure_ended = end == PullOrigin::End::kDone           ? "done"
                            : end == PullOrigin::End::kDisconnected ? "disconnected"
                                                                    : "peer timeout";
    o.reset();
    write_stats();
  }).detach();
}

}  // namespace ramshift::qemu::preload
