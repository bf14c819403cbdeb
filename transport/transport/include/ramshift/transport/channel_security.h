// Authenticated, encrypted channels for the socket backends, without their library in the core.
//
// The tcp backend asks channel_security() for a ChannelSecurity when the generic settings carry
// "tls-dir" or "tls-psk" (--tls-dir, --tls-psk; --tls-authz and --tls-ktls refine them). The
// implementation (TLS 1.3 with OpenSSL) lives in security/, the only folder that includes
// OpenSSL, and installs itself here at static initialisation with a SecurityRegistrar, as a
// backend does in registry.h. A binary without it refuses those settings with the reason, so
// asking for TLS never silently gives a plaintext channel.
//
// Every socket is authenticated before anything else crosses it: the handshake runs on the
// bare socket, and the backend's own queue hello, then every message, travel inside it.
#pragma once

#include <chrono>
#include <functional>
#include <memory>
#include <span>
#include <string>

#include "ramshift/base/status.h"
#include "ramshift/transport/settings.h"

namespace ramshift::transport {

// Who opened the socket: the client connects (send, bench client, bridge source), the server
// accepted it (receive, bench --server, bridge dest).
enum class PeerRole { kClient, kServer };

// One socket after a successful handshake. Thread-safety: one thread may write while another
// reads (the stream serialises them inside); close the socket (shutdown) to wake both.
class SecureStream {
 public:
  virtual ~SecureStream() = default;
  // Takes all of `segments` (copied: the caller may reuse them at once) and sends what the
  // socket takes now. kWouldBlock: an earlier write has not all left yet and nothing was
  // taken; wait for POLLOUT and call flush_some(). Other errors: the channel is broken.
  virtual Status write(std::span<const std::span<const std::byte>> segments) = 0;
  // Sends what write() took and the socket did not: ok once nothing is left, else kWouldBlock.
  virtual Status flush_some() = 0;
  virtual bool has_unsent() const = 0;
  // Up to out.size() bytes of the peer's data: > 0 bytes; 0 once the peer closed;
  // kWouldBlock when none is ready (wait for POLLIN).
  virtual Result<size_t> read(std::span<std::byte> out) = 0;
  // The identity the peer proved: its certificate's subject ("CN=host-b,O=example") or its
  // pre-shared key's identity.
  virtual std::string peer_identity() const = 0;
  // For logs: "TLS 1.3 TLS_AES_256_GCM_SHA384, x509, kernel TLS send/receive".
  virtual std::string describe() const = 0;
};

class ChannelSecurity {
 public:
  virtual ~ChannelSecurity() = default;
  // Runs the handshake on the connected, non-blocking socket `fd` before `deadline`. The client
  // checks the server's certificate against `host` (the URI's host); the server checks the
  // client's certificate or key. The error says what was refused and on which side to look.
  virtual Result<std::unique_ptr<SecureStream>> handshake(
      int fd, PeerRole role, const std::string& host,
      std::chrono::steady_clock::time_point deadline) = 0;
  // Server side, after the handshake: whether the proven identity may connect (--tls-authz).
  virtual Status authorize(const SecureStream& stream) const = 0;
  // "x509" or "psk", for logs.
  virtual std::string mode() const = 0;
};

struct SecurityProvider {
  std::string name;  // "openssl"
  // Loads the credentials the settings name, for one role; errors name the file and the fix.
  std::function<Result<std::shared_ptr<ChannelSecurity>>(const BackendSettings&, PeerRole)> make;
  // Checks the "tls-*" settings without loading anything for a role (a command's flags).
  std::function<Status(const BackendSettings&)> check;
};

// Installs `provider` for the process at static initialisation; a second one is ignored.
struct SecurityRegistrar {
  explicit SecurityRegistrar(SecurityProvider provider);
};

// Whether the settings ask for an authenticated channel ("tls-dir" or "tls-psk").
bool security_requested(const BackendSettings& settings);

// nullptr when not requested; otherwise the provider's channel for `role`, or
// kInvalidArgument (bad settings, unreadable credentials, or no provider in this binary).
Result<std::shared_ptr<ChannelSecurity>> channel_security(const BackendSettings& settings,
                                                          PeerRole role);

// The "tls-*" settings' check (registry.h check_settings runs it).
Status check_security_settings(const BackendSettings& settings);

// What a backend that cannot authenticate yet (rdma, dpdk) returns from listen/connect when
// the settings ask for TLS: kInvalidArgument naming the scheme, never a plaintext channel.
Status refuse_unauthenticated(const std::string& scheme, const BackendSettings& settings);

}  // namespace ramshift::transport
