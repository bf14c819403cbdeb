#include "send_ring.h"

#include <gtest/gtest.h>

#include <algorithm>
#include <cstring>
#include <vector>

#include "work_requests.h"

namespace ramshift::transport::rdma {
namespace {

constexpr uint32_t kSlots = 4;
constexpr uint32_t kSlotBytes = 4096;

struct Sender {
  std::vector<std::byte> staging = std::vector<std::byte>(kSlots * kSlotBytes);
  SendRing ring{7, 16};
  Sender() { ring.attach(kSlots, kSlotBytes, staging); }
};

std::vector<std::byte> pattern(size_t n, int seed = 1) {
  std::vector<std::byte> v(n);
  for (size_t i = 0; i < n; ++i) v[i] = std::byte(static_cast<uint8_t>(i * 31 + seed));
  return v;
}

TEST(SendRing, CutsAMessageAtSlotBoundaries) {
  Sender s;
  EXPECT_EQ(s.ring.fragments_for(0), 1u);
  EXPECT_EQ(s.ring.fragments_for(1), 1u);
  EXPECT_EQ(s.ring.fragments_for(kSlotBytes), 1u);
  EXPECT_EQ(s.ring.fragments_for(kSlotBytes + 1), 2u);
  EXPECT_EQ(s.ring.fragments_for(3 * kSlotBytes), 3u);

  auto msg = pattern(2 * kSlotBytes + 5);
  ConstBuffer seg[] = {msg};
  Gather g(seg);
  auto staged = s.ring.stage(g, 3);
  ASSERT_EQ(staged.size(), 3u);
  EXPECT_EQ(g.remaining(), 0u);
  for (size_t i = 0; i < 3; ++i) {
    EXPECT_EQ(staged[i].remote_offset, i * kSlotBytes);
    EXPECT_EQ(staged[i].data, s.staging.data() + i * kSlotBytes);
    EXPECT_EQ(staged[i].last, i == 2);
    EXPECT_EQ(std::memcmp(staged[i].data, msg.data() + i * kSlotBytes, staged[i].len), 0);
  }
  EXPECT_EQ(staged[0].len, kSlotBytes);
  EXPECT_EQ(staged[2].len, 5u);
  EXPECT_EQ(staged[2].imm(), fragment_imm(5, true));
  EXPECT_EQ(staged[0].imm(), kSlotBytes);
}

TEST(SendRing, AnEmptyMessageIsOneEmptyLastFragment) {
  Sender s;
  Gather g({});
  auto staged = s.ring.stage(g, 1);
  ASSERT_EQ(staged.size(), 1u);
  EXPECT_EQ(staged[0].len, 0u);
  EXPECT_TRUE(staged[0].last);
  EXPECT_EQ(s.ring.free_slots(), kSlots - 1);
}

TEST(SendRing, GathersAcrossSegments) {
  Sender s;
  auto a = pattern(100, 1), b = pattern(kSlotBytes, 2), c = pattern(0), d = pattern(7, 3);
  ConstBuffer segs[] = {a, c, b, d};
  Gather g(segs);
  ASSERT_EQ(g.remaining(), 100u + kSlotBytes + 7);
  auto staged = s.ring.stage(g, 2);
  std::vector<std::byte> joined;
  for (auto& f : staged) joined.insert(joined.end(), f.data, f.data + f.len);
  std::vector<std::byte> want(a);
  want.insert(want.end(), b.begin(), b.end());
  want.insert(want.end(), d.begin(), d.end());
  EXPECT_EQ(joined, want);
}

TEST(SendRing, CreditsRunOutAndComeBack) {
  Sender s;
  EXPECT_EQ(s.ring.free_slots(), kSlots);
  auto msg = pattern(kSlotBytes);
  for (uint32_t i = 0; i < kSlots; ++i) {
    ConstBuffer seg[] = {msg};
    Gather g(seg);
    auto staged = s.ring.stage(g, 1);
    EXPECT_EQ(staged[0].remote_offset, uint64_t{i} * kSlotBytes);
  }
  EXPECT_EQ(s.ring.free_slots(), 0u);
  // The peer released two, then all four: slots come back cumulatively.
  ASSERT_TRUE(s.ring.on_credit(2).is_ok());
  EXPECT_EQ(s.ring.free_slots(), 2u);
  EXPECT_EQ(s.ring.peer_released(), 2u);
  ASSERT_TRUE(s.ring.on_credit(4).is_ok());
  EXPECT_EQ(s.ring.free_slots(), kSlots);
  // A repeated credit changes nothing; the next fragment wraps to slot 0.
  ASSERT_TRUE(s.ring.on_credit(4).is_ok());
  EXPECT_EQ(s.ring.free_slots(), kSlots);
  ConstBuffer seg[] = {msg};
  Gather g(seg);
  EXPECT_EQ(s.ring.stage(g, 1)[0].remote_offset, 0u);
}

TEST(SendRing, CreditsForSlotsNeverWrittenAreRefused) {
  Sender s;
  auto refused = s.ring.on_credit(1);
  EXPECT_EQ(refused.code(), ErrorCode::kProtocol);
  EXPECT_NE(refused.message().find("rdma queue 7: the peer returned credits for slots never"),
            std::string::npos);
  auto msg = pattern(10);
  ConstBuffer seg[] = {msg};
  Gather g(seg);
  (void)s.ring.stage(g, 1);
  EXPECT_EQ(s.ring.on_credit(2).code(), ErrorCode::kProtocol);
  EXPECT_EQ(s.ring.on_credit(kCreditMask).code(), ErrorCode::kProtocol);  // "minus one"
  EXPECT_TRUE(s.ring.on_credit(1).is_ok());
  EXPECT_EQ(s.ring.peer_released(), 1u);
}

TEST(SendRing, AMessageWaitsForCreditsAndLeavesInOrder) {
  Sender s;
  auto first = pattern(3 * kSlotBytes, 1);
  ConstBuffer seg1[] = {first};
  Gather g1(seg1);
  (void)s.ring.stage(g1, 3);
  ASSERT_EQ(s.ring.free_slots(), 1u);

  auto big = pattern(3 * kSlotBytes - 1, 2);
  const auto want = big;
  ConstBuffer seg2[] = {big};
  Gather g2(seg2);
  s.ring.hold(g2);
  std::fill(big.begin(), big.end(), std::byte{0});  // the caller's buffer is free at once
  ASSERT_TRUE(s.ring.has_pending());

  std::vector<std::byte> out;
  auto take = [&](std::span<const StagedFragment> staged) {
    for (auto& f : staged) out.insert(out.end(), f.data, f.data + f.len);
    return staged.size();
  };
  EXPECT_EQ(take(s.ring.stage_pending(0)), 0u);   // no room in the send queue
  EXPECT_EQ(take(s.ring.stage_pending(16)), 1u);  // one credit
  EXPECT_TRUE(s.ring.has_pending());
  EXPECT_EQ(take(s.ring.stage_pending(16)), 0u);  // none left
  ASSERT_TRUE(s.ring.on_credit(3).is_ok());
  auto last = s.ring.stage_pending(16);
  ASSERT_EQ(last.size(), 2u);
  EXPECT_TRUE(last[1].last);
  EXPECT_FALSE(last[0].last);
  take(last);
  EXPECT_FALSE(s.ring.has_pending());
  EXPECT_EQ(out, want);
}

TEST(SendRing, AnEmptyMessageCanWaitToo) {
  Sender s;
  for (uint32_t i = 0; i < kSlots; ++i) {
    Gather g({});
    (void)s.ring.stage(g, 1);
  }
  Gather g({});
  s.ring.hold(g);
  EXPECT_TRUE(s.ring.stage_pending(16).empty());
  ASSERT_TRUE(s.ring.on_credit(1).is_ok());
  auto staged = s.ring.stage_pending(16);
  ASSERT_EQ(staged.size(), 1u);
  EXPECT_TRUE(staged[0].last);
  EXPECT_EQ(staged[0].len, 0u);
  EXPECT_FALSE(s.ring.has_pending());
}

TEST(WorkRequestLedger, SignalsEveryNthAndKnowsWhenAMarkerIsNeeded) {
  WorkRequestLedger l(8, 4);
  EXPECT_EQ(l.send_free(), 8u);
  EXPECT_FALSE(l.needs_marker());  // nothing posted
  std::vector<bool> signaled;
  for (uint64_t id = 0; id < 8; ++id) signaled.push_back(l.signal_request(id));
  EXPECT_EQ(signaled, (std::vector<bool>{false, false, false, true, false, false, false, true}));
  l.note_posted(8);
  EXPECT_EQ(l.send_free(), 0u);
  EXPECT_FALSE(l.needs_marker());  // the last one was signaled

  EXPECT_FALSE(l.signal_request(8));
  l.note_posted(1);
  EXPECT_TRUE(l.needs_marker());
  EXPECT_EQ(l.posted(), 9u);
  l.note_marker_posted();  // numbered 9, signaled
  EXPECT_EQ(l.posted(), 10u);
  EXPECT_FALSE(l.needs_marker());

  // A completion stands for every request before it; a late older one changes nothing.
  l.on_send_completed(7);
  EXPECT_EQ(l.completed(), 8u);
  l.on_send_completed(3);
  EXPECT_EQ(l.completed(), 8u);
  EXPECT_EQ(l.send_free(), 6u);
}

TEST(WorkRequestLedger, DrainedOnlyWhenEveryRequestIsAccountedFor) {
  WorkRequestLedger l(8, 4);
  EXPECT_TRUE(l.drained());
  l.note_receives_posted(1);
  l.note_receives_posted(3);
  EXPECT_EQ(l.receives_outstanding(), 4u);
  l.note_posted(2);
  EXPECT_FALSE(l.drained());
  for (int i = 0; i < 4; ++i) l.on_receive_completed();  // flushed by the error state
  EXPECT_FALSE(l.drained());                             // two sends unaccounted for
  ASSERT_TRUE(l.needs_marker());
  l.note_marker_posted();
  l.on_send_completed(2);  // the marker's completion covers both sends
  EXPECT_TRUE(l.drained());
}

}  // namespace
}  // namespace ramshift::transport::rdma
