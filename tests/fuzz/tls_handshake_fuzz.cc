// libFuzzer: what an unauthenticated peer can make the accepting side of a TLS channel read.
// Each input is turned into the bytes a client sends before the server's handshake finishes:
// raw, or (so the fuzzer gets past the record layer) a real TLS 1.3 PSK ClientHello captured
// once at start-up, with bytes overwritten or cut where the input says. The server's handshake
// must end with an error (or, never expected, success) within its deadline: no crash, no leak,
// no read outside its buffers, no hang. The text parsers of --tls-psk and --tls-authz get the
// raw input too.
#include <sys/socket.h>
#include <unistd.h>

#include <chrono>
#include <cstddef>
#include <cstdint>
#include <cstdio>
#include <cstdlib>
#include <memory>
#include <string>
#include <thread>
#include <vector>

#include "psk_channels.h"
#include "ramshift/security/tls_settings.h"
#include "ramshift/transport/channel_security.h"

namespace {

using namespace ramshift;
using Clock = std::chrono::steady_clock;

struct Fixture {
  std::shared_ptr<transport::ChannelSecurity> server;
  std::vector<uint8_t> client_hello;
};

// The first flight a real client sends: run its handshake against a socket nobody answers and
// keep what arrives before the client gives up.
std::vector<uint8_t> capture_client_hello(transport::ChannelSecurity& client) {
  int fds[2];
  if (socketpair(AF_UNIX, SOCK_STREAM | SOCK_NONBLOCK, 0, fds) != 0) std::abort();
  std::thread t([&] {
    (void)client.handshake(fds[0], transport::PeerRole::kClient, "localhost",
                           Clock::now() + std::chrono::milliseconds(300));
  });
  t.join();
  std::vector<uint8_t> hello(64 * 1024);
  ssize_t n = read(fds[1], hello.data(), hello.size());
  hello.resize(n > 0 ? static_cast<size_t>(n) : 0);
  close(fds[0]);
  close(fds[1]);
  return hello;
}

Fixture& fixture() {
  static Fixture* made = [] {
    auto* fx = new Fixture;
    auto channels = fuzz::make_psk_channels();
    fx->server = channels.server;
    fx->client_hello = capture_client_hello(*channels.client);
    if (fx->client_hello.size() < 64) std::abort();  // no ClientHello: the fuzzer would be blind
    return fx;
  }();
  return *made;
}

// Mode byte 0: the input as the client's bytes. Otherwise: the captured ClientHello, cut to a
// length the next two bytes give (mode 1), or with (offset, value) pairs written over it.
std::vector<uint8_t> client_bytes(const uint8_t* data, size_t size) {
  if (size == 0 || data[0] % 3 == 0) return {data + (size ? 1 : 0), data + size};
  std::vector<uint8_t> out = fixture().client_hello;
  if (data[0] % 3 == 1 && size >= 3) {
    out.resize(((size_t{data[1]} << 8) | data[2]) % (out.size() + 1));
    return out;
  }
  for (size_t i = 1; i + 2 < size; i += 3) {
    size_t at = ((size_t{data[i]} << 8) | data[i + 1]) % out.size();
    out[at] = data[i + 2];
  }
  return out;
}

}  // namespace

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  std::string text(reinterpret_cast<const char*>(data), size);
  (void)security::parse_psk(text, "fuzz.psk");
  if (text.find('=') != std::string::npos)  // with a '=' it is a list, never a file name
    (void)security::load_authz(text);

  std::vector<uint8_t> bytes = client_bytes(data, size);
  int fds[2];
  if (socketpair(AF_UNIX, SOCK_STREAM | SOCK_NONBLOCK, 0, fds) != 0) std::abort();
  // AF_UNIX buffers hold well over the 64 KiB libFuzzer is run with (-max_len).
  if (!bytes.empty() && write(fds[1], bytes.data(), bytes.size()) < 0) std::abort();
  shutdown(fds[1], SHUT_WR);
  auto stream = fixture().server->handshake(fds[0], transport::PeerRole::kServer, "",
                                            Clock::now() + std::chrono::milliseconds(200));
  if (stream.is_ok()) (void)fixture().server->authorize(**stream);
  close(fds[0]);
  close(fds[1]);
  return 0;
}
