// The TLS handshake over a message pipe (what rdma:// runs over SEND/RECV before its rings
// exist), here over an in-memory pipe with PSKs: it completes, both ends export the same
// keys, messages cross, a wrong key or a peer that stops is refused with the reason, and no
// message exceeds the pipe's limit.
#include <gtest/gtest.h>

#include <algorithm>
#include <condition_variable>
#include <deque>
#include <filesystem>
#include <fstream>
#include <mutex>
#include <thread>

#include "ramshift/transport/channel_security.h"

namespace ramshift::transport {
namespace {

using Clock = std::chrono::steady_clock;
using Bytes = std::vector<std::byte>;

// Two ends of an in-memory pipe; each end receives what the other sends.
class MemoryPipes {
 public:
  class End final : public MessagePipe {
   public:
    End(MemoryPipes& pipes, int side) : pipes_(pipes), side_(side) {}
    size_t max_message() const override { return 4096; }
    Status send(std::span<const std::byte> m) override {
      if (m.size() > max_message()) return Status(ErrorCode::kInternal, "message over the limit");
      std::lock_guard lock(pipes_.mu_);
      pipes_.queues_[1 - side_].emplace_back(m.begin(), m.end());
      ++pipes_.sent_[side_];
      pipes_.cv_.notify_all();
      return Status::ok();
    }
    Result<Bytes> receive(Clock::time_point deadline) override {
      std::unique_lock lock(pipes_.mu_);
      auto& q = pipes_.queues_[side_];
      if (!pipes_.cv_.wait_until(lock, deadline, [&] { return !q.empty(); }))
        return Status(ErrorCode::kTimeout, "nothing from the peer in time");
      Bytes m = std::move(q.front());
      q.pop_front();
      return m;
    }

   private:
    MemoryPipes& pipes_;
    int side_;
  };

  End client{*this, 0};
  End server{*this, 1};
  int sent(int side) {
    std::lock_guard lock(mu_);
    return sent_[side];
  }

 private:
  std::mutex mu_;
  std::condition_variable cv_;
  std::deque<Bytes> queues_[2];
  int sent_[2] = {0, 0};
};

class TlsOverMessages : public ::testing::Test {
 protected:
  void SetUp() override {
    char tmpl[] = "/tmp/tls-session-XXXXXX";
    dir_ = mkdtemp(tmpl);
    write("keys.psk", "host-a:" + std::string(64, 'a') + "\n");
    write("other.psk", "host-a:" + std::string(64, 'b') + "\n");
  }
  void TearDown() override { std::filesystem::remove_all(dir_); }
  void write(const std::string& name, const std::string& text) {
    std::ofstream(dir_ + "/" + name) << text;
  }
  std::shared_ptr<ChannelSecurity> channel(const std::string& psk, PeerRole role,
                                           const std::string& authz = "") {
    BackendSettings s;
    s.set("tls-psk", dir_ + "/" + psk);
    if (!authz.empty()) s.set("tls-authz", authz);
    auto c = channel_security(s, role);
    EXPECT_TRUE(c.is_ok()) << c.status().message();
    return c.is_ok() ? *c : nullptr;
  }

