#include "loopback.h"

#include <fmt/format.h>

#include <condition_variable>
#include <cstring>
#include <deque>
#include <map>
#include <mutex>
#include <vector>

namespace ramshift::transport::loopback {
namespace {

// Why 8 MiB: about what Linux autotunes a loopback TCP socket's buffers to, so back-pressure
// shows up at the same depth on loopback as on tcp.
constexpr size_t kChannelCapacity = 8u << 20;
// Same message limit as tcp, so code tested on loopback holds on tcp.
constexpr size_t kMaxMessage = (32u << 20) + 64;
constexpr uint32_t kMaxQueues = 256;

using Buffer = std::vector<std::byte>;

// One direction of one queue.
struct Channel {
  std::mutex mu;
  std::condition_variable cv;
  std::deque<Buffer> messages;
  size_t bytes = 0;
  bool closed = false;
  std::vector<Buffer> spare;  // buffers handed back by the receiver, reused by the sender
};

struct Wire {
  explicit Wire(uint32_t queues) : a_to_b(queues), b_to_a(queues) {
    for (auto& c : a_to_b) c = std::make_unique<Channel>();
    for (auto& c : b_to_a) c = std::make_unique<Channel>();
  }
  std::vector<std::unique_ptr<Channel>> a_to_b, b_to_a;
  void close_all() {
    for (auto* dir : {&a_to_b, &b_to_a})
      for (auto& c : *dir) {
        std::lock_guard lock(c->mu);
        c->closed = true;
        c->cv.notify_all();
      }
  }
};

class LoopbackConnection final : public Connection {
 public:
  LoopbackConnection(std::shared_ptr<Wire> wire, bool side_a, std::string name)
      : wire_(std::move(wire)),
        side_a_(side_a),
        name_(std::move(name)),
        held_(wire_->a_to_b.size()) {
    caps_.max_message = kMaxMessage;
    caps_.max_queues = kMaxQueues;
  }
  ~LoopbackConnection() override { close(); }

  const Capabilities& capabilities() const override { return caps_; }
  uint32_t queue_count() const override { return static_cast<uint32_t>(held_.size()); }
  std::string describe() const override {
    return fmt::format("loopback://{} ({} queues)", name_, queue_count());
  }
  std::string transport_name() const override { return "loopback"; }

  Result<MemoryKey> register_memory(std::span<std::byte> memory, MemoryAccess) override {
    return MemoryKey{reinterpret_cast<uint64_t>(memory.data()), memory.size(), 0, {}};
  }
  Status post_write(uint32_t, std::span<const RemoteWrite>) override {
    return no_remote_writes(transport_name());
  }

  Status post_send(uint32_t queue, std::span<const ConstBuffer> segments) override {
    RS_RETURN_IF_ERROR(check_queue(queue));
    size_t total = 0;
    for (auto s : segments) total += s.size();
    if (total > kMaxMessage)
      return Status(
          ErrorCode::kInvalidArgument,
          fmt::format("message of {} bytes exceeds the {}-byte limit", total, kMaxMessage));
    Channel& ch = tx(queue);
    std::unique_lock lock(ch.mu);
    if (ch.closed) return disconnected();
    // A message bigger than the whole capacity still goes when the channel is empty.
    if (ch.bytes > 0 && ch.bytes + total > kChannelCapacity)
      return Status(ErrorCode::kWouldBlock, "loopback queue full");
    Buffer buf;
    if (!ch.spare.empty()) {
      buf = std::move(ch.spare.back());
      ch.spare.pop_back();
    }
    lock.unlock();
    buf.resize(total);  // copy outside the lock
    size_t at = 0;
    for (auto s : segments) {
      if (!s.empty()) std::memcpy(buf.data() + at, s.data(), s.size());
      at += s.size();
    }
    lock.lock();
    if (ch.closed) return disconnected();
    ch.bytes += total;
    ch.messages.push_back(std::move(buf));
    ch.cv.notify_all();
    return Status::ok();
  }

  Status wait_writable(uint32_t queue, Millis timeout) override {
    RS_RETURN_IF_ERROR(check_queue(queue));
    Channel& ch = tx(queue);
    std::unique_lock lock(ch.mu);
    bool ready =
        ch.cv.wait_for(lock, timeout, [&] { return ch.closed || ch.bytes < kChannelCapacity; });
    if (ch.closed) return disconnected();
    return ready ? Status::ok() : Status(ErrorCode::kTimeout, "loopback queue still full");
  }

