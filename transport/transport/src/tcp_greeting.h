// How a tcp queue starts, in both modes, before its first message:
//   plaintext: client -> queue hello (24 bytes, tcp_socket.h); nothing back.
//   TLS:       TLS 1.3 handshake (channel_security.h), then inside it: client -> queue hello,
//              server -> u32 0 (accepted) or a refusal; only then messages.
// A listener that refuses a socket says why before closing it: u32 kRefusalMarker (no
// message is that long), u32 length, that many bytes of text. A plaintext client reads it in
// place of its first message (TcpConnection::poll), a TLS client as the answer to its hello.
#pragma once

#include <chrono>
#include <memory>
#include <string>
#include <string_view>
#include <vector>

#include "ramshift/transport/channel_security.h"
#include "ramshift/transport/uri.h"
#include "tcp_socket.h"

namespace ramshift::transport::tcp {

inline constexpr uint32_t kRefusalMarker = 0xFFFFFFFF;
inline constexpr uint32_t kAccepted = 0;
// Why 1 KiB: a sentence naming the option to fix; longer text is cut, never trusted further.
inline constexpr uint32_t kMaxRefusalText = 1024;
std::vector<std::byte> encode_refusal(std::string_view reason);
// The error a client reports for a refusal carrying `text` from `peer`.
Status refused_by(const std::string& peer, std::string_view text);

// Client side of one queue: `fd` is connected. Plaintext (`security` null): sends the hello.
// TLS: handshake, hello inside it, and waits for the server's answer. Returns the stream
// (null in plaintext).
Result<std::unique_ptr<SecureStream>> greet_server(ChannelSecurity* security, int fd,
                                                   const Uri& uri, const QueueHello& hello,
                                                   std::chrono::steady_clock::time_point deadline);

// Server side of one accepted socket. A peer in the other mode (TLS against plaintext or the
// reverse) is refused with a message saying so, as is an identity --tls-authz does not list.
struct GreetedQueue {
  QueueHello hello;
  std::unique_ptr<SecureStream> stream;  // null in plaintext
};
Result<GreetedQueue> greet_client(ChannelSecurity* security, int fd,
                                  std::chrono::steady_clock::time_point deadline);

}  // namespace ramshift::transport::tcp
