// Authenticated, encrypted channels for the socket backends, without their library in the core.
//
// The tcp and rdma backends ask channel_security() for a ChannelSecurity when the generic settings
// carry "tls-dir" or "tls-psk" (--tls-dir, --tls-psk; --tls-authz and --tls-ktls refine them). The
// implementation (TLS 1.3 with OpenSSL) lives in security/, the only folder that includes
// OpenSSL, and installs itself here at static initialisation with a SecurityRegistrar, as a
// backend does in registry.h. A binary without it refuses those settings with the reason, so
// asking for TLS never silently gives a plaintext channel.
//
// Every socket is authenticated before anything else crosses it: the handshake runs on the
// bare socket, and the backend's own queue hello, then every message, travel inside it.
// rdma runs the same handshake over a MessagePipe (two-sided SEND/RECV) before it announces
// its ring or any key, and carries its hello inside the session.
#pragma once

#include <chrono>
#include <cstdint>
#include <functional>
#include <memory>
#include <span>
#include <string>
#include <vector>

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

// A reliable, ordered pipe of bounded messages, for a backend whose queue is not a socket:
// rdma's two-sided SEND/RECV on a queue pair, before its rings and keys are announced.
class MessagePipe {
 public:
  virtual ~MessagePipe() = default;
  // The largest message send() takes.
  virtual size_t max_message() const = 0;
  virtual Status send(std::span<const std::byte> message) = 0;
  // The peer's next message; kTimeout at `deadline`; kDisconnected when the peer left.
  virtual Result<std::vector<std::byte>> receive(
      std::chrono::steady_clock::time_point deadline) = 0;
};

// AES-256-GCM for one direction of one queue (rdma:// --encrypt): each message is sealed on
// its own with the next nonce (the queue's number and a counter, never reused), and opened
// only in order: a changed, dropped, replayed or reordered message fails its tag check
// before anything of it is used. One thread per sealer.
class PayloadSealer {
 public:
  // A sealed message is the counter (u64, little endian), the ciphertext and a 16-byte tag.
  static constexpr size_t kOverhead = 8 + 16;
  virtual ~PayloadSealer() = default;
  // Encrypts the concatenation of `plain` into `out`, which must hold its size + kOverhead.
  virtual Status seal(std::span<const std::span<const std::byte>> plain,
                      std::span<std::byte> out) = 0;
  // The message seal() made last was refused by the queue (kWouldBlock) and its bytes never
  // left this process: its counter goes to the next message instead, so that the peer, which
  // opens in order, sees no gap. Never after any byte of it was posted.
  virtual void withdraw_last() = 0;
  // Checks `sealed` (the next message in order) and decrypts it into `out`, which must hold
  // sealed.size() - kOverhead bytes: private memory, so that nothing the peer (or someone
  // writing into a remotely writable ring) changes after the check is ever read as checked.
  // kMismatch when anything about it is wrong; `out` is then not to be used.
  virtual Status open(std::span<const std::byte> sealed, std::span<std::byte> out) = 0;
};

// A TLS session over a MessagePipe after its handshake: the set-up's few messages (verdict,
// hellos) sealed in TLS records, and keys derived from the session for the data path.
class SecureSession {
 public:
  virtual ~SecureSession() = default;
  // Seals `message` (up to 64 KiB) into records and sends them down the pipe.
  virtual Status send(std::span<const std::byte> message) = 0;
  // The next message as the peer's send() gave it. A peer's refusal (a TLS alert) is an error
  // whose message carries the alert.
  virtual Result<std::vector<std::byte>> receive(
      std::chrono::steady_clock::time_point deadline) = 0;
  virtual std::string peer_identity() const = 0;
  virtual std::string describe() const = 0;
  // `bytes` of key material from the session (RFC 8446 exporter, 7.5): the same on both
  // ends for the same label and context, and unrelated to the record keys.
  virtual Result<std::vector<std::byte>> export_key(const std::string& label,
                                                    std::span<const std::byte> context,
                                                    size_t bytes) const = 0;
  // The sealer of queue `queue` for what this side sends (`sending`) or receives, keyed from
  // this session: the two ends get matching pairs, each direction its own key.
  virtual Result<std::unique_ptr<PayloadSealer>> sealer(bool sending, uint32_t queue) const = 0;
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
  // The same handshake over a message pipe, with the same credentials, checks and errors.
  virtual Result<std::unique_ptr<SecureSession>> handshake(
      MessagePipe& pipe, PeerRole role, const std::string& host,
      std::chrono::steady_clock::time_point deadline) = 0;
  // Server side, after the handshake: whether the proven identity may connect (--tls-authz).
  virtual Status authorize(const SecureStream& stream) const = 0;
  virtual Status authorize(const SecureSession& session) const = 0;
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

// What a backend that cannot authenticate yet (dpdk) returns from listen/connect when
// the settings ask for TLS: kInvalidArgument naming the scheme, never a plaintext channel.
Status refuse_unauthenticated(const std::string& scheme, const BackendSettings& settings);

}  // namespace ramshift::transport
