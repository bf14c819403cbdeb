// --peer-timeout on rdma queues without a NIC: the queue pair's ACK timeout derived from it,
// the liveness field of the queue hello, and the clock that gives up on a silent peer.
#include "peer_liveness.h"

#include <gtest/gtest.h>

#include <array>

#include "ring_protocol.h"

namespace ramshift::transport::rdma {
namespace {

using std::chrono::milliseconds;
using std::chrono::nanoseconds;

// How long the queue pair retransmits before failing a request: (retries + 1) ACK timeouts.
nanoseconds gives_up_after(const RetransmitPlan& p) {
  return nanoseconds(4096LL << p.ack_timeout) * (p.retry_count + 1);
}

TEST(PeerLiveness, AckTimeoutFitsThePeerTimeout) {
  for (int64_t ms : {100, 1000, 3000, 5000, 30000, 600000}) {
    const RetransmitPlan p = plan_retransmits(milliseconds(ms), 0);
    SCOPED_TRACE(ms);
    EXPECT_EQ(p.retry_count, 7);
    // Within the timeout, and not needlessly early: one exponent more would not fit.
    EXPECT_LE(gives_up_after(p), milliseconds(ms));
    RetransmitPlan longer = p;
    ++longer.ack_timeout;
    EXPECT_GT(gives_up_after(longer), milliseconds(ms));
  }
  EXPECT_EQ(plan_retransmits(milliseconds(5000), 0).ack_timeout, 17);  // 537 ms, 4.3 s in all
  EXPECT_EQ(plan_retransmits(milliseconds(3000), 0).ack_timeout, 16);
}

TEST(PeerLiveness, ExplicitAckTimeoutAndNoPeerTimeout) {
  EXPECT_EQ(plan_retransmits(milliseconds(5000), 14).ack_timeout, 14);  // --rdma-ack-timeout wins
  EXPECT_EQ(plan_retransmits(milliseconds(0), 0).ack_timeout, 0);       // rdma_cm's default
  EXPECT_EQ(plan_retransmits(milliseconds(1), 0).ack_timeout, 4);       // 8 x 65.5 us fit in 1 ms
}

TEST(PeerLiveness, HelloCarriesTheLimit) {
  std::array<std::byte, kHelloBytes> buf{};
  RingHello h{.ring_address = 0x1000, .rkey = 7, .slots = 8, .slot_bytes = 4096, .queue = 2};
  h.liveness = {.sends_heartbeats = true, .silence_limit = milliseconds(3000)};
  encode_hello(h, buf);
  auto back = decode_hello(buf, 2);
  ASSERT_TRUE(back.is_ok()) << back.status().message();
  EXPECT_TRUE(back->liveness.sends_heartbeats);
  EXPECT_EQ(back->liveness.silence_limit, milliseconds(3000));
  // No peer timeout on that side: it still sends heartbeats, and asks for none.
  EXPECT_EQ(decode_liveness(encode_liveness({true, milliseconds(0)})).silence_limit,
            milliseconds(0));
  EXPECT_TRUE(decode_liveness(encode_liveness({true, milliseconds(0)})).sends_heartbeats);
  // Rounded down to 100 ms, at least one unit; saturates instead of wrapping.
  EXPECT_EQ(decode_liveness(encode_liveness({true, milliseconds(250)})).silence_limit,
            milliseconds(200));
  EXPECT_EQ(decode_liveness(encode_liveness({true, milliseconds(30)})).silence_limit,
            milliseconds(100));
  EXPECT_EQ(decode_liveness(encode_liveness({true, std::chrono::hours(10)})).silence_limit,
            milliseconds(100) * 0x7fff);
  // A build before heartbeats wrote 0 there.
  EXPECT_FALSE(decode_liveness(0).sends_heartbeats);
}

// The queue's poller checks at least every 100 ms; from `from` to `to` in such steps, the
// first failure (or Ok).
Status listen(PeerWatch& w, LivenessClock::time_point from, LivenessClock::time_point to) {
  for (auto t = from; t <= to; t += milliseconds(100))
    if (Status s = w.check(t, std::nullopt, 1); !s) return s;
  return Status::ok();
}

TEST(PeerLiveness, SilentPeerFailsAfterTheLimit) {
  const auto t0 = LivenessClock::now();
  PeerWatch w(milliseconds(3000), {true, milliseconds(3000)}, t0);
  EXPECT_TRUE(listen(w, t0, t0 + milliseconds(2900)).is_ok());
  Status s = w.check(t0 + milliseconds(3100), std::nullopt, 1);
  EXPECT_EQ(s.code(), ErrorCode::kDisconnected);
  EXPECT_NE(s.message().find("stopped answering"), std::string::npos) << s.message();
  EXPECT_NE(s.message().find("--peer-timeout 3.0 s"), std::string::npos) << s.message();
  EXPECT_EQ(s.message().find("not counted"), std::string::npos) << s.message();
  // Hearing anything restarts the clock.
  w.heard(t0 + milliseconds(2000));
  EXPECT_TRUE(listen(w, t0 + milliseconds(3200), t0 + milliseconds(4900)).is_ok());
}

TEST(PeerLiveness, TimeThisSideWasNotRunningIsNotCountedAsThePeersSilence) {
  const auto t0 = LivenessClock::now();
  PeerWatch w(milliseconds(5000), {true, milliseconds(5000)}, t0);
  // Heard 1 s in, then this process stalls for 6 s (a loaded VM): its poller's next pass
  // must not give up on a peer whose heartbeats are only now being read.
  w.heard(t0 + milliseconds(1000));
  ASSERT_TRUE(listen(w, t0, t0 + milliseconds(1200)).is_ok());
  EXPECT_TRUE(w.check(t0 + milliseconds(7200), std::nullopt, 1).is_ok());
  // Still silent after that: 0.2 s listened before the stall, so it fails 4.8 s after it,
  // and the message says what was left out.
  EXPECT_TRUE(listen(w, t0 + milliseconds(7300), t0 + milliseconds(11900)).is_ok());
  Status s = listen(w, t0 + milliseconds(12000), t0 + milliseconds(12300));
  EXPECT_EQ(s.code(), ErrorCode::kDisconnected);
  EXPECT_NE(s.message().find("not counted: 6.0 s"), std::string::npos) << s.message();
  // A poller running normally (100 ms passes, short hiccups) is not a stall.
  PeerWatch steady(milliseconds(5000), {true, milliseconds(5000)}, t0);
  EXPECT_TRUE(steady.check(t0 + PeerWatch::kOwnStall, std::nullopt, 1).is_ok());
  EXPECT_EQ(listen(steady, t0 + PeerWatch::kOwnStall, t0 + milliseconds(5100)).code(),
            ErrorCode::kDisconnected);
}

TEST(PeerLiveness, OldPeerOrNoTimeoutIsNeverTimedOutOnSilence) {
  const auto t0 = LivenessClock::now();
  PeerWatch old_peer(milliseconds(3000), decode_liveness(0), t0);
  EXPECT_TRUE(old_peer.check(t0 + std::chrono::hours(1), std::nullopt, 0).is_ok());
  EXPECT_FALSE(old_peer.heartbeat_due(t0 + std::chrono::hours(1)));
  PeerWatch no_limit(milliseconds(0), {true, milliseconds(3000)}, t0);
  EXPECT_TRUE(no_limit.check(t0 + std::chrono::hours(1), t0, 0).is_ok());
}

TEST(PeerLiveness, HeartbeatsAtAQuarterOfThePeersLimit) {
  const auto t0 = LivenessClock::now();
  // Our own limit does not matter for the cadence: the peer's does.
  PeerWatch w(milliseconds(60000), {true, milliseconds(2000)}, t0);
  EXPECT_EQ(w.heartbeat_interval(), milliseconds(500));
  EXPECT_FALSE(w.heartbeat_due(t0 + milliseconds(400)));
  EXPECT_TRUE(w.heartbeat_due(t0 + milliseconds(500)));
  EXPECT_FALSE(w.heartbeat_due(t0 + milliseconds(900)));
  EXPECT_TRUE(w.heartbeat_due(t0 + milliseconds(1000)));
  // Over a whole limit, at least three heartbeats leave: one lost or late is not a failure.
  int sent = 0;
  for (int ms = 1001; ms <= 3000; ++ms) sent += w.heartbeat_due(t0 + milliseconds(ms));
  EXPECT_GE(sent, 3);
}

TEST(PeerLiveness, AHeartbeatThatCouldNotLeaveIsDueAgainAtOnce) {
  const auto t0 = LivenessClock::now();
  PeerWatch w(milliseconds(60000), {true, milliseconds(2000)}, t0);
  ASSERT_TRUE(w.heartbeat_due(t0 + milliseconds(500)));
  // The send lock was busy: the poller's next pass (here 100 ms on) tries again, instead of
  // the next quarter; once one left, the cadence is a quarter again.
  w.heartbeat_not_sent(t0 + milliseconds(500));
  EXPECT_TRUE(w.heartbeat_due(t0 + milliseconds(600)));
  EXPECT_FALSE(w.heartbeat_due(t0 + milliseconds(700)));
  EXPECT_TRUE(w.heartbeat_due(t0 + milliseconds(1100)));
}

TEST(PeerLiveness, PortDownLongerThanTheLimitFails) {
  const auto t0 = LivenessClock::now();
  PeerWatch w(milliseconds(5000), {true, milliseconds(5000)}, t0);
  // A flap of 2 s (the peer heard again after it) is a pause, not a failure.
  w.heard(t0 + milliseconds(2500));
  EXPECT_TRUE(w.check(t0 + milliseconds(2500), t0 + milliseconds(500), 0).is_ok());
  // Down for longer than the limit, even with heartbeats still arriving (soft-RoCE loops
  // local traffic back without the link): the link is lost.
  w.heard(t0 + milliseconds(5600));
  Status s = w.check(t0 + milliseconds(5600), t0 + milliseconds(500), 0);
  EXPECT_EQ(s.code(), ErrorCode::kDisconnected);
  EXPECT_NE(s.message().find("port went down"), std::string::npos) << s.message();
}

}  // namespace
}  // namespace ramshift::transport::rdma
