// The bench protocol's Config and Ready: keys per queue offered by a client that asks for
// them, and the format of builds before them still read both ways.
#include <gtest/gtest.h>

#include "bench_wire.h"  // bench/src

namespace ramshift::bench::wire {
namespace {

Ready placed_ready(uint32_t chunks, uint32_t queues) {
  Ready r;
  r.placed = true;
  r.key.address = 0x10000;
  r.key.chunk_bytes = 1 << 20;
  r.key.length = uint64_t{chunks} << 20;
  for (uint32_t c = 0; c < chunks; ++c) r.key.rkeys.push_back(100 + c);
  r.key.queues = queues;
  for (uint32_t c = 0; c < chunks; ++c)
    for (uint32_t q = 0; q < queues; ++q) r.key.queue_rkeys.push_back(1000 * (q + 1) + c);
  return r;
}

TEST(BenchWire, AClientAsksForKeysPerQueueAndAnOlderServerReadsZeroThere) {
  Config c{4096, 64, 2, 0, 1, 8 << 20, 0, true};
  auto back = decode_config(encode(c));
  ASSERT_TRUE(back.is_ok()) << back.status().message();
  EXPECT_TRUE(back->keys_per_queue);
  c.keys_per_queue = false;
  back = decode_config(encode(c));
  ASSERT_TRUE(back.is_ok());
  EXPECT_FALSE(back->keys_per_queue);
}

// Each queue writes with its own key: chunk 2 through queue 1 is queue 1's key for chunk 2.
TEST(BenchWire, KeysPerQueueTravelAndEachQueueFindsItsOwn) {
  auto r = decode_ready(encode(placed_ready(3, 3)));
  ASSERT_TRUE(r.is_ok()) << r.status().message();
  ASSERT_EQ(r->key.queues, 3u);
  EXPECT_EQ(r->key.rkey_at(0x10000 + (2 << 20) + 5, 1), 2002u);
  EXPECT_EQ(r->key.rkey_at(0x10000, 2), 3000u);
  EXPECT_EQ(r->key.rkey_at(0x10000 + (1 << 20)), 101u) << "the chunk's own key still there";
}

TEST(BenchWire, AReadyWithoutKeysPerQueueIsTheOldFormatAndServesEveryQueue) {
  Ready old = placed_ready(2, 0);
  old.key.queue_rkeys.clear();
  auto msg = encode(old);
  auto r = decode_ready(msg);
  ASSERT_TRUE(r.is_ok()) << r.status().message();
  EXPECT_TRUE(r->key.queue_rkeys.empty());
  EXPECT_EQ(r->key.rkey_at(0x10000 + (1 << 20), 1), 101u);
}

TEST(BenchWire, KeysPerQueueCutShortOrCountedWrongAreRefused) {
  auto msg = encode(placed_ready(2, 3));
  for (size_t cut : {size_t{1}, size_t{2}, size_t{4}, size_t{4 * 6}}) {
    auto shorter = msg;
    shorter.resize(msg.size() - cut);
    EXPECT_FALSE(decode_ready(shorter).is_ok()) << "cut by " << cut;
  }
  auto longer = msg;
  longer.resize(msg.size() + 4);
  EXPECT_FALSE(decode_ready(longer).is_ok());
  auto zero_queues = encode(placed_ready(2, 0));  // queue keys empty: nothing after the chunks
  zero_queues.resize(zero_queues.size() + 4);     // then a count of 0
  EXPECT_FALSE(decode_ready(zero_queues).is_ok());
}

}  // namespace
}  // namespace ramshift::bench::wire
