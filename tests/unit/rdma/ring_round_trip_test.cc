// The two halves of the ring protocol talking to each other the way the verbs shell makes
// them: each staged fragment is copied to its offset in the receiver's ring (what the RDMA
// WRITE does) and announced with its immediate; credits go back as the receiver reports them.
#include <gtest/gtest.h>

#include <cstring>
#include <deque>
#include <vector>

#include "receive_ring.h"
#include "send_ring.h"

namespace ramshift::transport::rdma {
namespace {

struct Pair {
  uint32_t slots, slot_bytes;
  std::vector<std::byte> staging, ring;
  SendRing sender;
  ReceiveRing receiver;
  std::deque<uint32_t> wire;  // immediates in flight, in order (RC)

  Pair(uint32_t s, uint32_t b)
      : slots(s),
        slot_bytes(b),
        staging(size_t{s} * b),
        ring(size_t{s} * b),
        sender(0, 64),
        receiver(s, b, 0) {
    sender.attach(s, b, staging);
    receiver.attach(ring);
  }

  void write(std::span<const StagedFragment> staged) {
    for (const StagedFragment& f : staged) {
      ASSERT_LE(f.remote_offset + f.len, ring.size());
      std::memcpy(ring.data() + f.remote_offset, f.data, f.len);
      wire.push_back(f.imm());
    }
  }
  // Sends a message the way post_message does: at once if credits allow, else held.
  void send(const std::vector<std::byte>& msg) {
    ConstBuffer seg[] = {msg};
    Gather g(seg);
    const size_t frags = sender.fragments_for(msg.size());
    if (frags <= sender.free_slots() && frags <= sender.max_chain())
      write(sender.stage(g, frags));
    else
      sender.hold(g);
  }
  // The poller: land whatever is on the wire.
  void deliver() {
    while (!wire.empty()) {
      auto f = receiver.arrive(wire.front());
      ASSERT_TRUE(f.is_ok()) << f.status().message();
      receiver.push(*f);
      wire.pop_front();
    }
  }
  // One poll(): messages out (copied, since views die at the next poll), credits back.
  std::vector<std::vector<std::byte>> poll() {
    std::vector<std::vector<std::byte>> got;
    receiver.begin_poll();
    std::vector<ConstBuffer> out(receiver.views_per_poll());
    for (;;) {
      auto t = receiver.take(out);
      EXPECT_TRUE(t.is_ok());
      if (!t || t->messages == 0) break;
      for (size_t i = 0; i < t->messages; ++i) got.emplace_back(out[i].begin(), out[i].end());
      if (got.size() >= out.size()) break;
    }
    return got;
  }
  void return_credits() {
    receiver.begin_poll();
    if (receiver.credit_owed()) {
      EXPECT_TRUE(sender.on_credit(credit_value(receiver.report_credit())).is_ok());
    }
    while (sender.has_pending()) {
      auto staged = sender.stage_pending(64);
      if (staged.empty()) break;
      write(staged);
    }
  }
};

std::vector<std::byte> message(size_t n, uint8_t seed) {
  std::vector<std::byte> v(n);
  for (size_t i = 0; i < n; ++i) v[i] = std::byte(static_cast<uint8_t>(i * 7 + seed));
  return v;
}

TEST(RingRoundTrip, MessagesAtSlotBoundariesArriveWhole) {
  Pair p(4, 4096);
  std::vector<std::vector<std::byte>> sent, received;
  uint8_t seed = 0;
  for (size_t len : {size_t{0}, size_t{1}, size_t{4095}, size_t{4096}, size_t{4097}, size_t{8191},
                     size_t{8192}, size_t{8193}, size_t{3 * 4096}, size_t{4 * 4096},
                     size_t{4 * 4096 + 1}, size_t{10 * 4096 - 1}, size_t{2}}) {
    sent.push_back(message(len, ++seed));
    p.send(sent.back());
    // Keep the ring turning until the sender has nothing waiting.
    for (int spins = 0; spins < 100; ++spins) {
      p.deliver();
      for (auto& m : p.poll()) received.push_back(std::move(m));
      p.return_credits();
      if (!p.sender.has_pending() && p.wire.empty()) break;
    }
    ASSERT_FALSE(p.sender.has_pending()) << len;
  }
  p.deliver();
  for (auto& m : p.poll()) received.push_back(std::move(m));
  ASSERT_EQ(received.size(), sent.size());
  for (size_t i = 0; i < sent.size(); ++i) EXPECT_EQ(received[i], sent[i]) << "message " << i;
}

TEST(RingRoundTrip, ASenderStopsAtTheCreditsAndResumesWithThem) {
  Pair p(2, 4096);
  auto a = message(4096, 1), b = message(4096, 2), c = message(100, 3);
  p.send(a);
  p.send(b);
  EXPECT_EQ(p.sender.free_slots(), 0u);
  p.send(c);  // no credit: it waits
  EXPECT_TRUE(p.sender.has_pending());
  p.deliver();
  auto first = p.poll();  // one view per poll with a two-slot ring
  ASSERT_EQ(first.size(), 1u);
  EXPECT_EQ(first[0], a);
  p.return_credits();  // `a`'s slot is released by this poll: `c` goes
  EXPECT_FALSE(p.sender.has_pending());
  p.deliver();
  auto rest = p.poll();
  ASSERT_EQ(rest.size(), 1u);
  EXPECT_EQ(rest[0], b);
  rest = p.poll();
  ASSERT_EQ(rest.size(), 1u);
  EXPECT_EQ(rest[0], c);
}

TEST(RingRoundTrip, ManyRingsWorthKeepsSlotsInStep) {
  Pair p(3, 4096);  // an odd ring: slot numbers and message lengths never line up
  std::vector<std::vector<std::byte>> sent, received;
  for (int i = 0; i < 200; ++i) {
    sent.push_back(message((i * 1237) % (3 * 4096 + 3), static_cast<uint8_t>(i)));
    p.send(sent.back());
    for (int spins = 0; spins < 100 && (p.sender.has_pending() || !p.wire.empty()); ++spins) {
      p.deliver();
      for (auto& m : p.poll()) received.push_back(std::move(m));
      p.return_credits();
    }
  }
  for (int spins = 0; spins < 10; ++spins) {
    p.deliver();
    for (auto& m : p.poll()) received.push_back(std::move(m));
    p.return_credits();
  }
  ASSERT_EQ(received.size(), sent.size());
  for (size_t i = 0; i < sent.size(); ++i) EXPECT_EQ(received[i], sent[i]) << "message " << i;
}

}  // namespace
}  // namespace ramshift::transport::rdma
