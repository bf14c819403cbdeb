// tcp backend behaviour a user sees: clear errors for ports and peers, and robustness
// against whatever arrives on the listening port.
#include <gtest/gtest.h>
#include <sys/socket.h>

#include <thread>

#include "ramshift/base/byte_order.h"
#include "ramshift/transport/transport.h"
#include "transport/src/tcp_socket.h"

namespace ramshift::transport {
namespace {

using namespace std::chrono_literals;
using Clock = std::chrono::steady_clock;

std::unique_ptr<Listener> listen_any() {
  auto l = listen(parse_uri("tcp://127.0.0.1:0").value());
  EXPECT_TRUE(l.is_ok()) << l.status().message();
  return std::move(l).value();
}

TEST(Tcp, PortInUseIsReportedAsSuch) {
  auto first = listen_any();
  auto again = listen(first->address());
  ASSERT_FALSE(again);
  EXPECT_EQ(again.status().code(), ErrorCode::kAddressInUse);
  EXPECT_NE(again.status().message().find("already in use"), std::string::npos);
}

TEST(Tcp, RefusedConnectionNamesTheAddress) {
  uint16_t port;
  {
    auto l = listen_any();
    port = l->address().port;
  }  // closed: nothing listens there now
  auto c = connect(parse_uri("tcp://127.0.0.1:" + std::to_string(port)).value(), 1);
  ASSERT_FALSE(c);
  EXPECT_EQ(c.status().code(), ErrorCode::kUnreachable);
  EXPECT_NE(c.status().message().find("refused"), std::string::npos) << c.status().message();
}

TEST(Tcp, UnresolvableHostIsUnreachable) {
  auto c = connect(parse_uri("tcp://no-such-host.invalid:7000").value(), 1);
  ASSERT_FALSE(c);
  EXPECT_EQ(c.status().code(), ErrorCode::kUnreachable);
}

TEST(Tcp, GarbageOnTheListeningPortIsRejectedAndServiceContinues) {
  auto l = listen_any();
  auto deadline = Clock::now() + 5s;
  {
    auto raw = tcp::connect_socket(l->address(), deadline).value();
    const char junk[] = "GET / HTTP/1.1\r\nHost: x\r\n\r\n";
    ASSERT_TRUE(
        tcp::send_all(raw.get(), reinterpret_cast<const std::byte*>(junk), 24, deadline).is_ok());
    auto none = l->accept(300ms);
    EXPECT_FALSE(none);  // the junk connection never becomes a Connection
  }
  std::unique_ptr<Connection> server;
  std::thread t([&] { server = std::move(l->accept(5s)).value(); });
  auto client = connect(l->address(), 2);
  t.join();
  ASSERT_TRUE(client.is_ok());
  ASSERT_TRUE(server);
  EXPECT_EQ(server->queue_count(), 2u);
}

// Opens a one-queue connection by hand, so the test controls every byte that follows.
UniqueFd raw_queue(Listener& l, std::unique_ptr<Connection>* server) {
  auto deadline = Clock::now() + 5s;
  auto raw = tcp::connect_socket(l.address(), deadline).value();
  std::byte hello[tcp::kQueueHelloBytes];
  tcp::encode_queue_hello({0, 1, 1234}, hello);
  EXPECT_TRUE(tcp::send_all(raw.get(), hello, sizeof hello, deadline).is_ok());
  *server = std::move(l.accept(5s)).value();
  return raw;
}

TEST(Tcp, MessageCutShortByThePeerIsNeverDelivered) {
  auto l = listen_any();
  std::unique_ptr<Connection> server;
  auto raw = raw_queue(*l, &server);
  std::byte bytes[4 + 10];
  store_le<uint32_t>(bytes, 1000);  // announces 1000 bytes, sends 10, then hangs up
  ASSERT_TRUE(tcp::send_all(raw.get(), bytes, sizeof bytes, Clock::now() + 1s).is_ok());
  raw.reset();
  ConstBuffer m[1];
  auto r = server->poll(0, m, 5s);
  ASSERT_FALSE(r);
  EXPECT_EQ(r.status().code(), ErrorCode::kDisconnected);
  EXPECT_NE(r.status().message().find("middle of a message"), std::string::npos)
      << r.status().message();
}

TEST(Tcp, AbsurdLengthPrefixIsAProtocolError) {
  auto l = listen_any();
  std::unique_ptr<Connection> server;
  auto raw = raw_queue(*l, &server);
  std::byte bytes[4];
  store_le<uint32_t>(bytes, 0xfffffff0u);
  ASSERT_TRUE(tcp::send_all(raw.get(), bytes, sizeof bytes, Clock::now() + 1s).is_ok());
  ConstBuffer m[1];
  auto r = server->poll(0, m, 5s);
  ASSERT_FALSE(r);
  EXPECT_EQ(r.status().code(), ErrorCode::kProtocol);
}

TEST(Tcp, QueueHelloIsValidated) {
  std::byte h[tcp::kQueueHelloBytes];
  tcp::encode_queue_hello({3, 2, 1}, h);  // queue 3 of 2
  EXPECT_FALSE(tcp::decode_queue_hello(h));
  tcp::encode_queue_hello({0, 2, 1}, h);
  h[0] = std::byte{0};
  EXPECT_FALSE(tcp::decode_queue_hello(h));
  tcp::encode_queue_hello({1, 2, 9}, h);
  EXPECT_EQ(tcp::decode_queue_hello(h).value().nonce, 9u);
}

}  // namespace
}  // namespace ramshift::transport
