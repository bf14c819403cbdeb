// The post-copy destination's fault path with the kernel's real userfaultfd: a thread that
// touches an absent page waits until exactly that page is placed, sees the placed bytes, and
// a page placed twice keeps the first copy.
#include "ramshift/guest/missing_pages.h"

#include <gtest/gtest.h>
#include <sys/mman.h>
#include <sys/syscall.h>
#include <unistd.h>

#include <atomic>
#include <chrono>
#include <cstring>
#include <thread>
#include <vector>

#include "ramshift/base/mapped_memory.h"

namespace ramshift::guest {
namespace {

using std::chrono::milliseconds;

std::vector<std::byte> page_of(std::byte value) {
  return std::vector<std::byte>(host_page_size(), value);
}

TEST(MissingPages, AThreadWaitsForItsPageAndSeesWhatWasPlaced) {
  const size_t ps = host_page_size();
  auto mem = MappedMemory::anonymous(64 * ps).value();
  std::memset(mem.bytes().data(), 0x11, ps);  // page 0 present before registration
  auto mp = MissingPages::register_memory({mem.bytes()});
  if (!mp) GTEST_SKIP() << mp.status().message();
  // A present page does not fault: read it with nobody serving faults.
  EXPECT_EQ(mem.bytes()[10], std::byte{0x11});

  std::atomic<uint32_t> reader_tid{0};
  std::atomic<bool> done{false};
  std::byte seen{0};
  std::thread reader([&] {
    reader_tid = static_cast<uint32_t>(syscall(SYS_gettid));
    seen = mem.bytes()[5 * ps + 100];  // absent: blocks until page 5 is placed
    done = true;
  });
  std::vector<PageFault> faults;
  for (int i = 0; i < 50 && faults.empty(); ++i)
    faults = (*mp)->read_faults(milliseconds(100)).value();
  ASSERT_EQ(faults.size(), 1u);
  EXPECT_EQ(faults[0].region, 0u);
  EXPECT_EQ(faults[0].page, 5u);
  EXPECT_FALSE(faults[0].write);
  std::this_thread::sleep_for(milliseconds(50));
  EXPECT_FALSE(done.load()) << "the thread ran on before its page was there";
  EXPECT_EQ(faults[0].thread_id, reader_tid.load());
  auto placed = (*mp)->place(0, 5, page_of(std::byte{0x5a}));
  ASSERT_TRUE(placed) << placed.status().message();
  EXPECT_EQ(*placed, MissingPages::Placed::kPlaced);
  reader.join();
  EXPECT_EQ(seen, std::byte{0x5a});

  // A second copy of the same page (a push racing a fault) changes nothing.
  auto again = (*mp)->place(0, 5, page_of(std::byte{0x77}));
  ASSERT_TRUE(again);
  EXPECT_EQ(*again, MissingPages::Placed::kPresent);
  EXPECT_EQ(mem.bytes()[5 * ps], std::byte{0x5a});
  EXPECT_EQ((*mp)->place(0, 0, page_of(std::byte{0x22})).value(), MissingPages::Placed::kPresent);
  EXPECT_EQ(mem.bytes()[0], std::byte{0x11});
}

TEST(MissingPages, ZeroPagesDroppedPagesAndWritesFault) {
  const size_t ps = host_page_size();
  auto mem = MappedMemory::anonymous(16 * ps).value();
  std::memset(mem.bytes().data(), 0x33, 16 * ps);
  auto mp = MissingPages::register_memory({mem.bytes()});
  if (!mp) GTEST_SKIP() << mp.status().message();
  ASSERT_TRUE((*mp)->drop(std::vector<PageRun>{{0, 2, 3}}).is_ok());  // pages 2..4 absent again
  EXPECT_EQ(mem.bytes()[1 * ps], std::byte{0x33});
  EXPECT_EQ(mem.bytes()[5 * ps], std::byte{0x33});
  std::thread writer([&] { mem.bytes()[3 * ps + 1] = std::byte{0x44}; });
  std::vector<PageFault> faults;
  for (int i = 0; i < 50 && faults.empty(); ++i)
    faults = (*mp)->read_faults(milliseconds(100)).value();
  ASSERT_EQ(faults.size(), 1u);
  EXPECT_EQ(faults[0].page, 3u);
  EXPECT_TRUE(faults[0].write);
  ASSERT_EQ((*mp)->place_zero(0, 3).value(), MissingPages::Placed::kPlaced);
  writer.join();
  EXPECT_EQ(mem.bytes()[3 * ps], std::byte{0});
  EXPECT_EQ(mem.bytes()[3 * ps + 1], std::byte{0x44});
  EXPECT_EQ((*mp)->place_zero(0, 3).value(), MissingPages::Placed::kPresent);
}

// More scattered runs than one batched call takes (1024): every named page is absent afterwards
// (mincore says so without faulting) and every other page kept its bytes.
TEST(MissingPages, ThousandsOfScatteredRunsAllDropped) {
  const size_t ps = host_page_size();
  const uint64_t pages = 3000;
  auto mem = MappedMemory::anonymous(pages * ps).value();
  std::memset(mem.bytes().data(), 0x5c, pages * ps);
  auto mp = MissingPages::register_memory({mem.bytes()});
  if (!mp) GTEST_SKIP() << mp.status().message();
  std::vector<PageRun> runs;
  for (uint64_t p = 1; p < pages; p += 2) runs.push_back({0, p, p % 7 == 0 ? 0u : 1u});
  ASSERT_TRUE((*mp)->drop(runs).is_ok());
  std::vector<unsigned char> resident(pages);
  ASSERT_EQ(mincore(mem.bytes().data(), pages * ps, resident.data()), 0);
  uint64_t wrong = 0;
  for (uint64_t p = 0; p < pages; ++p) {
    const bool dropped = p % 2 == 1 && p % 7 != 0;
    wrong += dropped == static_cast<bool>(resident[p] & 1);
  }
  EXPECT_EQ(wrong, 0u);
  EXPECT_EQ(mem.bytes()[0], std::byte{0x5c});
  EXPECT_EQ(mem.bytes()[7 * ps], std::byte{0x5c});  // a run of zero pages drops nothing
  EXPECT_EQ(mem.bytes()[(pages - 1) * ps - 1], std::byte{0x5c});
  EXPECT_FALSE((*mp)->drop(std::vector<PageRun>{{0, pages - 1, 2}}).is_ok());  // beyond the guest
}

// Many threads fault on many pages while a placer serves them in another order: every thread
// finishes and every page holds what was placed, once.
TEST(MissingPages, ConcurrentFaultsAreAllServed) {
  const size_t ps = host_page_size();
  const uint64_t pages = 256;
  auto mem = MappedMemory::anonymous(pages * ps).value();
  auto mp = MissingPages::register_memory({mem.bytes()});
  if (!mp) GTEST_SKIP() << mp.status().message();
  std::atomic<uint64_t> sum{0};
  std::vector<std::thread> threads;
  for (int t = 0; t < 4; ++t)
    threads.emplace_back([&, t] {
      for (uint64_t p = t; p < pages; p += 3) sum += static_cast<uint8_t>(mem.bytes()[p * ps]);
    });
  std::atomic<bool> stop{false};
  std::thread server([&] {
    while (!stop) {
      auto faults = (*mp)->read_faults(milliseconds(20)).value();
      for (const auto& f : faults)
        (void)(*mp)->place(0, f.page, page_of(static_cast<std::byte>(f.page & 0xff)));
    }
  });
  for (auto& t : threads) t.join();
  stop = true;
  server.join();
  uint64_t want = 0;
  for (int t = 0; t < 4; ++t)
    for (uint64_t p = t; p < pages; p += 3) want += p & 0xff;
  EXPECT_EQ(sum.load(), want);
}

// Unregistering (the destination giving up) wakes a thread still waiting; it sees zeros.
TEST(MissingPages, ClosingWakesThreadsStillWaiting) {
  const size_t ps = host_page_size();
  auto mem = MappedMemory::anonymous(8 * ps).value();
  auto mp = MissingPages::register_memory({mem.bytes()});
  if (!mp) GTEST_SKIP() << mp.status().message();
  std::byte seen{1};
  std::thread reader([&] { seen = mem.bytes()[2 * ps]; });
  std::vector<PageFault> faults;
  for (int i = 0; i < 50 && faults.empty(); ++i)
    faults = (*mp)->read_faults(milliseconds(100)).value();
  ASSERT_EQ(faults.size(), 1u);
  mp->reset();
  reader.join();
  EXPECT_EQ(seen, std::byte{0});
}

}  // namespace
}  // namespace ramshift::guest
