// libFuzzer: what an unauthenticated peer can make the accepting side of rdma's handshake read.
// rdma runs TLS 1.3 over two-sided messages (a MessagePipe, rdma/src/queue_auth.cc) before it
// announces a ring or a key; here the pipe is in memory and the peer's messages come from the
// input: raw messages of lengths the input gives (up to the 4 KiB receive slot and beyond), or
// the messages a real PSK client sends first, captured once at start-up, cut or overwritten
// where the input says. The server's handshake must end with an error (or, never expected,
// success) before its deadline: no crash, no leak, no read outside its buffers, no hang.
#include <chrono>
#include <cstddef>
#include <cstdint>
#include <cstdio>
#include <cstdlib>
#include <deque>
#include <memory>
#include <string>
#include <vector>

#include "psk_channels.h"
#include "ramshift/transport/channel_security.h"

namespace {

using namespace ramshift;
using Clock = std::chrono::steady_clock;
using Message = std::vector<std::byte>;

// rdma's receive slot (rdma/src/queue_auth.h, kAuthSlotBytes).
constexpr size_t kSlotBytes = 4096;

// The peer's messages, then "the peer left"; what the server sends is dropped (or, for the
// capture, kept).
class ScriptedPipe final : public transport::MessagePipe {
 public:
  explicit ScriptedPipe(std::deque<Message> incoming) : incoming_(std::move(incoming)) {}
  size_t max_message() const override { return kSlotBytes; }
  Status send(std::span<const std::byte> message) override {
    if (message.size() > kSlotBytes) std::abort();  // the session must respect max_message()
    sent.emplace_back(message.begin(), message.end());
    return Status::ok();
  }
  Result<Message> receive(Clock::time_point) override {
    if (incoming_.empty()) return Status(ErrorCode::kDisconnected, "the peer left");
    Message m = std::move(incoming_.front());
    incoming_.pop_front();
    return m;
  }
  std::vector<Message> sent;

 private:
  std::deque<Message> incoming_;
};

struct Fixture {
  std::shared_ptr<transport::ChannelSecurity> server;
  std::vector<Message> client_flight;
};

Fixture& fixture() {
  static Fixture* made = [] {
    auto* fx = new Fixture;
    auto channels = fuzz::make_psk_channels();
    fx->server = channels.server;
    // The client's first flight: it sends, then finds nobody answering.
    ScriptedPipe capture({});
    (void)channels.client->handshake(capture, transport::PeerRole::kClient, "localhost",
                                     Clock::now() + std::chrono::milliseconds(300));
    fx->client_flight = capture.sent;
    if (fx->client_flight.empty()) std::abort();  // no ClientHello: the fuzzer would be blind
    return fx;
  }();
  return *made;
}

size_t u16(const uint8_t* p) { return (size_t{p[0]} << 8) | p[1]; }

// Mode byte % 3 == 0: messages, each a 2-byte length (up to 2x the slot) and its bytes.
// 1: the captured flight with message (byte) cut to a length (two bytes). 2: the captured
// flight with (message, offset, value) overwrites.
std::deque<Message> peer_messages(const uint8_t* data, size_t size) {
  std::deque<Message> out;
  if (size == 0) return out;
  const auto* b = reinterpret_cast<const std::byte*>(data);
  if (data[0] % 3 == 0) {
    for (size_t i = 1; i + 2 <= size;) {
      size_t len = std::min(u16(data + i) % (2 * kSlotBytes + 1), size - i - 2);
      out.emplace_back(b + i + 2, b + i + 2 + len);
      i += 2 + len;
    }
    return out;
  }
  const auto& flight = fixture().client_flight;
  out.assign(flight.begin(), flight.end());
  if (data[0] % 3 == 1 && size >= 4) {
    Message& m = out[data[1] % out.size()];
    m.resize(u16(data + 2) % (m.size() + 1));
    return out;
  }
  for (size_t i = 1; i + 3 < size; i += 4) {
    Message& m = out[data[i] % out.size()];
    if (!m.empty()) m[u16(data + i + 1) % m.size()] = static_cast<std::byte>(data[i + 3]);
  }
  return out;
}

}  // namespace

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  ScriptedPipe pipe(peer_messages(data, size));
  auto session = fixture().server->handshake(pipe, transport::PeerRole::kServer, "",
                                             Clock::now() + std::chrono::milliseconds(200));
  if (session.is_ok()) {
    (void)fixture().server->authorize(**session);
    (void)(*session)->receive(Clock::now() + std::chrono::milliseconds(50));
  }
  return 0;
}
