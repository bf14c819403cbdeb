#include "reliable_connection.h"

#include <fmt/format.h>

#include <algorithm>
#include <array>

namespace ramshift::transport::dpdk {
namespace {

// Why 100 ms: HELLOs and idle ACKs are the heartbeat; ten per second per queue costs nothing
// and leaves a 10 s peer timeout a hundred chances.
constexpr auto kHeartbeat = std::chrono::milliseconds(100);
// Frames one queue puts on the wire per tick: bounds the burst the other queues wait behind.
constexpr size_t kBurstPerTick = 64;

}  // namespace

ReliableConnection::ReliableConnection(ConnectionConfig config, FrameSink& sink)
    : config_(std::move(config)),
      sink_(sink),
      last_heard_(Clock::now()),
      last_heard_ticks_(last_heard_.time_since_epoch().count()) {
  caps_.reliable = true;
  caps_.max_message = config_.max_message;
  caps_.max_queues = config_.queues;
  for (uint32_t q = 0; q < config_.queues; ++q) queues_.push_back(std::make_unique<Queue>(config_));
  if (!config_.client) established_ = true;
}

std::string ReliableConnection::describe() const {
  return fmt::format("dpdk {} ({} queue{})", config_.peer, config_.queues,
                     config_.queues == 1 ? "" : "s");
}

Result<MemoryKey> ReliableConnection::register_memory(std::span<std::byte> memory, MemoryAccess) {
  MemoryKey k;
  k.address = reinterpret_cast<uint64_t>(memory.data());
  k.length = memory.size();
  return k;
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
  if (q.receive.fin_received()) return peer_closed();
  if (!q.send.writable()) return {ErrorCode::kWouldBlock, "dpdk: send buffer full"};
  q.send.push_message(segments);
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
  sink_.send(0, {&piece, 1});
}

void ReliableConnection::send_ack(uint16_t qi, Queue& q, Clock::time_point now) {
  AckBody ack = q.receive.ack();
  Bytes frame(kHeaderBytes + ack_body_bytes(ack));
  write_header({FrameType::kAck, config_.conn_id, qi, 0, 0, 0}, frame);
  write_ack(ack, std::span(frame).subspan(kHeaderBytes));
  std::span<const std::byte> piece(frame);
  sink_.send(qi, {&piece, 1});
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
  Queue& q = *queues_[h.queue];
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
      break;
    case ReceiveQueue::Outcome::kDuplicate:
    case ReceiveQueue::Outcome::kOutsideWindow:
      ++stats_.dropped_frames;
      break;
    case ReceiveQueue::Outcome::kBrokenMessage:
      ++stats_.dropped_frames;
      fail({ErrorCode::kProtocol,
            fmt::format("dpdk: {} sent a malformed message on queue {}", config_.peer, h.queue)});
      break;
  }
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
  for (uint16_t qi = 0; qi < config_.queues; ++qi) {
    Queue& q = *queues_[qi];
    std::lock_guard lock(q.mu);
    uint64_t before = q.send.retransmitted();
    bool was_writable = q.send.writable();
    for (const OutFrame* f : q.send.due(now, kBurstPerTick)) {
      std::array<std::byte, kHeaderBytes> header{};
      write_header({FrameType::kData, config_.conn_id, qi, f->flags, f->seq, f->msg_len}, header);
      std::array<std::span<const std::byte>, 2> pieces{std::span<const std::byte>(header),
                                                       std::span<const std::byte>(f->payload)};
      sink_.send(qi, pieces);
    }
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
