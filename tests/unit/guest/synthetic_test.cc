// The synthetic guest's own check: it keeps a generation table, so a page that is
// self-consistent but older than the guest's last write to it (a lost update) fails.
#include "ramshift/guest/synthetic.h"

#include <gtest/gtest.h>

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
