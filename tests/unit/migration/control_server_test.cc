// The control socket over a real unix socket: answers, refusals, bad input, the socket
// file's life (removed at exit, refused while live, replaced when stale).
#include <fcntl.h>
#include <gtest/gtest.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/un.h>
#include <unistd.h>

#include <atomic>
#include <cstring>
#include <string>

#include <nlohmann/json.hpp>

#include "ramshift/migration/control_server.h"
#include "ramshift/migration/report.h"

namespace ramshift::migration {
namespace {

using namespace std::chrono_literals;

class ControlServerTest : public ::testing::Test {
 protected:
  void SetUp() override {
    char tmpl[] = "/tmp/ramshift-control-test.XXXXXX";
    ASSERT_NE(mkdtemp(tmpl), nullptr);
    dir_ = tmpl;
    path_ = dir_ + "/c.sock";
  }
  void TearDown() override {
    ::unlink(path_.c_str());
    ::rmdir(dir_.c_str());
  }
  ControlHandlers handlers() {
    ControlHandlers h;
    h.role = "source";
    h.query = [this] { return board_.snapshot(); };
    h.cancel = [this](const std::string& why) { cancel_reason_ = why; };
    h.set_bandwidth = [this](uint64_t bps) {
      bandwidth_ = bps;
      return Status::ok();
    };
    return h;
  }
  nlohmann::json call(const std::string& line) {
    auto r = control_call(path_, line, 2000ms);
    EXPECT_TRUE(r.is_ok()) << r.status().message();
    return r ? nlohmann::json::parse(*r) : nlohmann::json();
  }

