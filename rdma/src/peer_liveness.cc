#include "peer_liveness.h"

#include <fmt/format.h>

#include <algorithm>

namespace ramshift::transport::rdma {
namespace {

using std::chrono::milliseconds;
using std::chrono::nanoseconds;

constexpr uint16_t kSendsHeartbeats = 0x8000;
constexpr uint16_t kLimitMask = 0x7fff;
constexpr milliseconds kLimitUnit{100};
// A heartbeat more often than this only adds completions: the poller wakes every 100 ms
// (rdma_queue.cc) and checks the clock then.
constexpr milliseconds kMinHeartbeat{10};

double seconds(milliseconds ms) { return static_cast<double>(ms.count()) / 1000.0; }

}  // namespace

RetransmitPlan plan_retransmits(milliseconds peer_timeout, uint32_t ack_timeout_setting) {
  RetransmitPlan p;
  if (ack_timeout_setting != 0) {
    p.ack_timeout = static_cast<uint8_t>(std::min<uint32_t>(ack_timeout_setting, 31));
    return p;
  }
  if (peer_timeout.count() <= 0) return p;
  const nanoseconds per_try = nanoseconds(peer_timeout) / (p.retry_count + 1);
  // 4.096 us * 2^N <= per_try; at least 1 (0 would mean "wait forever" to the device).
  uint8_t n = 1;
  while (n < 31 && nanoseconds(4096LL << (n + 1)) <= per_try) ++n;
  p.ack_timeout = n;
  return p;
}

uint16_t encode_liveness(const LivenessAnnounce& a) {
  if (!a.sends_heartbeats) return 0;
  uint16_t units = 0;
  if (a.silence_limit.count() > 0) {
    // Rounded down (never announce more patience than we have), at least one unit.
    const auto u = std::max<int64_t>(1, a.silence_limit / kLimitUnit);
    units = static_cast<uint16_t>(std::min<int64_t>(u, kLimitMask));
  }
  return static_cast<uint16_t>(kSendsHeartbeats | units);
}

LivenessAnnounce decode_liveness(uint16_t field) {
  LivenessAnnounce a;
  a.sends_heartbeats = (field & kSendsHeartbeats) != 0;
  if (a.sends_heartbeats) a.silence_limit = kLimitUnit * (field & kLimitMask);
  return a;
}

PeerWatch::PeerWatch(milliseconds own_limit, const LivenessAnnounce& peer,
                     LivenessClock::time_point now)
    : own_limit_(own_limit),
      peer_heartbeats_(peer.sends_heartbeats),
      last_heard_(now),
      last_check_(now) {
  // A quarter: three heartbeats may be late or lost before the peer gives up on us.
  if (peer.silence_limit.count() > 0) heartbeat_ = std::max(kMinHeartbeat, peer.silence_limit / 4);
  next_heartbeat_ = now + heartbeat_;
}

bool PeerWatch::heartbeat_due(LivenessClock::time_point now) {
  if (heartbeat_.count() == 0 || now < next_heartbeat_) return false;
  next_heartbeat_ = now + heartbeat_;
  return true;
}

Status PeerWatch::check(LivenessClock::time_point now,
                        std::optional<LivenessClock::time_point> port_down, uint32_t queue) {
  if (own_limit_.count() <= 0) return Status::ok();
  if (const auto gap = now - last_check_; gap > kOwnStall) {
    last_heard_ = std::min(now, last_heard_ + gap);
    stalled_ += gap;
  }
  last_check_ = now;
  if (port_down && now - *port_down > own_limit_)
    return Status(ErrorCode::kDisconnected,
                  fmt::format("rdma queue {}: the RDMA port went down and stayed down longer than "
                              "--peer-timeout {:.1f} s: the link is lost (cable, switch or "
                              "interface down)",
                              queue, seconds(own_limit_)),
                  ETIMEDOUT);
  if (peer_heartbeats_ && now - last_heard_ > own_limit_) {
    const auto stalled = std::chrono::duration_cast<milliseconds>(stalled_);
    return Status(ErrorCode::kDisconnected,
                  fmt::format("rdma queue {}: the peer stopped answering: nothing heard for "
                              "longer than --peer-timeout {:.1f} s (host down, link cut or the "
                              "process stopped?){}",
                              queue, seconds(own_limit_),
                              stalled.count() > 0
                                  ? fmt::format("; not counted: {:.1f} s this side itself was "
                                                "not running",
                                                seconds(stalled))
                                  : std::string()),
                  ETIMEDOUT);
  }
  return Status::ok();
}

}  // namespace ramshift::transport::rdma
