// `bench --raw` frames (frame_format.h): the receiver tells ours from anything else, and the
// protocol never takes one for its own.
#include <gtest/gtest.h>

#include <random>

#include "frame_format.h"

namespace ramshift::transport::dpdk {
namespace {

using Bytes = std::vector<std::byte>;

TEST(DpdkRawFrames, DataAndEndRoundTrip) {
  Bytes data(kHeaderBytes + 1452);
  write_header({FrameType::kRawData, 0xabcdef01, 0, 0, 42, 0}, data);
  auto d = parse_raw_frame(data);
  ASSERT_TRUE(d);
  EXPECT_FALSE(d->end);
  EXPECT_EQ(d->run_id, 0xabcdef01u);
  EXPECT_EQ(d->seq, 42u);

  Bytes end(kRawEndBytes);
  write_raw_end(7, 99, (uint64_t(3) << 32) + 5, end);
  auto e = parse_raw_frame(end);
  ASSERT_TRUE(e);
  EXPECT_TRUE(e->end);
  EXPECT_EQ(e->run_id, 7u);
  EXPECT_EQ(e->accepted, (uint64_t(3) << 32) + 5);
}

TEST(DpdkRawFrames, ProtocolAndRawNeverMistakeEachOther) {
  Bytes raw(kHeaderBytes + 16);
  write_header({FrameType::kRawData, 1, 0, 0, 1, 0}, raw);
  EXPECT_FALSE(parse_frame(raw));  // no connection takes a raw frame
  Bytes data(kHeaderBytes + 16);
  write_header({FrameType::kData, 1, 0, kFlagFirst | kFlagLast, 1, 16}, data);
  EXPECT_FALSE(parse_raw_frame(data));  // nor counts the protocol's as raw
  Bytes end(kRawEndBytes + 1);
  write_raw_end(1, 1, 1, end);
  EXPECT_FALSE(parse_raw_frame(end));  // an end frame is exactly its length
  raw[2] = std::byte{9};               // another version
  EXPECT_FALSE(parse_raw_frame(raw));
  std::mt19937 rng(3);
  for (int i = 0; i < 10000; ++i) {  // random bytes never crash the parser
    Bytes junk(rng() % 48);
    for (auto& b : junk) b = std::byte(rng());
    (void)parse_raw_frame(junk);
  }
}

}  // namespace
}  // namespace ramshift::transport::dpdk
