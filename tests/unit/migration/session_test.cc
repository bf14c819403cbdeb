// Source and destination sessions end to end inside one process, over loopback and tcp.
#include <gtest/gtest.h>
#include <unistd.h>

#include <cstring>
#include <filesystem>
#include <fstream>
#include <thread>

#include "migration/src/frame_io.h"
#include "ramshift/guest/pattern.h"
#include "ramshift/migration/destination.h"
#include "ramshift/migration/source.h"
#include "ramshift/pipeline/batch_encoder.h"

namespace ramshift::migration {
namespace {

using namespace std::chrono_literals;

// A guest of two regions held in ordinary memory; the second is not a whole number of pages.
class TestGuest final : public guest::SourceGuest {
 public:
  TestGuest(size_t bytes0, size_t bytes1, guest::Pattern pattern) {
    for (size_t b : {bytes0, bytes1}) {
      size_t pages = (b + 4095) / 4096;
      store_.emplace_back(pages * 4096);
      guest::fill_pattern({store_.back().data(), b}, pattern, store_.size());
      regions_.push_back({"r" + std::to_string(regions_.size()), b, store_.back()});
    }
  }
  const std::vector<guest::Region>& regions() const override { return regions_; }
  std::string describe() const override { return "test guest"; }
  bool immutable() const override { return immutable_; }
  bool immutable_ = false;  // true: sent like an image file, in one round

