// Dirty tracking by the kernel never misses a write, including writes that race with
// fetch_and_clear(). Method: writer threads keep changing random pages while a copier
// fetches the dirty set and copies exactly those pages into a shadow; after the writers stop
// and one last fetch, the shadow must equal memory byte for byte. One missed write leaves a
// stale page in the shadow.
#include <gtest/gtest.h>

#include <atomic>
#include <cstring>
#include <random>
#include <thread>

#include "ramshift/base/mapped_memory.h"
#include "ramshift/guest/dirty_tracker.h"

namespace ramshift::guest {
namespace {

class DirtyTrackerTest : public ::testing::TestWithParam<DirtyMechanism> {};

TEST_P(DirtyTrackerTest, ReportsExactlyThePagesWritten) {
  const size_t ps = host_page_size();
  auto mem = MappedMemory::anonymous(1024 * ps).value();
  auto tracker = DirtyTracker::start(mem.bytes(), GetParam());
  if (!tracker) GTEST_SKIP() << tracker.status().message();
  EXPECT_TRUE((*tracker)->fetch_and_clear().value().empty());
  for (uint64_t p : {3u, 4u, 500u, 1023u}) mem.bytes()[p * ps + 7] = std::byte{1};
  EXPECT_EQ((*tracker)->fetch_and_clear().value(), (std::vector<uint64_t>{3, 4, 500, 1023}));
  EXPECT_TRUE((*tracker)->fetch_and_clear().value().empty());
  mem.bytes()[4 * ps] = std::byte{2};  // a page written again after being fetched
  EXPECT_EQ((*tracker)->fetch_and_clear().value(), (std::vector<uint64_t>{4}));
}

TEST_P(DirtyTrackerTest, NoWriteIsMissedWhileWritesRaceWithFetch) {
  const size_t ps = host_page_size();
  const size_t pages = 4096;  // 16 MiB
  auto mem = MappedMemory::anonymous(pages * ps).value();
  std::vector<std::byte> shadow(pages * ps);
  auto tracker = DirtyTracker::start(mem.bytes(), GetParam());
  if (!tracker) GTEST_SKIP() << tracker.status().message();
  std::atomic<bool> stop{false};
  std::atomic<uint64_t> writes{0};
  std::vector<std::thread> writers;
  for (int w = 0; w < 2; ++w)
    writers.emplace_back([&, w] {
      std::mt19937_64 rng(w);
      auto* base = reinterpret_cast<volatile uint64_t*>(mem.bytes().data());
      while (!stop.load(std::memory_order_relaxed)) {
        size_t page = rng() % pages;
        size_t word = rng() % (ps / 8);
        base[page * ps / 8 + word] = rng();
        writes.fetch_add(1, std::memory_order_relaxed);
      }
    });
  uint64_t fetched = 0;
  auto until = std::chrono::steady_clock::now() + std::chrono::milliseconds(1500);
  while (std::chrono::steady_clock::now() < until) {
    auto dirty = (*tracker)->fetch_and_clear();
    ASSERT_TRUE(dirty.is_ok()) << dirty.status().message();
    for (uint64_t p : *dirty) std::memcpy(shadow.data() + p * ps, mem.bytes().data() + p * ps, ps);
    fetched += dirty->size();
  }
  stop = true;
  for (auto& t : writers) t.join();
  auto last = (*tracker)->fetch_and_clear().value();
  for (uint64_t p : last) std::memcpy(shadow.data() + p * ps, mem.bytes().data() + p * ps, ps);
  EXPECT_GT(writes.load(), 1000u);  // the race had material (fault-driven tracking is slow)
  EXPECT_GT(fetched, 0u);
  size_t stale = 0;
  for (size_t p = 0; p < pages; ++p)
    stale += std::memcmp(shadow.data() + p * ps, mem.bytes().data() + p * ps, ps) != 0;
  EXPECT_EQ(stale, 0u) << "pages whose last write was never reported, of " << pages;
}

INSTANTIATE_TEST_SUITE_P(Mechanisms, DirtyTrackerTest,
                         ::testing::Values(DirtyMechanism::kPagemapScan, DirtyMechanism::kFaults),
                         [](const auto& param_info) {
                           return param_info.param == DirtyMechanism::kPagemapScan ? "PagemapScan"
                                                                                   : "Faults";
                         });

}  // namespace
}  // namespace ramshift::guest
