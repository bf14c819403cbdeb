// What the in-process library adds to a multifd channel (qemu-plugin/preload/wire.h): every
// message round-trips, and the destination refuses frames that break a limit or the magic.
#include <gtest/gtest.h>

#include <random>

#include "wire.h"

namespace ramshift::qemu::preload {
namespace {

TEST(PreloadWire, StampSitsInTheInitsUnusedBytesOnly) {
  std::vector<std::byte> init(64, std::byte{0xab});
  EXPECT_FALSE(has_stamp(init));
  put_stamp(init);
  EXPECT_TRUE(has_stamp(init));
  for (size_t i = 0; i < 64; ++i)
    if (i < kStampOffset || i >= kStampOffset + kStampBytes) {
      EXPECT_EQ(init[i], std::byte{0xab}) << "byte " << i;
    }
  EXPECT_FALSE(has_stamp(std::span(init).first(kStampOffset + 4)));
}

TEST(PreloadWire, AStampOfAnotherVersionIsReadButNotAccepted) {
  std::vector<std::byte> init(64, std::byte{0});
  EXPECT_EQ(stamp_version(init), std::nullopt);
  put_stamp(init);
  EXPECT_EQ(stamp_version(init), kWireVersion);
  init[kStampOffset + 4] = std::byte{kWireVersion + 1};
  EXPECT_EQ(stamp_version(init), kWireVersion + 1);
  EXPECT_FALSE(has_stamp(init));
}

TEST(PreloadWire, OfferAndConnectRoundTripAndRefuseOtherVersions) {
  std::byte b[kConnectBytes];
  encode_offer(b, Offer{4791, 0x1122334455667788});
  auto o = decode_offer({b, kOfferBytes});
  ASSERT_TRUE(o);
  EXPECT_EQ(o->port, 4791);
  EXPECT_EQ(o->nonce, 0x1122334455667788u);
  b[4] = std::byte{kWireVersion + 1};
  EXPECT_FALSE(decode_offer({b, kOfferBytes}));
  encode_connect(b, ConnectRequest{7, 1 << 20});
  auto c = decode_connect(b);
  ASSERT_TRUE(c);
  EXPECT_EQ(c->nonce, 7u);
  EXPECT_EQ(c->switch_offset, 1u << 20);
  EXPECT_FALSE(c->authenticates);
  encode_connect(b, ConnectRequest{7, 1 << 20, true});
  ASSERT_TRUE(decode_connect(b));
  EXPECT_TRUE(decode_connect(b)->authenticates);
  EXPECT_FALSE(decode_offer({b, kOfferBytes}));  // a connect request is not an offer
}

TEST(PreloadWire, FrameRoundTripsAndLimitsHold) {
  std::vector<FrameRead> reads{{0x7f0000001000, 4096}, {0x7f0000100000, 65536}};
  auto f = encode_frame(1344, reads);
  ASSERT_EQ(f.size(), kFrameHeaderBytes + 2 * kFrameReadBytes);
  auto h = decode_frame_header(f);
  ASSERT_TRUE(h);
  EXPECT_EQ(h->inline_bytes, 1344u);
  EXPECT_EQ(h->reads, 2u);
  auto r = decode_frame_read(f.data() + kFrameHeaderBytes + kFrameReadBytes);
  ASSERT_TRUE(r);
  EXPECT_EQ(r->addr, 0x7f0000100000u);
  EXPECT_EQ(r->len, 65536u);
  // Too many reads, too much inline, a zero-length read, another magic: refused.
  auto many = encode_frame(0, std::vector<FrameRead>(kMaxFrameReads + 1, reads[0]));
  EXPECT_FALSE(decode_frame_header(many));
  auto big = encode_frame(kMaxFrameInline + 1, {});
  EXPECT_FALSE(decode_frame_header(big));
  auto zero = encode_frame(0, std::vector<FrameRead>{{1, 0}});
  EXPECT_FALSE(decode_frame_read(zero.data() + kFrameHeaderBytes));
  f[0] = std::byte{0x44};  // QEMU's multifd magic starts 0x11223344 (big-endian)
  EXPECT_FALSE(decode_frame_header(f));
}

// The keys to the source's memory travel on the authenticated READ connection only
// (page_pull.h, KEY): a frame on QEMU's socket names addresses and lengths, and the word a
// version 1 frame kept each read's rkey in is zero, and must be.
TEST(PreloadWire, FramesOnQemusSocketCarryNoKey) {
  auto f = encode_frame(64, std::vector<FrameRead>{{0x7f0000001000, 4096}});
  const std::byte* read = f.data() + kFrameHeaderBytes;
  for (size_t i = 12; i < kFrameReadBytes; ++i) EXPECT_EQ(read[i], std::byte{0}) << "byte " << i;
  EXPECT_TRUE(decode_frame_read(read));
  f[kFrameHeaderBytes + 12] = std::byte{0x31};  // a key where a version 1 source put it
  EXPECT_FALSE(decode_frame_read(f.data() + kFrameHeaderBytes));
  EXPECT_GE(kWireVersion, 2);  // a version 1 peer (keys in frames) falls back to plain TCP
}

TEST(PreloadWire, RandomBytesNeverDecodeAsAFrameWithoutTheMagic) {
  std::mt19937_64 rng(22);
  std::vector<std::byte> b(kFrameHeaderBytes);
  for (int i = 0; i < 100000; ++i) {
    for (auto& x : b) x = std::byte(rng());
    if (decode_frame_header(b)) {
      EXPECT_EQ(std::to_integer<uint8_t>(b[0]), 0x52);  // only with the magic itself
    }
  }
}

}  // namespace
}  // namespace ramshift::qemu::preload
