// The switch-over's device state: compressed where it pays, refused when damaged, and
// the frame body checks of DEVICE_STATE_ZSTD.
#include <gtest/gtest.h>

#include <string>

#include "migration/src/destination_control.h"
#include "migration/src/switchover.h"
#include "ramshift/wire/frame.h"

namespace ramshift::migration {
namespace {

// A synthetic guest's device state: its spec, a NUL, a u32 generation per page (1 MiB for
// 1 GiB), most pages written once or twice.
std::string generation_table() {
  std::string s = "size=1073741824,dirty-rate=20971520,pattern=mixed";
  s.push_back('\0');
  for (uint32_t p = 0; p < 262144; ++p) {
    const uint32_t g = 1 + (p * 2654435761u >> 29 == 0);
    s.append(reinterpret_cast<const char*>(&g), 4);
  }
  return s;
}

TEST(DeviceState, GoesCompressedOnASlowLinkAndArrivesWhole) {
  const std::string state = generation_table();
  const auto f = encode_device_state(state, true);
  ASSERT_TRUE(f.status.is_ok());
  EXPECT_EQ(f.type, wire::FrameType::kDeviceStateZstd);
  EXPECT_EQ(f.raw_bytes, state.size());
  EXPECT_LT(f.body.size() * 10, state.size()) << "a generation table shrinks at least 10x";
  auto back = inflate_device_state(f.body);
  ASSERT_TRUE(back.is_ok()) << back.status().message();
  EXPECT_EQ(*back, state);
  // Uncompressed when not asked, and when it would not shrink.
  EXPECT_EQ(encode_device_state(state, false).type, wire::FrameType::kDeviceState);
  EXPECT_EQ(encode_device_state(state, false).body.size(), state.size());
  EXPECT_EQ(encode_device_state("small", true).type, wire::FrameType::kDeviceState);
}

TEST(DeviceState, CompressedOnlyWhenTheDestinationTakesItAndTheLinkIsSlow) {
  const uint64_t caps = wire::kCapAll | wire::kCapDeviceStateZstd;
  EXPECT_TRUE(compress_device_state(caps, pipeline::CodecMode::kAuto, 119e6));   // 1 Gbit/s
  EXPECT_FALSE(compress_device_state(caps, pipeline::CodecMode::kAuto, 1.2e9));  // 10 Gbit/s
  EXPECT_FALSE(compress_device_state(caps, pipeline::CodecMode::kAuto, 0));      // unknown
  EXPECT_FALSE(compress_device_state(wire::kCapAll, pipeline::CodecMode::kAuto, 119e6));
  EXPECT_FALSE(compress_device_state(caps, pipeline::CodecMode::kNone, 119e6));
}

TEST(DeviceState, ADamagedCompressedStateIsRefusedNotCrashedOn) {
  const std::string state = generation_table();
  auto f = encode_device_state(state, true);
  ASSERT_EQ(f.type, wire::FrameType::kDeviceStateZstd);
  auto flipped = f.body;
  flipped[flipped.size() / 2] ^= std::byte{0x5a};
  EXPECT_FALSE(inflate_device_state(flipped).is_ok());
  auto cut = f.body;
  cut.resize(cut.size() / 2);
  EXPECT_FALSE(inflate_device_state(cut).is_ok());
  // A header claiming another size than the frame holds.
  auto wrong = f.body;
  wrong[0] = std::byte{static_cast<unsigned char>(static_cast<unsigned char>(wrong[0]) + 1)};
  EXPECT_FALSE(inflate_device_state(wrong).is_ok());
  // Sizes out of range, and no compressed bytes.
  std::vector<std::byte> zero(8, std::byte{0});
  zero.push_back(std::byte{1});
  EXPECT_EQ(wire::decode_device_state_zstd(zero).status().code(), ErrorCode::kProtocol);
  std::vector<std::byte> huge(8, std::byte{0xff});
  huge.push_back(std::byte{1});
  EXPECT_EQ(wire::decode_device_state_zstd(huge).status().code(), ErrorCode::kProtocol);
  std::vector<std::byte> header_only(8, std::byte{0});
  header_only[0] = std::byte{16};
  EXPECT_EQ(wire::decode_device_state_zstd(header_only).status().code(), ErrorCode::kProtocol);
  EXPECT_FALSE(wire::decode_device_state_zstd({}).is_ok());
}

// The guard's deadline: the limit less what follows the pages (half the fixed part for the
// commit exchange and hand-off, the device state at the slowdown the rounds showed), and no
// guard where the policy itself predicted the limit would be passed.
// A switch-over predicted to fit 100 ms: 20 ms fixed, 5 ms of device state, rounds 2x slow.
Decision fitting_switchover() {
  Decision d;
  d.switchover_fixed_ms = 20;
  d.device_state_ms = 5;
  d.slowdown = 2;
  d.worst_downtime_ms = 90;
  return d;
}

TEST(SwitchoverGuard, LeavesRoomForWhatFollowsThePagesAndGuardsOnlyAPredictionThatFits) {
  using Clock = SwitchoverGuard::Clock;
  const Clock::time_point pause{};
  Decision d = fitting_switchover();
  const SwitchoverGuard guard(pause, 100, d);
  ASSERT_TRUE(guard.armed());
  EXPECT_DOUBLE_EQ(guard.tail_ms(), 20.0);  // 10 ms hand-off + 5 ms state x 2
  EXPECT_FALSE(guard.overdue(pause + std::chrono::microseconds(79'900)));
  EXPECT_TRUE(guard.overdue(pause + std::chrono::microseconds(80'000)));
  SwitchoverGuard disarmed = guard;
  disarmed.disarm();
  EXPECT_FALSE(disarmed.overdue(pause + std::chrono::seconds(10)));

  d.worst_downtime_ms = 140;  // max-rounds or nothing left: predicted over, no round helps
  EXPECT_FALSE(SwitchoverGuard(pause, 100, d).armed());
  EXPECT_FALSE(SwitchoverGuard().overdue(Clock::now()));
}

// Its second stage: once the pages are placed, COMMIT on the DIGEST must come by the
// limit less the hand-off (a quarter of the fixed part), and only a destination that takes
// SWITCHOVER_ABORT is watched.
TEST(SwitchoverGuard, ThenWatchesTheVerdictWhereTheDestinationCanDropItsCopy) {
  using Clock = SwitchoverGuard::Clock;
  const Clock::time_point pause{};
  Decision d = fitting_switchover();
  SwitchoverGuard guard(pause, 100, d);
  EXPECT_FALSE(guard.watching_verdict());
  guard.watch_verdict(true);
  ASSERT_TRUE(guard.watching_verdict());
  EXPECT_DOUBLE_EQ(guard.tail_ms(), 5.0);  // HANDOFF -> BYE
  EXPECT_FALSE(guard.overdue(pause + std::chrono::microseconds(94'900)));
  EXPECT_TRUE(guard.overdue(pause + std::chrono::microseconds(95'000)));

  SwitchoverGuard older_destination(pause, 100, d);
  older_destination.watch_verdict(false);
  EXPECT_FALSE(older_destination.armed());
  EXPECT_FALSE(older_destination.overdue(pause + std::chrono::seconds(10)));

  d.worst_downtime_ms = 140;  // never armed: nothing to watch either
  SwitchoverGuard unguarded(pause, 100, d);
  unguarded.watch_verdict(true);
  EXPECT_FALSE(unguarded.watching_verdict());
}

}  // namespace
}  // namespace ramshift::migration
