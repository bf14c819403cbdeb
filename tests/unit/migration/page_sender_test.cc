// The page sender and the blocking-send helper under it: placed pages land before their
// batch, a write never crosses what the map allows, and a full queue is waited out, given up
// on after the timeout, or abandoned on abort, as the engine, the bench and the bridge rely on.
#include "ramshift/migration/page_sender.h"

#include <fmt/format.h>
#include <gtest/gtest.h>

#include <algorithm>
#include <atomic>
#include <string>
#include <thread>
#include <vector>

namespace ramshift::migration {
namespace {

using namespace std::chrono_literals;

// A connection that refuses the first `full_for` posts (kWouldBlock) and records the rest.
class FakeConnection final : public transport::Connection {
 public:
  int full_for = 0;
  int waits = 0;
  std::vector<std::string> log;  // "send <bytes>" or "write <remote>+<length>", in order

  const transport::Capabilities& capabilities() const override { return caps_; }
  uint32_t queue_count() const override { return 2; }
  std::string describe() const override { return "fake"; }
  std::string transport_name() const override { return "fake"; }
  Result<transport::MemoryKey> register_memory(std::span<std::byte>,
                                               transport::MemoryAccess) override {
    return transport::MemoryKey{};
  }
  Status post_write(uint32_t, std::span<const transport::RemoteWrite> writes) override {
    if (full_for > 0 && full_for--) return Status(ErrorCode::kWouldBlock, "full");
    for (const auto& w : writes)
      log.push_back(fmt::format("write {}+{}", w.remote_address, w.length));
    return Status::ok();
  }
  Status post_send(uint32_t, std::span<const transport::ConstBuffer> segments) override {
    if (full_for > 0 && full_for--) return Status(ErrorCode::kWouldBlock, "full");
    std::string bytes;
    for (auto s : segments) bytes.append(reinterpret_cast<const char*>(s.data()), s.size());
    log.push_back("send " + bytes);
    return Status::ok();
  }
  Status wait_writable(uint32_t, transport::Millis timeout) override {
    ++waits;
    std::this_thread::sleep_for(std::min(timeout, transport::Millis(1)));
    return Status(ErrorCode::kTimeout, "still full");
  }
  Status flush(uint32_t, transport::Millis) override { return Status::ok(); }
  Result<size_t> poll(uint32_t, std::span<transport::ConstBuffer>, transport::Millis) override {
    return size_t{0};
  }
  void close() override {}

 private:
  transport::Capabilities caps_{true, true, false, 1u << 20, 2};
};

std::span<const std::byte> bytes_of(const std::string& s) {
  return {reinterpret_cast<const std::byte*>(s.data()), s.size()};
}

// Pages land at remote 1000 + page * 10; no piece may reach past a multiple of 25.
class TestMap final : public PlacementMap {
 public:
  Result<PlacementPiece> locate(const pipeline::Placement& run, uint64_t offset) override {
    const uint64_t remote = 1000 + run.first_page * 10 + offset;
    return PlacementPiece{run.memory + offset, remote, 7, 25 - remote % 25};
  }
};

TEST(BlockingSend, WaitsOutAFullQueue) {
  FakeConnection conn;
  conn.full_for = 3;
  const std::string msg = "hello";
  transport::ConstBuffer seg = bytes_of(msg);
  int blocked = 0;
  transport::SendWait wait{1000ms, 1ms, nullptr, [&] {
                             ++blocked;
                             return Status::ok();
                           }};
  ASSERT_TRUE(transport::send_blocking(conn, 1, std::span(&seg, 1), wait));
  EXPECT_EQ(conn.log, std::vector<std::string>{"send hello"});
  EXPECT_EQ(blocked, 3);  // the bench drains its acknowledgements each time
}

TEST(BlockingSend, GivesUpAfterTheTimeoutAndOnAbort) {
  FakeConnection conn;
  conn.full_for = 1 << 30;
  const std::string msg = "x";
  transport::ConstBuffer seg = bytes_of(msg);
  Status s = transport::send_blocking(conn, 1, std::span(&seg, 1), {20ms, 5ms});
  EXPECT_EQ(s.code(), ErrorCode::kTimeout) << s.message();
  std::atomic<bool> abort{true};
  s = transport::send_blocking(conn, 1, std::span(&seg, 1),
                               {transport::Millis::max(), 5ms, &abort});
  EXPECT_EQ(s.code(), ErrorCode::kCancelled);
  EXPECT_TRUE(conn.log.empty());
}

TEST(PageSender, PlacesRunsInPiecesBeforeTheirBatch) {
  FakeConnection conn;
  conn.full_for = 1;  // the first write group waits once
  PageSender sender(conn, 1, {1000ms, 1ms}, {1000ms, 1ms});
  std::vector<std::byte> pages(100);
  // Page 0 (10 bytes) and pages 3..5 (30 bytes).
  const pipeline::Placement runs[] = {{0, pages.data(), 10}, {3, pages.data() + 30, 30}};
  TestMap map;
  const std::string header = "H", body = "batch";
  transport::ConstBuffer seg = bytes_of(body);
  auto sent = sender.send(bytes_of(header), std::span(&seg, 1), runs, &map);
  ASSERT_TRUE(sent) << sent.status().message();
  EXPECT_EQ(*sent, 10u + 30u + 1u + 5u);  // what the link carried
  // Run 2 starts at 1030 and is cut at 1050, as the map allows.
  EXPECT_EQ(conn.log, (std::vector<std::string>{"write 1000+10", "write 1030+20", "write 1050+10",
                                                "send Hbatch"}));
}

TEST(PageSender, PlacedPagesWithoutAMapAreRefused) {
  FakeConnection conn;
  PageSender sender(conn, 1, {}, {});
  std::vector<std::byte> page(10);
  const pipeline::Placement run{0, page.data(), 10};
  auto sent = sender.send({}, {}, std::span(&run, 1), nullptr);
  EXPECT_EQ(sent.status().code(), ErrorCode::kInternal);
  EXPECT_TRUE(conn.log.empty());  // nothing half-sent
}

}  // namespace
}  // namespace ramshift::migration
