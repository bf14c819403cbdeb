#include "migration/src/memory_preparer.h"

#include <gtest/gtest.h>

#include <atomic>
#include <mutex>
#include <set>
#include <thread>
#include <vector>

#include "migration/src/remote_memory.h"

namespace ramshift::migration {
namespace {

constexpr uint64_t MiB = 1ull << 20;

TEST(MemoryPreparer, ChunksAreAFractionOfTheRegionWithinBounds) {
  EXPECT_EQ(MemoryPreparer::chunk_bytes(4096), 2 * MiB);
  EXPECT_EQ(MemoryPreparer::chunk_bytes(128 * MiB), 4 * MiB);
  EXPECT_EQ(MemoryPreparer::chunk_bytes(64ull << 30), 32 * MiB);
}

// Every chunk is prepared exactly once, and ready() turns true for a range only when every
// chunk under it was (a data thread must never write into an unreserved chunk).
TEST(MemoryPreparer, PreparesEveryChunkOnceAndReportsReadiness) {
  std::vector<std::byte> a(10 * MiB + 4096), b(3 * MiB);
  std::mutex mu;
  std::set<std::pair<uint32_t, uint64_t>> seen;
  uint64_t bytes = 0;
  std::atomic<bool> gate{false};
  MemoryPreparer prep({std::span(a), std::span(b)},
                      [&](uint32_t r, uint64_t off, std::span<std::byte> chunk) {
                        while (off > 0 && !gate.load()) std::this_thread::yield();
                        std::lock_guard lock(mu);
                        EXPECT_TRUE(seen.insert({r, off}).second) << r << " " << off;
                        bytes += chunk.size();
                        return Status::ok();
                      });
  std::atomic<bool> stop{false};
  // Only chunk 0 of region 0 (and of region 1) can finish until the gate opens.
  ASSERT_TRUE(prep.wait_ready(0, 0, 4096, stop).is_ok());
  EXPECT_FALSE(prep.ready(0, 0, 10 * MiB));
  gate = true;
  ASSERT_TRUE(prep.wait_ready(0, 10 * MiB, 10 * MiB + 4096, stop).is_ok());
  ASSERT_TRUE(prep.finish().is_ok());
  EXPECT_TRUE(prep.ready(0, 0, a.size()));
  EXPECT_TRUE(prep.ready(1, 0, b.size()));
  EXPECT_EQ(bytes, a.size() + b.size());
  EXPECT_EQ(seen.size(), 6u + 2u);  // 2 MiB chunks: 10 MiB + 4 KiB is 6 of them, 3 MiB 2
}

// A failing chunk stops the preparation; waiters get its error, not a hang.
TEST(MemoryPreparer, AFailureReachesWaiters) {
  std::vector<std::byte> a(8 * MiB);
  MemoryPreparer prep({std::span(a)}, [&](uint32_t, uint64_t off, std::span<std::byte>) {
    return off == 2 * MiB ? Status(ErrorCode::kNoSpace, "receiver disk full") : Status::ok();
  });
  std::atomic<bool> stop{false};
  Status s = prep.wait_ready(0, 6 * MiB, 8 * MiB, stop);
  EXPECT_EQ(s.code(), ErrorCode::kNoSpace) << s.message();
  EXPECT_EQ(prep.finish().code(), ErrorCode::kNoSpace);
  EXPECT_FALSE(prep.ready(0, 2 * MiB, 4 * MiB));
}

TEST(MemoryPreparer, StopEndsAWait) {
  std::vector<std::byte> a(4 * MiB);
  std::atomic<bool> release{false};
  MemoryPreparer prep({std::span(a)}, [&](uint32_t, uint64_t, std::span<std::byte>) {
    while (!release.load()) std::this_thread::yield();
    return Status::ok();
  });
  std::atomic<bool> stop{true};
  EXPECT_EQ(prep.wait_ready(0, 0, 4096, stop).code(), ErrorCode::kCancelled);
  release = true;
}

// The source places a page only where the destination has given a key, and a second key for
// the same bytes is a protocol error (two keys for one page could put it in two places).
TEST(RemoteMemory, CoversOnlyKeyedBytesAndRefusesOverlaps) {
  RemoteMemory m;
  m.reset(2);
  EXPECT_FALSE(m.covers(0, 0, 4096));
  ASSERT_TRUE(m.add({{{0, 4 * MiB, 4 * MiB, 0xA000000, 1}}}).is_ok());
  EXPECT_FALSE(m.covers(0, 0, 4096));
  EXPECT_TRUE(m.covers(0, 4 * MiB, 8 * MiB));
  EXPECT_FALSE(m.covers(0, 4 * MiB, 8 * MiB + 4096));
  ASSERT_TRUE(m.add({{{0, 0, 4 * MiB, 0xB000000, 2}}}).is_ok());
  EXPECT_TRUE(m.covers(0, 4096, 8 * MiB));  // across two ranges
  auto r = m.range_at(0, 5 * MiB);
  ASSERT_TRUE(r.has_value());
  EXPECT_EQ(r->rkey, 1u);
  EXPECT_EQ(r->address, 0xA000000u);
  EXPECT_FALSE(m.range_at(0, 8 * MiB).has_value());
  EXPECT_FALSE(m.range_at(1, 0).has_value());
  EXPECT_EQ(m.add({{{0, 6 * MiB, 4 * MiB, 0xC000000, 3}}}).code(), ErrorCode::kProtocol);
  EXPECT_EQ(m.add({{{0, 3 * MiB, 4096, 0xC000000, 3}}}).code(), ErrorCode::kProtocol);
  EXPECT_EQ(m.add({{{2, 0, 4096, 0xC000000, 3}}}).code(), ErrorCode::kProtocol);
  EXPECT_EQ(m.keyed_bytes(), 8 * MiB);
}

}  // namespace
}  // namespace ramshift::migration