 private:
  std::vector<std::vector<std::byte>> store_;
  std::vector<guest::Region> regions_;
};

struct Outcome {
  MigrationReport source, destination;
};

Outcome migrate(const std::string& backend, guest::SourceGuest& g, SourceConfig sc,
                DestinationConfig dc) {
  static int n = 0;
  auto uri = transport::parse_uri(backend == "tcp" ? "tcp://127.0.0.1:0"
                                                   : "loopback://session-" + std::to_string(n++))
                 .value();
  auto listener = transport::listen(uri).value();
  sc.to = listener->address();
  Outcome out;
  std::thread dest([&] {
    auto conn = listener->accept(10s);
    ASSERT_TRUE(conn.is_ok());
    out.destination = run_destination(std::move(conn).value(), dc);
  });
  out.source = run_source(g, sc);
  dest.join();
  return out;
}

std::string temp_path(const char* name) {
  return (std::filesystem::temp_directory_path() /
          (std::string("ramshift-test-") + std::to_string(getpid()) + "-" + name))
      .string();
}

class SessionTest : public ::testing::TestWithParam<std::string> {};

TEST_P(SessionTest, EveryCodecMigratesAndVerifies) {
  TestGuest g(8 << 20, 3 * 4096 + 123, guest::Pattern::kMixed);
  for (auto codec : {"none", "zero", "xbzrle", "zstd", "xbzrle+zstd", "auto"}) {
    SourceConfig sc;
    sc.codec.mode = pipeline::parse_codec(codec).value();
    sc.queues = 3;
    auto out = migrate(GetParam(), g, sc, {});
    EXPECT_TRUE(out.source.completed) << codec << ": " << out.source.error.message();
    EXPECT_TRUE(out.destination.verified) << codec << ": " << out.destination.error.message();
    EXPECT_EQ(out.source.guest_bytes, (8u << 20) + 3 * 4096 + 123);
    // Both ends count the same pages: those that travelled, zero ones included.
    EXPECT_EQ(out.destination.pages.total(), out.source.pages.total()) << codec;
    EXPECT_EQ(out.destination.pages.zero, out.source.pages.zero) << codec;
    EXPECT_EQ(out.source.pages.total() + out.source.pages.zero_unsent,
              ((8u << 20) + 3 * 4096 + 123 + 4095) / 4096)
        << codec;
    const std::string name = codec;
    if (name == "none") {
      EXPECT_EQ(out.source.pages.raw, out.source.pages.total());
    } else {
      EXPECT_GT(out.source.pages.zero + out.source.pages.zero_unsent, 0u);
    }
    if (name == "zstd") {
      EXPECT_GT(out.source.pages.zstd, 0u);
    }
  }
}

TEST_P(SessionTest, OutputFileIsBitIdenticalAndAppearsOnlyWhenVerified) {
  TestGuest g(4 << 20, 5000, guest::Pattern::kText);
  DestinationConfig dc;
  dc.output_path = temp_path("out.img");
  std::filesystem::remove(dc.output_path);
  auto out = migrate(GetParam(), g, SourceConfig{}, dc);
  ASSERT_TRUE(out.destination.completed) << out.destination.error.message();
  std::ifstream f(dc.output_path, std::ios::binary);
  std::vector<char> data((std::istreambuf_iterator<char>(f)), {});
  ASSERT_EQ(data.size(), (4u << 20) + 5000);  // region 1 starts page-aligned, file trimmed
  EXPECT_EQ(std::memcmp(data.data(), g.regions()[0].memory.data(), 4 << 20), 0);
  EXPECT_EQ(std::memcmp(data.data() + (4 << 20), g.regions()[1].memory.data(), 5000), 0);
  EXPECT_FALSE(std::filesystem::exists(dc.output_path + ".partial"));
  // A second run refuses to overwrite without being told.
  auto again = migrate(GetParam(), g, SourceConfig{}, dc);
  EXPECT_FALSE(again.source.completed);
  EXPECT_EQ(again.source.error.code(), ErrorCode::kInvalidArgument);
  EXPECT_NE(again.source.error.message().find("already exists"), std::string::npos);
  std::filesystem::remove(dc.output_path);
}

TEST_P(SessionTest, BatchSizeIsPerTransportByDefaultAndBothEndsUseTheSourcesChoice) {
  TestGuest g(4 << 20, 4096, guest::Pattern::kMixed);
  auto out = migrate(GetParam(), g, SourceConfig{}, {});
  ASSERT_TRUE(out.destination.verified) << out.destination.error.message();
  EXPECT_EQ(out.source.batch_pages, 64u);  // not rdma: sized for socket buffers
  EXPECT_EQ(out.destination.batch_pages, 64u);
  SourceConfig big;
  big.batch_pages = 256;
  out = migrate(GetParam(), g, big, {});
  ASSERT_TRUE(out.destination.verified) << out.destination.error.message();
  EXPECT_EQ(out.source.batch_pages, 256u);
  EXPECT_EQ(out.destination.batch_pages, 256u);
  EXPECT_NE(out.destination.to_json().find("\"batch_pages\": 256"), std::string::npos);
}

TEST_P(SessionTest, AnImageSetsAsideNoXbzrleCacheAtEitherEnd) {
  TestGuest g(4 << 20, 4096, guest::Pattern::kMixed);
  SourceConfig sc;  // codec auto, whose XBZRLE half only ever helps a page sent again
  auto out = migrate(GetParam(), g, sc, {});
  ASSERT_TRUE(out.destination.verified) << out.destination.error.message();
  EXPECT_EQ(out.source.xbzrle_cache_bytes, sc.codec.xbzrle_cache_bytes);
  EXPECT_EQ(out.destination.xbzrle_cache_bytes, sc.codec.xbzrle_cache_bytes);
  g.immutable_ = true;
  out = migrate(GetParam(), g, sc, {});
  ASSERT_TRUE(out.destination.verified) << out.destination.error.message();
  EXPECT_EQ(out.source.xbzrle_cache_bytes, 0u);
  EXPECT_EQ(out.destination.xbzrle_cache_bytes, 0u);
}

TEST(SessionConfig, BatchOverRdmaIsOneMebibyteOfPagesAndSixtyFourElsewhere) {
  EXPECT_EQ(default_batch_pages("rdma", 4096), 256u);
  EXPECT_EQ(default_batch_pages("rdma", 65536), 16u);
  EXPECT_EQ(default_batch_pages("rdma", 1024), 1024u);
  EXPECT_EQ(default_batch_pages("tcp", 4096), 64u);
  EXPECT_EQ(default_batch_pages("loopback", 65536), 64u);
}

TEST(SessionConfig, BatchOverSixteenMebibytesFailsBeforeConnecting) {
  TestGuest g(1 << 20, 4096, guest::Pattern::kMixed);
  SourceConfig sc;
  sc.to = transport::parse_uri("tcp://127.0.0.1:1").value();  // never reached
  sc.page_size = 65536;
  sc.batch_pages = 512;  // 32 MiB
  auto report = run_source(g, sc);
  EXPECT_FALSE(report.completed);
  EXPECT_EQ(report.error.code(), ErrorCode::kInvalidArgument);
  EXPECT_NE(report.error.message().find("--batch-size of 512 pages"), std::string::npos)
      << report.error.message();
}

TEST_P(SessionTest, SizeMismatchFailsBothSidesWithTheReason) {
  TestGuest g(1 << 20, 4096, guest::Pattern::kRandom);
  DestinationConfig dc;
  dc.expect_bytes = 2 << 20;
  auto out = migrate(GetParam(), g, SourceConfig{}, dc);
  EXPECT_FALSE(out.source.completed);
  EXPECT_EQ(out.source.error.code(), ErrorCode::kMismatch);
  EXPECT_NE(out.source.error.message().find("size mismatch"), std::string::npos)
      << out.source.error.message();
  EXPECT_EQ(out.destination.error.code(), ErrorCode::kMismatch);
}

TEST_P(SessionTest, DestinationThatVanishesFailsTheSourceCleanly) {
  TestGuest g(64 << 20, 4096, guest::Pattern::kRandom);
  std::vector<std::byte> before(g.regions()[0].memory.begin(), g.regions()[0].memory.end());
  static int n = 0;
  auto uri = transport::parse_uri(GetParam() == "tcp" ? "tcp://127.0.0.1:0"
                                                      : "loopback://vanish-" + std::to_string(n++))
                 .value();
  auto listener = transport::listen(uri).value();
  SourceConfig sc;
  sc.to = listener->address();
  sc.bandwidth_limit = 64 << 20;  // ~1 s of transfer, so the cut lands mid-round
  std::thread dest([&] {
    auto conn = std::move(listener->accept(10s)).value();
    transport::ConstBuffer m[1];
    (void)conn->poll(0, m, 5s);  // take the hello, then vanish
    std::this_thread::sleep_for(300ms);
  });
  auto report = run_source(g, sc);
  dest.join();
  EXPECT_FALSE(report.completed);
  EXPECT_EQ(report.error.code(), ErrorCode::kDisconnected) << report.error.message();
  EXPECT_EQ(std::memcmp(before.data(), g.regions()[0].memory.data(), before.size()), 0);
}

TEST_P(SessionTest, SourceThatVanishesMidRoundLeavesNoOutputFile) {
  DestinationConfig dc;
  dc.output_path = temp_path("vanish.img");
  std::filesystem::remove(dc.output_path);
  static int n = 0;
  auto uri = transport::parse_uri(GetParam() == "tcp" ? "tcp://127.0.0.1:0"
                                                      : "loopback://svanish-" + std::to_string(n++))
                 .value();
  auto listener = transport::listen(uri).value();
  MigrationReport dest;
  std::thread t([&] { dest = run_destination(std::move(listener->accept(10s)).value(), dc); });

  // A hand-driven source: handshake, one page batch, then it disappears.
  auto conn = transport::connect(listener->address(), 2).value();
  wire::Hello hello;
  hello.codec = static_cast<uint8_t>(pipeline::CodecMode::kZero);
  ASSERT_TRUE(send_frame(*conn, 0, wire::FrameType::kHello, wire::encode(hello), 5s).is_ok());
  ASSERT_EQ(receive_frame(*conn, 0, 5s).value().type, wire::FrameType::kHello);
  wire::RegionTable table{{{0, 8 << 20, "ram"}}};
  ASSERT_TRUE(send_frame(*conn, 0, wire::FrameType::kRegionTable, wire::encode(table), 5s).is_ok());
  ASSERT_EQ(receive_frame(*conn, 0, 5s).value().type, wire::FrameType::kReady);
  EXPECT_TRUE(std::filesystem::exists(dc.output_path + ".partial"));
  std::vector<std::byte> page(4096, std::byte{7});
  pipeline::BatchEncoder enc({pipeline::CodecMode::kZero}, 4096, 64, 0);
  enc.begin(0, 0, {});
  enc.add(5, page.data());
  auto batch = enc.finish();
  ASSERT_TRUE(send_frame(*conn, 1, wire::FrameType::kPageBatch, batch.segments, 5s).is_ok());
  std::this_thread::sleep_for(100ms);
  conn.reset();
  t.join();
  EXPECT_FALSE(dest.completed);
  EXPECT_EQ(dest.error.code(), ErrorCode::kDisconnected) << dest.error.message();
  EXPECT_FALSE(std::filesystem::exists(dc.output_path));
  EXPECT_FALSE(std::filesystem::exists(dc.output_path + ".partial"));
}

TEST_P(SessionTest, CorruptFrameFromTheSourceFailsWithTheFieldNamed) {
  static int n = 0;
  auto uri = transport::parse_uri(GetParam() == "tcp" ? "tcp://127.0.0.1:0"
                                                      : "loopback://corrupt-" + std::to_string(n++))
                 .value();
  auto listener = transport::listen(uri).value();
  MigrationReport dest;
  std::thread t([&] { dest = run_destination(std::move(listener->accept(10s)).value(), {}); });
  auto conn = transport::connect(listener->address(), 2).value();
  wire::Hello hello;
  hello.page_size = 3000;  // not a power of two
  ASSERT_TRUE(send_frame(*conn, 0, wire::FrameType::kHello, wire::encode(hello), 5s).is_ok());
  auto reply = receive_frame(*conn, 0, 5s);
  ASSERT_TRUE(reply.is_ok());
  EXPECT_EQ(reply->type, wire::FrameType::kError);
  auto err = peer_error(reply->body, "destination");
  EXPECT_NE(err.message().find("page_size"), std::string::npos) << err.message();
  t.join();
  EXPECT_EQ(dest.error.code(), ErrorCode::kProtocol);
}

INSTANTIATE_TEST_SUITE_P(Backends, SessionTest, ::testing::Values("loopback", "tcp"),
                         [](const auto& param_info) { return param_info.param; });

}  // namespace
}  // namespace ramshift::migration