  std::string dir_, path_;
  ProgressBoard board_;
  std::string cancel_reason_;
  std::atomic<uint64_t> bandwidth_{0};
};

TEST_F(ControlServerTest, QueryReturnsTheLatestSnapshot) {
  auto server = ControlServer::start(path_, handlers());
  ASSERT_TRUE(server.is_ok()) << server.status().message();
  board_.publish({.status = MigrationStatus::kActive,
                  .round = 3,
                  .total_bytes = 1000,
                  .done_bytes = 400,
                  .transferred_bytes = 5000,
                  .elapsed_s = 2});
  auto r = call(R"({"execute": "query"})")["return"];
  EXPECT_EQ(r["role"], "source");
  EXPECT_EQ(r["status"], "active");
  EXPECT_EQ(r["round"], 3);
  EXPECT_EQ(r["remaining_bytes"], 600);
  EXPECT_EQ(r["transferred_bytes"], 5000);
  EXPECT_DOUBLE_EQ(r["throughput_bytes_per_s"].get<double>(), 2500);
}

TEST_F(ControlServerTest, CancelAndSetBandwidthReachTheRun) {
  auto server = ControlServer::start(path_, handlers());
  ASSERT_TRUE(server.is_ok());
  EXPECT_TRUE(call(R"({"execute": "set-bandwidth", "arguments": {"bytes-per-second": 4096}})")
                  .contains("return"));
  EXPECT_EQ(bandwidth_.load(), 4096u);
  EXPECT_TRUE(call(R"({"execute": "cancel"})").contains("return"));
  EXPECT_NE(cancel_reason_.find("control socket"), std::string::npos);
}

TEST_F(ControlServerTest, StartPostcopyReachesTheRunOrSaysWhyNot) {
  ControlHandlers h = handlers();
  int asked = 0;
  h.start_postcopy = [&asked] {
    return ++asked == 1 ? Status::ok()
                        : Status(ErrorCode::kInvalidArgument, "already in post-copy");
  };
  auto server = ControlServer::start(path_, std::move(h));
  ASSERT_TRUE(server.is_ok());
  EXPECT_TRUE(call(R"({"execute": "start-postcopy"})").contains("return"));
  auto refused = call(R"({"execute": "start-postcopy"})");
  ASSERT_TRUE(refused.contains("error"));
  EXPECT_EQ(refused["error"]["desc"], "already in post-copy");
  EXPECT_EQ(asked, 2);
}

TEST_F(ControlServerTest, BadInputIsAnsweredWithAnError) {
  ControlHandlers h = handlers();
  h.set_bandwidth = nullptr;  // a destination: nothing to limit
  auto server = ControlServer::start(path_, std::move(h));
  ASSERT_TRUE(server.is_ok());
  for (const char* line : {"garbage", "[1,2]", R"({"execute": 7})", R"({"execute": "reboot"})",
                           R"({"execute": "query", "arguments": 3})",
                           R"({"execute": "set-bandwidth", "arguments": {"bytes-per-second": -1}})",
                           R"({"execute": "set-bandwidth", "arguments": {"bytes-per-second": 1}})",
                           R"({"execute": "start-postcopy"})"})
    EXPECT_TRUE(call(line).contains("error")) << line;
  EXPECT_EQ(bandwidth_.load(), 0u);
  // Still serving after all that.
  EXPECT_EQ(call(R"({"execute": "query"})")["return"]["status"], "none");
}

TEST_F(ControlServerTest, MetricsArePrometheusText) {
  auto server = ControlServer::start(path_, handlers());
  ASSERT_TRUE(server.is_ok());
  board_.publish({.status = MigrationStatus::kActive, .wire_bytes = 12345});
  std::string text = call(R"({"execute": "metrics"})")["return"]["text"];
  EXPECT_NE(text.find("ramshift_migration_status{role=\"source\",status=\"active\"} 1\n"),
            std::string::npos);
  EXPECT_NE(text.find("ramshift_migration_status{role=\"source\",status=\"none\"} 0\n"),
            std::string::npos);
  EXPECT_NE(text.find("# TYPE ramshift_migration_wire_bytes gauge\n"
                      "ramshift_migration_wire_bytes{role=\"source\"} 12345\n"),
            std::string::npos);
}

TEST_F(ControlServerTest, SocketFileLifecycle) {
  {
    auto server = ControlServer::start(path_, handlers());
    ASSERT_TRUE(server.is_ok());
    struct stat st {};
    ASSERT_EQ(::stat(path_.c_str(), &st), 0);
    EXPECT_EQ(st.st_mode & 0777, 0600u);
    auto second = ControlServer::start(path_, handlers());
    ASSERT_FALSE(second.is_ok());
    EXPECT_EQ(second.status().code(), ErrorCode::kAddressInUse);
  }
  EXPECT_NE(::access(path_.c_str(), F_OK), 0) << "the socket outlived its server";
  // A stale socket (bound, nobody listening) is replaced.
  int fd = ::socket(AF_UNIX, SOCK_STREAM, 0);
  sockaddr_un addr{};
  addr.sun_family = AF_UNIX;
  std::strncpy(addr.sun_path, path_.c_str(), sizeof addr.sun_path - 1);
  ASSERT_EQ(::bind(fd, reinterpret_cast<sockaddr*>(&addr), sizeof addr), 0);
  ::close(fd);
  auto server = ControlServer::start(path_, handlers());
  ASSERT_TRUE(server.is_ok()) << server.status().message();
  EXPECT_EQ(call(R"({"execute": "query"})")["return"]["status"], "none");
  // A regular file is not taken over.
  server->reset();
  ASSERT_EQ(::close(::creat(path_.c_str(), 0600)), 0);
  auto refused = ControlServer::start(path_, handlers());
  EXPECT_EQ(refused.status().code(), ErrorCode::kAddressInUse);
  EXPECT_FALSE(control_call(path_, "{}", 500ms).is_ok());
}

TEST(FinalProgress, ComesFromTheReport) {
  MigrationReport r;
  r.error = Status(ErrorCode::kCancelled, "source cancelled");
  r.rounds = 2;
  r.rounds_detail = {{.round = 0, .guest_bytes = 100},
                     {.round = 1, .guest_bytes = 30, .ms = 100, .dirty_bytes_after = 10}};
  Progress p = final_progress(r);
  EXPECT_EQ(p.status, MigrationStatus::kCancelled);
  EXPECT_EQ(p.round, 1u);
  EXPECT_EQ(p.transferred_bytes, 130u);
  EXPECT_DOUBLE_EQ(p.dirty_rate_bytes_per_s, 100);
}

}  // namespace
}  // namespace ramshift::migration
