// What `--peer-timeout` (TransportOptions::peer_timeout) means on an rdma queue, without
// verbs: the queue pair's retransmission limits derived from it, the heartbeats each side
// asks of the other in its queue hello, and the clock that gives up on a silent peer.
//
// Why three mechanisms: an RC queue pair notices a vanished peer only while it has requests
// waiting for an acknowledgement (retransmissions run out: IBV_WC_RETRY_EXC_ERR). An idle
// queue (a source waiting for a round's acknowledgement, a destination waiting for pages)
// hears nothing either way, and a peer whose process is stopped or hung still has its
// device acknowledge every request. So each side also sends a heartbeat on every queue (a
// zero-byte credit repeating the last one, which the ring protocol accepts as a no-op) at a
// quarter of the limit the other side announced, and gives up when a queue has received
// nothing for its own limit. A port that goes down is given the same limit to come back, so
// a link flap shorter than --peer-timeout costs a pause, not the migration.
#pragma once

#include <chrono>
#include <cstdint>
#include <optional>

#include "ramshift/base/status.h"

namespace ramshift::transport::rdma {

using LivenessClock = std::chrono::steady_clock;

// The queue pair's retransmission settings for a peer timeout.
struct RetransmitPlan {
  // Local ACK timeout as the exponent of 4.096 us * 2^N; 0 leaves rdma_cm's choice.
  uint8_t ack_timeout = 0;
  // Retransmissions before the request fails (the verbs maximum is 7).
  uint8_t retry_count = 7;
};

// A request is given up after about (retry_count + 1) ACK timeouts (exactly that on
// soft-RoCE, which runs the timer in software; the IB spec lets hardware wait up to 4x
// longer, which the heartbeat limit bounds anyway). So the exponent is the largest whose
// 8 timeouts fit in `peer_timeout`: 5 s -> 17 (537 ms, given up after 4.3 s), 3 s -> 16.
// An explicit --rdma-ack-timeout (`ack_timeout_setting` != 0) wins; a zero peer timeout
// keeps rdma_cm's default (about 1 s per try on RoCE).
RetransmitPlan plan_retransmits(std::chrono::milliseconds peer_timeout,
                                uint32_t ack_timeout_setting);

// The hello's 16-bit liveness field (offset 6): bit 15 "this side sends heartbeats when
// asked", bits 0..14 the silence it tolerates in units of 100 ms (0 = none: send no
// heartbeats to it). Builds before heartbeats sent 0 there, so a peer without bit 15 is
// never timed out on silence (only its queue pair's retransmissions can fail).
struct LivenessAnnounce {
  bool sends_heartbeats = false;
  std::chrono::milliseconds silence_limit{0};
};
uint16_t encode_liveness(const LivenessAnnounce& a);
LivenessAnnounce decode_liveness(uint16_t field);

// One queue's view of its peer, driven by the queue's poller thread only (not thread-safe).
class PeerWatch {
 public:
  PeerWatch() = default;
  // `own_limit`: our --peer-timeout (0 = never give up on silence); `peer`: the peer's hello.
  PeerWatch(std::chrono::milliseconds own_limit, const LivenessAnnounce& peer,
            LivenessClock::time_point now);

  // Something arrived from the peer (any receive completion: data or credit).
  void heard(LivenessClock::time_point now) { last_heard_ = now; }

  // True when a heartbeat should leave now (every quarter of the peer's limit); the next one
  // is then due a quarter later, unless heartbeat_not_sent() says this one did not leave.
  bool heartbeat_due(LivenessClock::time_point now);
  // The heartbeat heartbeat_due() asked for could not be posted (the send lock was busy or
  // the send queue full): it is due again at once, on the poller's next pass (<= 100 ms),
  // not a quarter of the limit later, so three busy moments in a row cannot add up to the
  // peer's whole limit.
  void heartbeat_not_sent(LivenessClock::time_point now) { next_heartbeat_ = now; }

  // The port under the queue went down at `since` (nullopt: it is up). Ok while the peer was
  // heard from within the limit and the port is up or down for less than the limit; else the
  // kDisconnected Status the queue fails with, naming queue `queue` and the limit.
  // Called on every pass of the queue's poller (at least every 100 ms). Silence counts only
  // while this side was listening: a gap between two calls longer than kOwnStall means this
  // process was not running (an overloaded host or VM, a debugger, SIGSTOP), and the peer,
  // whose heartbeats wait in our completion queue meanwhile, is not blamed for it.
  Status check(LivenessClock::time_point now, std::optional<LivenessClock::time_point> port_down,
               uint32_t queue);

  // Longer than any pause of a running poller (its poll() sleeps 100 ms at most). A soft-RoCE
  // VM on a loaded 2-core host showed 433 ms gaps; a whole-VM stall of seconds ended a
  // post-copy with "stopped answering" while both processes were fine.
  static constexpr std::chrono::milliseconds kOwnStall{500};

  std::chrono::milliseconds heartbeat_interval() const { return heartbeat_; }

 private:
  std::chrono::milliseconds own_limit_{0};
  bool peer_heartbeats_ = false;
  std::chrono::milliseconds heartbeat_{0};  // 0 = the peer asked for none
  LivenessClock::time_point last_heard_{};
  LivenessClock::time_point last_check_{};
  LivenessClock::duration stalled_{};  // summed gaps of this side, for the failure message
  LivenessClock::time_point next_heartbeat_{};
};

}  // namespace ramshift::transport::rdma
