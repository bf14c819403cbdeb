// The transport contract (transport.h), checked on every backend built into this binary.
// A new backend joins by adding its name to kBackends; the tests do not change.
#include <gtest/gtest.h>

#include <algorithm>
#include <atomic>
#include <cstdio>
#include <cstring>
#include <numeric>
#include <thread>
#include <vector>

#include "backend_pair.h"
#include "ramshift/base/byte_order.h"

namespace ramshift::transport {
namespace {

using namespace std::chrono_literals;
using ramshift::testing::connect_pair;

// A message whose content encodes (queue, sequence) and is checkable at any size.
std::vector<std::byte> make_message(uint32_t queue, uint64_t seq, size_t size) {
  std::vector<std::byte> m(std::max<size_t>(size, 12));
  store_le<uint32_t>(m.data(), queue);
  store_le<uint64_t>(m.data() + 4, seq);
  for (size_t i = 12; i < m.size(); ++i) m[i] = static_cast<std::byte>((seq * 31 + i) & 0xff);
  return m;
}
bool check_message(ConstBuffer m, uint32_t queue, uint64_t seq) {
  if (m.size() < 12 || load_le<uint32_t>(m.data()) != queue ||
      load_le<uint64_t>(m.data() + 4) != seq)
    return false;
  for (size_t i = 12; i < m.size(); ++i)
    if (m[i] != static_cast<std::byte>((seq * 31 + i) & 0xff)) return false;
  return true;
}

Status send_blocking(Connection& c, uint32_t q, ConstBuffer m) {
  ConstBuffer segs[1] = {m};
  for (;;) {
    Status s = c.post_send(q, segs);
    if (s.code() != ErrorCode::kWouldBlock) return s;
    Status w = c.wait_writable(q, 5s);
    if (!w) return w;
  }
}

class TransportConformance : public ::testing::TestWithParam<std::string> {
 protected:
  void SetUp() override {
    std::string why = ramshift::testing::backend_unavailable(GetParam());
    if (!why.empty()) GTEST_SKIP() << GetParam() << " cannot run here: " << why;
  }
};

TEST_P(TransportConformance, EachQueueDeliversInOrderWhileAllRunInParallel) {
  for (uint32_t queues : {1u, 2u, 4u, 16u}) {
    // Where a hang sits (seen twice on rdma in CI): connecting, sending, or closing.
    std::fprintf(stderr, "  %u queue(s): connecting\n", queues);
    auto p = connect_pair(GetParam(), queues);
    ASSERT_TRUE(p.client && p.server);
    std::fprintf(stderr, "  %u queue(s): connected\n", queues);
    EXPECT_EQ(p.client->queue_count(), queues);
    EXPECT_EQ(p.server->queue_count(), queues);
    constexpr uint64_t kMessages = 300;
    std::vector<std::jthread> threads;  // joined even when an ASSERT returns early
    std::atomic<int> failures{0};
    // A receiver that gives up stops its sender: a sender left alone would wait out its
    // timeout on every remaining message (300 x 5 s) and look like a hang.
    std::vector<std::atomic<bool>> gave_up(queues);
    for (uint32_t q = 0; q < queues; ++q) {
      threads.emplace_back([&, q] {
        for (uint64_t s = 0; s < kMessages && !gave_up[q]; ++s)
          if (Status st = send_blocking(*p.client, q, make_message(q, s, 100 + (s * 977) % 70000));
              !st) {
            ADD_FAILURE() << "queue " << q << ": message " << s << " not sent: " << st.message();
            ++failures;
            break;
          }
        if (gave_up[q]) return;
        if (Status st = p.client->flush(q, 20s); !st) {
          ADD_FAILURE() << "queue " << q << ": flush: " << st.message();
          ++failures;
        }
      });
      threads.emplace_back([&, q] {
        uint64_t next = 0;
        ConstBuffer msgs[8];
        while (next < kMessages) {
          // 20 s: sixteen queues' 64 threads share the emulated VM's 2 vCPUs on rdma (one
          // queue saw nothing for 5 s there once, on a busy host, its neighbours moving on).
          auto n = p.server->poll(q, msgs, 20s);
          if (!n || *n == 0) {
            ADD_FAILURE() << "queue " << q << ": " << next << " of " << kMessages
                          << " messages arrived, then "
                          << (n ? std::string("nothing for 20 s") : n.status().message());
            ++failures;
            gave_up[q] = true;
            return;
          }
          for (size_t i = 0; i < *n; ++i, ++next)
            if (!check_message(msgs[i], q, next)) {
              ADD_FAILURE() << "queue " << q << ": message " << next << " is not the one sent";
              ++failures;
            }
        }
      });
    }
    for (auto& t : threads) t.join();
    EXPECT_EQ(failures.load(), 0) << queues << " queues";
    std::fprintf(stderr, "  %u queue(s): sent and received; closing\n", queues);
  }
}

TEST_P(TransportConformance, BothDirectionsWork) {
  auto p = connect_pair(GetParam(), 2);
  ASSERT_TRUE(p.client && p.server);
  ASSERT_TRUE(send_blocking(*p.server, 1, make_message(1, 7, 50)).is_ok());
  ConstBuffer m[1];
  ASSERT_EQ(p.client->poll(1, m, 5s).value(), 1u);
  EXPECT_TRUE(check_message(m[0], 1, 7));
}

TEST_P(TransportConformance, GatherSegmentsArriveAsOneMessage) {
  auto p = connect_pair(GetParam(), 1);
  ASSERT_TRUE(p.client && p.server);
  auto whole = make_message(0, 3, 5000);
  ConstBuffer segs[3] = {ConstBuffer(whole).subspan(0, 7), ConstBuffer(whole).subspan(7, 0),
                         ConstBuffer(whole).subspan(7)};
  ASSERT_TRUE(p.client->post_send(0, segs).is_ok());
  ConstBuffer m[4];
  ASSERT_EQ(p.server->poll(0, m, 5s).value(), 1u);
  EXPECT_TRUE(check_message(m[0], 0, 3));
}

TEST_P(TransportConformance, SmallestAndLargestMessages) {
  auto p = connect_pair(GetParam(), 1);
  ASSERT_TRUE(p.client && p.server);
  size_t max = p.client->capabilities().max_message;
  ASSERT_GE(max, size_t{16} << 20);
  std::vector<std::byte> empty;
  std::vector<std::byte> one(1, std::byte{0x42});
  auto big = make_message(0, 9, max);
  std::jthread sender([&] {
    EXPECT_TRUE(send_blocking(*p.client, 0, empty).is_ok());
    EXPECT_TRUE(send_blocking(*p.client, 0, one).is_ok());
    EXPECT_TRUE(send_blocking(*p.client, 0, big).is_ok());
    EXPECT_TRUE(p.client->flush(0, 60s).is_ok());  // the contract: finish with flush
  });
  std::vector<size_t> sizes;
  ConstBuffer m[4];
  bool big_ok = false;
  while (sizes.size() < 3) {
    // The largest message is whole only when its last piece is in: 13-14 s for 16 MiB in the
    // emulated soft-RoCE VM on a busy host (a 10 s wait failed there).
    auto n = p.server->poll(0, m, 60s);
    ASSERT_TRUE(n.is_ok() && *n > 0) << n.status().message();
    for (size_t i = 0; i < *n; ++i) {
      sizes.push_back(m[i].size());
      if (m[i].size() == max) big_ok = check_message(m[i], 0, 9);
    }
  }
  sender.join();
  EXPECT_EQ(sizes, (std::vector<size_t>{0, 1, max}));
  EXPECT_TRUE(big_ok);
  std::vector<std::byte> too_big(max + 1);
  ConstBuffer segs[1] = {too_big};
  EXPECT_EQ(p.client->post_send(0, segs).code(), ErrorCode::kInvalidArgument);
}

TEST_P(TransportConformance, BackPressureThenEverythingArrives) {
  auto p = connect_pair(GetParam(), 1);
  ASSERT_TRUE(p.client && p.server);
  auto msg = make_message(0, 0, 256 << 10);
  uint64_t accepted = 0;
  Status last;
  // Nobody reads: the queue must push back within a bounded amount of data.
  for (int i = 0; i < 4096; ++i) {
    msg = make_message(0, accepted, 256 << 10);
    ConstBuffer segs[1] = {msg};
    last = p.client->post_send(0, segs);
    if (!last) break;
    ++accepted;
  }
  ASSERT_EQ(last.code(), ErrorCode::kWouldBlock) << "no back-pressure after 1 GiB";
  EXPECT_EQ(p.client->wait_writable(0, 50ms).code(), ErrorCode::kTimeout);
  // Now drain, and keep sending: nothing accepted is lost, nothing is duplicated.
  const uint64_t total = accepted + 20;
  std::jthread sender([&] {
    for (uint64_t s = accepted; s < total; ++s)
      EXPECT_TRUE(send_blocking(*p.client, 0, make_message(0, s, 256 << 10)).is_ok());
    EXPECT_TRUE(p.client->flush(0, 10s).is_ok());
  });
  uint64_t next = 0;
  ConstBuffer m[8];
  while (next < total) {
    auto n = p.server->poll(0, m, 5s);
    ASSERT_TRUE(n.is_ok() && *n > 0) << next;
    for (size_t i = 0; i < *n; ++i) ASSERT_TRUE(check_message(m[i], 0, next++));
  }
  sender.join();
}

TEST_P(TransportConformance, PeerDisconnectMidBatchDeliversOnlyWholeMessagesThenReportsIt) {
  auto p = connect_pair(GetParam(), 4);
  ASSERT_TRUE(p.client && p.server);
  // The sender posts a batch of messages on every queue and closes without waiting.
  for (uint32_t q = 0; q < 4; ++q)
    for (uint64_t s = 0; s < 10; ++s) {
      auto m = make_message(q, s, 64 << 10);
      ConstBuffer segs[1] = {m};
      Status st = p.client->post_send(q, segs);
      if (!st) break;
    }
  p.client.reset();  // the peer goes away: its connection is closed and destroyed
  for (uint32_t q = 0; q < 4; ++q) {
    uint64_t next = 0;
    ConstBuffer m[4];
    Status end;
    for (;;) {
      auto n = p.server->poll(q, m, 5s);
      if (!n) {
        end = n.status();
        break;
      }
      ASSERT_GT(*n, 0u) << "poll timed out instead of reporting the disconnect";
      for (size_t i = 0; i < *n; ++i) EXPECT_TRUE(check_message(m[i], q, next++));
    }
    EXPECT_EQ(end.code(), ErrorCode::kDisconnected) << end.message();
    EXPECT_LE(next, 10u);
  }
  // And the other way: sending to a closed peer fails rather than hangs.
  auto m = make_message(0, 0, 1000);
  Status s;
  for (int i = 0; i < 100000 && s.is_ok(); ++i) s = send_blocking(*p.server, 0, m);
  EXPECT_EQ(s.code(), ErrorCode::kDisconnected) << s.message();
}

TEST_P(TransportConformance, LocalCloseWakesABlockedPoller) {
  auto p = connect_pair(GetParam(), 1);
  ASSERT_TRUE(p.client && p.server);
  std::jthread closer([&] {
    std::this_thread::sleep_for(100ms);
    p.server->close();
  });
  ConstBuffer m[1];
  auto start = std::chrono::steady_clock::now();
  auto r = p.server->poll(0, m, 10s);
  closer.join();
  EXPECT_FALSE(r.is_ok());
  EXPECT_LT(std::chrono::steady_clock::now() - start, 5s);
}

TEST_P(TransportConformance, PollTimesOutWithNothing) {
  auto p = connect_pair(GetParam(), 1);
  ASSERT_TRUE(p.client && p.server);
  ConstBuffer m[1];
  EXPECT_EQ(p.server->poll(0, m, 20ms).value(), 0u);
}

// One-sided writes (backends with zero_copy_write): the pages a migration places straight
// into destination memory must be there once a later message on the same queue arrives.
TEST_P(TransportConformance, RemoteWritesLandBeforeALaterMessageOnTheQueue) {
  auto p = connect_pair(GetParam(), 2);
  ASSERT_TRUE(p.client && p.server);
  if (!p.client->capabilities().zero_copy_write)
    GTEST_SKIP() << GetParam() << " has no one-sided writes";
  constexpr size_t kBytes = 4 << 20;
  std::vector<std::byte> target(kBytes), source(kBytes);
  for (size_t i = 0; i < kBytes; ++i) source[i] = static_cast<std::byte>((i * 7 + i / 4096) & 0xff);
  auto key = p.server->register_memory(target, MemoryAccess::kRemoteWrite);
  ASSERT_TRUE(key.is_ok()) << key.status().message();
  ASSERT_TRUE(p.client->register_memory(source, MemoryAccess::kLocal).is_ok());
  // Runs of every size from one page to 1 MiB, on queue 1, then a message behind them.
  std::vector<RemoteWrite> writes;
  for (size_t off = 0, len = 4096; off < kBytes;
       off += len, len = std::min<size_t>(2 * len, 1 << 20))
    writes.push_back({source.data() + off, std::min(len, kBytes - off), key->address + off,
                      key->rkey_at(key->address + off)});
  for (size_t i = 0; i < writes.size(); i += 8) {
    auto group = std::span(writes).subspan(i, std::min<size_t>(8, writes.size() - i));
    Status st;
    while ((st = p.client->post_write(1, group)).code() == ErrorCode::kWouldBlock)
      ASSERT_TRUE(p.client->wait_writable(1, 5s).is_ok());
    ASSERT_TRUE(st.is_ok()) << st.message();
  }
  auto m = make_message(1, 0, 100);
  ASSERT_TRUE(send_blocking(*p.client, 1, m).is_ok());
  ASSERT_TRUE(p.client->flush(1, 5s).is_ok());
  ConstBuffer in[1];
  auto n = p.server->poll(1, in, 10s);
  ASSERT_TRUE(n.is_ok()) << n.status().message();
  ASSERT_EQ(*n, 1u);
  EXPECT_TRUE(check_message(in[0], 1, 0));
  EXPECT_TRUE(target == source) << "the writes had not all landed when the message arrived";
}

// A write with a key the peer never gave fails on both sides, each saying why: the writer
// hears the peer refused it; the peer, whose QP had no work request to fail, must not take
// it for an ordinary disconnect.
TEST_P(TransportConformance, AWriteWithAWrongKeyFailsBothSidesWithTheReason) {
  auto p = connect_pair(GetParam(), 1);
  ASSERT_TRUE(p.client && p.server);
  if (!p.client->capabilities().zero_copy_write)
    GTEST_SKIP() << GetParam() << " has no one-sided writes";
  std::vector<std::byte> target(1 << 20), source(1 << 20, std::byte{0x5a});
  auto key = p.server->register_memory(target, MemoryAccess::kRemoteWrite);
  ASSERT_TRUE(key.is_ok()) << key.status().message();
  ASSERT_TRUE(p.client->register_memory(source, MemoryAccess::kLocal).is_ok());
  RemoteWrite bad{source.data(), 65536, key->address, key->rkey_at(key->address) ^ 0x5a5a00u};
  ASSERT_TRUE(p.client->post_write(0, std::span(&bad, 1)).is_ok());
  Status writer = p.client->flush(0, 10s);
  EXPECT_EQ(writer.code(), ErrorCode::kProtocol) << writer.message();
  ConstBuffer in[1];
  auto r = p.server->poll(0, in, 10s);
  ASSERT_FALSE(r.is_ok()) << "the target side went on as if nothing happened";
  // Hardware names the fault by an async event; soft-RoCE raises none, and the queue says
  // what it can tell: the failure was not a disconnect, and a request of the peer's caused it.
  const std::string why = r.status().message();
  EXPECT_TRUE(why.find("outside the memory") != std::string::npos ||
              why.find("without a disconnect") != std::string::npos)
      << why;
  EXPECT_TRUE(
      std::all_of(target.begin(), target.end(), [](std::byte b) { return b == std::byte{0}; }));
}

// Keys per queue (backends whose peers agree to take them, rdma): each queue's key opens the
// memory through that queue. Where the connection binds them to their queues (rdma with
// type-2 memory windows: its description says "memory windows") a key used through another
// queue is refused by the device and writes nothing.
TEST_P(TransportConformance, KeysPerQueueOpenTheMemoryThroughTheirOwnQueue) {
  auto p = connect_pair(GetParam(), 2);
  ASSERT_TRUE(p.client && p.server);
  if (!p.client->capabilities().zero_copy_write || !p.server->capabilities().keys_per_queue)
    GTEST_SKIP() << GetParam() << " has no one-sided writes with keys per queue";
  constexpr size_t kPart = 64 << 10;
  std::vector<std::byte> target(4 * kPart), source(4 * kPart, std::byte{0x3c});
  auto key = p.server->register_memory_per_queue(target, MemoryAccess::kRemoteWrite);
  ASSERT_TRUE(key.is_ok()) << key.status().message();
  ASSERT_EQ(key->queues, 2u);
  ASSERT_TRUE(p.client->register_memory(source, MemoryAccess::kLocal).is_ok());
  for (uint32_t q = 0; q < 2; ++q) {
    const uint64_t at = key->address + q * kPart;
    RemoteWrite w{source.data(), kPart, at, key->rkey_at(at, q)};
    ASSERT_TRUE(p.client->post_write(q, std::span(&w, 1)).is_ok());
    auto m = make_message(q, 0, 100);
    ASSERT_TRUE(send_blocking(*p.client, q, m).is_ok());
    ConstBuffer in[1];
    auto n = p.server->poll(q, in, 10s);
    ASSERT_TRUE(n.is_ok()) << n.status().message();
    ASSERT_EQ(*n, 1u);
  }
  EXPECT_TRUE(std::equal(target.begin(), target.begin() + 2 * kPart, source.begin()))
      << "a write with its own queue's key did not land";
  if (p.server->describe().find("memory windows") == std::string::npos) return;
  // Queue 1's key through queue 0, at bytes no write touched.
  const uint64_t at = key->address + 2 * kPart;
  RemoteWrite w{source.data(), kPart, at, key->rkey_at(at, 1)};
  ASSERT_TRUE(p.client->post_write(0, std::span(&w, 1)).is_ok());
  Status writer = p.client->flush(0, 10s);
  EXPECT_EQ(writer.code(), ErrorCode::kProtocol) << writer.message();
  EXPECT_TRUE(std::all_of(target.begin() + 2 * kPart, target.end(), [](std::byte b) {
    return b == std::byte{0};
  })) << "another queue's key wrote through queue 0";
}

// One-sided reads (backends with remote_read): post-copy faults read the paused source's
// memory. A read returns with the bytes in place; once the memory is released the same key
// reads nothing (the reader's queue fails, naming the refusal, never returning stale bytes).
TEST_P(TransportConformance, RemoteReadsReturnThePeersBytesUntilReleased) {
  auto p = connect_pair(GetParam(), 2);
  ASSERT_TRUE(p.client && p.server);
  if (!p.client->capabilities().remote_read) {
    std::vector<std::byte> b(4096);
    RemoteRead r{b.data(), b.size(), 0, 0};
    EXPECT_EQ(p.server->read(0, std::span(&r, 1), 1s).code(), ErrorCode::kInvalidArgument);
    GTEST_SKIP() << GetParam() << " has no one-sided reads";
  }
  constexpr size_t kPage = 4096, kPages = 64;
  std::vector<std::byte> source(kPages * kPage), staging(8 * kPage);
  for (size_t i = 0; i < source.size(); ++i)
    source[i] = static_cast<std::byte>((i * 13 + i / kPage) & 0xff);
  // The client (a migration's source) exposes its memory; the server reads it.
  auto key = p.client->register_memory(source, MemoryAccess::kRemoteRead);
  ASSERT_TRUE(key.is_ok()) << key.status().message();
  ASSERT_TRUE(p.server->register_memory(staging, MemoryAccess::kReadTarget).is_ok());
  // Scattered pages, eight at a time, on queue 0 while queue 1 carries messages both ways.
  for (size_t round = 0; round < kPages / 8; ++round) {
    std::vector<RemoteRead> reads;
    for (size_t i = 0; i < 8; ++i) {
      const size_t page = (round * 8 + i) * 37 % kPages;
      const uint64_t addr = key->address + page * kPage;
      reads.push_back({staging.data() + i * kPage, kPage, addr, key->rkey_at(addr)});
    }
    auto m = make_message(1, round, 200);
    ASSERT_TRUE(send_blocking(*p.server, 1, m).is_ok());
    Status s = p.server->read(0, reads, 5s);
    ASSERT_TRUE(s.is_ok()) << s.message();
    for (size_t i = 0; i < 8; ++i) {
      const size_t page = (round * 8 + i) * 37 % kPages;
      ASSERT_EQ(std::memcmp(staging.data() + i * kPage, source.data() + page * kPage, kPage), 0)
          << "page " << page << " read wrong in round " << round;
    }
    ConstBuffer in[1];
    auto n = p.client->poll(1, in, 5s);
    ASSERT_TRUE(n.is_ok() && *n == 1) << "queue 1 stalled behind the reads";
    EXPECT_TRUE(check_message(in[0], 1, round));
  }
  ASSERT_TRUE(p.client->release_memory(*key).is_ok());
  EXPECT_EQ(p.client->release_memory(*key).code(), ErrorCode::kNotFound);
  std::fill(staging.begin(), staging.end(), std::byte{0});
  RemoteRead late{staging.data(), kPage, key->address, key->rkey_at(key->address)};
  Status s = p.server->read(0, std::span(&late, 1), 5s);
  EXPECT_FALSE(s.is_ok()) << "a read with a released key succeeded";
  EXPECT_NE(s.code(), ErrorCode::kTimeout) << s.message();
  EXPECT_TRUE(std::all_of(staging.begin(), staging.begin() + kPage,
                          [](std::byte b) { return b == std::byte{0}; }));
}

TEST_P(TransportConformance, QueueIndexIsChecked) {
  auto p = connect_pair(GetParam(), 2);
  ASSERT_TRUE(p.client && p.server);
  ConstBuffer m[1];
  EXPECT_EQ(p.server->poll(2, m, 1ms).status().code(), ErrorCode::kInvalidArgument);
  EXPECT_EQ(p.client->post_send(7, {}).code(), ErrorCode::kInvalidArgument);
}

// rdma runs where a device exists (the soft-RoCE VM, tests/softroce/) and skips elsewhere;
// dpdk where two ports are named (ctest -R dpdk.conformance); tcp_tls is tcp with TLS on
// every queue (backend_pair.h).
const std::string kBackends[] = {"loopback", "tcp", "tcp_tls", "rdma", "dpdk"};
INSTANTIATE_TEST_SUITE_P(Backends, TransportConformance, ::testing::ValuesIn(kBackends),
                         [](const auto& param_info) { return param_info.param; });

}  // namespace
}  // namespace ramshift::transport
