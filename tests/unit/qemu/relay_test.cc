// Both bridges end to end over the loopback transport, with fake QEMUs on real unix sockets:
// the streams arrive byte for byte, in channel order, multifd packets re-encoded on the way;
// and a destination QEMU that is not there fails the source side cleanly.
#include <gtest/gtest.h>
#include <sys/socket.h>
#include <sys/un.h>
#include <unistd.h>

#include <filesystem>
#include <future>
#include <random>
#include <thread>

#include "multifd_builder.h"
#include "ramshift/base/unique_fd.h"
#include "ramshift/qemu/bridge.h"

namespace ramshift::qemu {
namespace {

using namespace std::chrono_literals;

sockaddr_un addr(const std::string& path) {
  sockaddr_un a{};
  a.sun_family = AF_UNIX;
  std::memcpy(a.sun_path, path.data(), path.size());
  return a;
}

UniqueFd connect_to(const std::string& path) {
  for (int i = 0; i < 200; ++i) {
    UniqueFd fd(::socket(AF_UNIX, SOCK_STREAM, 0));
    auto a = addr(path);
    if (::connect(fd.get(), reinterpret_cast<sockaddr*>(&a), sizeof a) == 0) return fd;
    std::this_thread::sleep_for(10ms);
  }
  return UniqueFd();
}

void write_all(int fd, const std::vector<std::byte>& data) {
  size_t off = 0;
  while (off < data.size()) {
    ssize_t n = ::send(fd, data.data() + off, data.size() - off, MSG_NOSIGNAL);
    ASSERT_GT(n, 0) << strerror(errno);
    off += static_cast<size_t>(n);
  }
}

std::vector<std::byte> read_all(int fd) {
  std::vector<std::byte> out;
  std::byte buf[65536];
  for (;;) {
    ssize_t n = ::read(fd, buf, sizeof buf);
    if (n <= 0) return out;
    out.insert(out.end(), buf, buf + n);
  }
}

struct TempDir {
  std::string path;
  TempDir() {
    char t[] = "/tmp/ramshift-relay-test.XXXXXX";
    path = mkdtemp(t);
  }
  ~TempDir() { std::filesystem::remove_all(path); }
};

// A multifd channel's stream: init, then rounds of packets over the same offsets (so
// XBZRLE finds old versions), a SYNC after each round.
std::vector<std::byte> multifd_stream(uint8_t id) {
  auto s = testing::multifd_init(id);
  auto pages = testing::mixed_pages(128, id);
  std::vector<uint64_t> offsets;
  for (uint64_t i = 0; i < 128; ++i) offsets.push_back((id * 1000 + i) * 4096);
  for (int round = 0; round < 3; ++round) {
    for (size_t p = 0; p < 128; ++p) pages[p * 4096 + 7 * round] ^= std::byte{1};
    auto packet = testing::multifd_packet(offsets, pages);
    s.insert(s.end(), packet.begin(), packet.end());
    auto sync = testing::multifd_packet({}, {}, 1, 128, "pc.ram", 524288);
    s.insert(s.end(), sync.begin(), sync.end());
  }
  return s;
}

TEST(Relay, CarriesMainAndMultifdChannelsByteForByteInOrder) {
  TempDir dir;
  std::string src_sock = dir.path + "/src.sock", dst_sock = dir.path + "/dst.sock";
  // Main stream: "QEVM" then 3 MiB of random bytes.
  std::vector<std::byte> main_stream(3 << 20);
  std::mt19937_64 rng(9);
  for (auto& b : main_stream) b = std::byte(rng());
  const std::byte qevm[] = {std::byte{'Q'}, std::byte{'E'}, std::byte{'V'}, std::byte{'M'}};
  std::copy(std::begin(qevm), std::end(qevm), main_stream.begin());
  std::vector<std::vector<std::byte>> sent = {main_stream, multifd_stream(1), multifd_stream(2)};
  const std::vector<std::byte> reply = {std::byte{'o'}, std::byte{'k'}};

  // Fake destination QEMU: accepts three connections, reads each to the end; answers on
  // the main channel (a return path), then closes.
  UniqueFd lfd(::socket(AF_UNIX, SOCK_STREAM, 0));
  auto la = addr(dst_sock);
  ASSERT_EQ(::bind(lfd.get(), reinterpret_cast<sockaddr*>(&la), sizeof la), 0);
  ASSERT_EQ(::listen(lfd.get(), 8), 0);
  auto dest_qemu = std::async(std::launch::async, [&] {
    std::vector<std::future<std::vector<std::byte>>> readers;
    for (int i = 0; i < 3; ++i) {
      int fd = ::accept(lfd.get(), nullptr, nullptr);
      readers.push_back(std::async(std::launch::async, [fd, i, &reply] {
        auto got = read_all(fd);
        if (i == 0) write_all(fd, reply);
        ::close(fd);
        return got;
      }));
    }
    std::vector<std::vector<std::byte>> got;
    for (auto& r : readers) got.push_back(r.get());
    return got;
  });

  BridgeConfig config;
  config.queues = 3;
  config.codec.mode = pipeline::CodecMode::kAuto;
  auto listener = transport::listen(transport::parse_uri("loopback://relay-ok").value());
  ASSERT_TRUE(listener);
  auto dest = std::async(std::launch::async, [&] {
    auto conn = (*listener)->accept(10s);
    EXPECT_TRUE(conn);
    return run_bridge_dest(std::move(conn).value(), {dst_sock}, config, nullptr);
  });
  std::promise<void> ready;
  auto source = std::async(std::launch::async, [&] {
    return run_bridge_source(transport::parse_uri("loopback://relay-ok").value(), {src_sock},
                             config, nullptr, [&] { ready.set_value(); });
  });
  ASSERT_EQ(ready.get_future().wait_for(10s), std::future_status::ready);

  // Fake source QEMU: main channel first, then the multifd channels, all writing at once.
  std::vector<UniqueFd> fds;
  for (int i = 0; i < 3; ++i) {
    fds.push_back(connect_to(src_sock));
    ASSERT_TRUE(fds.back().valid());
    std::this_thread::sleep_for(20ms);  // QEMU connects its channels one after another
  }
  std::vector<std::thread> writers;
  for (int i = 0; i < 3; ++i)
    writers.emplace_back([&, i] {
      write_all(fds[i].get(), sent[i]);
      ::shutdown(fds[i].get(), SHUT_WR);
    });
  for (auto& w : writers) w.join();
  EXPECT_EQ(read_all(fds[0].get()), reply);
  for (int i = 1; i < 3; ++i) EXPECT_TRUE(read_all(fds[i].get()).empty());
  fds.clear();

  auto got = dest_qemu.get();
  ASSERT_EQ(got.size(), 3u);
  for (int i = 0; i < 3; ++i) EXPECT_TRUE(got[i] == sent[i]) << "channel " << i;
  BridgeReport s = source.get(), d = dest.get();
  ASSERT_TRUE(s.completed) << s.error.message();
  ASSERT_TRUE(d.completed) << d.error.message();
  EXPECT_TRUE(s.verified);
  ASSERT_EQ(s.channels.size(), 3u);
  EXPECT_EQ(s.channels[0].kind, "main");
  EXPECT_EQ(s.channels[0].bytes_to_source, reply.size());
  for (int i = 1; i < 3; ++i) {
    EXPECT_EQ(s.channels[i].kind, "multifd");
    EXPECT_EQ(s.channels[i].mode, "multifd");
    EXPECT_EQ(s.channels[i].packets, 6u);
  }
  EXPECT_GT(s.pages.xbzrle, 0u);  // rounds 1 and 2 revisit every page
  EXPECT_LT(s.wire_bytes, s.guest_bytes);
  EXPECT_EQ(d.pages.total(), s.pages.total());
}

TEST(Relay, MissingDestinationQemuFailsBothBridgesAndCutsTheSource) {
  TempDir dir;
  std::string src_sock = dir.path + "/src.sock";
  BridgeConfig config;
  config.queues = 2;
  config.qemu_connect_timeout_ms = 300;
  auto listener = transport::listen(transport::parse_uri("loopback://relay-missing").value());
  ASSERT_TRUE(listener);
  auto dest = std::async(std::launch::async, [&] {
    auto conn = (*listener)->accept(10s);
    return run_bridge_dest(std::move(conn).value(), {dir.path + "/nobody.sock"}, config, nullptr);
  });
  std::promise<void> ready;
  auto source = std::async(std::launch::async, [&] {
    return run_bridge_source(transport::parse_uri("loopback://relay-missing").value(), {src_sock},
                             config, nullptr, [&] { ready.set_value(); });
  });
  ASSERT_EQ(ready.get_future().wait_for(10s), std::future_status::ready);
  UniqueFd fd = connect_to(src_sock);
  ASSERT_TRUE(fd.valid());
  std::vector<std::byte> some(1 << 20, std::byte{1});
  ::send(fd.get(), some.data(), some.size(), MSG_NOSIGNAL | MSG_DONTWAIT);
  // The source QEMU sees its connection end (its migration fails; the VM keeps running).
  std::byte b;
  EXPECT_LE(::read(fd.get(), &b, 1), 0);
  BridgeReport s = source.get(), d = dest.get();
  EXPECT_FALSE(s.completed);
  EXPECT_FALSE(d.completed);
  EXPECT_NE(s.error.message().find("not listening"), std::string::npos) << s.error.message();
  EXPECT_NE(d.error.message().find("not listening"), std::string::npos) << d.error.message();
}

// A destination QEMU that closes its channel while the bridge still writes to it: both
// bridges fail, and the destination's report marks it as QEMU closing early, which is what
// lets qemu-migrate tell this from a bridge fault once QEMU itself says "completed".
TEST(Relay, DestinationQemuClosingAChannelEarlyIsReportedAsSuch) {
  TempDir dir;
  std::string src_sock = dir.path + "/src.sock", dst_sock = dir.path + "/dst.sock";
  UniqueFd lfd(::socket(AF_UNIX, SOCK_STREAM, 0));
  auto la = addr(dst_sock);
  ASSERT_EQ(::bind(lfd.get(), reinterpret_cast<sockaddr*>(&la), sizeof la), 0);
  ASSERT_EQ(::listen(lfd.get(), 8), 0);
  auto dest_qemu = std::async(std::launch::async, [&] {
    UniqueFd fd(::accept(lfd.get(), nullptr, nullptr));
    std::byte buf[4096];
    (void)::read(fd.get(), buf, sizeof buf);  // a little, then goes away
  });
  BridgeConfig config;
  config.queues = 1;
  auto listener = transport::listen(transport::parse_uri("loopback://relay-early").value());
  ASSERT_TRUE(listener);
  auto dest = std::async(std::launch::async, [&] {
    auto conn = (*listener)->accept(10s);
    return run_bridge_dest(std::move(conn).value(), {dst_sock}, config, nullptr);
  });
  std::promise<void> ready;
  auto source = std::async(std::launch::async, [&] {
    return run_bridge_source(transport::parse_uri("loopback://relay-early").value(), {src_sock},
                             config, nullptr, [&] { ready.set_value(); });
  });
  ASSERT_EQ(ready.get_future().wait_for(10s), std::future_status::ready);
  UniqueFd fd = connect_to(src_sock);
  ASSERT_TRUE(fd.valid());
  std::vector<std::byte> stream(32 << 20, std::byte{7});
  const std::byte qevm[] = {std::byte{'Q'}, std::byte{'E'}, std::byte{'V'}, std::byte{'M'}};
  std::copy(std::begin(qevm), std::end(qevm), stream.begin());
  for (size_t off = 0; off < stream.size();) {  // until the bridge cuts the source QEMU
    ssize_t n = ::send(fd.get(), stream.data() + off, stream.size() - off, MSG_NOSIGNAL);
    if (n <= 0) break;
    off += static_cast<size_t>(n);
  }
  ::shutdown(fd.get(), SHUT_WR);
  dest_qemu.get();
  BridgeReport s = source.get(), d = dest.get();
  EXPECT_FALSE(d.completed);
  EXPECT_FALSE(s.completed);
  EXPECT_TRUE(d.qemu_closed_early) << d.error.message();
  EXPECT_FALSE(s.qemu_closed_early) << s.error.message();
  // Which of the dest bridge's threads sees it first varies: the write (EPIPE) or the read
  // of the QEMU's reset.
  EXPECT_TRUE(d.error.message().find("destination QEMU closed channel 0") != std::string::npos ||
              d.error.message().find("channel 0: destination QEMU: QEMU reset") !=
                  std::string::npos)
      << d.error.message();
  EXPECT_NE(d.to_json().find("qemu_closed_early"), std::string::npos);
}

}  // namespace
}  // namespace ramshift::qemu
