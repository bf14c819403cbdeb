#include "ring_protocol.h"

#include <gtest/gtest.h>

#include <array>
#include <cstring>

#include "ramshift/base/byte_order.h"

namespace ramshift::transport::rdma {
namespace {

TEST(RingProtocol, ImmediatesKeepTheirBits) {
  EXPECT_EQ(fragment_imm(4096, false), 4096u);
  EXPECT_EQ(fragment_imm(0, true), 0x40000000u);
  EXPECT_EQ(fragment_imm(kMaxSlotBytes, true), 0x40800000u);
  EXPECT_FALSE(is_credit_imm(fragment_imm(kImmLenMask, true)));

  EXPECT_EQ(credit_imm(5), 0x80000005u);
  EXPECT_TRUE(is_credit_imm(credit_imm(5)));
  EXPECT_EQ(credit_value(credit_imm(5)), 5u);
  // The count travels modulo 2^30.
  EXPECT_EQ(credit_value(credit_imm((uint64_t{1} << 30) + 7)), 7u);
  EXPECT_EQ(credit_value(credit_imm((uint64_t{1} << 40) - 1)), kCreditMask);
}

TEST(RingProtocol, TuningLimits) {
  RdmaTuning t;
  EXPECT_TRUE(validate_tuning(t).is_ok());
  auto bad = [](auto change) {
    RdmaTuning u;
    change(u);
    return validate_tuning(u).code() == ErrorCode::kInvalidArgument;
  };
  EXPECT_TRUE(bad([](RdmaTuning& u) { u.ring_slots = 1; }));
  EXPECT_TRUE(bad([](RdmaTuning& u) { u.ring_slots = 1025; }));
  EXPECT_TRUE(bad([](RdmaTuning& u) { u.slot_bytes = 4095; }));
  EXPECT_TRUE(bad([](RdmaTuning& u) { u.slot_bytes = kMaxSlotBytes + 1; }));
  EXPECT_TRUE(bad([](RdmaTuning& u) { u.send_queue_depth = 7; }));
  EXPECT_TRUE(bad([](RdmaTuning& u) { u.signal_every = 0; }));
  EXPECT_TRUE(bad([](RdmaTuning& u) { u.signal_every = u.send_queue_depth / 2 + 1; }));
  EXPECT_FALSE(bad([](RdmaTuning& u) {
    u.ring_slots = 2;
    u.slot_bytes = kMaxSlotBytes;
    u.send_queue_depth = 8;
    u.signal_every = 4;
  }));
}

std::array<std::byte, kHelloBytes> hello_bytes(const RingHello& h) {
  std::array<std::byte, kHelloBytes> b;
  encode_hello(h, b);
  return b;
}

TEST(RingProtocol, HelloRoundTripAndLayout) {
  RingHello h{0x7f0012345000, 0xabcd, 8, 512u << 10, 3};
  auto b = hello_bytes(h);
  EXPECT_EQ(load_le<uint32_t>(b.data()), 0x51525352u);  // "RSRQ"
  EXPECT_EQ(load_le<uint16_t>(b.data() + 4), kProtocolVersion);
  EXPECT_EQ(load_le<uint16_t>(b.data() + 6), 0);
  EXPECT_EQ(load_le<uint64_t>(b.data() + 8), h.ring_address);
  EXPECT_EQ(load_le<uint32_t>(b.data() + 16), h.rkey);
  EXPECT_EQ(load_le<uint32_t>(b.data() + 20), 8u);
  EXPECT_EQ(load_le<uint32_t>(b.data() + 24), 512u << 10);
  EXPECT_EQ(load_le<uint32_t>(b.data() + 28), 3u);

  auto got = decode_hello(b, 3);
  ASSERT_TRUE(got.is_ok()) << got.status().message();
  EXPECT_EQ(got->ring_address, h.ring_address);
  EXPECT_EQ(got->rkey, h.rkey);
  EXPECT_EQ(got->slots, h.slots);
  EXPECT_EQ(got->slot_bytes, h.slot_bytes);
  EXPECT_EQ(got->queue, 3u);
}

TEST(RingProtocol, HelloFromThePeerIsChecked) {
  const RingHello good{0x1000, 1, 8, 65536, 0};
  auto b = hello_bytes(good);
  // Short, empty or foreign.
  EXPECT_EQ(decode_hello(std::span(b).first(kHelloBytes - 1), 0).status().code(),
            ErrorCode::kProtocol);
  EXPECT_EQ(decode_hello({}, 0).status().code(), ErrorCode::kProtocol);
  auto foreign = b;
  foreign[0] = std::byte{0};
  EXPECT_EQ(decode_hello(foreign, 0).status().code(), ErrorCode::kProtocol);
  // Another protocol version.
  auto other = b;
  store_le<uint16_t>(other.data() + 4, kProtocolVersion + 1);
  auto v = decode_hello(other, 0);
  EXPECT_EQ(v.status().code(), ErrorCode::kMismatch);
  EXPECT_NE(v.status().message().find("queue protocol 2"), std::string::npos);
  // Rings out of range, or another queue's hello.
  for (RingHello bad :
       {RingHello{0x1000, 1, 1, 65536, 0}, RingHello{0x1000, 1, 1025, 65536, 0},
        RingHello{0x1000, 1, 8, 4095, 0}, RingHello{0x1000, 1, 8, kMaxSlotBytes + 1, 0},
        RingHello{0x1000, 1, 0xffffffff, 0xffffffff, 0}, RingHello{0x1000, 1, 8, 65536, 1}}) {
    auto r = decode_hello(hello_bytes(bad), 0);
    EXPECT_EQ(r.status().code(), ErrorCode::kProtocol) << bad.slots << " x " << bad.slot_bytes;
    EXPECT_NE(r.status().message().find("out of range"), std::string::npos);
  }
  // A longer message (the receive buffer is 64 bytes) is read by its first 32.
  std::array<std::byte, 64> longer{};
  std::memcpy(longer.data(), b.data(), b.size());
  EXPECT_TRUE(decode_hello(longer, 0).is_ok());
}

}  // namespace
}  // namespace ramshift::transport::rdma
