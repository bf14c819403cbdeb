// The synthetic guest's own check: it keeps a generation table, so a page that is
// self-consistent but older than the guest's last write to it (a lost update) fails.
#include "ramshift/guest/synthetic.h"

#include <gtest/gtest.h>

#include <algorithm>
#include <chrono>
#include <cstring>
#include <thread>
#include <vector>

#include "ramshift/base/mapped_memory.h"

namespace ramshift::guest {
namespace {

using namespace std::chrono_literals;

std::unique_ptr<SyntheticGuest> make_guest(const std::string& spec) {
  return std::move(SyntheticGuest::create(SyntheticSpec::parse(spec).value())).value();
}

// The first page the workload has rewritten since `before` (a copy of the memory).
std::optional<uint64_t> rewritten_page(const SyntheticGuest& g,
                                       const std::vector<std::byte>& before) {
  const size_t ps = host_page_size();
  const auto memory = g.regions()[0].memory;
  for (uint64_t p = 0; p < memory.size() / ps; ++p)
    if (g.generation(p) > 1 && std::memcmp(memory.data() + p * ps, before.data() + p * ps, ps))
      return p;
  return std::nullopt;
}

TEST(SyntheticGuestTest, APageRestoredToAnOlderGenerationFailsVerify) {
  for (const char* pattern : {"mixed", "random", "delta"}) {
    auto g = make_guest(std::string("size=1M,dirty-rate=16M,pattern=") + pattern);
    g->pause();
    const auto memory = g->regions()[0].memory;
    std::vector<std::byte> before(memory.begin(), memory.end());
    ASSERT_TRUE(g->verify().is_ok()) << pattern;
    g->resume();
    std::this_thread::sleep_for(50ms);
    g->pause();
    ASSERT_TRUE(g->verify().is_ok()) << pattern << ": " << g->verify().message();
    auto page = rewritten_page(*g, before);
    ASSERT_TRUE(page.has_value()) << pattern << ": the workload rewrote nothing";
    // The older generation's bytes are a consistent page: only the table tells them apart.
    const size_t ps = host_page_size();
    std::memcpy(memory.data() + *page * ps, before.data() + *page * ps, ps);
    Status s = g->verify();
    EXPECT_EQ(s.code(), ErrorCode::kCorrupt) << pattern;
    EXPECT_NE(s.message().find("older write"), std::string::npos) << pattern << ": " << s.message();
  }
}

TEST(SyntheticGuestTest, TheTableTravelsInTheDeviceState) {
  auto g = make_guest("size=1M,dirty-rate=16M,pattern=mixed");
  std::this_thread::sleep_for(30ms);
  g->pause();
  const auto memory = g->regions()[0].memory;
  auto copy = MappedMemory::anonymous(memory.size()).value();
  std::memcpy(copy.bytes().data(), memory.data(), memory.size());
  const std::vector<std::byte> before(memory.begin(), memory.end());
  auto there = SyntheticGuest::adopt_device_state(g->device_state().value(), copy.bytes());
  ASSERT_TRUE(there.is_ok()) << there.status().message();
  EXPECT_TRUE((*there)->verify().is_ok());
  // The source wrote on after the copy was taken: the copy is now a generation behind.
  g->resume();
  std::this_thread::sleep_for(50ms);
  g->pause();
  auto page = rewritten_page(*g, before);
  ASSERT_TRUE(page.has_value());
  auto stale = SyntheticGuest::adopt_device_state(g->device_state().value(), copy.bytes());
  ASSERT_TRUE(stale.is_ok());
  EXPECT_EQ((*stale)->verify().code(), ErrorCode::kCorrupt);
}

TEST(SyntheticGuestTest, ABurstyGuestWritesInBurstsAtTheSameAverage) {
  // burst=4 at 8 MB/s: 32 MB/s for 100 ms of every 400 ms, nothing in between. Sampled
  // every 20 ms for 1.2 s, some windows see nothing written and others several times the
  // average; the whole stays near 8 MB/s (4 KiB pages: ~2,340 writes in 1.2 s).
  auto spec = SyntheticSpec::parse("size=4M,dirty-rate=8M,burst=4");
  ASSERT_TRUE(spec.is_ok()) << spec.status().message();
  EXPECT_NE(spec->to_string().find("burst=4"), std::string::npos);
  auto g = make_guest("size=4M,dirty-rate=8M,burst=4");
  std::vector<uint64_t> per_window;
  uint64_t last = g->writes();
  const auto start = std::chrono::steady_clock::now();
  for (int i = 1; i <= 60; ++i) {
    std::this_thread::sleep_until(start + i * 20ms);
    const uint64_t now = g->writes();
    per_window.push_back(now - last);
    last = now;
  }
  const double seconds =
      std::chrono::duration<double>(std::chrono::steady_clock::now() - start).count();
  const double average = static_cast<double>(last) / seconds;  // writes per second
  const double steady_window = average * 0.020;
  const auto idle = std::count(per_window.begin(), per_window.end(), 0u);
  const auto hot = std::count_if(per_window.begin(), per_window.end(),
                                 [&](uint64_t n) { return n > 2.5 * steady_window; });
  EXPECT_GE(idle, 20) << "windows without a write";
  EXPECT_GE(hot, 8) << "windows at over 2.5x the average";
  const double expected = 8.0 * (1 << 20) / host_page_size();
  EXPECT_GT(average, 0.6 * expected);
  EXPECT_LT(average, 1.4 * expected);
  EXPECT_FALSE(SyntheticSpec::parse("size=4M,burst=0").is_ok());
  EXPECT_FALSE(SyntheticSpec::parse("size=4M,burst=17").is_ok());
  // A pause is not held up by a lull: the workload parks at once.
  const auto before_pause = std::chrono::steady_clock::now();
  g->pause();
  EXPECT_LT(std::chrono::steady_clock::now() - before_pause, 50ms);
}

TEST(SyntheticGuestTest, ATruncatedGenerationTableIsRefused) {
  auto g = make_guest("size=1M,dirty-rate=0,pattern=mixed");
  g->pause();
  std::string state = g->device_state().value();
  state.pop_back();
  auto copy = MappedMemory::anonymous(1 << 20).value();
  EXPECT_EQ(SyntheticGuest::adopt_device_state(state, copy.bytes()).status().code(),
            ErrorCode::kProtocol);
}

}  // namespace
}  // namespace ramshift::guest
