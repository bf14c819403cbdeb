// The bridge's wire messages, the multifd parser and the packet re-encoding.
#include <fmt/format.h>
#include <gtest/gtest.h>

#include "multifd_builder.h"
#include "packet_codec.h"
#include "ramshift/qemu/bridge_wire.h"
#include "ramshift/qemu/multifd.h"

namespace ramshift::qemu {
namespace {

using testing::mixed_pages;
using testing::multifd_packet;

TEST(BridgeWire, HeaderRoundTripsAndRejectsEveryBadField) {
  std::vector<std::byte> m(kBridgeHeaderBytes + 5);
  encode_header({BridgeKind::kData, 0, 3, 5, 0}, m.data());
  auto h = decode_header(m);
  ASSERT_TRUE(h) << h.status().message();
  EXPECT_EQ(h->kind, BridgeKind::kData);
  EXPECT_EQ(h->channel, 3);
  EXPECT_EQ(h->length, 5u);

  auto expect_bad = [&](std::vector<std::byte> bad, const char* field) {
    auto r = decode_header(bad);
    ASSERT_FALSE(r);
    EXPECT_EQ(r.status().code(), ErrorCode::kProtocol);
    EXPECT_NE(r.status().message().find(field), std::string::npos) << r.status().message();
  };
  auto b = m;
  b[0] = std::byte{0};
  expect_bad(b, "magic");
  b = m;
  b[4] = std::byte{99};
  expect_bad(b, "kind");
  b = m;
  b[5] = std::byte{1};
  expect_bad(b, "flags");
  b = m;
  encode_header({BridgeKind::kData, 0, 300, 5, 0}, b.data());
  expect_bad(b, "channel");
  b = m;
  encode_header({BridgeKind::kData, 0, 1, 6, 0}, b.data());
  expect_bad(b, "length");
  expect_bad(std::vector<std::byte>(4), "shorter");
}

// The bytes every bridge message puts on the wire, pinned: a peer running another build of
// the same protocol version must read them (docs/protocol.md, "QEMU bridge stream").
std::string hex(std::span<const std::byte> b) {
  std::string s;
  for (auto x : b) s += fmt::format("{:02x}", static_cast<unsigned>(x));
  return s;
}

TEST(BridgeWire, MessagesKeepTheirExactBytes) {
  std::byte m[kKeysBytes];
  encode_header({BridgeKind::kPages, kPagesPlaced, 3, 16, 0xabcdef01}, m);
  EXPECT_EQ(hex({m, kBridgeHeaderBytes}), "52534247040103001000000001efcdab");
  encode_hello({kBridgeVersion, 3, 5, 1u << 20}, m);
  EXPECT_EQ(hex({m, kHelloBytes}), "03000000030000000500000000001000");
  encode_close({12345, 0xdeadbeefcafef00dull}, m);
  EXPECT_EQ(hex({m, kCloseBytes}), "39300000000000000df0fecaefbeadde");
  encode_keys({8, 1u << 20, 0x7f0000001000ull, 42}, m);
  EXPECT_EQ(hex({m, kKeysBytes}), "080000000000100000100000007f00002a00000000000000");
  auto error = encode_error(Status(ErrorCode::kTimeout, "slow"));
  EXPECT_EQ(hex(error), fmt::format("{:02x}000000736c6f77", int(ErrorCode::kTimeout)));
  Status back = decode_error(error);
  EXPECT_EQ(back.code(), ErrorCode::kTimeout);
  EXPECT_EQ(back.message(), "peer bridge: slow");
  // A code from a newer peer, or a body too short for one, still fails the relay.
  EXPECT_EQ(decode_error(std::vector<std::byte>{std::byte{0xff}, std::byte{0xff}, std::byte{0xff},
                                                std::byte{0xff}})
                .code(),
            ErrorCode::kInternal);
  EXPECT_EQ(decode_error(std::vector<std::byte>(2)).message(), "peer bridge: ");
}

TEST(BridgeWire, HelloRefusesAnotherVersion) {
  std::byte body[kHelloBytes];
  encode_hello({kBridgeVersion + 1, 0, 2, 0}, body);
  auto r = decode_hello(body);
  ASSERT_FALSE(r);
  EXPECT_EQ(r.status().code(), ErrorCode::kMismatch);
  encode_hello({kBridgeVersion, kCapMultifdPages, 2, 1 << 20}, body);
  auto ok = decode_hello(body);
  ASSERT_TRUE(ok);
  EXPECT_EQ(ok->cache_bytes, 1u << 20);
}

TEST(BridgeWire, KeysRoundTripAndRejectNonsense) {
  std::byte body[kKeysBytes];
  encode_keys({8, 1 << 20, 0x7f0000000000, 0x1234}, body);
  auto k = decode_keys(body);
  ASSERT_TRUE(k) << k.status().message();
  EXPECT_EQ(k->slots, 8u);
  EXPECT_EQ(k->slot_bytes, 1u << 20);
  EXPECT_EQ(k->address, 0x7f0000000000u);
  EXPECT_EQ(k->rkey, 0x1234u);
  auto bad = [&](SlotKeys keys) {
    encode_keys(keys, body);
    return !decode_keys(body);
  };
  EXPECT_TRUE(bad({0, 1 << 20, 0x1000, 1}));                       // no slots
  EXPECT_TRUE(bad({kMaxPlacementSlots + 1, 1 << 20, 0x1000, 1}));  // too many
  EXPECT_TRUE(bad({8, 1000, 0x1000, 1}));                          // not whole pages
  EXPECT_TRUE(bad({8, kMaxSlotBytes + 4096, 0x1000, 1}));          // too big
  EXPECT_TRUE(bad({8, 1 << 20, ~uint64_t{0} - 4096, 1}));          // wraps
  EXPECT_FALSE(decode_keys(std::span(body).first(20)));
  // PLACED is a flag of PAGES only.
  std::vector<std::byte> m(kBridgeHeaderBytes);
  encode_header({BridgeKind::kPages, kPagesPlaced, 1, 0, 3}, m.data());
  EXPECT_TRUE(decode_header(m));
  encode_header({BridgeKind::kData, kPagesPlaced, 1, 0, 3}, m.data());
  EXPECT_FALSE(decode_header(m));
}

TEST(Multifd, ParsesHeadersAndAsksForMore) {
  auto pages = mixed_pages(3, 1);
  auto p = multifd_packet({0, 4096, 65536}, pages);
  ParseResult r = parse_multifd_packet(p, 0);
  ASSERT_EQ(r.outcome, ParseOutcome::kPacket) << r.doubt;
  EXPECT_EQ(r.packet.normal_pages, 3u);
  EXPECT_EQ(r.packet.page_size, 4096u);
  EXPECT_EQ(r.packet.ramblock, "pc.ram");
  EXPECT_EQ(r.packet.total_bytes(), p.size());
  EXPECT_EQ(MultifdPacket::offset(p, 2), 65536u);
  // Cut inside the fixed part and inside the offsets: more bytes needed.
  EXPECT_EQ(parse_multifd_packet(std::span(p).first(100), 0).outcome, ParseOutcome::kNeedMore);
  EXPECT_EQ(parse_multifd_packet(std::span(p).first(400), 0).outcome, ParseOutcome::kNeedMore);
}

TEST(Multifd, SyncPacketWithStaleSizeCarriesNoPayload) {
  // QEMU 7.2 leaves next_packet_size from the previous packet in a SYNC packet.
  auto p = multifd_packet({}, {}, kMultifdFlagSync, 128, "pc.ram", 524288);
  ParseResult r = parse_multifd_packet(p, 4096);
  ASSERT_EQ(r.outcome, ParseOutcome::kPacket) << r.doubt;
  EXPECT_EQ(r.packet.total_bytes(), p.size());
}

TEST(Multifd, ClearedSyncPacketOfNewerQemuKeepsAFullOffsetsTable) {
  // QEMU 9.0+: pages_alloc 0 in a SYNC packet, yet 1344 bytes on the wire; the RAM packet
  // after it must be found where QEMU put it.
  auto stream = testing::multifd_cleared_sync(478);
  auto pages = mixed_pages(2, 9);
  auto ram = multifd_packet({0, 8192}, pages);
  stream.insert(stream.end(), ram.begin(), ram.end());
  for (size_t page_size : {size_t{0}, size_t{4096}}) {
    ParseResult r = parse_multifd_packet(stream, page_size);
    ASSERT_EQ(r.outcome, ParseOutcome::kPacket) << r.doubt;
    EXPECT_EQ(r.packet.total_bytes(), 1344u);
    ParseResult next = parse_multifd_packet(std::span(stream).subspan(1344), page_size);
    ASSERT_EQ(next.outcome, ParseOutcome::kPacket) << next.doubt;
    EXPECT_EQ(next.packet.normal_pages, 2u);
  }
  EXPECT_EQ(parse_multifd_packet(std::span(stream).first(400), 0).outcome, ParseOutcome::kNeedMore);
  // Offsets in a packet that claims none: not the layout this guess is for.
  auto odd = testing::multifd_cleared_sync(1);
  odd[320 + 8 * 127 + 7] = std::byte{1};
  EXPECT_EQ(parse_multifd_packet(odd, 0).outcome, ParseOutcome::kDoubt);
}

TEST(Multifd, DoubtsAnythingItDoesNotKnow) {
  auto pages = mixed_pages(2, 2);
  auto doubt = [](std::vector<std::byte> p, size_t page_size = 0) {
    return parse_multifd_packet(p, page_size).outcome == ParseOutcome::kDoubt;
  };
  EXPECT_TRUE(doubt(multifd_packet({0, 4096}, pages, 2 << 1)));   // zstd-compressed multifd
  EXPECT_TRUE(doubt(multifd_packet({0, 4096}, pages, 32 << 1)));  // 10.x device state
  auto p = multifd_packet({0, 4096}, pages);
  auto v2 = p;
  testing::put_be32(v2, 4, 2);
  EXPECT_TRUE(doubt(v2));
  auto too_many = p;
  testing::put_be32(too_many, 16, 200);  // normal_pages > pages_alloc
  EXPECT_TRUE(doubt(too_many));
  auto odd = p;
  testing::put_be32(odd, 20, 3000);  // not a whole number of pages
  EXPECT_TRUE(doubt(odd));
  EXPECT_TRUE(doubt(p, 8192));  // page size differs from the channel's
  auto name = p;
  for (size_t i = 64; i < 320; ++i) name[i] = std::byte{'x'};
  EXPECT_TRUE(doubt(name));
}

// Packets through encoder and decoder come out byte-identical, for every codec, with pages
// revisited (XBZRLE against the previous version) and a SYNC in between.
class PacketCodecTest : public ::testing::TestWithParam<const char*> {};

TEST_P(PacketCodecTest, RebuildsPacketsByteForByte) {
  auto mode = pipeline::parse_codec(GetParam());
  ASSERT_TRUE(mode);
  pipeline::CodecConfig cfg;
  cfg.mode = *mode;
  pipeline::CompressionGovernor governor(pipeline::codec_may_compress(*mode),
                                         *mode == pipeline::CodecMode::kZstd);
  PacketEncoder enc(cfg, &governor, 4 << 20);
  PacketDecoder dec(4 << 20);
  std::vector<uint64_t> offsets;
  for (uint64_t i = 0; i < 64; ++i) offsets.push_back(i * 4096 * 3);
  auto pages = mixed_pages(64, 3);
  for (int round = 0; round < 5; ++round) {
    // Each round changes one byte in every non-zero page: XBZRLE's best case from round 1 on.
    for (size_t p = 1; p < 64; ++p)
      if (p % 4 != 0) pages[p * 4096 + 100 + round] ^= std::byte{0x5a};
    // Round 2: QEMU 7.2's SYNC packet; round 3: QEMU 9.0+'s.
    auto packet = round == 2   ? multifd_packet({}, {}, kMultifdFlagSync, 128, "pc.ram", 4096)
                  : round == 3 ? testing::multifd_cleared_sync(9)
                               : multifd_packet(offsets, pages);
    ParseResult r = parse_multifd_packet(packet, 0);
    ASSERT_EQ(r.outcome, ParseOutcome::kPacket);
    std::vector<std::byte> body;
    for (auto s : enc.encode(r.packet, packet)) body.insert(body.end(), s.begin(), s.end());
    auto out = dec.decode(body);
    ASSERT_TRUE(out) << out.status().message();
    ASSERT_EQ(out->size(), packet.size());
    EXPECT_EQ(std::memcmp(out->data(), packet.data(), packet.size()), 0) << "round " << round;
  }
  if (pipeline::codec_uses_xbzrle(*mode)) {
    EXPECT_GT(enc.counts().xbzrle, 0u);
  }
  if (pipeline::codec_detects_zero(*mode)) {
    EXPECT_GT(enc.counts().zero, 0u);
  }
  EXPECT_EQ(enc.counts().total(), dec.counts().total());
}

// Over rdma:// the raw pages go by one-sided writes straight to their final offset in a
// destination slot; the body carries the rest. Emulating the NIC with memcpy, the packet
// rebuilt in the slot is the original, and XBZRLE caches stay in step across placed pages.
TEST_P(PacketCodecTest, RebuildsPlacedPacketsInTheirSlotByteForByte) {
  auto mode = pipeline::parse_codec(GetParam());
  ASSERT_TRUE(mode);
  pipeline::CodecConfig cfg;
  cfg.mode = *mode;
  PacketEncoder enc(cfg, nullptr, 4 << 20);  // no governor: never compresses
  PacketDecoder dec(4 << 20);
  std::vector<uint64_t> offsets;
  for (uint64_t i = 0; i < 64; ++i) offsets.push_back(i * 4096 * 3);
  auto pages = mixed_pages(64, 5);
  std::vector<std::byte> slot(1 << 20, std::byte{0xee});  // stale bytes of "earlier packets"
  for (int round = 0; round < 3; ++round) {
    for (size_t p = 1; p < 64; ++p)
      if (p % 4 != 0) pages[p * 4096 + 200 + round] ^= std::byte{0x33};
    auto packet = multifd_packet(offsets, pages);
    ParseResult r = parse_multifd_packet(packet, 0);
    ASSERT_EQ(r.outcome, ParseOutcome::kPacket);
    std::vector<std::byte> body;
    for (auto s : enc.encode(r.packet, packet, true)) body.insert(body.end(), s.begin(), s.end());
    size_t placed_bytes = 0;
    for (const auto& run : enc.placements()) {
      std::memcpy(slot.data() + r.packet.header_bytes + run.first_page * 4096, run.memory,
                  run.bytes);
      placed_bytes += run.bytes;
    }
    if (round == 0) {
      EXPECT_GT(placed_bytes, 0u) << "nothing was placed";
      EXPECT_LT(body.size() + placed_bytes / 2, packet.size()) << "placed pages also in the body";
      // Placed entries are refused where no slot could have received them.
      EXPECT_FALSE(PacketDecoder(4 << 20).decode(body));
    }
    auto out = dec.decode_in_place(body, slot);
    ASSERT_TRUE(out) << out.status().message();
    ASSERT_EQ(out->size(), packet.size());
    EXPECT_EQ(out->data(), slot.data());
    EXPECT_EQ(std::memcmp(out->data(), packet.data(), packet.size()), 0) << "round " << round;
  }
  if (pipeline::codec_uses_xbzrle(*mode)) {
    EXPECT_GT(enc.counts().xbzrle, 0u);
  }
  EXPECT_EQ(enc.counts().total(), dec.counts().total());
  EXPECT_EQ(enc.counts().placed, dec.counts().placed);
}

INSTANTIATE_TEST_SUITE_P(Codecs, PacketCodecTest,
                         ::testing::Values("none", "zero", "xbzrle", "zstd", "xbzrle+zstd",
                                           "auto"));

TEST(PacketCodec, RejectsBodiesThatDoNotAddUp) {
  pipeline::CodecConfig cfg;
  cfg.mode = pipeline::CodecMode::kNone;
  PacketEncoder enc(cfg, nullptr, 0);
  PacketDecoder dec(0);
  auto pages = mixed_pages(4, 4);
  auto packet = multifd_packet({0, 4096, 8192, 12288}, pages);
  ParseResult r = parse_multifd_packet(packet, 0);
  std::vector<std::byte> body;
  for (auto s : enc.encode(r.packet, packet)) body.insert(body.end(), s.begin(), s.end());

  auto bad_len = body;
  testing::put_be32(bad_len, 0, 0);  // header_len (LE) huge
  bad_len[3] = std::byte{0x7f};
  EXPECT_EQ(dec.decode(bad_len).status().code(), ErrorCode::kProtocol);
  auto lying = body;
  testing::put_be32(lying, 4 + 16, 3);  // header now says 3 pages; the batch carries 4
  EXPECT_FALSE(dec.decode(lying));
  EXPECT_FALSE(dec.decode(std::span(body).first(body.size() - 1)));
  EXPECT_TRUE(dec.decode(body));
}

}  // namespace
}  // namespace ramshift::qemu