  std::string dir_;
};

struct Ends {
  Result<std::unique_ptr<SecureSession>> client = Status(ErrorCode::kInternal, "not run");
  Result<std::unique_ptr<SecureSession>> server = Status(ErrorCode::kInternal, "not run");
};

Ends handshake(MemoryPipes& pipes, ChannelSecurity& client, ChannelSecurity& server) {
  Ends e;
  const auto deadline = Clock::now() + std::chrono::seconds(5);
  std::thread t(
      [&] { e.server = server.handshake(pipes.server, PeerRole::kServer, "", deadline); });
  e.client = client.handshake(pipes.client, PeerRole::kClient, "10.9.0.1", deadline);
  t.join();
  return e;
}

TEST_F(TlsOverMessages, CompletesAndBothEndsDeriveTheSameKeys) {
  auto client = channel("keys.psk", PeerRole::kClient);
  auto server = channel("keys.psk", PeerRole::kServer, "host-a");
  MemoryPipes pipes;
  Ends e = handshake(pipes, *client, *server);
  ASSERT_TRUE(e.client.is_ok()) << e.client.status().message();
  ASSERT_TRUE(e.server.is_ok()) << e.server.status().message();
  EXPECT_EQ((*e.server)->peer_identity(), "host-a");
  EXPECT_TRUE(server->authorize(**e.server).is_ok());
  EXPECT_NE((*e.client)->describe().find("TLSv1.3"), std::string::npos) << (*e.client)->describe();
  // A TLS 1.3 handshake: a few messages each way, not one per record.
  EXPECT_LE(pipes.sent(0), 4);
  EXPECT_LE(pipes.sent(1), 4);

  const std::byte ctx[] = {std::byte{0}, std::byte{1}};
  auto kc = (*e.client)->export_key("ramshift rdma test", ctx, 32);
  auto ks = (*e.server)->export_key("ramshift rdma test", ctx, 32);
  auto other = (*e.server)->export_key("ramshift rdma other", ctx, 32);
  ASSERT_TRUE(kc.is_ok() && ks.is_ok() && other.is_ok());
  EXPECT_EQ(*kc, *ks);
  EXPECT_NE(*kc, *other);
  EXPECT_NE(*kc, Bytes(32));

  // Messages of any size up to the limit cross in order, split into pipe-sized pieces.
  Bytes big(20000);
  for (size_t i = 0; i < big.size(); ++i) big[i] = static_cast<std::byte>(i * 7);
  ASSERT_TRUE((*e.server)->send(big).is_ok());
  ASSERT_TRUE((*e.server)->send(Bytes{std::byte{42}}).is_ok());
  const auto deadline = Clock::now() + std::chrono::seconds(5);
  auto got = (*e.client)->receive(deadline);
  ASSERT_TRUE(got.is_ok()) << got.status().message();
  EXPECT_EQ(*got, big);
  got = (*e.client)->receive(deadline);
  ASSERT_TRUE(got.is_ok());
  EXPECT_EQ(*got, Bytes{std::byte{42}});
}

// --encrypt's sealing: what one end seals the other opens, once, in order; a changed byte,
// a replay, a message of the other direction or of another queue fails before any use.
TEST_F(TlsOverMessages, SealedPayloadsOpenOnlyAtTheirPeerInOrder) {
  auto client = channel("keys.psk", PeerRole::kClient);
  auto server = channel("keys.psk", PeerRole::kServer);
  MemoryPipes pipes;
  Ends e = handshake(pipes, *client, *server);
  ASSERT_TRUE(e.client.is_ok() && e.server.is_ok());
  auto tx = (*e.client)->sealer(true, 3);
  auto rx = (*e.server)->sealer(false, 3);
  auto rx_other_queue = (*e.server)->sealer(false, 4);
  auto back = (*e.server)->sealer(true, 3);
  ASSERT_TRUE(tx.is_ok() && rx.is_ok() && rx_other_queue.is_ok() && back.is_ok());
  const Bytes head{std::byte{1}, std::byte{2}};
  Bytes body(5000, std::byte{7});
  const std::span<const std::byte> parts[] = {head, body};
  auto seal = [&](PayloadSealer& s) {
    Bytes out(head.size() + body.size() + PayloadSealer::kOverhead);
    EXPECT_TRUE(s.seal(parts, out).is_ok());
    return out;
  };
  Bytes m0 = seal(**tx);
  Bytes m1 = seal(**tx);
  EXPECT_NE(m0, m1);  // a fresh nonce each time
  EXPECT_EQ(std::search(m0.begin(), m0.end(), body.begin(), body.begin() + 64), m0.end());

  Bytes plain(head.size() + body.size());
  EXPECT_EQ((*rx_other_queue)->open(m0, plain).code(), ErrorCode::kMismatch);
  Bytes changed = m0;
  changed[100] ^= std::byte{1};
  Status bad = (*rx)->open(changed, plain);
  EXPECT_NE(bad.message().find("authentication tag"), std::string::npos) << bad.message();
  EXPECT_NE((*rx)->open(m1, plain).message().find("arrived where 0 was due"), std::string::npos);

  Status ok = (*rx)->open(m0, plain);
  ASSERT_TRUE(ok.is_ok()) << ok.message();
  EXPECT_TRUE(std::equal(head.begin(), head.end(), plain.begin()));
  EXPECT_TRUE(std::equal(body.begin(), body.end(), plain.begin() + 2));
  EXPECT_FALSE((*rx)->open(m0, plain).is_ok());  // a replay
  EXPECT_TRUE((*rx)->open(m1, plain).is_ok());
  // The other direction has its own key: the server's first message is not the client's.
  Bytes from_server = seal(**back);
  EXPECT_NE(from_server, m0);
}

TEST_F(TlsOverMessages, AWrongKeyIsRefusedOnBothSides) {
  auto client = channel("other.psk", PeerRole::kClient);
  auto server = channel("keys.psk", PeerRole::kServer);
  MemoryPipes pipes;
  Ends e = handshake(pipes, *client, *server);
  ASSERT_FALSE(e.server.is_ok());
  EXPECT_NE(e.server.status().message().find("binder does not verify"), std::string::npos)
      << e.server.status().message();
  ASSERT_FALSE(e.client.is_ok());
  EXPECT_NE(e.client.status().message().find("same identity and key"), std::string::npos)
      << e.client.status().message();
}

TEST_F(TlsOverMessages, AnIdentityOutsideAuthzIsNotAuthorized) {
  auto client = channel("keys.psk", PeerRole::kClient);
  auto server = channel("keys.psk", PeerRole::kServer, "host-b");
  MemoryPipes pipes;
  Ends e = handshake(pipes, *client, *server);
  ASSERT_TRUE(e.server.is_ok()) << e.server.status().message();
  Status a = server->authorize(**e.server);
  EXPECT_NE(a.message().find("'host-a' is not in this side's --tls-authz list"), std::string::npos)
      << a.message();
}

TEST_F(TlsOverMessages, ASilentPeerTimesOut) {
  auto client = channel("keys.psk", PeerRole::kClient);
  MemoryPipes pipes;
  auto r = client->handshake(pipes.client, PeerRole::kClient, "10.9.0.1",
                             Clock::now() + std::chrono::milliseconds(200));
  ASSERT_FALSE(r.is_ok());
  EXPECT_EQ(r.status().code(), ErrorCode::kTimeout) << r.status().message();
}

}  // namespace
}  // namespace ramshift::transport
