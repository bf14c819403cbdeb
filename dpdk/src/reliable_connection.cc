#include "reliable_connection.h"

#include <fmt/format.h>
#include <sys/mman.h>
#include <unistd.h>

#include <algorithm>
#include <array>
#include <cstring>
#include <random>

namespace ramshift::transport::dpdk {
namespace {

// Why 100 ms: HELLOs and idle ACKs are the heartbeat; ten per second per queue costs nothing
// and leaves a 10 s peer timeout a hundred chances.
constexpr auto kHeartbeat = std::chrono::milliseconds(100);
// Frames one queue puts on the wire per tick: bounds the burst the other queues wait behind.
constexpr size_t kBurstPerTick = 64;

// Faults in memory the peer will write, on the registering thread. Why: the peer's WRITE
// frames are copied into it by the port's I/O thread, which must not stop polling to take a
// page fault per page (a file-backed destination's first write to a page allocates it and
// dirties it, and may wait for writeback); rdma's pinning fills the pages the same way.
void populate_for_writes(std::span<std::byte> memory) {
  if (memory.empty()) return;
  const auto page = uintptr_t(sysconf(_SC_PAGESIZE));
  const uintptr_t begin = reinterpret_cast<uintptr_t>(memory.data()) & ~(page - 1);
  const uintptr_t end = reinterpret_cast<uintptr_t>(memory.data() + memory.size());
  if (madvise(reinterpret_cast<void*>(begin), end - begin, MADV_POPULATE_WRITE) == 0) return;
  // Older kernels: a write fault per page, by an atomic add of 0, which never loses a byte
  // another thread (the destination's decoder) writes meanwhile.
  for (uintptr_t p = begin; p < end; p += page)
    __atomic_fetch_add(reinterpret_cast<unsigned char*>(std::max(p, uintptr_t(memory.data()))), 0,
                       __ATOMIC_RELAXED);
}

}  // namespace

ReliableConnection::ReliableConnection(ConnectionConfig config, FrameSink& sink)
    : config_(std::move(config)),
      sink_(sink),
      last_heard_(Clock::now()),
      last_heard_ticks_(last_heard_.time_since_epoch().count()),
      next_rkey_(std::random_device{}()) {
  caps_.reliable = true;
  caps_.zero_copy_write = config_.one_sided_writes;
  caps_.max_message = config_.max_message;
  caps_.max_queues = config_.queues;
  for (uint32_t q = 0; q < config_.queues; ++q)
    queues_.push_back(std::make_unique<Queue>(config_, static_cast<WriteTargets*>(this)));
  if (!config_.client) established_ = true;
}

std::string ReliableConnection::describe() const {
  return fmt::format("dpdk {} ({} queue{})", config_.peer, config_.queues,
                     config_.queues == 1 ? "" : "s");
}

// Nothing is pinned or DMA-mapped: the port's PMD copies frames out of process memory (see
// PortStack::sends_by_reference). Memory the peer may write is faulted in and gets a key,
// which every WRITE must carry, so a write to anywhere else (or after release_memory) is
// refused.
Result<MemoryKey> ReliableConnection::register_memory(std::span<std::byte> memory,
                                                      MemoryAccess access) {
  MemoryKey k;
  k.address = reinterpret_cast<uint64_t>(memory.data());
  k.length = memory.size();
  if (access != MemoryAccess::kRemoteWrite) return k;
  populate_for_writes(memory);
  std::lock_guard lock(memory_mu_);
  // Why this step: an odd constant visits every 32-bit key before repeating; 0 is skipped so
  // a zeroed (forged or stale) key never matches.
  do next_rkey_ += 0x9E3779B9u;
  while (next_rkey_ == 0);
  k.rkeys = {next_rkey_};
  writable_.insert_or_assign(k.address, Writable{k.length, next_rkey_});
  return k;
}

Status ReliableConnection::release_memory(const MemoryKey& key) {
  if (key.rkeys.empty()) return Status::ok();  // registered for local use: nothing held
  std::lock_guard lock(memory_mu_);
  auto it = writable_.find(key.address);
  if (it == writable_.end() || it->second.rkey != key.rkeys[0])
    return {ErrorCode::kNotFound, "dpdk: no memory registered under that key"};
  writable_.erase(it);
  return Status::ok();
}

bool ReliableConnection::place(const WriteTarget& t, std::span<const std::byte> bytes) {
  std::lock_guard lock(memory_mu_);  // held through the copy: see WriteTargets::place
  auto it = writable_.upper_bound(t.address);
  if (it == writable_.begin()) return false;
  --it;
  const uint64_t offset = t.address - it->first;
  if (it->second.rkey != t.rkey || offset >= it->second.length ||
      bytes.size() > it->second.length - offset)
    return false;
  std::memcpy(reinterpret_cast<std::byte*>(t.address), bytes.data(), bytes.size());
  return true;
}

Status ReliableConnection::gone() const {
  if (failed_) return failure();
  return {ErrorCode::kDisconnected, fmt::format("dpdk: connection to {} closed", config_.peer)};
}

// The peer's close() closes every queue both ways (transport.h): nobody reads what we would
// send after its FIN, so sending fails at once rather than when the peer timeout runs out.
Status ReliableConnection::peer_closed() const {
  return {ErrorCode::kDisconnected, fmt::format("dpdk: {} closed the connection", config_.peer)};
}

// Whether `q` (its lock held) takes another message or write now.
Status ReliableConnection::send_room(const Queue& q) const {
  if (q.receive.fin_received()) return peer_closed();
  if (!q.send.writable()) return {ErrorCode::kWouldBlock, "dpdk: send buffer full"};
  return Status::ok();
}

Status ReliableConnection::failure() const {
  std::lock_guard lock(state_mu_);
  return failure_;
}

Status ReliableConnection::check_queue(uint32_t queue) const {
  if (queue >= config_.queues)
    return {ErrorCode::kInvalidArgument,
            fmt::format("dpdk: queue {} of a {}-queue connection", queue, config_.queues)};
  return Status::ok();
}

void ReliableConnection::fail(Status why) {
  {
    std::lock_guard lock(state_mu_);
    if (failed_) return;
    failure_ = std::move(why);
    failed_ = true;
  }
  state_cv_.notify_all();
  for (auto& q : queues_) {
    std::lock_guard lock(q->mu);
    q->cv.notify_all();
  }
}

bool ReliableConnection::finished() const {
  if (failed_) return true;
  if (!closed_) return false;
  bool acked = true, peer_closed = true;
  for (auto& q : queues_) {
    std::lock_guard lock(q->mu);
    acked &= q->send.fin_acked();
    peer_closed &= q->receive.fin_received();
  }
  // A live peer answers at least every heartbeat; three missed after its own close mean it
  // left (its stack forgot the connection and drops our FIN).
  const auto silent = Clock::now().time_since_epoch() - Clock::duration(last_heard_ticks_.load());
  return acked || (peer_closed && silent > 3 * kHeartbeat);
}

Status ReliableConnection::post_send(uint32_t queue, std::span<const ConstBuffer> segments) {
  RS_RETURN_IF_ERROR(check_queue(queue));
  size_t total = 0;
  for (auto s : segments) total += s.size();
  if (total > config_.max_message)
    return {ErrorCode::kInvalidArgument,
            fmt::format("dpdk: message of {} bytes exceeds {}", total, config_.max_message)};
  if (failed_ || closed_) return gone();
  Queue& q = *queues_[queue];
  std::lock_guard lock(q.mu);
  RS_RETURN_IF_ERROR(send_room(q));
  q.send.push_message(segments);
  stats_.sent_copied_bytes += total;
  return Status::ok();
}

Status ReliableConnection::post_write(uint32_t queue, std::span<const RemoteWrite> writes) {
  if (!caps_.zero_copy_write) return no_remote_writes("dpdk");
  RS_RETURN_IF_ERROR(check_queue(queue));
  for (const RemoteWrite& w : writes)
    if (w.local == nullptr && w.length > 0)
      return {ErrorCode::kInvalidArgument, "dpdk: a write with no local memory"};
  if (failed_ || closed_) return gone();
  Queue& q = *queues_[queue];
  std::lock_guard lock(q.mu);
  RS_RETURN_IF_ERROR(send_room(q));
  q.send.push_write(writes);
  return Status::ok();
}

Status ReliableConnection::wait_writable(uint32_t queue, Millis timeout) {
  RS_RETURN_IF_ERROR(check_queue(queue));
  Queue& q = *queues_[queue];
  std::unique_lock lock(q.mu);
  bool ready = q.cv.wait_for(lock, timeout, [&] {
    return failed_ || closed_ || q.send.writable() || q.receive.fin_received();
  });
  if (failed_ || closed_) return gone();
  if (q.receive.fin_received()) return peer_closed();
  if (!ready) return {ErrorCode::kTimeout, "dpdk: send buffer still full"};
  return Status::ok();
}

Status ReliableConnection::flush(uint32_t queue, Millis timeout) {
  RS_RETURN_IF_ERROR(check_queue(queue));
  Queue& q = *queues_[queue];
  std::unique_lock lock(q.mu);
  // Stronger than "left the process": acknowledged by the peer, which is what a datagram
  // transport can promise.
  bool done = q.cv.wait_for(lock, timeout, [&] { return failed_ || q.send.idle(); });
  if (failed_) return gone();
  if (!done) return {ErrorCode::kTimeout, "dpdk: frames still unacknowledged"};
  return Status::ok();
}

Result<size_t> ReliableConnection::poll(uint32_t queue, std::span<ConstBuffer> out,
                                        Millis timeout) {
  RS_RETURN_IF_ERROR(check_queue(queue));
  Queue& q = *queues_[queue];
  std::unique_lock lock(q.mu);
  q.lent.clear();
  q.receive.release_taken();  // the window reopens; the next tick advertises it
  q.cv.wait_for(lock, timeout, [&] {
    return failed_ || closed_ || q.receive.has_messages() || q.receive.finished();
  });
  if (q.receive.has_messages()) {
    q.lent = q.receive.take(out.size());
    for (size_t i = 0; i < q.lent.size(); ++i) out[i] = ConstBuffer(q.lent[i]);
    return q.lent.size();
  }
  if (failed_ || closed_ || q.receive.finished()) return gone();
  return size_t{0};
}

LinkStats ReliableConnection::link_stats() const {
  LinkStats s;
  s.retransmitted_frames = stats_.retransmitted_frames.load();
  s.dropped_frames = stats_.dropped_frames.load();
  // The queues the pacer held back are the ones whose rate the link decided: their sum is
  // what the connection may send. A connection never held back reports its fastest queue.
  double held = 0, fastest = 0;
  for (auto& q : queues_) {
    std::lock_guard lock(q->mu);
    const RateController& p = q->send.pacer();
    if (p.held_back_ever()) held += p.rate();
    fastest = std::max(fastest, p.rate());
  }
  s.pacing_rate = held > 0 ? held : fastest;
  s.sent_copied_bytes = stats_.sent_copied_bytes.load();
  s.sent_referenced_bytes = stats_.sent_referenced_bytes.load();
  uint64_t received = 0, copied = 0;
  for (auto& q : queues_) {
    std::lock_guard lock(q->mu);
    received += q->receive.received_bytes();
    copied += q->receive.copied_bytes();
  }
  s.received_bytes = received;
  s.received_copied_bytes = copied;
  return s;
}

void ReliableConnection::close() {
  if (closed_.exchange(true)) return;
  for (auto& q : queues_) {
    std::lock_guard lock(q->mu);
    q->send.push_fin();
    q->cv.notify_all();
  }
}

Status ReliableConnection::wait_established(Millis timeout) {
  std::unique_lock lock(state_mu_);
  state_cv_.wait_for(lock, timeout, [&] { return established_ || failed_; });
  if (failed_) return failure_;
  if (!established_)
    return {ErrorCode::kUnreachable,
            fmt::format("dpdk: no answer from {} within {} ms (is `ramshift receive --listen "
                        "dpdk://{}` running, and the port cabled to it?)",
                        config_.peer, timeout.count(), config_.peer)};
  return Status::ok();
}

void ReliableConnection::send_control(FrameType type, uint16_t queue_field) {
  std::array<std::byte, kHeaderBytes> header{};
  write_header({type, config_.conn_id, queue_field, 0, 0, 0}, header);
  std::span<const std::byte> piece(header);
  sink_.send(0, {&piece, 1}, {});
}

void ReliableConnection::send_ack(uint16_t qi, Queue& q, Clock::time_point now) {
  AckBody ack = q.receive.ack();
  Bytes frame(kHeaderBytes + ack_body_bytes(ack));
  write_header({FrameType::kAck, config_.conn_id, qi, 0, 0, 0}, frame);
  write_ack(ack, std::span(frame).subspan(kHeaderBytes));
  std::span<const std::byte> piece(frame);
  sink_.send(qi, {&piece, 1}, {});
  q.ack_due = false;
  q.advertised_window = ack.window;
  q.last_ack = now;
}

void ReliableConnection::on_frame(const ParsedFrame& f, Clock::time_point now) {
  last_heard_ = now;
  last_heard_ticks_ = now.time_since_epoch().count();
  const FrameHeader& h = f.header;
  if (h.type == FrameType::kHello) {
    if (!config_.client) send_control(FrameType::kHelloAck, uint16_t(config_.queues));
    return;
  }
  if (!established_ && config_.client) {
    std::lock_guard lock(state_mu_);
    established_ = true;
    state_cv_.notify_all();
  }
  if (h.type == FrameType::kHelloAck) return;
  if (h.queue >= config_.queues) {
    ++stats_.dropped_frames;
    return;
  }
  if (h.type == FrameType::kRefused)
    return fail({ErrorCode::kProtocol,
                 fmt::format("dpdk: {} refused a one-sided write on queue {}: it fell outside the "
                             "memory registered there for us (a wrong key, or memory released)",
                             config_.peer, h.queue)});
  if (refused_) {  // our refusal may have been lost: the writer hears it again
    if (h.type == FrameType::kData) send_control(FrameType::kRefused, h.queue);
    return;
  }
  Queue& q = *queues_[h.queue];
  Status why;  // a failure, raised once the queue's lock is let go (fail() takes every lock)
  {
    std::lock_guard lock(q.mu);
    if (h.type == FrameType::kAck) {
      auto ack = parse_ack(f.payload);
      if (!ack || !q.send.on_ack(*ack, now)) {
        ++stats_.dropped_frames;  // malformed, or stale (reordered behind a newer one)
        return;
      }
      q.cv.notify_all();
      return;
    }
    auto outcome = q.receive.on_data(h, f.payload);
    q.ack_due = true;  // duplicates too: the sender evidently missed our ACK
    switch (outcome) {
      case ReceiveQueue::Outcome::kAccepted:
        if (q.receive.has_messages() || q.receive.finished()) q.cv.notify_all();
        return;
      case ReceiveQueue::Outcome::kDuplicate:
      case ReceiveQueue::Outcome::kOutsideWindow:
        ++stats_.dropped_frames;
        return;
      case ReceiveQueue::Outcome::kBrokenMessage:
        ++stats_.dropped_frames;
        why = {ErrorCode::kProtocol,
               fmt::format("dpdk: {} sent a malformed message on queue {}", config_.peer, h.queue)};
        break;
      case ReceiveQueue::Outcome::kRefusedWrite: {
        ++stats_.dropped_frames;
        refused_ = true;
        send_control(FrameType::kRefused, h.queue);
        auto [target, bytes] = q.receive.refused_write();
        why = {ErrorCode::kProtocol,
               fmt::format("dpdk: {} wrote outside the memory registered for it on queue {} ({} "
                           "bytes at {:#x} under key {:#x}); the migration cannot go on",
                           config_.peer, h.queue, bytes, target.address, target.rkey)};
        break;
      }
    }
  }
  fail(std::move(why));
}

void ReliableConnection::tick(Clock::time_point now) {
  if (failed_) return;
  if (now - last_heard_ > config_.peer_timeout) {
    fail({ErrorCode::kDisconnected,
          fmt::format("dpdk: nothing heard from {} for {} ms: the peer stopped or the path is "
                      "down",
                      config_.peer, config_.peer_timeout.count())});
    return;
  }
  if (config_.client && !established_) {
    if (now - last_hello_ >= kHeartbeat) {
      send_control(FrameType::kHello, uint16_t(config_.queues));
      last_hello_ = now;
    }
    return;
  }
  uint64_t retransmitted = 0;
  const bool by_reference = sink_.sends_by_reference();
  for (uint16_t qi = 0; qi < config_.queues; ++qi) {
    Queue& q = *queues_[qi];
    std::lock_guard lock(q.mu);
    uint64_t before = q.send.retransmitted();
    bool was_writable = q.send.writable();
    uint64_t copied = 0, referenced = 0;
    for (const OutFrame* f : q.send.due(now, kBurstPerTick)) {
      std::array<std::byte, kHeaderBytes + kWriteTargetBytes> head{};
      write_header({FrameType::kData, config_.conn_id, qi, f->flags, f->seq, f->msg_len}, head);
      size_t head_bytes = kHeaderBytes;
      if (!f->borrowed.empty()) {
        write_write_target(f->target, std::span(head).subspan(kHeaderBytes));
        head_bytes += kWriteTargetBytes;
      }
      std::array<std::span<const std::byte>, 2> pieces{std::span(head).first(head_bytes),
                                                       std::span<const std::byte>(f->payload)};
      sink_.send(qi, pieces, f->borrowed);
      (by_reference ? referenced : copied) += f->borrowed.size();
      copied += f->payload.size();
    }
    stats_.sent_copied_bytes += copied;
    stats_.sent_referenced_bytes += referenced;
    retransmitted += q.send.retransmitted() - before;
    if (!was_writable && q.send.writable()) q.cv.notify_all();
    if (q.send.idle()) q.cv.notify_all();
    // ACK what arrived, a window that reopened by half, or as the idle heartbeat.
    uint32_t window = q.receive.window();
    bool reopened = window > q.advertised_window && window - q.advertised_window >= 32;
    if (q.ack_due || reopened || now - q.last_ack >= kHeartbeat) send_ack(qi, q, now);
  }
  stats_.retransmitted_frames += retransmitted;
}

}  // namespace ramshift::transport::dpdk
