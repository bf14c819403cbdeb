#include "receive_ring.h"

#include <gtest/gtest.h>

#include <algorithm>
#include <vector>

#include "ring_protocol.h"

namespace ramshift::transport::rdma {
namespace {

constexpr uint32_t kSlots = 4;
constexpr uint32_t kSlotBytes = 4096;

struct Receiver {
  std::vector<std::byte> memory = std::vector<std::byte>(kSlots * kSlotBytes);
  ReceiveRing ring{kSlots, kSlotBytes, 5};
  Receiver() { ring.attach(memory); }

  // The peer writes `len` bytes of `fill` into the next slot and announces them.
  Status land(uint32_t len, bool last, uint8_t fill) {
    Result<ArrivedFragment> f = ring.arrive(fragment_imm(len, last));
    if (!f) return f.status();
    std::fill_n(memory.begin() + f->slot * kSlotBytes, len, std::byte{fill});
    ring.push(*f);
    return Status::ok();
  }
  // What the peer hears when we report credits.
  uint32_t credit() { return credit_value(ring.report_credit()); }
};

bool all(ConstBuffer b, uint8_t fill) {
  return std::all_of(b.begin(), b.end(), [&](std::byte x) { return x == std::byte{fill}; });
}

TEST(ReceiveRing, SingleFragmentsAreViewsIntoTheRing) {
  Receiver r;
  ASSERT_TRUE(r.land(10, true, 1).is_ok());
  ASSERT_TRUE(r.land(kSlotBytes, true, 2).is_ok());
  ASSERT_TRUE(r.land(0, true, 3).is_ok());
  ConstBuffer out[8];
  r.ring.begin_poll();
  auto t = r.ring.take(out);
  ASSERT_TRUE(t.is_ok());
  EXPECT_EQ(t->messages, 3u);
  EXPECT_FALSE(t->copied);
  EXPECT_EQ(out[0].data(), r.memory.data());
  EXPECT_EQ(out[0].size(), 10u);
  EXPECT_EQ(out[1].data(), r.memory.data() + kSlotBytes);
  EXPECT_TRUE(all(out[1], 2));
  EXPECT_EQ(out[2].size(), 0u);
  EXPECT_TRUE(r.ring.empty());
  // Views hold their slots until the next poll.
  EXPECT_FALSE(r.ring.credit_owed());
  r.ring.begin_poll();
  EXPECT_TRUE(r.ring.credit_owed());
  EXPECT_TRUE(r.ring.credit_due());
  EXPECT_EQ(r.credit(), 3u);
  EXPECT_FALSE(r.ring.credit_owed());
}

TEST(ReceiveRing, ReassemblesAMessageAcrossSlotsAndWraps) {
  Receiver r;
  // Two single-slot messages first, so the three-slot one wraps round the ring's end.
  ASSERT_TRUE(r.land(1, true, 9).is_ok());
  ASSERT_TRUE(r.land(1, true, 9).is_ok());
  ConstBuffer out[8];
  r.ring.begin_poll();
  ASSERT_EQ(r.ring.take(out)->messages, 2u);
  r.ring.begin_poll();
  EXPECT_EQ(r.credit(), 2u);

  ASSERT_TRUE(r.land(kSlotBytes, false, 1).is_ok());  // slot 2
  ASSERT_TRUE(r.land(kSlotBytes, false, 2).is_ok());  // slot 3
  auto part = r.ring.take(out);
  ASSERT_TRUE(part.is_ok());
  EXPECT_EQ(part->messages, 0u);  // not whole yet
  EXPECT_TRUE(part->copied);      // but those slots are free already
  EXPECT_TRUE(r.ring.credit_owed());
  ASSERT_TRUE(r.land(17, true, 3).is_ok());  // slot 0
  auto whole = r.ring.take(out);
  ASSERT_TRUE(whole.is_ok());
  ASSERT_EQ(whole->messages, 1u);
  ASSERT_EQ(out[0].size(), 2 * kSlotBytes + 17);
  EXPECT_TRUE(all(out[0].first(kSlotBytes), 1));
  EXPECT_TRUE(all(out[0].subspan(kSlotBytes, kSlotBytes), 2));
  EXPECT_TRUE(all(out[0].subspan(2 * kSlotBytes), 3));
  EXPECT_EQ(r.credit(), 5u);
}

TEST(ReceiveRing, ViewsGoFirstThenAReassemblyAlone) {
  Receiver r;
  ASSERT_TRUE(r.land(5, true, 1).is_ok());
  ASSERT_TRUE(r.land(kSlotBytes, false, 2).is_ok());
  ASSERT_TRUE(r.land(1, true, 3).is_ok());
  ConstBuffer out[8];
  auto first = r.ring.take(out);
  ASSERT_EQ(first->messages, 1u);  // the view, alone: its slot is released before the copies
  EXPECT_FALSE(first->copied);
  auto second = r.ring.take(out);
  ASSERT_EQ(second->messages, 1u);
  EXPECT_EQ(out[0].size(), kSlotBytes + 1);
}

TEST(ReceiveRing, HandsOutAtMostHalfTheRingPerPoll) {
  ReceiveRing big(8, kSlotBytes, 0);
  EXPECT_EQ(big.views_per_poll(), 4u);
  ReceiveRing two(2, kSlotBytes, 0);
  EXPECT_EQ(two.views_per_poll(), 1u);
}

TEST(ReceiveRing, GarbageFragmentHeadersAreRefused) {
  Receiver r;
  for (uint32_t imm : {0x01000000u, 0x3f000000u, kImmReserved | 10u, kSlotBytes + 1, kImmLenMask,
                       fragment_imm(kSlotBytes + 1, true), credit_imm(1)}) {
    auto f = r.ring.arrive(imm);
    ASSERT_FALSE(f.is_ok()) << std::hex << imm;
    EXPECT_EQ(f.status().code(), ErrorCode::kProtocol);
    EXPECT_NE(f.status().message().find("rdma queue 5: fragment header"), std::string::npos);
  }
  EXPECT_TRUE(r.ring.empty());
  // Refused headers used no slot: the next good one lands in slot 0.
  auto ok = r.ring.arrive(fragment_imm(kSlotBytes, true));
  ASSERT_TRUE(ok.is_ok());
  EXPECT_EQ(ok->slot, 0u);
  EXPECT_EQ(ok->len, kSlotBytes);
}

TEST(ReceiveRing, WritesBeyondTheCreditsAreRefused) {
  Receiver r;
  for (uint32_t i = 0; i < kSlots; ++i) ASSERT_TRUE(r.land(1, true, 1).is_ok());
  auto over = r.land(1, true, 1);
  EXPECT_EQ(over.code(), ErrorCode::kProtocol);
  EXPECT_NE(over.message().find("wrote past the credits"), std::string::npos);
  // Released but not yet reported is still not a credit the peer has.
  ConstBuffer out[2];  // half the ring, as a poll asks for
  ASSERT_EQ(r.ring.take(out)->messages, 2u);
  r.ring.begin_poll();
  EXPECT_EQ(r.land(1, true, 1).code(), ErrorCode::kProtocol);
  EXPECT_EQ(r.credit(), 2u);
  EXPECT_TRUE(r.land(1, true, 1).is_ok());
  EXPECT_TRUE(r.land(1, true, 1).is_ok());
  EXPECT_EQ(r.land(1, true, 1).code(), ErrorCode::kProtocol);
}

TEST(ReceiveRing, AMessageAboveTheLimitIsRefused) {
  Receiver r;
  ConstBuffer out[1];
  size_t copied = 0;
  Status last_error;
  // Keep the ring turning: every slot is copied and reported at once.
  while (copied <= kMaxRingMessage) {
    ASSERT_TRUE(r.land(kSlotBytes, false, 0).is_ok());
    auto t = r.ring.take(out);
    copied += kSlotBytes;
    if (!t) {
      last_error = t.status();
      break;
    }
    EXPECT_EQ(t->messages, 0u);
    (void)r.credit();
  }
  EXPECT_EQ(last_error.code(), ErrorCode::kProtocol);
  EXPECT_NE(last_error.message().find("above the size limit"), std::string::npos);
  EXPECT_GT(copied, kMaxRingMessage);
  EXPECT_LE(copied, kMaxRingMessage + kSlotBytes);
}

}  // namespace
}  // namespace ramshift::transport::rdma
