// dpdk:// one-sided writes without DPDK: WRITE frames borrow the writer's memory (nothing
// copied on the way out, retransmissions included) and are copied once on the way in,
// straight into the memory the receiver registered; what each side copied is counted.
#include <gtest/gtest.h>

#include <sys/mman.h>
#include <unistd.h>

#include <algorithm>
#include <deque>
#include <random>

#include "frame_format.h"
#include "reliable_connection.h"
#include "reliable_queue.h"

namespace ramshift::transport::dpdk {
namespace {

using std::chrono::milliseconds;

Bytes pattern(size_t n, uint8_t seed) {
  Bytes b(n);
  for (size_t i = 0; i < n; ++i) b[i] = std::byte(uint8_t(seed + i * 13 + i / 4096));
  return b;
}

// One registered range, as ReliableConnection keeps them.
struct OneTarget : WriteTargets {
  Bytes memory;
  uint32_t rkey = 0x1234;
  bool place(const WriteTarget& t, std::span<const std::byte> bytes) override {
    auto base = reinterpret_cast<uint64_t>(memory.data());
    if (t.rkey != rkey || t.address < base || t.address + bytes.size() > base + memory.size())
      return false;
    std::copy(bytes.begin(), bytes.end(), memory.begin() + long(t.address - base));
    return true;
  }
  uint64_t address(size_t offset) const {
    return reinterpret_cast<uint64_t>(memory.data()) + offset;
  }
};

// What a frame carries after its header, as the connection puts it on the wire.
Bytes wire_payload(const OutFrame& f) {
  Bytes b(f.wire_payload());
  size_t at = 0;
  if (!f.borrowed.empty()) {
    write_write_target(f.target, std::span(b).first(kWriteTargetBytes));
    at = kWriteTargetBytes;
  }
  std::copy(f.payload.begin(), f.payload.end(), b.begin() + long(at));
  std::copy(f.borrowed.begin(), f.borrowed.end(), b.begin() + long(at + f.payload.size()));
  return b;
}

bool inside(std::span<const std::byte> piece, const Bytes& memory) {
  return piece.data() >= memory.data() &&
         piece.data() + piece.size() <= memory.data() + memory.size();
}

TEST(DpdkZeroCopy, WritesBorrowTheirBytesAndLandByteIdenticalThroughLossAndRetransmission) {
  SendQueue s({.max_payload = 512, .initial_window = 64, .min_rto = milliseconds(5)});
  OneTarget target;
  target.memory.resize(256 << 10);
  ReceiveQueue r(128, 1 << 20, &target);
  const Bytes source = pattern(target.memory.size(), 7);
  // Two runs, then a message behind them: the message is taken only once both landed.
  RemoteWrite writes[] = {
      {source.data(), 100000, target.address(0), target.rkey},
      {source.data() + 100000, source.size() - 100000, target.address(100000), target.rkey}};
  s.push_write(writes);
  const Bytes note = pattern(3000, 1);
  std::span<const std::byte> piece(note);
  s.push_message({&piece, 1});

  std::mt19937 rng(5);
  Clock::time_point now{};
  std::vector<Bytes> got;
  uint64_t borrowed_sends = 0;
  for (int step = 0; step < 100000 && got.empty(); ++step) {
    now += milliseconds(1);
    for (const OutFrame* f : s.due(now, 64)) {
      if (!f->borrowed.empty()) {
        // Every sending, the first and each retransmission, refers to the writer's memory.
        EXPECT_TRUE(inside(f->borrowed, source));
        EXPECT_TRUE(f->payload.empty());
        ++borrowed_sends;
      }
      if (rng() % 10 == 0) continue;  // 10% loss
      (void)r.on_data({FrameType::kData, 1, 0, f->flags, f->seq, f->msg_len}, wire_payload(*f));
    }
    r.release_taken();
    for (auto& m : r.take(8)) got.push_back(std::move(m));
    if (!got.empty()) {
      EXPECT_TRUE(target.memory == source) << "the message overtook the writes";
    }
    EXPECT_TRUE(s.on_ack(r.ack(), now));
  }
  ASSERT_EQ(got.size(), 1u);
  EXPECT_EQ(got[0], note);
  EXPECT_TRUE(target.memory == source);
  EXPECT_GT(s.retransmitted(), 0u);
  const size_t frames = (source.size() + 499) / 500;  // 512 less the 12-byte target each
  EXPECT_GT(borrowed_sends, frames);                  // some were sent again, by reference
  EXPECT_EQ(r.received_bytes(), source.size() + note.size());
}

TEST(DpdkZeroCopy, InOrderFramesAreCopiedOnceAndEarlyOnesTwice) {
  OneTarget target;
  target.memory.resize(4000);
  const Bytes source = pattern(4000, 3);
  SendQueue s({.max_payload = 1012});  // 1,000 bytes of write per frame
  RemoteWrite w{source.data(), source.size(), target.address(0), target.rkey};
  s.push_write({&w, 1});
  auto frames = s.due(Clock::time_point{}, 64);
  ASSERT_EQ(frames.size(), 4u);
  auto deliver = [&](ReceiveQueue& r, const OutFrame* f) {
    return r.on_data({FrameType::kData, 1, 0, f->flags, f->seq, f->msg_len}, wire_payload(*f));
  };
  ReceiveQueue in_order(64, 1 << 20, &target);
  for (const OutFrame* f : frames)
    EXPECT_EQ(deliver(in_order, f), ReceiveQueue::Outcome::kAccepted);
  EXPECT_EQ(in_order.copied_bytes(), 4000u);  // straight into place
  EXPECT_TRUE(target.memory == source);

  std::fill(target.memory.begin(), target.memory.end(), std::byte{0});
  ReceiveQueue reordered(64, 1 << 20, &target);
  for (int i : {3, 2, 1, 0})
    EXPECT_EQ(deliver(reordered, frames[size_t(i)]), ReceiveQueue::Outcome::kAccepted);
  EXPECT_EQ(reordered.received_bytes(), 4000u);
  EXPECT_EQ(reordered.copied_bytes(), 7000u);  // three frames waited (staged), one did not
  EXPECT_TRUE(target.memory == source);
}

TEST(DpdkZeroCopy, ALateCopyOfAnAcknowledgedWriteNeverLands) {
  // The writer may change its memory once a later message arrived; a retransmission of the
  // write that crossed the acknowledgement then carries the new bytes, which must not land.
  OneTarget target;
  target.memory.resize(1000);
  Bytes source = pattern(1000, 9);
  SendQueue s({.max_payload = 1100});
  ReceiveQueue r(64, 1 << 20, &target);
  RemoteWrite w{source.data(), source.size(), target.address(0), target.rkey};
  s.push_write({&w, 1});
  auto frames = s.due(Clock::time_point{}, 64);
  ASSERT_EQ(frames.size(), 1u);
  FrameHeader h{FrameType::kData, 1, 0, frames[0]->flags, frames[0]->seq, 0};
  ASSERT_EQ(r.on_data(h, wire_payload(*frames[0])), ReceiveQueue::Outcome::kAccepted);
  const Bytes landed = target.memory;
  std::fill(source.begin(), source.end(), std::byte{0xee});
  auto late = s.due(Clock::time_point{} + std::chrono::seconds(1), 64);  // its timer ran out
  ASSERT_EQ(late.size(), 1u);
  EXPECT_EQ(r.on_data(h, wire_payload(*late[0])), ReceiveQueue::Outcome::kDuplicate);
  EXPECT_EQ(target.memory, landed);
}

TEST(DpdkZeroCopy, AWriteOutsideRegisteredMemoryIsRefusedAndTouchesNothing) {
  OneTarget target;
  target.memory.resize(1000);
  const Bytes source = pattern(100, 2);
  for (WriteTarget t : {WriteTarget{target.address(0), target.rkey ^ 1},   // wrong key
                        WriteTarget{target.address(950), target.rkey}}) {  // runs past the end
    ReceiveQueue r(64, 1 << 20, &target);
    Bytes frame(kWriteTargetBytes + source.size());
    write_write_target(t, frame);
    std::copy(source.begin(), source.end(), frame.begin() + kWriteTargetBytes);
    EXPECT_EQ(r.on_data({FrameType::kData, 1, 0, kFlagWrite, 0, 0}, frame),
              ReceiveQueue::Outcome::kRefusedWrite);
    EXPECT_EQ(r.refused_write().second, source.size());
    EXPECT_TRUE(std::all_of(target.memory.begin(), target.memory.end(),
                            [](std::byte b) { return b == std::byte{0}; }));
  }
}

TEST(DpdkZeroCopy, WriteFramesParseAndMalformedOnesAreRejected) {
  Bytes buf(kHeaderBytes + kWriteTargetBytes + 5);
  write_header({FrameType::kData, 3, 1, kFlagWrite, 4, 0}, buf);
  write_write_target({0x1122334455667788ull, 0xabcdef01u}, std::span(buf).subspan(kHeaderBytes));
  auto f = parse_frame(buf);
  ASSERT_TRUE(f);
  WriteTarget t = read_write_target(f->payload);
  EXPECT_EQ(t.address, 0x1122334455667788ull);
  EXPECT_EQ(t.rkey, 0xabcdef01u);
  EXPECT_FALSE(parse_frame(std::span(buf).first(kHeaderBytes + kWriteTargetBytes)));  // no bytes
  write_header({FrameType::kData, 3, 1, kFlagWrite | kFlagLast, 4, 0}, buf);
  EXPECT_FALSE(parse_frame(buf));  // a write is part of no message
  write_header({FrameType::kData, 3, 1, kFlagWrite, 4, 9}, buf);
  EXPECT_FALSE(parse_frame(buf));
}

// Two connections joined by an in-memory wire: what the I/O threads would do, by hand.
struct Wire : FrameSink {
  bool by_reference = true;
  std::deque<Bytes> frames;
  void send(uint16_t, std::span<const std::span<const std::byte>> pieces,
            std::span<const std::byte> borrowed) override {
    Bytes b;
    for (auto p : pieces) b.insert(b.end(), p.begin(), p.end());
    b.insert(b.end(), borrowed.begin(), borrowed.end());
    frames.push_back(std::move(b));
  }
  bool sends_by_reference() const override { return by_reference; }
};

struct Pair {
  Wire to_server, to_client;
  ReliableConnection client{{.conn_id = 9, .queues = 1, .client = true, .peer = "server"},
                            to_server};
  ReliableConnection server{{.conn_id = 9, .queues = 1, .peer = "client"}, to_client};
  Clock::time_point now = Clock::now();
  void run(int ticks) {
    for (int i = 0; i < ticks; ++i) {
      now += milliseconds(1);
      client.tick(now);
      server.tick(now);
      for (auto [wire, to] : {std::pair{&to_server, &server}, std::pair{&to_client, &client}})
        for (; !wire->frames.empty(); wire->frames.pop_front())
          if (auto f = parse_frame(wire->frames.front())) to->on_frame(*f, now);
    }
  }
};

TEST(DpdkZeroCopy, TheReportCountsBytesCopiedAndSentByReferenceEachWay) {
  for (bool by_reference : {true, false}) {
    Pair p;
    p.to_server.by_reference = by_reference;
    Bytes memory(64 << 10);
    auto key = p.server.register_memory(memory, MemoryAccess::kRemoteWrite);
    ASSERT_TRUE(key.is_ok());
    const Bytes source = pattern(memory.size(), 4);
    RemoteWrite w{source.data(), source.size(), key->address, key->rkey_at(key->address)};
    ASSERT_TRUE(p.client.post_write(0, {&w, 1}).is_ok());
    const Bytes note = pattern(5000, 8);
    ConstBuffer piece(note);
    ASSERT_TRUE(p.client.post_send(0, {&piece, 1}).is_ok());
    p.run(200);
    ConstBuffer in[1];
    ASSERT_EQ(p.server.poll(0, in, milliseconds(0)).value(), 1u);
    EXPECT_TRUE(std::equal(in[0].begin(), in[0].end(), note.begin(), note.end()));
    EXPECT_TRUE(memory == source);
    LinkStats tx = p.client.link_stats(), rx = p.server.link_stats();
    EXPECT_EQ(tx.retransmitted_frames, 0u);
    // The message twice (into the queue, into the frame); the write's bytes never, where
    // the port takes them by reference.
    EXPECT_EQ(tx.sent_copied_bytes, 2 * note.size() + (by_reference ? 0 : source.size()));
    EXPECT_EQ(tx.sent_referenced_bytes, by_reference ? source.size() : 0);
    EXPECT_EQ(rx.received_bytes, source.size() + note.size());
    EXPECT_EQ(rx.received_copied_bytes, source.size() + note.size());  // once each
  }
}

TEST(DpdkZeroCopy, AWriteWithAWrongKeyFailsBothSidesAndReleasedMemoryIsNoTarget) {
  Pair p;
  Bytes memory(8192);
  auto key = p.server.register_memory(memory, MemoryAccess::kRemoteWrite);
  ASSERT_TRUE(key.is_ok());
  ASSERT_TRUE(p.server.release_memory(*key).is_ok());
  EXPECT_EQ(p.server.release_memory(*key).code(), ErrorCode::kNotFound);
  const Bytes source = pattern(4096, 6);
  RemoteWrite w{source.data(), source.size(), key->address, key->rkey_at(key->address)};
  ASSERT_TRUE(p.client.post_write(0, {&w, 1}).is_ok());
  p.run(50);
  Status writer = p.client.flush(0, milliseconds(0));
  EXPECT_EQ(writer.code(), ErrorCode::kProtocol) << writer.message();
  EXPECT_NE(writer.message().find("refused a one-sided write"), std::string::npos);
  ConstBuffer in[1];
  auto r = p.server.poll(0, in, milliseconds(0));
  ASSERT_FALSE(r.is_ok());
  EXPECT_NE(r.status().message().find("outside the memory"), std::string::npos);
  EXPECT_TRUE(
      std::all_of(memory.begin(), memory.end(), [](std::byte b) { return b == std::byte{0}; }));
}

TEST(DpdkZeroCopy, MemoryRegisteredForWritesIsFaultedInBeforeThePeerWrites) {
  // The I/O thread copies WRITE frames into it and must not stall on a page fault per page.
  Pair p;
  const size_t page = size_t(sysconf(_SC_PAGESIZE)), bytes = 256 * page;
  void* m = mmap(nullptr, bytes, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
  ASSERT_NE(m, MAP_FAILED);
  auto resident = [&] {
    std::vector<unsigned char> in(bytes / page);
    EXPECT_EQ(mincore(m, bytes, in.data()), 0);
    return size_t(std::count_if(in.begin(), in.end(), [](unsigned char c) { return c & 1; }));
  };
  EXPECT_EQ(resident(), 0u);
  std::span<std::byte> memory(static_cast<std::byte*>(m), bytes);
  ASSERT_TRUE(p.server.register_memory(memory.first(bytes / 2), MemoryAccess::kLocal).is_ok());
  EXPECT_EQ(resident(), 0u);  // memory this side only reads is left alone
  ASSERT_TRUE(p.server.register_memory(memory, MemoryAccess::kRemoteWrite).is_ok());
  EXPECT_EQ(resident(), bytes / page);
  munmap(m, bytes);
}

}  // namespace
}  // namespace ramshift::transport::dpdk
