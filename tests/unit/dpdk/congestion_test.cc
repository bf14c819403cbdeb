// dpdk:// congestion control without DPDK: the pacer keeps its rate, the delay controller
// answers a queue, and a sender over a simulated shaped link (a tbf: a byte queue drained at
// a fixed rate, which drops what overflows it) fills the link without overflowing it.
#include "congestion.h"

#include <gtest/gtest.h>

#include <deque>

#include "reliable_queue.h"

namespace ramshift::transport::dpdk {
namespace {

using std::chrono::microseconds;
using std::chrono::milliseconds;

TEST(DpdkPacer, SendsAtItsRate) {
  RateController p({.initial_rate = 10e6});
  Clock::time_point now{};
  double sent = 0;
  for (int i = 0; i < 100000; ++i) {  // 1 s in 10 us steps
    now += microseconds(10);
    while (p.admit(1000, now)) sent += 1000;
  }
  // 10 MB in the second, give or take the burst allowance.
  EXPECT_NEAR(sent, 10e6, 0.1e6);
}

TEST(DpdkPacer, DelayAboveTargetSlowsDownBelowItSpeedsUp) {
  RateController p({.initial_rate = 100e6});
  Clock::time_point now{};
  auto held_back = [&] {  // a sender with more to send than the pacer allows
    while (p.admit(1500, now)) {
    }
  };
  for (int i = 0; i < 20; ++i) {  // round trips at the base: slow start grows the rate
    now += microseconds(200);
    held_back();
    p.on_rtt(microseconds(100), now);
  }
  const double grown = p.rate();
  EXPECT_GT(grown, 100e6 * 1.5);
  EXPECT_TRUE(p.slow_start());
  for (int i = 0; i < 5; ++i) {  // a standing queue of 10 ms
    now += milliseconds(10);
    held_back();
    p.on_rtt(milliseconds(10), now);
  }
  EXPECT_LT(p.rate(), grown / 2);
  EXPECT_FALSE(p.slow_start());
  const double cut = p.rate();
  for (int i = 0; i < 10; ++i) {  // the queue drained: additive increase
    now += milliseconds(1);
    held_back();
    p.on_rtt(microseconds(150), now);
  }
  EXPECT_GT(p.rate(), cut);
  EXPECT_LT(p.rate(), cut + 11 * 4e6);
  p.on_timeout(now + milliseconds(5));
  EXPECT_LT(p.rate(), cut);
}

TEST(DpdkPacer, AnIdleSenderEarnsNoIncrease) {
  RateController p({.initial_rate = 50e6});
  Clock::time_point now{};
  for (int i = 0; i < 50; ++i) {
    now += milliseconds(1);
    (void)p.admit(1500, now);  // one frame per round trip: far below the rate
    p.on_rtt(microseconds(100), now);
  }
  EXPECT_EQ(p.rate(), 50e6);
}

// A sender and a receiver across a link shaped like `tc tbf rate 1gbit limit 2MB`, 50 us
// each way besides the queue: every frame is delivered or, when the queue is full, dropped.
TEST(DpdkPacer, FillsAShapedLinkWithoutOverflowingItsQueue) {
  constexpr double kLinkRate = 125e6;  // bytes/s
  constexpr double kQueueLimit = 2e6;
  SendQueue s({.max_payload = 1452, .initial_window = 1u << 20});
  ReceiveQueue r(1u << 20, 64u << 20);
  Bytes message(8u << 20);
  for (int i = 0; i < 8; ++i) {  // 64 MiB
    std::span<const std::byte> piece(message);
    s.push_message({&piece, 1});
  }
  struct InFlight {
    Clock::time_point at;  // leaves the queue (data) or arrives (ACK)
    FrameHeader header;
    size_t bytes;
  };
  std::deque<InFlight> queue, acks;
  double queued = 0, max_queued = 0;
  uint64_t dropped = 0, delivered_bytes = 0;
  Clock::time_point now{}, link_free{};
  while (!s.idle() && now < Clock::time_point{} + std::chrono::seconds(5)) {
    now += microseconds(10);
    for (const OutFrame* f : s.due(now, 64)) {
      size_t bytes = f->payload.size() + kHeaderBytes + 42;
      if (queued + bytes > kQueueLimit) {
        ++dropped;
        continue;
      }
      queued += bytes;
      max_queued = std::max(max_queued, queued);
      link_free = std::max(link_free, now) + std::chrono::duration_cast<Clock::duration>(
                                                 std::chrono::duration<double>(bytes / kLinkRate));
      queue.push_back({link_free, {FrameType::kData, 1, 0, f->flags, f->seq, f->msg_len}, bytes});
    }
    while (!queue.empty() && queue.front().at <= now) {
      InFlight f = queue.front();
      queue.pop_front();
      queued -= double(f.bytes);
      delivered_bytes += f.bytes;
      Bytes payload(f.bytes - kHeaderBytes - 42);
      (void)r.on_data(f.header, payload);
      acks.push_back({now + microseconds(100), {}, 0});
    }
    r.release_taken();
    (void)r.take(1000);
    bool acked = false;
    while (!acks.empty() && acks.front().at <= now) acks.pop_front(), acked = true;
    if (acked) {
      EXPECT_TRUE(s.on_ack(r.ack(), now));
    }
  }
  const double seconds = std::chrono::duration<double>(now - Clock::time_point{}).count();
  EXPECT_TRUE(s.idle()) << "not finished in " << seconds << " s";
  EXPECT_EQ(dropped, 0u) << "the queue overflowed; most it held: " << max_queued;
  // At least 80% of the link, slow start included.
  EXPECT_GT(delivered_bytes / seconds, 0.8 * kLinkRate) << "pacing rate " << s.pacer().rate();
}

}  // namespace
}  // namespace ramshift::transport::dpdk
