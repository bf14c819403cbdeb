// A hybrid destination's early drop (POSTCOPY_DISCARD) with the kernel's real userfaultfd:
// pages named in several rounds are dropped once each, the rest keep their bytes, and a page
// dropped early is absent until its new copy is placed, whether a thread faulted on it first
// or the copy came first (a push), and then holds exactly that copy.
#include "migration/src/discarded_pages.h"

#include <gtest/gtest.h>

#include <atomic>
#include <chrono>
#include <cstring>
#include <thread>
#include <vector>

#include "ramshift/base/mapped_memory.h"

namespace ramshift::migration {
namespace {

using std::chrono::milliseconds;

constexpr uint64_t kPages = 64;

std::vector<std::vector<uint8_t>> bitmap(std::initializer_list<uint64_t> pages) {
  std::vector<std::vector<uint8_t>> m(1, std::vector<uint8_t>(kPages / 8, 0));
  for (uint64_t p : pages) m[0][p / 8] |= static_cast<uint8_t>(1u << (p % 8));
  return m;
}

TEST(DiscardedPages, PagesDroppedEarlyFaultUntilTheirNewCopyIsPlaced) {
  const size_t ps = host_page_size();
  auto mem = MappedMemory::anonymous(kPages * ps).value();
  std::byte* base = mem.bytes().data();
  for (uint64_t p = 0; p < kPages; ++p) std::memset(base + p * ps, static_cast<int>(p + 1), ps);
  wire::RegionTable table;
  table.regions.push_back({0, kPages * ps, "ram"});
  auto d = DiscardedPages::register_memory({mem.bytes()}, table, static_cast<uint32_t>(ps));
  if (!d) GTEST_SKIP() << d.status().message();

  // Two discard rounds, then the start's own list: a page named again is not dropped again.
  EXPECT_EQ((*d)->drop(bitmap({3, 4, 5, 20})).value(), 4u);
  EXPECT_EQ((*d)->drop(bitmap({4, 21, 63})).value(), 2u);
  EXPECT_EQ((*d)->drop(bitmap({3, 21, 40})).value(), 1u);
  EXPECT_EQ((*d)->dropped(), 7u);
  // Pages never named keep their bytes and do not fault (nobody serves faults yet).
  for (uint64_t p : {0, 2, 6, 19, 22, 39, 41, 62})
    EXPECT_EQ(base[p * ps + 7], static_cast<std::byte>(p + 1)) << "page " << p;

  auto pages = (*d)->take_pages();
  ASSERT_TRUE(pages);
  // Faulted first: page 21 (dropped in the second round) blocks its reader until placed.
  std::atomic<bool> done{false};
  std::byte seen{0};
  std::thread reader([&] {
    seen = base[21 * ps + 9];
    done = true;
  });
  std::vector<guest::PageFault> faults;
  for (int i = 0; i < 50 && faults.empty(); ++i)
    faults = pages->read_faults(milliseconds(100)).value();
  ASSERT_EQ(faults.size(), 1u);
  EXPECT_EQ(faults[0].page, 21u);
  std::this_thread::sleep_for(milliseconds(50));
  EXPECT_FALSE(done.load()) << "a dropped page was read before its copy came";
  const std::vector<std::byte> fresh(ps, std::byte{0xa1});
  EXPECT_EQ(pages->place(0, 21, fresh).value(), guest::MissingPages::Placed::kPlaced);
  reader.join();
  EXPECT_EQ(seen, std::byte{0xa1});

  // Pushed first: page 3 (dropped in the first round, named again) takes the copy that came,
  // and a late duplicate changes nothing.
  const std::vector<std::byte> pushed(ps, std::byte{0xb3});
  EXPECT_EQ(pages->place(0, 3, pushed).value(), guest::MissingPages::Placed::kPlaced);
  EXPECT_EQ(pages->place(0, 3, fresh).value(), guest::MissingPages::Placed::kPresent);
  EXPECT_EQ(base[3 * ps], std::byte{0xb3});
  EXPECT_EQ(base[3 * ps + ps - 1], std::byte{0xb3});
  // The stale bytes of every other dropped page are gone: placing any of them succeeds.
  for (uint64_t p : {4, 5, 20, 40, 63})
    EXPECT_EQ(pages->place_zero(0, p).value(), guest::MissingPages::Placed::kPlaced) << p;
  for (uint64_t p : {4, 5, 20, 40, 63}) EXPECT_EQ(base[p * ps + 1], std::byte{0}) << p;
  // And a page never dropped was never absent.
  EXPECT_EQ(pages->place_zero(0, 6).value(), guest::MissingPages::Placed::kPresent);
  EXPECT_EQ(base[6 * ps], std::byte{7});
}

TEST(DiscardedPages, DroppingAfterTheHandOverIsRefused) {
  const size_t ps = host_page_size();
  auto mem = MappedMemory::anonymous(kPages * ps).value();
  wire::RegionTable table;
  table.regions.push_back({0, kPages * ps, "ram"});
  auto d = DiscardedPages::register_memory({mem.bytes()}, table, static_cast<uint32_t>(ps));
  if (!d) GTEST_SKIP() << d.status().message();
  EXPECT_FALSE((*d)->drop({}).is_ok()) << "not one bitmap per region";
  auto pages = (*d)->take_pages();
  EXPECT_FALSE((*d)->drop(bitmap({1})).is_ok()) << "the memory was handed over";
}

}  // namespace
}  // namespace ramshift::migration
