// The dpdk:// reliability without DPDK: a SendQueue and a ReceiveQueue joined by a lossy,
// reordering "wire" in the test, on a clock the test moves.
#include "reliable_queue.h"

#include <gtest/gtest.h>

#include <algorithm>
#include <random>

#include "dpdk_settings.h"
#include "frame_format.h"

namespace ramshift::transport::dpdk {
namespace {

using std::chrono::milliseconds;

Bytes message(size_t n, uint8_t seed) {
  Bytes b(n);
  for (size_t i = 0; i < n; ++i) b[i] = std::byte(uint8_t(seed + i * 7));
  return b;
}

void push(SendQueue& s, const Bytes& m) {
  std::span<const std::byte> piece(m);
  s.push_message({&piece, 1});
}

struct Wire {
  double loss = 0, reorder = 0, duplicate = 0;
  std::mt19937 rng{42};
  bool chance(double p) { return std::uniform_real_distribution<>(0, 1)(rng) < p; }
};

// Runs sender -> receiver until every message is taken; returns the messages in order.
std::vector<Bytes> transfer(SendQueue& s, ReceiveQueue& r, Wire& w, size_t messages) {
  std::vector<Bytes> got;
  Clock::time_point now{};
  for (int step = 0; step < 200000 && got.size() < messages; ++step) {
    now += milliseconds(1);
    std::vector<const OutFrame*> frames = s.due(now, 64);
    if (w.reorder > 0) std::shuffle(frames.begin(), frames.end(), w.rng);
    for (const OutFrame* f : frames) {
      if (w.chance(w.loss)) continue;
      FrameHeader h{FrameType::kData, 1, 0, f->flags, f->seq, f->msg_len};
      (void)r.on_data(h, f->payload);
      if (w.chance(w.duplicate)) {
        EXPECT_EQ(r.on_data(h, f->payload), ReceiveQueue::Outcome::kDuplicate);
      }
    }
    r.release_taken();
    for (auto& m : r.take(8)) got.push_back(std::move(m));
    if (!w.chance(w.loss)) {
      EXPECT_TRUE(s.on_ack(r.ack(), now));
    }
  }
  return got;
}

TEST(DpdkReliability, LosslessMessagesArriveWholeAndInOrder) {
  SendQueue s({.max_payload = 100});
  ReceiveQueue r(256, 1 << 20);
  Wire w;
  std::vector<Bytes> sent;
  for (int i = 0; i < 20; ++i) sent.push_back(message(size_t(i * 97), uint8_t(i)));
  for (auto& m : sent) push(s, m);
  EXPECT_EQ(transfer(s, r, w, sent.size()), sent);
  EXPECT_EQ(s.retransmitted(), 0u);
}

TEST(DpdkReliability, LossReorderAndDuplicatesLoseNothing) {
  for (double loss : {0.01, 0.05, 0.2}) {
    SendQueue s({.max_payload = 64, .initial_window = 32});
    ReceiveQueue r(128, 1 << 20);
    Wire w{.loss = loss, .reorder = 1, .duplicate = 0.05};
    std::vector<Bytes> sent;
    for (int i = 0; i < 50; ++i) sent.push_back(message(size_t(1 + i * 53), uint8_t(i)));
    for (auto& m : sent) push(s, m);
    EXPECT_EQ(transfer(s, r, w, sent.size()), sent) << "loss " << loss;
    EXPECT_GT(s.retransmitted(), 0u);
  }
}

TEST(DpdkReliability, SenderStaysInsideTheReceiversWindow) {
  SendQueue s({.max_payload = 10, .initial_window = 4});
  Bytes big = message(1000, 1);  // 100 frames
  push(s, big);
  Clock::time_point now{};
  EXPECT_EQ(s.due(now, 64).size(), 4u);  // the initial window
  EXPECT_TRUE(s.on_ack({.cumulative = 2, .window = 3}, now));
  // The window now ends at 2 + 3: only frame 4 is new (2 and 3 are in flight).
  auto more = s.due(now, 64);
  ASSERT_EQ(more.size(), 1u);
  EXPECT_EQ(more[0]->seq, 4u);
}

TEST(DpdkReliability, SackHoleIsResentBeforeItsTimer) {
  SendQueue s({.max_payload = 10, .initial_window = 8, .min_rto = milliseconds(50)});
  push(s, message(80, 2));
  Clock::time_point now{};
  ASSERT_EQ(s.due(now, 64).size(), 8u);
  // Frame 0 lost; 1..7 arrived.
  EXPECT_TRUE(s.on_ack({.cumulative = 0, .window = 8, .sacks = {{1, 8}}}, now));
  auto again = s.due(now + milliseconds(1), 64);
  ASSERT_EQ(again.size(), 1u);
  EXPECT_EQ(again[0]->seq, 0u);
  EXPECT_EQ(s.retransmitted(), 1u);
}

TEST(DpdkReliability, ReceiverRefusesFramesOutsideItsWindowAndBrokenMessages) {
  ReceiveQueue r(4, 100);
  EXPECT_EQ(r.on_data({FrameType::kData, 1, 0, kFlagFirst, 4, 10}, Bytes(5)),
            ReceiveQueue::Outcome::kOutsideWindow);
  EXPECT_EQ(r.on_data({FrameType::kData, 1, 0, kFlagFirst | kFlagLast, 0, 500}, Bytes(5)),
            ReceiveQueue::Outcome::kBrokenMessage);  // larger than max_message
  ReceiveQueue r2(4, 100);
  EXPECT_EQ(r2.on_data({FrameType::kData, 1, 0, kFlagLast, 0, 0}, Bytes(5)),
            ReceiveQueue::Outcome::kBrokenMessage);  // a middle with no start
}

TEST(DpdkReliability, AMessageLargerThanTheWindowStillArrives) {
  // 10 frames through a window of 4: the frames of the message being assembled do not hold
  // the window shut (only whole messages not yet released do).
  SendQueue s({.max_payload = 10, .initial_window = 4});
  ReceiveQueue r(4, 1 << 20);
  Wire w;
  std::vector<Bytes> sent{message(100, 5), message(35, 6)};
  for (auto& m : sent) push(s, m);
  EXPECT_EQ(transfer(s, r, w, sent.size()), sent);
}

TEST(DpdkReliability, FinEndsTheQueueAfterEveryMessage) {
  SendQueue s({.max_payload = 100});
  ReceiveQueue r(64, 1 << 20);
  push(s, message(250, 3));
  s.push_fin();
  for (const OutFrame* f : s.due(Clock::time_point{}, 64))
    (void)r.on_data({FrameType::kData, 1, 0, f->flags, f->seq, f->msg_len}, f->payload);
  EXPECT_FALSE(r.finished());  // a message still to take
  EXPECT_EQ(r.take(8).size(), 1u);
  EXPECT_TRUE(r.finished());
  EXPECT_TRUE(s.on_ack(r.ack(), Clock::time_point{}));
  EXPECT_TRUE(s.fin_acked());
}

TEST(DpdkFrames, RoundTripAndRejectGarbage) {
  Bytes buf(kHeaderBytes + 3);
  write_header({FrameType::kData, 77, 2, kFlagFirst | kFlagLast, 9, 3}, buf);
  auto f = parse_frame(buf);
  ASSERT_TRUE(f);
  EXPECT_EQ(f->header.conn_id, 77u);
  EXPECT_EQ(f->header.seq, 9u);
  EXPECT_EQ(f->payload.size(), 3u);
  buf[0] = std::byte{0};
  EXPECT_FALSE(parse_frame(buf));
  EXPECT_FALSE(parse_frame(std::span(buf).first(5)));
  std::mt19937 rng(1);
  for (int i = 0; i < 10000; ++i) {  // random bytes never crash the parser
    Bytes junk(rng() % 64);
    for (auto& b : junk) b = std::byte(rng());
    if (auto p = parse_frame(junk); p && p->header.type == FrameType::kAck)
      (void)parse_ack(p->payload);
  }
  AckBody ack{.cumulative = 5, .window = 100, .sacks = {{7, 9}, {12, 13}}};
  Bytes body(ack_body_bytes(ack));
  write_ack(ack, body);
  auto back = parse_ack(body);
  ASSERT_TRUE(back);
  EXPECT_EQ(back->sacks, ack.sacks);
  body[12] = std::byte{0};  // first SACK begins at or below the cumulative point
  EXPECT_FALSE(parse_ack(body));
}

TEST(DpdkSettings, FaultKnobAndFlags) {
  auto p = fault_plan_from("loss=0.05,reorder=0.01,seed=3");
  ASSERT_TRUE(p);
  EXPECT_DOUBLE_EQ(p->loss, 0.05);
  EXPECT_FALSE(fault_plan_from("loss=2"));
  EXPECT_FALSE(fault_plan_from("drop=0.1"));
  BackendSettings s;
  s.set("dpdk-local-ip", "10.78.0.1");
  s.set("dpdk-peer-mac", "02:00:00:00:00:0a");
  auto d = dpdk_settings_from(s);
  ASSERT_TRUE(d);
  EXPECT_EQ(*d->local_ip, 0x0a4e0001u);
  EXPECT_EQ((*d->peer_mac)[5], 0x0a);
  s.set("dpdk-peer-mac", "nope");
  EXPECT_FALSE(dpdk_settings_from(s));
}

}  // namespace
}  // namespace ramshift::transport::dpdk