  Status flush(uint32_t queue, Millis) override { return check_queue(queue); }

  Result<size_t> poll(uint32_t queue, std::span<ConstBuffer> out, Millis timeout) override {
    RS_RETURN_IF_ERROR(check_queue(queue));
    Channel& ch = rx(queue);
    auto& held = held_[queue];
    std::unique_lock lock(ch.mu);
    for (auto& b : held) ch.spare.push_back(std::move(b));  // last poll's views expire now
    held.clear();
    ch.cv.wait_for(lock, timeout, [&] { return ch.closed || !ch.messages.empty(); });
    if (ch.messages.empty()) {
      if (ch.closed) return disconnected();
      return size_t{0};
    }
    size_t n = 0;
    while (n < out.size() && !ch.messages.empty()) {
      held.push_back(std::move(ch.messages.front()));
      ch.messages.pop_front();
      ch.bytes -= held.back().size();
      out[n++] = ConstBuffer(held.back().data(), held.back().size());
    }
    ch.cv.notify_all();  // wake a sender waiting for room
    return n;
  }

  void close() override { wire_->close_all(); }

 private:
  Channel& tx(uint32_t q) { return side_a_ ? *wire_->a_to_b[q] : *wire_->b_to_a[q]; }
  Channel& rx(uint32_t q) { return side_a_ ? *wire_->b_to_a[q] : *wire_->a_to_b[q]; }
  Status check_queue(uint32_t q) const {
    if (q >= held_.size())
      return Status(ErrorCode::kInvalidArgument,
                    fmt::format("queue {} does not exist (connection has {})", q, held_.size()));
    return Status::ok();
  }
  static Status disconnected() {
    return Status(ErrorCode::kDisconnected, "peer closed the connection");
  }

  std::shared_ptr<Wire> wire_;
  bool side_a_;
  std::string name_;
  Capabilities caps_;
  std::vector<std::vector<Buffer>> held_;  // per queue: buffers behind the last poll's views
};

class LoopbackListener;
std::mutex g_registry_mu;
std::map<std::string, LoopbackListener*> g_registry;

class LoopbackListener final : public Listener {
 public:
  explicit LoopbackListener(std::string name) : name_(std::move(name)) {}
  ~LoopbackListener() override {
    std::lock_guard lock(g_registry_mu);
    g_registry.erase(name_);
  }
  Uri address() const override { return Uri{"loopback", name_, 0}; }

  Result<std::unique_ptr<Connection>> accept(Millis timeout) override {
    std::unique_lock lock(mu_);
    if (!cv_.wait_for(lock, timeout, [&] { return !pending_.empty(); }))
      return Status(ErrorCode::kTimeout, fmt::format("no connection on loopback://{}", name_));
    auto c = std::move(pending_.front());
    pending_.pop_front();
    return c;
  }

  void deliver(std::unique_ptr<Connection> c) {
    std::lock_guard lock(mu_);
    pending_.push_back(std::move(c));
    cv_.notify_all();
  }

 private:
  std::string name_;
  std::mutex mu_;
  std::condition_variable cv_;
  std::deque<std::unique_ptr<Connection>> pending_;
};

}  // namespace

Result<std::unique_ptr<Listener>> listen(const Uri& uri) {
  std::lock_guard lock(g_registry_mu);
  if (g_registry.count(uri.host))
    return Status(ErrorCode::kAddressInUse,
                  fmt::format("loopback://{} already has a listener in this process", uri.host));
  auto l = std::make_unique<LoopbackListener>(uri.host);
  g_registry[uri.host] = l.get();
  return std::unique_ptr<Listener>(std::move(l));
}

Result<std::unique_ptr<Connection>> connect(const Uri& uri, uint32_t queues) {
  if (queues == 0 || queues > kMaxQueues)
    return Status(ErrorCode::kInvalidArgument,
                  fmt::format("{} queues requested; loopback supports 1..{}", queues, kMaxQueues));
  std::lock_guard lock(g_registry_mu);
  auto it = g_registry.find(uri.host);
  if (it == g_registry.end())
    return Status(ErrorCode::kUnreachable,
                  fmt::format("no listener on loopback://{} in this process", uri.host));
  auto wire = std::make_shared<Wire>(queues);
  it->second->deliver(std::make_unique<LoopbackConnection>(wire, false, uri.host));
  return std::unique_ptr<Connection>(std::make_unique<LoopbackConnection>(wire, true, uri.host));
}

}  // namespace ramshift::transport::loopback
